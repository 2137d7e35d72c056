//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! completed with what every operation shares: the answers of the layers in
//! front of the handlers (rate limits, load shedding, timeouts, body and
//! token checks), and the rate-limit headers on every answer.

use serde_json::{Map, Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Starling API",
        version = "1",
        description = "A social feed: accounts, posts, follows and a fast home timeline. \
            Errors are RFC 9457 problem documents (application/problem+json). \
            Ids are 64-bit integers sent as strings. Lists are cursor-paged (admin listings: offset pages with a total)."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Registration and sessions"),
        (name = "sessions", description = "A person's signed-in sessions, and their password"),
        (name = "users", description = "Profiles"),
        (name = "graph", description = "Following"),
        (name = "posts", description = "Posts and likes"),
        (name = "feed", description = "The home timeline"),
        (name = "notifications", description = "Follows, likes, replies and mentions of the caller"),
        (name = "stream", description = "Live updates (Server-Sent Events)"),
        (name = "media", description = "Images: uploads and their files"),
        (name = "admin", description = "Staff: accounts, suspension, roles, post removal and the audit log (moderators and admins; offset-paged)"),
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
                    .bearer_format("JWT access token, or an API key sk_...")
                    .build(),
            ),
        );
    }
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// A problem answer (`application/problem+json`).
fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {
            "application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}
            }
        }
    })
}

fn integer_header(description: &str) -> Value {
    json!({"description": description, "schema": {"type": "integer", "minimum": 0}})
}

/// The headers every answer of a rate-limited API carries (when limits
/// are on), as the README documents them.
fn rate_limit_headers() -> Map<String, Value> {
    let mut headers = Map::new();
    for (name, description) in [
        (
            "RateLimit-Limit",
            "Requests of this route class allowed in a burst",
        ),
        ("RateLimit-Remaining", "Requests left in the burst"),
        ("RateLimit-Reset", "Seconds until the burst is whole again"),
        (
            "X-RateLimit-Limit",
            "As RateLimit-Limit (the older convention)",
        ),
        (
            "X-RateLimit-Remaining",
            "As RateLimit-Remaining (the older convention)",
        ),
        (
            "X-RateLimit-Reset",
            "When the burst is whole again, in Unix seconds",
        ),
    ] {
        headers.insert(name.to_owned(), integer_header(description));
    }
    headers.insert(
        "RateLimit-Policy".to_owned(),
        json!({"description": "The quota: `<limit>;w=<window seconds>`", "schema": {"type": "string"}}),
    );
    headers
}

/// Adds, to every operation of `document`, the answers it can get from the
/// layers around its handler, where the handler's own annotations do not
/// already describe them; and the rate-limit headers to every answer.
pub(crate) fn complete(mut document: Value) -> Value {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return document;
    };
    let retry_after = json!({
        "Retry-After": integer_header("Seconds to wait before trying again")
    });
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for method in METHODS {
            let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) else {
                continue;
            };
            let has_body = operation.contains_key("requestBody");
            let takes_idempotency_key = operation
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|parameters| {
                    parameters
                        .iter()
                        .any(|parameter| parameter["name"] == "Idempotency-Key")
                });
            let has_path_parameters = path.contains('{');
            let takes_bearer = operation
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|security| security.iter().any(|entry| entry.get("bearer").is_some()));
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let mut shared: Vec<(&str, Value)> = vec![
                (
                    "400",
                    problem(
                        "The request cannot be read: a malformed query string, header, path or body",
                    ),
                ),
                (
                    "401",
                    problem(
                        "The access token given is missing where needed, malformed, invalid or expired",
                    ),
                ),
                (
                    "429",
                    problem(
                        "Too many requests of this class from this client: wait `Retry-After` seconds",
                    ),
                ),
                (
                    "503",
                    problem(
                        "Overloaded, timed out or a dependency unavailable: retry after `Retry-After` seconds",
                    ),
                ),
            ];
            if has_path_parameters {
                shared.push(("404", problem("Nothing is found at this path")));
            }
            if takes_bearer {
                shared.push((
                    "403",
                    problem("The API key given lacks the scope this operation needs, or API keys may not use it"),
                ));
            }
            if has_body {
                shared.push(("413", problem("The body is larger than accepted")));
                shared.push((
                    "415",
                    problem("The body is not of a content type this operation takes"),
                ));
                shared.push((
                    "422",
                    problem("The body is well-formed but its values are not valid"),
                ));
            }
            if takes_idempotency_key {
                shared.push((
                    "409",
                    problem("A request with this Idempotency-Key is still running: retry shortly"),
                ));
                shared.push((
                    "422",
                    problem("The Idempotency-Key was used for a different request, or the body is not valid"),
                ));
            }
            for (status, response) in shared {
                responses.entry(status).or_insert(response);
            }
            for (status, response) in responses.iter_mut() {
                let Some(response) = response.as_object_mut() else {
                    continue;
                };
                let headers = response
                    .entry("headers")
                    .or_insert_with(|| Value::Object(Map::new()));
                let Some(headers) = headers.as_object_mut() else {
                    continue;
                };
                for (name, header) in rate_limit_headers() {
                    headers.entry(name).or_insert(header);
                }
                if status == "429" || status == "503" {
                    for (name, header) in retry_after.as_object().into_iter().flatten() {
                        headers.entry(name.clone()).or_insert(header.clone());
                    }
                }
            }
        }
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_gets_the_shared_answers_and_headers() {
        let document = complete(json!({
            "paths": {
                "/api/v1/things/{id}": {
                    "post": {
                        "requestBody": {},
                        "responses": {"201": {"description": "made"}, "404": {"description": "mine"}}
                    }
                },
                "/api/v1/things": {"get": {"responses": {"200": {"description": "listed"}}}}
            }
        }));
        let post = &document["paths"]["/api/v1/things/{id}"]["post"]["responses"];
        for status in [
            "201", "400", "401", "404", "413", "415", "422", "429", "503",
        ] {
            assert!(post.get(status).is_some(), "{status}");
        }
        assert_eq!(
            post["404"]["description"], "mine",
            "the handler's own stays"
        );
        assert!(post["201"]["headers"]["RateLimit-Remaining"].is_object());
        assert!(post["429"]["headers"]["Retry-After"].is_object());
        let get = &document["paths"]["/api/v1/things"]["get"]["responses"];
        assert!(get.get("404").is_none() && get.get("415").is_none());
        assert_eq!(
            get["503"]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
    }
}
