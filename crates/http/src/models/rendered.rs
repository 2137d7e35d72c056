//! Posts' JSON, written once and reused while the post stays the same.
//!
//! A warm feed read spent a fifth of its CPU writing JSON, most of it
//! escaping the same post texts page after page (BENCHMARKS.md §1). A page
//! of posts is now twenty lookups in this memo instead: each entry is the
//! finished JSON object of one post as one reader shows it (`liked_by_me`
//! true or false, so two entries at most per post), kept beside the post
//! and the author summary it was written from.
//!
//! It is invalidated with the post: an entry is used only while the view
//! holds the very `Arc<Post>` and `Arc<UserSummary>` it was written from.
//! The hydration caches replace a post's `Arc` whenever anything in it
//! changes (a like count, a deletion) and an author's when the profile
//! changes, so a changed post or author never matches an old entry, and no
//! invalidation has to reach this memo. The identity test is sound because
//! an entry holds `Weak`s: while a `Weak` lives its allocation is not
//! reused, so a live `Arc` at the same address is the same value.
//!
//! Bounded in bytes (`HttpSettings::rendered_posts_bytes`), S3-FIFO eviction
//! (quick_cache), so the posts read most stay written.

use std::sync::{Arc, Weak};

use serde::Serialize;
use serde_json::value::RawValue;
use starling_app::PostView;
use starling_domain::{Post, PostId, UserSummary};

use super::{MediaUrls, PostJson};

/// Bytes an entry costs beyond its JSON (key, `Weak`s, boxes, the cache's own slot).
const ENTRY_OVERHEAD: u64 = 96;

pub(crate) struct Rendered {
    post: Weak<Post>,
    author: Weak<UserSummary>,
    json: Box<RawValue>,
}

impl Rendered {
    fn written_from(&self, view: &PostView) -> bool {
        std::ptr::eq(self.post.as_ptr(), Arc::as_ptr(&view.post))
            && std::ptr::eq(self.author.as_ptr(), Arc::as_ptr(&view.author))
    }
}

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<(PostId, bool), Arc<Rendered>> for ByBytes {
    fn weight(&self, _key: &(PostId, bool), value: &Arc<Rendered>) -> u64 {
        value.json.get().len() as u64 + ENTRY_OVERHEAD
    }
}

struct Memo {
    urls: MediaUrls,
    /// `None`: every post is written anew.
    entries: Option<quick_cache::sync::Cache<(PostId, bool), Arc<Rendered>, ByBytes>>,
    hits: metrics::Counter,
    misses: metrics::Counter,
}

/// Writes posts for one router (its media base URL), through the memo.
/// Cloned per request: one reference count.
#[derive(Clone)]
pub(crate) struct RenderedPosts(Arc<Memo>);

/// A post as written by `RenderedPosts::post`: serialises as its JSON.
pub(crate) enum PostOut<'a> {
    Memo(Arc<Rendered>),
    /// Written on the spot (the memo is off, or writing failed).
    Direct(PostJson<'a>),
}

impl PostOut<'_> {
    /// About how many bytes of JSON this post is.
    pub(crate) fn size_hint(&self) -> usize {
        match self {
            Self::Memo(rendered) => rendered.json.get().len(),
            Self::Direct(_) => 512,
        }
    }
}

impl Serialize for PostOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Memo(rendered) => rendered.json.serialize(serializer),
            Self::Direct(post) => post.serialize(serializer),
        }
    }
}

impl RenderedPosts {
    /// A memo of up to about `max_bytes` of JSON; `0` writes every post anew.
    pub(crate) fn new(urls: MediaUrls, max_bytes: u64) -> Self {
        // quick_cache sizes its shards from an estimate of the entry count.
        let estimated_entries = usize::try_from(max_bytes / 700).unwrap_or(usize::MAX);
        Self(Arc::new(Memo {
            urls,
            entries: (max_bytes > 0).then(|| {
                quick_cache::sync::Cache::with_weighter(
                    estimated_entries.max(1),
                    max_bytes,
                    ByBytes,
                )
            }),
            hits: metrics::counter!(
                starling_app::metric::CACHE_HITS_TOTAL,
                "cache" => "rendered_posts"
            ),
            misses: metrics::counter!(
                starling_app::metric::CACHE_MISSES_TOTAL,
                "cache" => "rendered_posts"
            ),
        }))
    }

    pub(crate) fn urls(&self) -> &MediaUrls {
        &self.0.urls
    }

