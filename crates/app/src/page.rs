//! Results shaped for readers: pages with a keyset position, hydrated posts.

use std::sync::Arc;

use starling_domain::{Post, UserSummary};

/// One page of a list: the items and, when there is more, the keyset position
/// to continue from (the raw id of the last item; the HTTP layer makes it opaque).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<i64>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched items: the extra one only
    /// says that more exist.
    pub fn from_overfetch(mut items: Vec<T>, limit: usize, position: impl Fn(&T) -> i64) -> Self {
        let has_more = items.len() > limit;
        items.truncate(limit);
        let next = if has_more {
            items.last().map(position)
        } else {
            None
        };
        Self { items, next }
    }
}

/// A post ready to show: the post, its author, and whether the reader liked it.
#[derive(Debug, Clone)]
pub struct PostView {
    pub post: Arc<Post>,
    pub author: Arc<UserSummary>,
    pub liked_by_me: bool,
}
