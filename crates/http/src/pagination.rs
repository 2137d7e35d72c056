//! Cursor pagination: `?limit` and opaque `?cursor`, and the page envelope.
//!
//! A cursor is `base64url("v1:<list>:<position>")`: the keyset position of
//! the last item served, bound to the list it came from. Clients must treat
//! it as opaque; a cursor that does not decode, or that belongs to another
//! list, is a 400.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use starling_app::Page;
use utoipa::{IntoParams, ToSchema};

use crate::problem::ApiError;

pub(crate) const DEFAULT_LIMIT: usize = 20;
pub(crate) const MAX_LIMIT: usize = 100;

/// Query parameters of every list endpoint. Strings here so that malformed
/// values get our own error, not a generic rejection.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated page request for one list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageRequest {
    pub limit: usize,
    /// Keyset position to continue after (exclusive).
    pub after: Option<i64>,
}

impl PageParams {
    /// Validates the parameters for the list named `list` (e.g. `feed`, `followers:42`).
    pub(crate) fn for_list(&self, list: &str) -> Result<PageRequest, ApiError> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(value) if (1..=MAX_LIMIT).contains(&value) => value,
                _ => {
                    return Err(ApiError::invalid_parameter(
                        "limit",
                        format!("must be a whole number from 1 to {MAX_LIMIT}"),
                    ));
                }
            },
        };
        let after = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(cursor) => Some(decode_cursor(cursor, list)?),
        };
        Ok(PageRequest { limit, after })
    }
}

pub(crate) fn encode_cursor(list: &str, position: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{list}:{position}"))
}

fn decode_cursor(cursor: &str, list: &str) -> Result<i64, ApiError> {
    let invalid = || ApiError::invalid_parameter("cursor", "is not a cursor issued for this list");
    if cursor.len() > 256 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let rest = text.strip_prefix("v1:").ok_or_else(invalid)?;
    let (cursor_list, position) = rest.rsplit_once(':').ok_or_else(invalid)?;
    if cursor_list != list {
        return Err(invalid());
    }
    match position.parse::<i64>() {
        Ok(position) if position > 0 => Ok(position),
        _ => Err(invalid()),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Pagination {
    /// Pass as `?cursor=` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// A page of items.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PageBody<T> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

impl<T> PageBody<T> {
    pub(crate) fn from_page<S>(page: Page<S>, list: &str, convert: impl Fn(S) -> T) -> Self {
        Self {
            pagination: Pagination {
                has_more: page.next.is_some(),
                next_cursor: page.next.map(|position| encode_cursor(list, position)),
            },
            data: page.items.into_iter().map(convert).collect(),
        }
    }

    /// Like `from_page`, with items that borrow from the page.
    pub(crate) fn from_page_ref<'a, S>(
        page: &'a Page<S>,
        list: &str,
        convert: impl Fn(&'a S) -> T,
    ) -> Self {
        Self {
            pagination: Pagination {
                has_more: page.next.is_some(),
                next_cursor: page.next.map(|position| encode_cursor(list, position)),
            },
            data: page.items.iter().map(convert).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod properties {
        use axum::http::StatusCode;
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn cursors_round_trip_for_their_own_list_only(position in 1..i64::MAX, list in "[a-z_]{1,12}") {
                let cursor = encode_cursor(&list, position);
                prop_assert_eq!(decode_cursor(&cursor, &list).ok(), Some(position));
                let other = format!("{list}x");
                prop_assert!(decode_cursor(&cursor, &other).is_err());
            }

            /// Whatever a client sends as a cursor: a position or a 400,
            /// never a panic.
            #[test]
            fn any_cursor_text_is_a_position_or_a_clear_refusal(text in "\\PC{0,300}|[A-Za-z0-9_-]{0,64}") {
                match decode_cursor(&text, "feed") {
                    Ok(position) => prop_assert!(position > 0),
                    Err(error) => prop_assert_eq!(error.status(), StatusCode::BAD_REQUEST),
                }
            }
        }
    }

    fn params(limit: Option<&str>, cursor: Option<&str>) -> PageParams {
        PageParams {
            limit: limit.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
        }
    }

    #[test]
    fn cursors_round_trip_within_their_list_only() {
        let cursor = encode_cursor("followers:7", 12345);
        let request = params(None, Some(&cursor)).for_list("followers:7").unwrap();
        assert_eq!((request.limit, request.after), (DEFAULT_LIMIT, Some(12345)));
        assert!(params(None, Some(&cursor)).for_list("followers:8").is_err());
        assert!(params(None, Some(&cursor)).for_list("feed").is_err());
    }

    #[test]
    fn garbage_cursors_and_limits_are_refused() {
        for cursor in [
            "!!",
            "bm90IGEgY3Vyc29y",
            &encode_cursor("feed", 0),
            &"A".repeat(300),
        ] {
            assert!(
                params(None, Some(cursor)).for_list("feed").is_err(),
                "{cursor}"
            );
        }
        for limit in ["0", "101", "-1", "ten", "1.5", ""] {
            assert!(
                params(Some(limit), None).for_list("feed").is_err(),
                "{limit}"
            );
        }
        assert_eq!(
            params(Some("100"), None).for_list("feed").unwrap().limit,
            100
        );
    }
}
