//! Which scope each route needs of an API key. A session's access token
//! carries every scope, so this only narrows what keys may do; keys never
//! manage credentials (keys, sessions, the password) or use the admin API,
//! which only a person signed in may.

use axum::http::Method;
use starling_app::auth::Scope;

/// What a route asks of the credential calling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    Scope(Scope),
    /// A session's access token: no API key, whatever its scopes.
    SignedIn,
}

/// What `method` on the route template `route` (axum's matched path,
/// `/api/v1/users/{user}/follow`) needs.
pub(crate) fn needs(method: &Method, route: &str) -> Needs {
    let route = route.strip_prefix("/api/v1").unwrap_or(route);
    let reading = matches!(*method, Method::GET | Method::HEAD);
    // Deleting the account is for the person, never a key.
    if route == "/me" && *method == Method::DELETE {
        return Needs::SignedIn;
    }
    if route.starts_with("/me/sessions")
        || route.starts_with("/me/api-keys")
        // An archive holds the email and every list: the person's own.
        || route.starts_with("/me/export")
        || route == "/me/password"
        || route.starts_with("/auth/")
        // Staff act as the person they are, never through a key.
        || route.starts_with("/admin/")
        // A stream lasts as long as a session's token; keys get none yet.
        || route == "/stream"
    {
        return Needs::SignedIn;
    }
    if route.starts_with("/notifications") {
        return Needs::Scope(Scope::Notifications);
    }
    if reading {
        return Needs::Scope(Scope::Read);
    }
    if route == "/media" {
        return Needs::Scope(Scope::Media);
    }
    if route.ends_with("/follow") || route.ends_with("/block") || route.ends_with("/mute") {
        return Needs::Scope(Scope::Follow);
    }
    Needs::Scope(Scope::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_asks_for_what_it_does() {
        let cases = [
            (Method::GET, "/api/v1/feed", Needs::Scope(Scope::Read)),
            (
                Method::GET,
                "/api/v1/users/{user}",
                Needs::Scope(Scope::Read),
            ),
            (Method::GET, "/api/v1/me/blocks", Needs::Scope(Scope::Read)),
            (Method::POST, "/api/v1/posts", Needs::Scope(Scope::Write)),
            (
                Method::DELETE,
                "/api/v1/posts/{post}",
                Needs::Scope(Scope::Write),
            ),
            (
                Method::POST,
                "/api/v1/posts/{post}/like",
                Needs::Scope(Scope::Write),
            ),
            (Method::PATCH, "/api/v1/me", Needs::Scope(Scope::Write)),
            (
                Method::POST,
                "/api/v1/users/{user}/follow",
                Needs::Scope(Scope::Follow),
            ),
            (
                Method::DELETE,
                "/api/v1/users/{user}/block",
                Needs::Scope(Scope::Follow),
            ),
            (
                Method::POST,
                "/api/v1/users/{user}/mute",
                Needs::Scope(Scope::Follow),
            ),
            (
                Method::GET,
                "/api/v1/notifications",
                Needs::Scope(Scope::Notifications),
            ),
            (
                Method::POST,
                "/api/v1/notifications/read",
                Needs::Scope(Scope::Notifications),
            ),
            (Method::GET, "/api/v1/stream", Needs::SignedIn),
            (Method::POST, "/api/v1/media", Needs::Scope(Scope::Media)),
            (Method::GET, "/api/v1/media/{id}", Needs::Scope(Scope::Read)),
            (Method::GET, "/api/v1/me/sessions", Needs::SignedIn),
            (Method::DELETE, "/api/v1/me/sessions/{id}", Needs::SignedIn),
            (Method::POST, "/api/v1/me/password", Needs::SignedIn),
            (Method::GET, "/api/v1/me/api-keys", Needs::SignedIn),
            (Method::POST, "/api/v1/me/api-keys", Needs::SignedIn),
            (Method::DELETE, "/api/v1/me/api-keys/{id}", Needs::SignedIn),
            (Method::POST, "/api/v1/auth/logout", Needs::SignedIn),
            (Method::GET, "/api/v1/admin/accounts", Needs::SignedIn),
            (Method::DELETE, "/api/v1/me", Needs::SignedIn),
            (Method::POST, "/api/v1/me/export", Needs::SignedIn),
            (Method::GET, "/api/v1/me/export/archive", Needs::SignedIn),
            (Method::GET, "/api/v1/me", Needs::Scope(Scope::Read)),
            (
                Method::POST,
                "/api/v1/admin/accounts/{id}/suspend",
                Needs::SignedIn,
            ),
            (
                Method::DELETE,
                "/api/v1/admin/posts/{post}",
                Needs::SignedIn,
            ),
        ];
        for (method, route, expected) in cases {
            assert_eq!(needs(&method, route), expected, "{method} {route}");
        }
    }
}
