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
        let limit = parse_limit(self.limit.as_deref())?;
        let after = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(cursor) => Some(decode_cursor(cursor, list)?),
        };
        Ok(PageRequest { limit, after })
    }
}

/// `?limit=`: 1 to `MAX_LIMIT`, `DEFAULT_LIMIT` when absent.
fn parse_limit(text: Option<&str>) -> Result<usize, ApiError> {
    match text {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<usize>() {
            Ok(value) if (1..=MAX_LIMIT).contains(&value) => Ok(value),
            _ => Err(ApiError::invalid_parameter(
                "limit",
                format!("must be a whole number from 1 to {MAX_LIMIT}"),
            )),
        },
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

/// The highest page an offset listing serves: past it the offset would
/// make the database skip millions of rows (narrow the filters instead).
pub(crate) const MAX_PAGE: u64 = 10_000;

/// An offset page request: `?page` (from 1) and `?limit`, for admin
/// listings that jump to a page and show a total (the reference's admin
/// dashboards); feeds use cursors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetRequest {
    pub page: u64,
    pub limit: usize,
}

impl OffsetRequest {
    pub(crate) fn parse(page: Option<&str>, limit: Option<&str>) -> Result<Self, ApiError> {
        let page = match page {
            None => 1,
            Some(text) => match text.parse::<u64>() {
                Ok(value) if (1..=MAX_PAGE).contains(&value) => value,
                _ => {
                    return Err(ApiError::invalid_parameter(
                        "page",
                        format!("must be a whole number from 1 to {MAX_PAGE}"),
                    ));
                }
            },
        };
        Ok(Self {
            page,
            limit: parse_limit(limit)?,
        })
    }

    /// Rows to skip.
    pub(crate) fn offset(&self) -> u64 {
        (self.page - 1) * self.limit as u64
    }

    pub(crate) fn pagination(&self, total: u64) -> OffsetPagination {
        OffsetPagination {
            page: self.page,
            limit: self.limit,
            total,
            total_pages: total.div_ceil(self.limit as u64),
        }
    }
}

/// Where an offset page stands in its listing.
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
pub(crate) struct OffsetPagination {
    /// This page, from 1.
    pub page: u64,
    pub limit: usize,
    /// Items matching, on every page.
    pub total: u64,
    /// Pages of `limit` items holding `total` (0 when nothing matches).
    pub total_pages: u64,
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
    fn offset_pages_count_from_one_and_total_their_pages() {
        let request = OffsetRequest::parse(Some("3"), Some("20")).unwrap();
        assert_eq!(request.offset(), 40);
        assert_eq!(
            request.pagination(1543),
            OffsetPagination {
                page: 3,
                limit: 20,
                total: 1543,
                total_pages: 78
            }
        );
        assert_eq!(request.pagination(0).total_pages, 0);
        let default = OffsetRequest::parse(None, None).unwrap();
        assert_eq!((default.page, default.limit, default.offset()), (1, 20, 0));
        for (page, limit) in [
            (Some("0"), None),
            (Some("-1"), None),
            (Some("x"), None),
            (Some("10001"), None),
            (None, Some("0")),
            (None, Some("101")),
        ] {
            let error = OffsetRequest::parse(page, limit).unwrap_err();
            assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST);
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
