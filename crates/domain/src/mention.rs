//! Mentions: `@handle`s in a post's text, found here and resolved to
//! accounts by the use case that creates the post.

use serde::{Deserialize, Serialize};

use crate::id::UserId;
use crate::user::HANDLE_MAX_LEN;

/// Accounts one post can mention (and notify); later `@handle`s stay text.
pub const MAX_MENTIONS: usize = 10;

/// A mention resolved to an account. `start..end` covers the `@handle` in
/// the text, counted in Unicode scalar values (code points), end exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    pub user_id: UserId,
    /// The handle as the account spells it.
    pub handle: crate::user::Handle,
    pub start: u32,
    pub end: u32,
}

/// The distinct accounts among `mentions`, first mentioned first (an
/// account written twice is mentioned once).
pub fn mentioned_accounts(mentions: &[Mention]) -> Vec<UserId> {
    let mut accounts: Vec<UserId> = Vec::with_capacity(mentions.len());
    for mention in mentions {
        if !accounts.contains(&mention.user_id) {
            accounts.push(mention.user_id);
        }
    }
    accounts
}

/// An `@handle` as written, before it is known to name an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MentionCandidate {
    /// Lower-cased, as handles are compared.
    pub handle_key: String,
    pub start: u32,
    pub end: u32,
}

fn is_handle_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `@handle` in `text`, in order. A mention starts at an `@` that
/// does not follow a letter, digit, `_` or `@` (so `ada@example.org` is an
/// address, not a mention), runs over 1 to 30 handle characters, and is not
/// followed by another handle character or `@` (a longer run cannot be a
/// handle; `@ada@elsewhere.org` is an account elsewhere).
pub fn find_mentions(text: &str) -> Vec<MentionCandidate> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let at = index;
        index += 1;
        if chars[at] != '@' {
            continue;
        }
        if at > 0 && (is_handle_char(chars[at - 1]) || chars[at - 1] == '@') {
            continue;
        }
        let end = chars[index..]
            .iter()
            .position(|c| !is_handle_char(*c))
            .map_or(chars.len(), |offset| index + offset);
        let length = end - index;
        let followed_by_at = chars.get(end) == Some(&'@');
        if (1..=HANDLE_MAX_LEN).contains(&length) && !followed_by_at {
            let handle: String = chars[index..end].iter().collect();
            found.push(MentionCandidate {
                handle_key: handle.to_ascii_lowercase(),
                start: u32::try_from(at).unwrap_or(u32::MAX),
                end: u32::try_from(end).unwrap_or(u32::MAX),
            });
        }
        index = end;
    }
    found
}

/// The distinct handle keys among `candidates`, first seen first, at most
/// `MAX_MENTIONS`.
pub fn mentioned_keys(candidates: &[MentionCandidate]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for candidate in candidates {
        if keys.len() == MAX_MENTIONS {
            break;
        }
        if !keys.contains(&candidate.handle_key) {
            keys.push(candidate.handle_key.clone());
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Text a user could write: mostly handle characters, `@`s and
        /// separators, with any Unicode mixed in.
        fn text() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop_oneof![
                    4 => prop::sample::select(vec!['@', 'a', 'Z', '_', '7', ' ', '.', '\n']),
                    1 => any::<char>(),
                ],
                0..120,
            )
            .prop_map(|chars| chars.into_iter().collect())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn mentions_point_at_what_they_name(text in text()) {
                let chars: Vec<char> = text.chars().collect();
                let mut previous_end = 0;
                for candidate in find_mentions(&text) {
                    let (start, end) = (candidate.start as usize, candidate.end as usize);
                    prop_assert!(previous_end <= start && start < end && end <= chars.len());
                    prop_assert_eq!(chars[start], '@');
                    let handle: String = chars[start + 1..end].iter().collect();
                    prop_assert!((1..=HANDLE_MAX_LEN).contains(&handle.len()));
                    prop_assert!(handle.chars().all(is_handle_char));
                    prop_assert_eq!(&candidate.handle_key, &handle.to_ascii_lowercase());
                    // Not glued to a word before, nor running on after.
                    prop_assert!(start == 0 || !(is_handle_char(chars[start - 1]) || chars[start - 1] == '@'));
                    prop_assert!(chars.get(end).is_none_or(|c| !is_handle_char(*c) && *c != '@'));
                    previous_end = end;
                }
                let keys = mentioned_keys(&find_mentions(&text));
                prop_assert!(keys.len() <= MAX_MENTIONS);
                let distinct: std::collections::HashSet<&String> = keys.iter().collect();
                prop_assert_eq!(distinct.len(), keys.len());
            }
        }
    }

    fn spans(text: &str) -> Vec<(String, u32, u32)> {
        find_mentions(text)
            .into_iter()
            .map(|m| (m.handle_key, m.start, m.end))
            .collect()
    }

    #[test]
    fn mentions_are_found_with_code_point_offsets() {
        assert_eq!(
            spans("@Ada and @bob_2, hi"),
            vec![("ada".into(), 0, 4), ("bob_2".into(), 9, 15)]
        );
        // Offsets count code points, not bytes: "é" and "🐦" are one each.
        assert_eq!(spans("é🐦 @cat!"), vec![("cat".into(), 3, 7)]);
        assert_eq!(spans("(@dan)"), vec![("dan".into(), 1, 5)]);
        assert_eq!(spans("line\n@eve"), vec![("eve".into(), 5, 9)]);
    }

    #[test]
    fn addresses_lone_signs_and_overlong_runs_are_not_mentions() {
        assert!(spans("mail ada@example.org").is_empty());
        assert!(spans("@ada@elsewhere.org").is_empty());
        assert!(spans("@ @ @@ada").is_empty());
        assert!(spans(&format!("@{}", "a".repeat(31))).is_empty());
        assert_eq!(
            spans(&format!("@{}", "a".repeat(30))),
            vec![("a".repeat(30), 0, 31)]
        );
        assert!(spans("no mentions here").is_empty());
        assert!(spans("").is_empty());
    }

    #[test]
    fn distinct_keys_are_capped() {
        let text: String = (0..15).map(|i| format!("@user{i} @USER{i} ")).collect();
        let candidates = find_mentions(&text);
        assert_eq!(candidates.len(), 30);
        let keys = mentioned_keys(&candidates);
        assert_eq!(keys.len(), MAX_MENTIONS);
        assert_eq!(keys[0], "user0");
        assert_eq!(keys[9], "user9");
    }
}
