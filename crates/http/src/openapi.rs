//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Starling API",
        version = "1",
        description = "A social feed: accounts, posts, follows and a fast home timeline. \
            Errors are RFC 9457 problem documents (application/problem+json). \
            Ids are 64-bit integers sent as strings. Lists are cursor-paged."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Registration and sessions"),
        (name = "users", description = "Profiles"),
        (name = "graph", description = "Following"),
        (name = "posts", description = "Posts and likes"),
        (name = "feed", description = "The home timeline"),
        (name = "notifications", description = "Follows, likes, replies and mentions of the caller"),
        (name = "stream", description = "Live updates (Server-Sent Events)"),
        (name = "media", description = "Images: uploads and their files"),
    )
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