    /// `view` as JSON: from the memo when it holds this very post and
    /// author, else written now and remembered.
    pub(crate) fn post<'a>(&'a self, view: &'a PostView) -> PostOut<'a> {
        let memo = &self.0;
        let direct = PostJson(view, &memo.urls);
        let Some(entries) = &memo.entries else {
            return PostOut::Direct(direct);
        };
        let key = (view.post.id, view.liked_by_me);
        if let Some(rendered) = entries.get(&key)
            && rendered.written_from(view)
        {
            memo.hits.increment(1);
            return PostOut::Memo(rendered);
        }
        memo.misses.increment(1);
        match serde_json::value::to_raw_value(&direct) {
            Ok(json) => {
                let rendered = Arc::new(Rendered {
                    post: Arc::downgrade(&view.post),
                    author: Arc::downgrade(&view.author),
                    json,
                });
                entries.insert(key, rendered.clone());
                PostOut::Memo(rendered)
            }
            Err(error) => {
                tracing::warn!(error = %error, post = %view.post.id, "cannot write a post's JSON");
                PostOut::Direct(direct)
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0
            .entries
            .as_ref()
            .map_or(0, quick_cache::sync::Cache::len)
    }
}

#[cfg(test)]
mod tests {
    use starling_domain::{Handle, PostText, Timestamp, UserId};

    use super::*;

    fn view(post: &Arc<Post>, author: &Arc<UserSummary>, liked_by_me: bool) -> PostView {
        PostView {
            post: post.clone(),
            author: author.clone(),
            liked_by_me,
        }
    }

    fn author(name: &str) -> Arc<UserSummary> {
        Arc::new(UserSummary {
            id: UserId(7),
            handle: Handle::parse("ada").unwrap(),
            display_name: name.to_owned(),
            hidden: false,
        })
    }

    fn post(text: &str, like_count: i64) -> Arc<Post> {
        Arc::new(Post {
            id: PostId(384_033_153_024_524_288),
            author_id: UserId(7),
            text: PostText::parse(text).unwrap(),
            created_at: Timestamp(1_764_090_319_123),
            reply_to: None,
            like_count,
            reply_count: 0,
            deleted: false,
            mentions: Vec::new(),
            media: Vec::new(),
        })
    }

    fn json(out: &PostOut<'_>) -> serde_json::Value {
        serde_json::to_value(out).unwrap()
    }

    #[test]
    fn memo_writes_what_the_direct_writer_writes_and_reuses_it_for_the_same_post() {
        let rendered = RenderedPosts::new(MediaUrls::default(), 1 << 20);
        let (post, ada) = (post("quote \" and\nnewline", 3), author("Ada"));
        let urls = MediaUrls::default();
        for liked in [false, true] {
            let view = view(&post, &ada, liked);
            let direct = serde_json::to_value(PostJson(&view, &urls)).unwrap();
            let first = rendered.post(&view);
            let second = rendered.post(&view);
            assert_eq!(json(&first), direct);
            let (PostOut::Memo(first), PostOut::Memo(second)) = (first, second) else {
                panic!("the memo is on");
            };
            assert!(
                Arc::ptr_eq(&first, &second),
                "the second read is the memo's"
            );
        }
        assert_eq!(rendered.len(), 2, "one entry per post and liked_by_me");
    }

    #[test]
    fn a_changed_post_or_author_is_written_anew() {
        let rendered = RenderedPosts::new(MediaUrls::default(), 1 << 20);
        let ada = author("Ada");
        let before = post("hello", 3);
        assert_eq!(
            json(&rendered.post(&view(&before, &ada, false)))["like_count"],
            3
        );
        // A like: the post cache holds a new `Arc` with the new count.
        let liked = post("hello", 4);
        assert_eq!(
            json(&rendered.post(&view(&liked, &ada, false)))["like_count"],
            4
        );
        // A profile change: a new author summary.
        let renamed = author("Ada Lovelace");
        assert_eq!(
            json(&rendered.post(&view(&liked, &renamed, false)))["author"]["display_name"],
            "Ada Lovelace"
        );
        // Equal content in a new allocation is written anew, never mistaken
        // for the old one (whose `Weak` still holds its address).
        drop(before);
        let again = post("hello", 3);
        assert_eq!(
            json(&rendered.post(&view(&again, &renamed, false)))["like_count"],
            3
        );
        assert_eq!(
            rendered.len(),
            1,
            "each post and liked_by_me keeps one entry"
        );
    }

    #[test]
    fn a_memo_of_no_bytes_writes_every_post_anew() {
        let rendered = RenderedPosts::new(MediaUrls::default(), 0);
        let (post, ada) = (post("hello", 3), author("Ada"));
        let view = view(&post, &ada, true);
        let out = rendered.post(&view);
        assert!(matches!(out, PostOut::Direct(_)));
        assert_eq!(json(&out)["liked_by_me"], true);
        assert_eq!(rendered.len(), 0);
    }

    #[test]
    fn the_memo_stays_within_its_bytes() {
        let rendered = RenderedPosts::new(MediaUrls::default(), 16 * 1024);
        let ada = author("Ada");
        let text = "x".repeat(250);
        let posts: Vec<Arc<Post>> = (0..500)
            .map(|n| {
                let mut post = Arc::unwrap_or_clone(post(&text, 0));
                post.id = PostId(1_000 + n);
                Arc::new(post)
            })
            .collect();
        for post in &posts {
            let _ = rendered.post(&view(post, &ada, false));
        }
        let held = rendered.len();
        assert!(
            held > 0 && held < 60,
            "{held} entries of ~400 bytes in 16 KiB"
        );
    }
}
