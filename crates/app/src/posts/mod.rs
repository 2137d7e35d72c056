//! Posts: create, delete, like, and read one post or one author's posts.

mod create;
mod delete;
mod like;
mod read;
