//! The SQL store contract: accounts, tokens, graph, posts, likes, outbox.

use std::sync::Arc;

use starling_domain::{AccountStatus, Role};
use starling_domain::{
    Email, Event, EventEnvelope, EventId, Handle, IdGenerator, Mention, Notification,
    NotificationId, NotificationKind, Post, PostId, PostText, Timestamp, User, UserId,
};

use crate::ports::{
    AccountQuery, AccountSort, AccountSortField, AuditAction, AuditEntry, AuditQuery, DeletionStep,
    ExportState, PostDeleter, StatusChange,
};
use crate::ports::{
    Announce, ApiKeyRecord, DeleteOutcome, FollowOutcome, Hidden, IdempotencyClaim, LikeOutcome,
    MediaSelection, Missing, NewEvent, NewPost, NewUser, RefreshFamily, RefreshTokenRecord,
    Relation, RotateOutcome, SessionRecord, Store, StoreError, StoredResponse, TimelineEntry,
    UnfollowOutcome, UnlikeOutcome,
};

#[macro_export]
macro_rules! store_contract {
    ($make:expr) => {
        $crate::store_contract!(@cases $make;
            created_users_are_found_by_id_handle_and_login,
            handles_ignore_case_and_emails_are_unique,
            profiles_change_only_the_given_fields,
            summaries_answer_known_ids_only,
            every_account_is_visited_in_id_order,
            impossible_logins_and_handles_find_nobody,
            refresh_tokens_rotate_once_and_reuse_revokes_the_family,
            expired_refresh_tokens_do_not_rotate,
            revoked_families_stop_rotating,
            expired_refresh_tokens_are_pruned,
            sessions_are_listed_and_ended_one_or_all,
            a_retry_within_the_grace_spends_the_replacement_instead,
            a_session_ends_at_its_absolute_end,
            a_password_change_ends_the_other_sessions_with_it,
            api_keys_are_listed_used_and_revoked_by_their_owner,
            staff_find_accounts_by_filter_search_and_sort,
            suspension_ends_sessions_refuses_keys_and_hides_the_account,
            roles_change_by_compare_and_set_and_are_audited,
            moderators_remove_any_post_with_its_audit_entry,
            a_deletion_starts_once_and_moves_step_by_step_with_a_lease,
            deletion_batches_remove_what_an_account_had,
            exports_are_asked_for_once_built_by_lease_and_expired,

            follows_are_idempotent_and_counted,
            follow_lists_are_newest_first_and_paged,
            follower_ids_walk_every_follower_in_batches,
            high_fanout_followees_are_those_above_the_threshold,
            posts_are_stored_and_counted,
            the_highest_id_covers_everything_stored,
            replies_need_a_live_parent_and_are_counted,
            only_authors_delete_and_deletion_leaves_a_tombstone,
            author_posts_page_newest_first,
            home_entries_merge_self_and_followees_newest_first,
            likes_are_idempotent_counted_and_need_a_live_post,
            concurrent_likes_and_follows_keep_counters_exact,
            follows_crossing_at_once_never_deadlock,
            concurrent_posts_succeed_or_fail_on_their_own,
            posts_by_many_authors_at_once_are_each_counted,
            the_outbox_delivers_every_change_in_commit_order,
            commits_that_append_events_are_announced,
            changes_append_what_their_rule_makes_of_the_outcome,
            checkpoints_start_at_zero_and_never_move_back,
            the_backlog_counts_what_a_consumer_has_not_handled,

            pruning_keeps_events_a_consumer_has_not_handled,

            accounts_are_found_by_handle_keys,
            posts_keep_their_mentions_and_their_event_names_each_account_once,
            replies_list_oldest_first_without_deleted_ones,

            blocks_and_mutes_are_idempotent_listed_and_hidden,
            a_block_forbids_follows_both_ways,

            uploads_go_from_uploading_to_ready_and_attach_once,
            removing_uploads_deletes_files_no_upload_names,

            idempotency_keys_claim_once_then_replay,
            idempotency_keys_refuse_another_request_and_expire,
            concurrent_claims_of_one_key_let_one_through,

            notifications_are_stored_once_per_thing_that_happened,
            notifications_page_newest_first_and_filter_by_kind,
            the_read_position_counts_unread_and_never_moves_back,
            withdrawn_and_deleted_post_notifications_go,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                // `None`: the adapter's engine is not available here (the
                // constructor says why, or fails when services are required).
                let Some((store, _guard)) = ($make)().await else {
                    return;
                };
                $crate::ports::contract::store::$case(store).await;
            }
        )+
    };
}

struct Fixture {
    store: Arc<dyn Store>,
    ids: IdGenerator,
}

impl Fixture {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            ids: IdGenerator::new(3),
        }
    }

    async fn user(&self, handle: &str) -> User {
        let id = self.ids.next_user_id();
        self.store
            .create_user(NewUser {
                id,
                handle: Handle::parse(handle).unwrap(),
                email: Email::parse(&format!("{handle}@example.org")).unwrap(),
                display_name: format!("{handle} display"),
                password_hash: format!("hash-of-{handle}"),
                created_at: Timestamp::now(),
                event: self.event(Event::UserRegistered { user_id: id }),
            })
            .await
            .unwrap()
    }

    async fn post(&self, author: UserId, reply_to: Option<PostId>) -> Result<Post, StoreError> {
        self.store
            .create_post(self.new_post(author, reply_to, Vec::new(), Vec::new()))
            .await
    }

    /// A new post with the event its use case announces.
    fn new_post(
        &self,
        author: UserId,
        reply_to: Option<PostId>,
        mentions: Vec<Mention>,
        media: Vec<starling_domain::Attachment>,
    ) -> NewPost {
        let id = self.ids.next_post_id();
        let created = Event::PostCreated {
            post_id: id,
            author_id: author,
            reply_to,
            mentions: starling_domain::mentioned_accounts(&mentions),
        };
        NewPost {
            id,
            author_id: author,
            text: PostText::parse("hello").unwrap(),
            reply_to,
            mentions,
            media,
            created_at: Timestamp::now(),
            event: self.event(created),
        }
    }

    /// An event as the use cases announce one (outside a trace).
    fn event(&self, event: Event) -> NewEvent {
        NewEvent::new(self.ids.next_event_id(), event, None)
    }

    /// The rules the use cases give the store for each kind of change
    /// (theirs, not copies: outside a request they carry no trace).
    fn follows(&self, follower: UserId, followee: UserId) -> Announce<FollowOutcome> {
        crate::graph::followed(self.ids.next_event_id(), follower, followee)
    }

    fn unfollows(&self, follower: UserId, followee: UserId) -> Announce<UnfollowOutcome> {
        crate::graph::unfollowed(self.ids.next_event_id(), follower, followee)
    }

    fn likes(&self, user: UserId, post: PostId) -> Announce<LikeOutcome> {
        crate::posts::liked(self.ids.next_event_id(), user, post)
    }

    fn unlikes(&self, user: UserId, post: PostId) -> Announce<UnlikeOutcome> {
        crate::posts::unliked(self.ids.next_event_id(), user, post)
    }

    fn deletes(&self, post: PostId) -> Announce<DeleteOutcome> {
        crate::posts::deleted(self.ids.next_event_id(), post)
    }

    async fn follow(&self, follower: UserId, followee: UserId) -> FollowOutcome {
        self.store
            .follow(
                follower,
                followee,
                self.ids.next_raw(),
                self.follows(follower, followee),
                Timestamp::now(),
            )
            .await
            .unwrap()
    }

    async fn fresh(&self, id: UserId) -> User {
        self.store.user_by_id(id).await.unwrap().unwrap()
    }

    async fn stored_post(&self, id: PostId) -> Post {
        self.store.posts_by_ids(&[id]).await.unwrap().pop().unwrap()
    }

    async fn like(&self, user: UserId, post: PostId) -> Result<LikeOutcome, StoreError> {
        self.store
            .like(user, post, self.likes(user, post), Timestamp::now())
            .await
    }

    fn notification(
        &self,
        recipient: UserId,
        kind: NotificationKind,
        actor: UserId,
        post: Option<PostId>,
    ) -> Notification {
        Notification {
            id: self.ids.next_notification_id(),
            recipient,
            kind,
            actor,
            post,
            created_at: Timestamp::now(),
        }
    }

    /// Opens a session (ending in 90 days) with `first` as its token.
    async fn open(&self, first: RefreshTokenRecord) {
        self.open_ending(first, 90 * 24 * 3600).await;
    }

    async fn open_ending(&self, first: RefreshTokenRecord, ends_in_secs: i64) {
        let now = Timestamp::now();
        self.store
            .open_session(
                SessionRecord {
                    id: first.family_id,
                    user_id: first.user_id,
                    created_at: now,
                    last_used_at: now,
                    expires_at: now.plus_seconds(ends_in_secs),
                    user_agent: Some("contract".to_owned()),
                    address: Some("192.0.2.1".to_owned()),
                },
                first,
            )
            .await
            .unwrap();
    }

    fn token(&self, user: UserId, token: &[u8], expires_in_secs: i64) -> RefreshTokenRecord {
        let now = Timestamp::now();
        RefreshTokenRecord {
            token_hash: token.to_vec(),
            user_id: user,
            family_id: self.ids.next_raw(),
            issued_at: now,
            expires_at: now.plus_seconds(expires_in_secs),
        }
    }
}

/// The committed events after `after`, once the log shows all of them. An
/// outbox may show a commit a little later than it happened (PostgreSQL's
/// holds events back while an older transaction anywhere on the server is
/// still open, so that none is skipped): read until reads over 300 ms agree.
async fn decoded(store: &dyn Store, after: i64, limit: usize) -> Vec<EventEnvelope> {
    let read = || async {
        store
            .events_after(after, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.expect("our own events decode"))
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut events = read().await;
    let mut agreeing = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let again = read().await;
        agreeing = if again == events { agreeing + 1 } else { 0 };
        if agreeing == 3 || std::time::Instant::now() > deadline {
            return again;
        }
        events = again;
    }
}

fn post_ids(entries: &[TimelineEntry]) -> Vec<PostId> {
    entries.iter().map(|entry| entry.post_id).collect()
}

pub async fn created_users_are_found_by_id_handle_and_login(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("Ada_L").await;
    assert_eq!(ada.handle.as_str(), "Ada_L");
    assert_eq!(
        (ada.followers_count, ada.following_count, ada.posts_count),
        (0, 0, 0)
    );
    assert_eq!(store.user_by_id(ada.id).await.unwrap(), Some(ada.clone()));
    assert_eq!(
        store.user_by_handle(None, "ada_l").await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(store.user_by_handle(None, "nobody").await.unwrap(), None);
    assert_eq!(store.user_by_id(UserId(999)).await.unwrap(), None);
    for login in ["ada_l", "ada_l@example.org"] {
        let credentials = store.credentials_by_login(login).await.unwrap().unwrap();
        assert_eq!(credentials.user_id, ada.id);
        assert_eq!(credentials.password_hash, "hash-of-Ada_L");
    }
    assert!(store.credentials_by_login("grace").await.unwrap().is_none());
}

pub async fn handles_ignore_case_and_emails_are_unique(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    fixture.user("grace").await;
    let clash = |handle: &str, email: &str| {
        let id = fixture.ids.next_user_id();
        NewUser {
            id,
            handle: Handle::parse(handle).unwrap(),
            email: Email::parse(email).unwrap(),
            display_name: String::new(),
            password_hash: String::new(),
            created_at: Timestamp::now(),
            event: fixture.event(Event::UserRegistered { user_id: id }),
        }
    };
    let same_handle = store.create_user(clash("GRACE", "other@example.org")).await;
    assert!(
        matches!(same_handle, Err(StoreError::HandleTaken)),
        "{same_handle:?}"
    );
    let same_email = store
        .create_user(clash("hopper", "grace@example.org"))
        .await;
    assert!(
        matches!(same_email, Err(StoreError::EmailTaken)),
        "{same_email:?}"
    );
    // A refused registration leaves nothing behind.
    assert!(
        store
            .user_by_handle(None, "hopper")
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn profiles_change_only_the_given_fields(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let now = Timestamp::now();
    let renamed = store
        .update_profile(
            ada.id,
            Some("Countess".into()),
            None,
            fixture.event(Event::ProfileUpdated { user_id: ada.id }),
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        (renamed.display_name.as_str(), renamed.bio.as_str()),
        ("Countess", "")
    );
    let described = store
        .update_profile(
            ada.id,
            None,
            Some("Analyst".into()),
            fixture.event(Event::ProfileUpdated { user_id: ada.id }),
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        (described.display_name.as_str(), described.bio.as_str()),
        ("Countess", "Analyst")
    );
    assert_eq!(fixture.fresh(ada.id).await, described);
    let missing = store
        .update_profile(
            UserId(999),
            Some("x".into()),
            None,
            fixture.event(Event::ProfileUpdated {
                user_id: UserId(999),
            }),
            now,
        )
        .await;
    assert!(matches!(
        missing,
        Err(StoreError::NotFound(Missing::Account))
    ));
}

pub async fn summaries_answer_known_ids_only(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let mut found = store
        .user_summaries(&[bob.id, UserId(1), ada.id])
        .await
        .unwrap();
    found.sort_by_key(|summary| summary.id);
    assert_eq!(found, vec![ada.summary(), bob.summary()]);
    assert!(store.user_summaries(&[]).await.unwrap().is_empty());
}

pub async fn impossible_logins_and_handles_find_nobody(store: Arc<dyn Store>) {
    Fixture::new(store.clone()).user("ada").await;
    for login in ["ada\0", "\0", "", "ada@example.org\0x"] {
        assert!(store.credentials_by_login(login).await.unwrap().is_none());
        assert!(store.user_by_handle(None, login).await.unwrap().is_none());
    }
}

pub async fn every_account_is_visited_in_id_order(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    assert!(store.user_ids_after(None, 10).await.unwrap().is_empty());
    let mut users = Vec::new();
    for handle in ["ada", "bob", "cy", "dee", "eve"] {
        users.push(fixture.user(handle).await.id);
    }
    users.sort_unstable();
    let first = store.user_ids_after(None, 2).await.unwrap();
    assert_eq!(first, users[..2]);
    let rest = store.user_ids_after(Some(first[1]), 10).await.unwrap();
    assert_eq!(rest, users[2..]);
    assert!(
        store
            .user_ids_after(Some(users[4]), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn refresh_tokens_rotate_once_and_reuse_revokes_the_family(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let first = fixture.token(ada.id, b"first", 3600);
    let family = RefreshFamily {
        user_id: ada.id,
        family_id: first.family_id,
    };
    fixture.open(first).await;
    let now = Timestamp::now();
    let later = now.plus_seconds(3600);
    assert_eq!(
        store
            .rotate_refresh_token(b"first", b"second", later, no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Rotated(family)
    );
    // The spent token comes back: theft is assumed, the family dies.
    assert_eq!(
        store
            .rotate_refresh_token(b"first", b"third", later, no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Reused(family)
    );
    assert_eq!(
        store
            .rotate_refresh_token(b"second", b"fourth", later, no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Reused(family)
    );
    assert_eq!(
        store
            .rotate_refresh_token(b"never-issued", b"fifth", later, no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Unknown
    );
}

pub async fn expired_refresh_tokens_do_not_rotate(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    fixture.open(fixture.token(ada.id, b"old", -1)).await;
    let now = Timestamp::now();
    assert_eq!(
        store
            .rotate_refresh_token(b"old", b"new", now.plus_seconds(60), no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Expired
    );
    // Nothing was stored for the refused rotation.
    assert_eq!(
        store
            .rotate_refresh_token(b"new", b"newer", now.plus_seconds(60), no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Unknown
    );
}

pub async fn revoked_families_stop_rotating(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let one = fixture.token(ada.id, b"one", 3600);
    let other = fixture.token(ada.id, b"other-login", 3600);
    let (one_family, other_family) = (
        RefreshFamily {
            user_id: ada.id,
            family_id: one.family_id,
        },
        RefreshFamily {
            user_id: ada.id,
            family_id: other.family_id,
        },
    );
    fixture.open(one).await;
    fixture.open(other).await;
    let now = Timestamp::now();
    assert!(
        store
            .session_is_open(one_family.family_id, now)
            .await
            .unwrap()
    );
    assert_eq!(
        store.revoke_refresh_family(b"one", now).await.unwrap(),
        Some(one_family)
    );
    assert!(
        !store
            .session_is_open(one_family.family_id, now)
            .await
            .unwrap()
    );
    assert!(
        store
            .session_is_open(other_family.family_id, now)
            .await
            .unwrap()
    );
    // Past its tokens' expiry a session is over too; a family never
    // issued was never open.
    assert!(
        !store
            .session_is_open(other_family.family_id, now.plus_seconds(7200))
            .await
            .unwrap()
    );
    assert!(!store.session_is_open(-5, now).await.unwrap());
    assert_eq!(
        store.revoke_refresh_family(b"unknown", now).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .rotate_refresh_token(b"one", b"two", now.plus_seconds(60), no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Reused(one_family)
    );
    // Another login's family is untouched.
    assert_eq!(
        store
            .rotate_refresh_token(
                b"other-login",
                b"x",
                now.plus_seconds(60),
                no_retry(now),
                now
            )
            .await
            .unwrap(),
        RotateOutcome::Rotated(other_family)
    );
}

pub async fn follows_are_idempotent_and_counted(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    assert!(!store.is_following(ada.id, bob.id).await.unwrap());
    assert_eq!(
        fixture.follow(ada.id, bob.id).await,
        FollowOutcome::Followed {
            followee_followers: 1
        }
    );
    assert_eq!(
        fixture.follow(ada.id, bob.id).await,
        FollowOutcome::AlreadyFollowing
    );
    assert_eq!(fixture.fresh(ada.id).await.following_count, 1);
    assert_eq!(fixture.fresh(bob.id).await.followers_count, 1);
    assert!(store.is_following(ada.id, bob.id).await.unwrap());
    assert!(!store.is_following(bob.id, ada.id).await.unwrap());
    let missing = store
        .follow(
            ada.id,
            UserId(999),
            1,
            fixture.follows(ada.id, UserId(999)),
            Timestamp::now(),
        )
        .await;
    assert!(matches!(
        missing,
        Err(StoreError::NotFound(Missing::Account))
    ));

    let unfollow = || {
        store.unfollow(
            ada.id,
            bob.id,
            fixture.unfollows(ada.id, bob.id),
            Timestamp::now(),
        )
    };
    assert_eq!(
        unfollow().await.unwrap(),
        UnfollowOutcome::Unfollowed {
            followee_followers: 0
        }
    );
    assert_eq!(unfollow().await.unwrap(), UnfollowOutcome::NotFollowing);
    assert!(!store.is_following(ada.id, bob.id).await.unwrap());
    assert_eq!(fixture.fresh(ada.id).await.following_count, 0);
    assert_eq!(fixture.fresh(bob.id).await.followers_count, 0);
}

pub async fn follow_lists_are_newest_first_and_paged(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let star = fixture.user("star").await;
    let mut fans = Vec::new();
    for name in ["fan1", "fan2", "fan3"] {
        let fan = fixture.user(name).await;
        fixture.follow(fan.id, star.id).await;
        fans.push(fan);
    }
    let first = store.followers(None, star.id, None, 2).await.unwrap();
    let handles: Vec<&str> = first.iter().map(|(_, user)| user.handle.as_str()).collect();
    assert_eq!(handles, vec!["fan3", "fan2"]);
    let rest = store
        .followers(None, star.id, Some(first[1].0), 2)
        .await
        .unwrap();
    let handles: Vec<&str> = rest.iter().map(|(_, user)| user.handle.as_str()).collect();
    assert_eq!(handles, vec!["fan1"]);
    // Listed users carry their current counters.
    assert_eq!(rest[0].1.following_count, 1);

    fixture.follow(fans[0].id, fans[2].id).await;
    let following = store.following(None, fans[0].id, None, 10).await.unwrap();
    let handles: Vec<&str> = following
        .iter()
        .map(|(_, user)| user.handle.as_str())
        .collect();
    assert_eq!(handles, vec!["fan3", "star"]);
}

pub async fn follower_ids_walk_every_follower_in_batches(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let star = fixture.user("star").await;
    let mut expected = Vec::new();
    for index in 0..5 {
        let fan = fixture.user(&format!("fan{index}")).await;
        fixture.follow(fan.id, star.id).await;
        expected.push(fan.id);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let batch = store.follower_ids(star.id, after, 2).await.unwrap();
        if batch.is_empty() {
            break;
        }
        after = batch.last().map(|(position, _)| *position);
        seen.extend(batch.into_iter().map(|(_, id)| id));
    }
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
}

pub async fn high_fanout_followees_are_those_above_the_threshold(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let reader = fixture.user("reader").await;
    let star = fixture.user("star").await;
    let quiet = fixture.user("quiet").await;
    let fan = fixture.user("fan").await;
    fixture.follow(reader.id, star.id).await;
    fixture.follow(reader.id, quiet.id).await;
    fixture.follow(fan.id, star.id).await;
    assert_eq!(
        store
            .followed_with_followers_at_least(reader.id, 2)
            .await
            .unwrap(),
        vec![star.id]
    );
    let mut both = store
        .followed_with_followers_at_least(reader.id, 1)
        .await
        .unwrap();
    both.sort();
    let mut expected = vec![star.id, quiet.id];
    expected.sort();
    assert_eq!(both, expected);
}

pub async fn posts_are_stored_and_counted(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let post = fixture.post(ada.id, None).await.unwrap();
    assert_eq!(post.author_id, ada.id);
    assert_eq!(fixture.stored_post(post.id).await, post);
    assert_eq!(fixture.fresh(ada.id).await.posts_count, 1);
    assert!(store.posts_by_ids(&[PostId(1)]).await.unwrap().is_empty());
}

pub async fn replies_need_a_live_parent_and_are_counted(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let parent = fixture.post(ada.id, None).await.unwrap();
    let reply = fixture.post(ada.id, Some(parent.id)).await.unwrap();
    assert_eq!(reply.reply_to, Some(parent.id));
    assert_eq!(fixture.stored_post(parent.id).await.reply_count, 1);
    assert!(matches!(
        fixture.post(ada.id, Some(PostId(42))).await,
        Err(StoreError::NotFound(Missing::Post))
    ));
    // A refused reply counts nowhere.
    assert_eq!(fixture.fresh(ada.id).await.posts_count, 2);

    let delete = |post| {
        store.delete_post(
            post,
            PostDeleter::Author(ada.id),
            fixture.deletes(post),
            Timestamp::now(),
        )
    };
    delete(reply.id).await.unwrap();
    assert_eq!(fixture.stored_post(parent.id).await.reply_count, 0);
    delete(parent.id).await.unwrap();
    assert!(matches!(
        fixture.post(ada.id, Some(parent.id)).await,
        Err(StoreError::NotFound(Missing::Post))
    ));
}

pub async fn only_authors_delete_and_deletion_leaves_a_tombstone(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let post = fixture.post(ada.id, None).await.unwrap();
    let delete = |who| {
        store.delete_post(
            post.id,
            PostDeleter::Author(who),
            fixture.deletes(post.id),
            Timestamp::now(),
        )
    };
    assert_eq!(delete(bob.id).await.unwrap(), DeleteOutcome::NotAuthor);
    assert!(!fixture.stored_post(post.id).await.deleted);
    assert_eq!(
        delete(ada.id).await.unwrap(),
        DeleteOutcome::Deleted {
            author: ada.id,
            reply_to: None
        }
    );
    let tombstone = fixture.stored_post(post.id).await;
    assert!(tombstone.deleted);
    assert_eq!(tombstone.text.as_str(), "");
    assert!(matches!(
        delete(ada.id).await,
        Err(StoreError::NotFound(Missing::Post))
    ));
    assert_eq!(fixture.fresh(ada.id).await.posts_count, 0);
    assert!(
        store
            .posts_by_author(None, ada.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn author_posts_page_newest_first(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(fixture.post(ada.id, None).await.unwrap().id);
    }
    ids.reverse();
    let first: Vec<PostId> = store
        .posts_by_author(None, ada.id, None, 3)
        .await
        .unwrap()
        .iter()
        .map(|post| post.id)
        .collect();
    assert_eq!(first, ids[..3]);
    let rest: Vec<PostId> = store
        .posts_by_author(None, ada.id, Some(ids[2]), 3)
        .await
        .unwrap()
        .iter()
        .map(|post| post.id)
        .collect();
    assert_eq!(rest, ids[3..]);
    let entries = store.author_entries(ada.id, Some(ids[0]), 2).await.unwrap();
    assert_eq!(post_ids(&entries), ids[1..3]);
    assert!(entries.iter().all(|entry| entry.author_id == ada.id));
}

pub async fn home_entries_merge_self_and_followees_newest_first(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let reader = fixture.user("reader").await;
    let friend = fixture.user("friend").await;
    let star = fixture.user("star").await;
    let stranger = fixture.user("stranger").await;
    let fan = fixture.user("fan").await;
    fixture.follow(reader.id, friend.id).await;
    fixture.follow(reader.id, star.id).await;
    fixture.follow(fan.id, star.id).await;
    let mut expected = Vec::new();
    let mut without_star = Vec::new();
    for author in [
        reader.id,
        friend.id,
        star.id,
        stranger.id,
        friend.id,
        reader.id,
        star.id,
    ] {
        let post = fixture.post(author, None).await.unwrap();
        if author != stranger.id {
            expected.push(post.id);
            if author != star.id {
                without_star.push(post.id);
            }
        }
    }
    let deleted = fixture.post(friend.id, None).await.unwrap();
    store
        .delete_post(
            deleted.id,
            PostDeleter::Author(friend.id),
            fixture.deletes(deleted.id),
            Timestamp::now(),
        )
        .await
        .unwrap();
    expected.reverse();
    without_star.reverse();

    let all = store
        .home_entries(reader.id, None, None, 100)
        .await
        .unwrap();
    assert_eq!(post_ids(&all), expected);
    let page = store
        .home_entries(reader.id, None, Some(expected[1]), 3)
        .await
        .unwrap();
    assert_eq!(post_ids(&page), expected[2..5]);
    // The star has two followers: at a threshold of 2 their posts are left out.
    let excluded = store
        .home_entries(reader.id, Some(2), None, 100)
        .await
        .unwrap();
    assert_eq!(post_ids(&excluded), without_star);
}

pub async fn likes_are_idempotent_counted_and_need_a_live_post(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let post = fixture.post(ada.id, None).await.unwrap();
    let other = fixture.post(ada.id, None).await.unwrap();
    assert_eq!(
        fixture.like(bob.id, post.id).await.unwrap(),
        LikeOutcome::Liked {
            post_author: ada.id
        }
    );
    assert_eq!(
        fixture.like(bob.id, post.id).await.unwrap(),
        LikeOutcome::AlreadyLiked
    );
    assert_eq!(fixture.stored_post(post.id).await.like_count, 1);
    assert_eq!(
        store
            .liked_among(bob.id, &[post.id, other.id])
            .await
            .unwrap(),
        vec![post.id]
    );
    assert!(
        store
            .liked_among(ada.id, &[post.id])
            .await
            .unwrap()
            .is_empty()
    );
    fixture.like(bob.id, other.id).await.unwrap();
    assert_eq!(
        store.recent_likes(bob.id, 10).await.unwrap(),
        vec![other.id, post.id]
    );
    assert_eq!(store.recent_likes(bob.id, 1).await.unwrap(), vec![other.id]);
    store
        .unlike(
            bob.id,
            other.id,
            fixture.unlikes(bob.id, other.id),
            Timestamp::now(),
        )
        .await
        .unwrap();

    let unlike = || {
        store.unlike(
            bob.id,
            post.id,
            fixture.unlikes(bob.id, post.id),
            Timestamp::now(),
        )
    };
    assert_eq!(unlike().await.unwrap(), UnlikeOutcome::Unliked);
    assert_eq!(unlike().await.unwrap(), UnlikeOutcome::NotLiked);
    assert_eq!(fixture.stored_post(post.id).await.like_count, 0);

    assert!(matches!(
        fixture.like(bob.id, PostId(7)).await,
        Err(StoreError::NotFound(Missing::Post))
    ));
    store
        .delete_post(
            other.id,
            PostDeleter::Author(ada.id),
            fixture.deletes(other.id),
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert!(matches!(
        fixture.like(bob.id, other.id).await,
        Err(StoreError::NotFound(Missing::Post))
    ));
}

pub async fn concurrent_likes_and_follows_keep_counters_exact(store: Arc<dyn Store>) {
    let fixture = Arc::new(Fixture::new(store.clone()));
    let star = fixture.user("star").await;
    let post = fixture.post(star.id, None).await.unwrap();
    let mut fans = Vec::new();
    for index in 0..24 {
        fans.push(fixture.user(&format!("fan{index}")).await);
    }
    let mut tasks = Vec::new();
    for fan in &fans {
        for _ in 0..2 {
            let fixture = fixture.clone();
            let (fan, star, post) = (fan.id, star.id, post.id);
            tasks.push(tokio::spawn(async move {
                fixture.like(fan, post).await.unwrap();
                fixture.follow(fan, star).await;
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(fixture.stored_post(post.id).await.like_count, 24);
    assert_eq!(fixture.fresh(star.id).await.followers_count, 24);
}

/// Accounts following each other all at once, both ways (a seeding script,
/// a burst of follow-backs): each follow moves two accounts' counters, and
/// none may fail for the order in which another locked them.
pub async fn follows_crossing_at_once_never_deadlock(store: Arc<dyn Store>) {
    let fixture = Arc::new(Fixture::new(store.clone()));
    let mut people = Vec::new();
    for index in 0..12 {
        people.push(fixture.user(&format!("crossing{index}")).await.id);
    }
    for round in 0..6 {
        let mut tasks = Vec::new();
        for &follower in &people {
            for &followee in people.iter().filter(|&&other| other != follower) {
                let fixture = fixture.clone();
                tasks.push(tokio::spawn(async move {
                    if round % 2 == 0 {
                        fixture.follow(follower, followee).await;
                    } else {
                        fixture
                            .store
                            .unfollow(
                                follower,
                                followee,
                                fixture.unfollows(follower, followee),
                                Timestamp::now(),
                            )
                            .await
                            .unwrap();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        let expected = if round % 2 == 0 { 11 } else { 0 };
        for &person in &people {
            let user = fixture.fresh(person).await;
            assert_eq!(
                (user.followers_count, user.following_count),
                (expected, expected),
                "after round {round}"
            );
        }
    }
}

/// The listener set with `notify_commits` hears every commit that
/// appended events (registration, a group-committed post, a like), and a
/// change that committed no event need not be announced.
pub async fn commits_that_append_events_are_announced(store: Arc<dyn Store>) {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let heard = Arc::new(AtomicUsize::new(0));
    let counter = heard.clone();
    store.notify_commits(Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    assert!(
        heard.load(Ordering::SeqCst) >= 1,
        "a registration was not announced"
    );
    let before = heard.load(Ordering::SeqCst);
    let post = fixture.post(ada.id, None).await.unwrap();
    assert!(
        heard.load(Ordering::SeqCst) > before,
        "a group-committed post was not announced"
    );
    let before = heard.load(Ordering::SeqCst);
    let bob = fixture.user("bob").await;
    fixture.like(bob.id, post.id).await.unwrap();
    assert!(
        heard.load(Ordering::SeqCst) >= before + 2,
        "a registration and a like were not both announced"
    );
}

pub async fn the_outbox_delivers_every_change_in_commit_order(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    fixture.follow(bob.id, ada.id).await;
    let post = fixture.post(ada.id, None).await.unwrap();
    fixture.like(bob.id, post.id).await.unwrap();
    let events = decoded(&*store, 0, 100).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|envelope| envelope.event.kind())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "user_registered",
            "user_registered",
            "followed",
            "post_created",
            "liked"
        ]
    );
    assert!(
        events
            .windows(2)
            .all(|pair| pair[0].sequence < pair[1].sequence)
    );
    assert_eq!(
        events[2].event,
        Event::Followed {
            follower_id: bob.id,
            followee_id: ada.id,
            followee_followers: 1
        }
    );
    let tail = decoded(&*store, events[2].sequence, 1).await;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].event.kind(), "post_created");
    store
        .append_event(
            EventId(5),
            &Event::ProfileUpdated { user_id: ada.id },
            Timestamp::now(),
        )
        .await
        .unwrap();
    let appended = decoded(&*store, events[4].sequence, 10).await;
    assert_eq!(appended.len(), 1);
    assert_eq!(appended[0].id, EventId(5));
    assert!(appended[0].sequence > events[4].sequence);
}

/// The store decides no event: it applies the use case's rule to what the
/// transaction found, appends what the rule gives (in the request's trace),
/// and consults no rule for a change that changed nothing.
pub async fn changes_append_what_their_rule_makes_of_the_outcome(store: Arc<dyn Store>) {
    use std::sync::Mutex;
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let cat = fixture.user("cat").await;
    fixture.follow(cat.id, ada.id).await;
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rule = |seen: Arc<Mutex<Vec<FollowOutcome>>>| {
        move |outcome: &FollowOutcome| {
            seen.lock().unwrap().push(*outcome);
            let FollowOutcome::Followed { followee_followers } = outcome else {
                return None;
            };
            Some(Event::Followed {
                follower_id: bob.id,
                followee_id: ada.id,
                followee_followers: *followee_followers,
            })
        }
    };
    let after = store.events_after(0, 1000).await.unwrap().len();
    let follow = |id| {
        store.follow(
            bob.id,
            ada.id,
            fixture.ids.next_raw(),
            Announce::new(id, Some(trace.to_owned()), rule(seen.clone())),
            Timestamp::now(),
        )
    };
    let id = fixture.ids.next_event_id();
    follow(id).await.unwrap();
    follow(fixture.ids.next_event_id()).await.unwrap();
    // The rule saw the count inside the transaction, once: the second
    // follow changed nothing.
    assert_eq!(
        *seen.lock().unwrap(),
        vec![FollowOutcome::Followed {
            followee_followers: 2
        }]
    );
    let events = decoded(&*store, 0, 1000).await;
    let written = &events[after..];
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0].id, id);
    assert_eq!(written[0].trace_parent.as_deref(), Some(trace));
    assert_eq!(
        written[0].event,
        Event::Followed {
            follower_id: bob.id,
            followee_id: ada.id,
            followee_followers: 2
        }
    );

    // A rule that announces nothing: the change commits, silently.
    let post = fixture.post(ada.id, None).await.unwrap();
    let after = store.events_after(0, 1000).await.unwrap().len();
    let quiet = Announce::new(fixture.ids.next_event_id(), None, |_: &LikeOutcome| None);
    assert_eq!(
        store
            .like(bob.id, post.id, quiet, Timestamp::now())
            .await
            .unwrap(),
        LikeOutcome::Liked {
            post_author: ada.id
        }
    );
    assert_eq!(fixture.stored_post(post.id).await.like_count, 1);
    assert_eq!(store.events_after(0, 1000).await.unwrap().len(), after);
}

pub async fn checkpoints_start_at_zero_and_never_move_back(store: Arc<dyn Store>) {
    assert_eq!(store.checkpoint("fanout").await.unwrap(), 0);
    store.save_checkpoint("fanout", 10).await.unwrap();
    store.save_checkpoint("fanout", 4).await.unwrap();
    assert_eq!(store.checkpoint("fanout").await.unwrap(), 10);
    assert_eq!(store.checkpoint("notifier").await.unwrap(), 0);
}

pub async fn pruning_keeps_events_a_consumer_has_not_handled(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    for name in ["a", "b", "c", "d"] {
        fixture.user(name).await;
    }
    let events = decoded(&*store, 0, 100).await;
    let future = Timestamp::now().plus_seconds(60);
    store
        .save_checkpoint("fanout", events[2].sequence)
        .await
        .unwrap();
    // "notifier" has handled nothing yet: nothing may go.
    assert_eq!(
        store
            .prune_outbox(&["fanout", "notifier"], future)
            .await
            .unwrap(),
        0
    );
    store
        .save_checkpoint("notifier", events[1].sequence)
        .await
        .unwrap();
    assert_eq!(
        store
            .prune_outbox(&["fanout", "notifier"], future)
            .await
            .unwrap(),
        2
    );
    let left = decoded(&*store, 0, 100).await;
    assert_eq!(
        left.first().map(|envelope| envelope.sequence),
        Some(events[2].sequence)
    );
    // Events younger than the cut-off stay whatever the checkpoints say.
    store
        .save_checkpoint("notifier", events[3].sequence)
        .await
        .unwrap();
    let past = Timestamp::now().plus_seconds(-60);
    assert_eq!(
        store
            .prune_outbox(&["fanout", "notifier"], past)
            .await
            .unwrap(),
        0
    );
}

pub async fn expired_refresh_tokens_are_pruned(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    fixture.open(fixture.token(ada.id, b"stale", -10)).await;
    let live = fixture.token(ada.id, b"live", 3600);
    let live_family = RefreshFamily {
        user_id: ada.id,
        family_id: live.family_id,
    };
    fixture.open(live).await;
    let now = Timestamp::now();
    assert_eq!(store.prune_refresh_tokens(now).await.unwrap(), 1);
    assert_eq!(
        store
            .rotate_refresh_token(b"stale", b"x", now.plus_seconds(60), no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Unknown
    );
    assert_eq!(
        store
            .rotate_refresh_token(b"live", b"y", now.plus_seconds(60), no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Rotated(live_family)
    );
}

/// A token spent at `now` is not retried: the grace window starts after it.
fn no_retry(now: Timestamp) -> Timestamp {
    Timestamp(now.millis() + 1)
}

pub async fn sessions_are_listed_and_ended_one_or_all(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let since = Timestamp::now();
    let tokens: Vec<RefreshTokenRecord> = [b"s1", b"s2", b"s3"]
        .iter()
        .map(|token| fixture.token(ada.id, *token, 3600))
        .collect();
    let ids: Vec<i64> = tokens.iter().map(|token| token.family_id).collect();
    for token in tokens {
        fixture.open(token).await;
    }
    fixture.open(fixture.token(bob.id, b"b1", 3600)).await;
    let now = Timestamp::now();
    let listed = store.sessions_of(ada.id, now).await.unwrap();
    let listed_ids: Vec<i64> = listed.iter().map(|session| session.id).collect();
    assert_eq!(listed_ids, [ids[2], ids[1], ids[0]], "newest first");
    assert_eq!(listed[0].user_agent.as_deref(), Some("contract"));
    assert_eq!(listed[0].address.as_deref(), Some("192.0.2.1"));
    assert!(
        store
            .sessions_revoked_since(since)
            .await
            .unwrap()
            .is_empty()
    );

    // Only its own account ends a session, once.
    assert!(!store.revoke_session(bob.id, ids[0], now).await.unwrap());
    assert!(store.revoke_session(ada.id, ids[0], now).await.unwrap());
    assert!(!store.revoke_session(ada.id, ids[0], now).await.unwrap());
    assert!(!store.session_is_open(ids[0], now).await.unwrap());
    assert_eq!(
        store
            .rotate_refresh_token(b"s1", b"s1'", now.plus_seconds(60), no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Reused(RefreshFamily {
            user_id: ada.id,
            family_id: ids[0],
        })
    );
    assert_eq!(store.sessions_of(ada.id, now).await.unwrap().len(), 2);
    assert_eq!(store.sessions_revoked_since(since).await.unwrap(), [ids[0]]);

    // All but one; then all.
    let mut ended = store
        .revoke_sessions_of(ada.id, Some(ids[2]), now)
        .await
        .unwrap();
    ended.sort_unstable();
    assert_eq!(ended, [ids[1]]);
    let open: Vec<i64> = store
        .sessions_of(ada.id, now)
        .await
        .unwrap()
        .iter()
        .map(|session| session.id)
        .collect();
    assert_eq!(open, [ids[2]]);
    assert_eq!(
        store.revoke_sessions_of(ada.id, None, now).await.unwrap(),
        [ids[2]]
    );
    assert!(store.sessions_of(ada.id, now).await.unwrap().is_empty());
    assert!(
        store
            .revoke_sessions_of(ada.id, None, now)
            .await
            .unwrap()
            .is_empty()
    );
    for (token, index) in [(b"s2", 1), (b"s3", 2)] {
        assert!(matches!(
            store
                .rotate_refresh_token(token, b"z", now.plus_seconds(60), no_retry(now), now)
                .await
                .unwrap(),
            RotateOutcome::Reused(family) if family.family_id == ids[index]
        ));
    }
    let mut revoked = store.sessions_revoked_since(since).await.unwrap();
    revoked.sort_unstable();
    let mut expected = ids.clone();
    expected.sort_unstable();
    assert_eq!(revoked, expected);
    // Bob's session never ended.
    assert_eq!(store.sessions_of(bob.id, now).await.unwrap().len(), 1);
    assert!(
        store
            .sessions_revoked_since(now.plus_seconds(1))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_retry_within_the_grace_spends_the_replacement_instead(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let first = fixture.token(ada.id, b"r1", 3600);
    let family = RefreshFamily {
        user_id: ada.id,
        family_id: first.family_id,
    };
    fixture.open(first).await;
    let now = Timestamp::now();
    let later = now.plus_seconds(3600);
    let grace = now.plus_seconds(-30);
    let rotate = |presented: &'static [u8], replacement: &'static [u8]| {
        let store = store.clone();
        async move {
            store
                .rotate_refresh_token(presented, replacement, later, grace, now)
                .await
                .unwrap()
        }
    };
    assert_eq!(rotate(b"r1", b"r2").await, RotateOutcome::Rotated(family));
    // r2's answer was lost: r1 again, within the grace, spends r2 instead.
    assert_eq!(rotate(b"r1", b"r3").await, RotateOutcome::Rotated(family));
    assert_eq!(rotate(b"r3", b"r4").await, RotateOutcome::Rotated(family));
    // r2 was spent by the retry, and its replacement r3 since: theft.
    assert_eq!(rotate(b"r1", b"r5").await, RotateOutcome::Reused(family));
    assert_eq!(rotate(b"r4", b"r6").await, RotateOutcome::Reused(family));

    // Past the grace window a spent token is reuse at once.
    let second = fixture.token(ada.id, b"q1", 3600);
    let other = RefreshFamily {
        user_id: ada.id,
        family_id: second.family_id,
    };
    fixture.open(second).await;
    assert_eq!(
        store
            .rotate_refresh_token(b"q1", b"q2", later, no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Rotated(other)
    );
    assert_eq!(
        store
            .rotate_refresh_token(b"q1", b"q3", later, no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Reused(other)
    );
    assert!(!store.session_is_open(other.family_id, now).await.unwrap());
}

pub async fn a_session_ends_at_its_absolute_end(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let first = fixture.token(ada.id, b"a1", 3600);
    let session = first.family_id;
    fixture.open_ending(first, 60).await;
    let now = Timestamp::now();
    // Refreshed with a token meant to last a day: it lasts the session.
    assert!(matches!(
        store
            .rotate_refresh_token(b"a1", b"a2", now.plus_seconds(86_400), no_retry(now), now)
            .await
            .unwrap(),
        RotateOutcome::Rotated(_)
    ));
    let after = now.plus_seconds(61);
    assert!(store.session_is_open(session, now).await.unwrap());
    assert!(!store.session_is_open(session, after).await.unwrap());
    assert!(store.sessions_of(ada.id, after).await.unwrap().is_empty());
    assert_eq!(
        store
            .rotate_refresh_token(
                b"a2",
                b"a3",
                after.plus_seconds(86_400),
                no_retry(after),
                after
            )
            .await
            .unwrap(),
        RotateOutcome::Expired
    );
}

pub async fn a_password_change_ends_the_other_sessions_with_it(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let keep = fixture.token(ada.id, b"k", 3600);
    let lose = fixture.token(ada.id, b"l", 3600);
    let (kept, lost) = (keep.family_id, lose.family_id);
    fixture.open(keep).await;
    fixture.open(lose).await;
    let before = store.password_hash_of(ada.id).await.unwrap().unwrap();
    let now = Timestamp::now();
    let ended = store
        .change_password(ada.id, "$argon2id$new", Some(kept), now)
        .await
        .unwrap();
    assert_eq!(ended, [lost]);
    assert_ne!(before, "$argon2id$new");
    assert_eq!(
        store.password_hash_of(ada.id).await.unwrap().as_deref(),
        Some("$argon2id$new")
    );
    let login = store.credentials_by_login("ada").await.unwrap().unwrap();
    assert_eq!(login.password_hash, "$argon2id$new");
    assert!(store.session_is_open(kept, now).await.unwrap());
    assert!(!store.session_is_open(lost, now).await.unwrap());
    assert!(matches!(
        store.change_password(UserId(-77), "x", None, now).await,
        Err(StoreError::NotFound(Missing::Account))
    ));
    assert_eq!(store.password_hash_of(UserId(-77)).await.unwrap(), None);
}

pub async fn api_keys_are_listed_used_and_revoked_by_their_owner(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let now = Timestamp::now();
    let key = |id: i64, user: UserId, hash: &[u8], expires_at: Option<Timestamp>| ApiKeyRecord {
        id,
        user_id: user,
        name: format!("key {id}"),
        prefix: format!("prefix{id}"),
        key_hash: hash.to_vec(),
        scopes: "read write".to_owned(),
        created_at: now,
        last_used_at: None,
        expires_at,
    };
    let (first, second, lapsed, bobs) = (
        fixture.ids.next_raw(),
        fixture.ids.next_raw(),
        fixture.ids.next_raw(),
        fixture.ids.next_raw(),
    );
    store
        .insert_api_key(key(first, ada.id, b"k1", None))
        .await
        .unwrap();
    store
        .insert_api_key(key(second, ada.id, b"k2", Some(now.plus_seconds(3600))))
        .await
        .unwrap();
    store
        .insert_api_key(key(lapsed, ada.id, b"k3", Some(now.plus_seconds(-1))))
        .await
        .unwrap();
    store
        .insert_api_key(key(bobs, bob.id, b"k4", None))
        .await
        .unwrap();

    let listed: Vec<i64> = store
        .api_keys_of(ada.id, now)
        .await
        .unwrap()
        .iter()
        .map(|key| key.id)
        .collect();
    assert_eq!(listed, [second, first], "live ones, newest first");
    // Using one records when, and answers the whole record.
    let later = now.plus_seconds(5);
    let used = store.use_api_key(b"k1", later).await.unwrap().unwrap();
    assert_eq!((used.id, used.user_id), (first, ada.id));
    assert_eq!(used.last_used_at, Some(later));
    assert_eq!(used.scopes, "read write");
    assert_eq!(used.prefix, format!("prefix{first}"));
    assert!(
        store.use_api_key(b"k3", now).await.unwrap().is_none(),
        "expired"
    );
    assert!(store.use_api_key(b"nope", now).await.unwrap().is_none());

    // Only its owner revokes a key, once; a revoked key is of no use.
    assert!(!store.revoke_api_key(bob.id, first, now).await.unwrap());
    assert!(store.revoke_api_key(ada.id, first, now).await.unwrap());
    assert!(!store.revoke_api_key(ada.id, first, now).await.unwrap());
    assert!(!store.revoke_api_key(ada.id, lapsed, now).await.unwrap());
    assert!(store.use_api_key(b"k1", later).await.unwrap().is_none());
    assert_eq!(store.api_keys_of(ada.id, now).await.unwrap().len(), 1);
    assert!(store.use_api_key(b"k4", now).await.unwrap().is_some());
    // Each key hash and prefix names one key.
    assert!(
        store
            .insert_api_key(key(fixture.ids.next_raw(), bob.id, b"k4", None))
            .await
            .is_err()
    );
}

pub async fn the_backlog_counts_what_a_consumer_has_not_handled(store: Arc<dyn Store>) {
    assert_eq!(store.backlog("fanout").await.unwrap(), (0, None));
    let fixture = Fixture::new(store.clone());
    for name in ["a", "b", "c"] {
        fixture.user(name).await;
    }
    let events = decoded(&*store, 0, 100).await;
    let (count, oldest) = store.backlog("fanout").await.unwrap();
    assert_eq!((count, oldest), (3, Some(events[0].occurred_at)));
    store
        .save_checkpoint("fanout", events[1].sequence)
        .await
        .unwrap();
    assert_eq!(
        store.backlog("fanout").await.unwrap(),
        (1, Some(events[2].occurred_at))
    );
    assert_eq!(store.backlog("notifier").await.unwrap().0, 3);
}

pub async fn the_highest_id_covers_everything_stored(store: Arc<dyn Store>) {
    assert_eq!(store.highest_id().await.unwrap(), 0);
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let post = fixture.post(ada.id, None).await.unwrap();
    fixture.follow(bob.id, ada.id).await;
    let highest = store.highest_id().await.unwrap();
    assert!(highest >= post.id.get() && highest >= bob.id.get());
    let later = fixture.ids.next_raw();
    assert!(later > highest);
}

/// Adapters may commit concurrent posts together; each must still succeed
/// or fail on its own merits.
pub async fn concurrent_posts_succeed_or_fail_on_their_own(store: Arc<dyn Store>) {
    let fixture = Arc::new(Fixture::new(store.clone()));
    let ada = fixture.user("ada").await;
    let parent = fixture.post(ada.id, None).await.unwrap();
    let mut tasks = Vec::new();
    for index in 0..60 {
        let fixture = fixture.clone();
        tasks.push(tokio::spawn(async move {
            let (author, reply_to) = match index % 20 {
                // A reply to a post that does not exist.
                7 => (ada.id, Some(PostId(424_242))),
                // An author this database does not know.
                13 => (UserId(31_337), None),
                3 => (ada.id, Some(parent.id)),
                _ => (ada.id, None),
            };
            (index, fixture.post(author, reply_to).await)
        }));
    }
    let mut stored = 0;
    for task in tasks {
        let (index, outcome) = task.await.unwrap();
        match index % 20 {
            7 => assert!(
                matches!(outcome, Err(StoreError::NotFound(Missing::Post))),
                "{index}: {outcome:?}"
            ),
            13 => assert!(outcome.is_err(), "{index}: {outcome:?}"),
            _ => {
                let post = outcome.unwrap();
                assert_eq!(fixture.stored_post(post.id).await, post);
                stored += 1;
            }
        }
    }
    assert_eq!(stored, 54);
    assert_eq!(fixture.fresh(ada.id).await.posts_count, 55);
    assert_eq!(fixture.stored_post(parent.id).await.reply_count, 3);
    let created = decoded(&*store, 0, 1_000)
        .await
        .into_iter()
        .filter(|envelope| envelope.event.kind() == "post_created")
        .count();
    assert_eq!(
        created, 55,
        "one event per stored post, none for refused ones"
    );
}

/// Many authors posting at once: group commit puts several authors in one
/// batch, and batches written side by side touch the same authors in
/// different orders; each post is stored once, each author counted exactly.
pub async fn posts_by_many_authors_at_once_are_each_counted(store: Arc<dyn Store>) {
    let fixture = Arc::new(Fixture::new(store.clone()));
    let mut authors = Vec::new();
    for index in 0..10 {
        authors.push(fixture.user(&format!("author{index}")).await.id);
    }
    let mut tasks = Vec::new();
    for index in 0..300_usize {
        let fixture = fixture.clone();
        // Each round walks the authors in another order.
        let author = authors[(index * 7 + index / 10) % authors.len()];
        tasks.push(tokio::spawn(async move {
            (author, fixture.post(author, None).await.unwrap())
        }));
    }
    let mut written: std::collections::HashMap<UserId, i64> = std::collections::HashMap::new();
    for task in tasks {
        let (author, post) = task.await.unwrap();
        assert_eq!(post.author_id, author);
        *written.entry(author).or_default() += 1;
    }
    for author in &authors {
        assert_eq!(
            fixture.fresh(*author).await.posts_count,
            written.get(author).copied().unwrap_or(0),
            "{author:?}"
        );
    }
    let created = decoded(&*store, 0, 1_000)
        .await
        .into_iter()
        .filter(|envelope| envelope.event.kind() == "post_created")
        .count();
    assert_eq!(created, 300);
}

fn kinds_and_actors(notifications: &[Notification]) -> Vec<(NotificationKind, UserId)> {
    notifications.iter().map(|n| (n.kind, n.actor)).collect()
}

pub async fn notifications_are_stored_once_per_thing_that_happened(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let cat = fixture.user("cat").await;
    let post = fixture.post(ada.id, None).await.unwrap();
    let follow = fixture.notification(ada.id, NotificationKind::Follow, bob.id, None);
    let like = fixture.notification(ada.id, NotificationKind::Like, bob.id, Some(post.id));
    assert_eq!(
        store
            .add_notifications(&[follow.clone(), like.clone()])
            .await
            .unwrap(),
        [follow.id, like.id],
        "new notifications keep their ids"
    );
    // The same things again, under new ids (a redelivered event): nothing
    // new, and the stored ids come back.
    let again = [
        fixture.notification(ada.id, NotificationKind::Like, bob.id, Some(post.id)),
        fixture.notification(ada.id, NotificationKind::Follow, bob.id, None),
    ];
    assert_eq!(
        store.add_notifications(&again).await.unwrap(),
        [like.id, follow.id]
    );
    // Another actor, kind or recipient is another thing that happened; new
    // and known ones mix in one batch.
    let others = [
        fixture.notification(ada.id, NotificationKind::Like, cat.id, Some(post.id)),
        fixture.notification(ada.id, NotificationKind::Follow, bob.id, None),
        fixture.notification(ada.id, NotificationKind::Mention, bob.id, Some(post.id)),
        fixture.notification(cat.id, NotificationKind::Follow, bob.id, None),
    ];
    assert_eq!(
        store.add_notifications(&others).await.unwrap(),
        [others[0].id, follow.id, others[2].id, others[3].id]
    );
    assert!(store.add_notifications(&[]).await.unwrap().is_empty());

    let listed = store.notifications(ada.id, &[], None, 10).await.unwrap();
    assert_eq!(listed.len(), 4);
    let stored_like = listed.iter().find(|n| n.id == like.id).unwrap();
    assert_eq!(stored_like, &like, "stored as given");
    let stored_follow = listed.iter().find(|n| n.id == follow.id).unwrap();
    assert_eq!(stored_follow.post, None);
    // Ids above every notification are never handed out again after a restart.
    assert!(store.highest_id().await.unwrap() >= others[3].id.get());
}

pub async fn notifications_page_newest_first_and_filter_by_kind(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let post = fixture.post(ada.id, None).await.unwrap();
    let mut fans = Vec::new();
    for index in 0..5 {
        fans.push(fixture.user(&format!("fan{index}")).await);
    }
    for fan in &fans {
        let follow = fixture.notification(ada.id, NotificationKind::Follow, fan.id, None);
        let like = fixture.notification(ada.id, NotificationKind::Like, fan.id, Some(post.id));
        store.add_notifications(&[follow, like]).await.unwrap();
    }
    // Someone else's notifications never show.
    let other = fixture.notification(fans[0].id, NotificationKind::Follow, ada.id, None);
    store.add_notifications(&[other]).await.unwrap();

    let first = store.notifications(ada.id, &[], None, 4).await.unwrap();
    let expected_first: Vec<_> = [
        (NotificationKind::Like, fans[4].id),
        (NotificationKind::Follow, fans[4].id),
        (NotificationKind::Like, fans[3].id),
        (NotificationKind::Follow, fans[3].id),
    ]
    .into();
    assert_eq!(kinds_and_actors(&first), expected_first);
    let rest = store
        .notifications(ada.id, &[], Some(first[3].id), 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 6);
    assert!(rest.windows(2).all(|pair| pair[0].id > pair[1].id));
    assert!(rest[0].id < first[3].id);

    let likes = store
        .notifications(ada.id, &[NotificationKind::Like], None, 100)
        .await
        .unwrap();
    assert_eq!(likes.len(), 5);
    assert!(likes.iter().all(|n| n.kind == NotificationKind::Like));
    let both = store
        .notifications(
            ada.id,
            &[NotificationKind::Follow, NotificationKind::Like],
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(both.len(), 10);
    let mentions = store
        .notifications(ada.id, &[NotificationKind::Mention], None, 100)
        .await
        .unwrap();
    assert!(mentions.is_empty());
}

pub async fn the_read_position_counts_unread_and_never_moves_back(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let state = store.notification_state(ada.id, 100).await.unwrap();
    assert_eq!((state.read_through, state.unread), (0, 0));
    // Marking with nothing to read stays at the start.
    assert_eq!(
        store.mark_notifications_read(ada.id, None).await.unwrap(),
        0
    );

    let mut notifications = Vec::new();
    for index in 0..6 {
        let fan = fixture.user(&format!("fan{index}")).await;
        notifications.push(fixture.notification(ada.id, NotificationKind::Follow, fan.id, None));
    }
    store.add_notifications(&notifications).await.unwrap();
    assert_eq!(
        store.notification_state(ada.id, 100).await.unwrap().unread,
        6
    );
    assert_eq!(
        store.notification_state(ada.id, 4).await.unwrap().unread,
        4,
        "counted up to the cap"
    );

    let through = notifications[2].id;
    assert_eq!(
        store
            .mark_notifications_read(ada.id, Some(through))
            .await
            .unwrap(),
        through.get()
    );
    let state = store.notification_state(ada.id, 100).await.unwrap();
    assert_eq!((state.read_through, state.unread), (through.get(), 3));
    // An older position changes nothing.
    assert_eq!(
        store
            .mark_notifications_read(ada.id, Some(notifications[0].id))
            .await
            .unwrap(),
        through.get()
    );
    // A position beyond the newest marks up to the newest only.
    let future = NotificationId(notifications[5].id.get() + 1_000_000);
    assert_eq!(
        store
            .mark_notifications_read(ada.id, Some(future))
            .await
            .unwrap(),
        notifications[5].id.get()
    );
    // No position: everything so far.
    let newest = notifications[5].id.get();
    assert_eq!(
        store.mark_notifications_read(ada.id, None).await.unwrap(),
        newest
    );
    assert_eq!(
        store.notification_state(ada.id, 100).await.unwrap().unread,
        0
    );
    // A later notification is unread again.
    let late = fixture.user("late").await;
    store
        .add_notifications(&[fixture.notification(ada.id, NotificationKind::Follow, late.id, None)])
        .await
        .unwrap();
    assert_eq!(
        store.notification_state(ada.id, 100).await.unwrap().unread,
        1
    );
    // Another account's position is its own.
    let bob = fixture.user("bob").await;
    assert_eq!(
        store
            .notification_state(bob.id, 100)
            .await
            .unwrap()
            .read_through,
        0
    );
}

pub async fn withdrawn_and_deleted_post_notifications_go(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let cat = fixture.user("cat").await;
    let post = fixture.post(ada.id, None).await.unwrap();
    let other_post = fixture.post(ada.id, None).await.unwrap();
    let like = fixture.notification(ada.id, NotificationKind::Like, bob.id, Some(post.id));
    let cat_like = fixture.notification(ada.id, NotificationKind::Like, cat.id, Some(post.id));
    let other_like =
        fixture.notification(ada.id, NotificationKind::Like, bob.id, Some(other_post.id));
    let follow = fixture.notification(ada.id, NotificationKind::Follow, bob.id, None);
    store
        .add_notifications(&[
            like.clone(),
            cat_like.clone(),
            other_like.clone(),
            follow.clone(),
        ])
        .await
        .unwrap();

    // Taken back later than the window: kept.
    let after = like.created_at.plus_seconds(1);
    assert_eq!(
        store
            .withdraw_notification(NotificationKind::Like, bob.id, post.id, after)
            .await
            .unwrap(),
        0
    );
    // Within the window: only that actor's notification about that post goes.
    let before = Timestamp(like.created_at.millis() - 60_000);
    assert_eq!(
        store
            .withdraw_notification(NotificationKind::Like, bob.id, post.id, before)
            .await
            .unwrap(),
        1
    );
    let left: Vec<_> = store
        .notifications(ada.id, &[], None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(left, vec![follow.id, other_like.id, cat_like.id]);

    // A deleted post takes its notifications with it; follows stay.
    assert_eq!(store.remove_post_notifications(post.id).await.unwrap(), 1);
    assert_eq!(store.remove_post_notifications(post.id).await.unwrap(), 0);
    let left: Vec<_> = store
        .notifications(ada.id, &[], None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(left, vec![follow.id, other_like.id]);
}

pub async fn accounts_are_found_by_handle_keys(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("Ada_L").await;
    let bob = fixture.user("bob").await;
    let mut found = store
        .users_by_handles(&["ada_l".to_owned(), "bob".to_owned(), "nobody".to_owned()])
        .await
        .unwrap();
    found.sort_by_key(|summary| summary.id);
    let found: Vec<_> = found.iter().map(|s| (s.id, s.handle.as_str())).collect();
    assert_eq!(found, vec![(ada.id, "Ada_L"), (bob.id, "bob")]);
    // Keys are lower-cased handles: another spelling finds nobody.
    assert!(
        store
            .users_by_handles(&["Ada_L".to_owned()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.users_by_handles(&[]).await.unwrap().is_empty());
}

pub async fn posts_keep_their_mentions_and_their_event_names_each_account_once(
    store: Arc<dyn Store>,
) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let cat = fixture.user("cat").await;
    let mention = |user: &User, start: u32| Mention {
        user_id: user.id,
        handle: user.handle.clone(),
        start,
        end: start + 4,
    };
    let mentions = vec![mention(&bob, 0), mention(&cat, 5), mention(&bob, 10)];
    let after = store.events_after(0, 1000).await.unwrap().len();
    let mut new_post = NewPost {
        text: PostText::parse("@bob @cat @bob").unwrap(),
        ..fixture.new_post(ada.id, None, mentions.clone(), Vec::new())
    };
    // The request's trace travels with the event it announces.
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    new_post.event.trace_parent = Some(trace.to_owned());
    let announced = new_post.event.event.clone();
    let post = store.create_post(new_post).await.unwrap();
    assert_eq!(post.mentions, mentions);
    assert_eq!(fixture.stored_post(post.id).await.mentions, mentions);
    let events = decoded(&*store, 0, 1000).await;
    let written = events[after..].last().unwrap();
    assert_eq!(written.event, announced);
    assert_eq!(written.trace_parent.as_deref(), Some(trace));
    // A post without mentions stores none.
    let plain = fixture.post(ada.id, None).await.unwrap();
    assert!(fixture.stored_post(plain.id).await.mentions.is_empty());
    // A tombstone keeps nothing of what the post said.
    store
        .delete_post(
            post.id,
            PostDeleter::Author(ada.id),
            fixture.deletes(post.id),
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert!(fixture.stored_post(post.id).await.mentions.is_empty());
}

pub async fn replies_list_oldest_first_without_deleted_ones(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let parent = fixture.post(ada.id, None).await.unwrap();
    let other = fixture.post(ada.id, None).await.unwrap();
    let mut replies = Vec::new();
    for index in 0..5 {
        let author = if index % 2 == 0 { bob.id } else { ada.id };
        replies.push(fixture.post(author, Some(parent.id)).await.unwrap().id);
    }
    // Replies elsewhere, and replies to replies, are not this post's.
    fixture.post(bob.id, Some(other.id)).await.unwrap();
    fixture.post(bob.id, Some(replies[0])).await.unwrap();
    store
        .delete_post(
            replies[2],
            PostDeleter::Author(bob.id),
            fixture.deletes(replies[2]),
            Timestamp::now(),
        )
        .await
        .unwrap();

    let ids = |posts: Vec<Post>| posts.into_iter().map(|p| p.id).collect::<Vec<_>>();
    let all = ids(store.replies(None, parent.id, None, 10).await.unwrap());
    assert_eq!(all, vec![replies[0], replies[1], replies[3], replies[4]]);
    let first = ids(store.replies(None, parent.id, None, 2).await.unwrap());
    assert_eq!(first, vec![replies[0], replies[1]]);
    let rest = ids(store
        .replies(None, parent.id, Some(replies[1]), 10)
        .await
        .unwrap());
    assert_eq!(rest, vec![replies[3], replies[4]]);
    assert!(
        store
            .replies(None, other.id, Some(PostId(i64::MAX - 1)), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .replies(None, PostId(42), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Replies outlive their parent's deletion: the thread keeps its shape.
    store
        .delete_post(
            parent.id,
            PostDeleter::Author(ada.id),
            fixture.deletes(parent.id),
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(store.replies(None, parent.id, None, 10).await.unwrap()).len(),
        4
    );
}

fn stored(status: u16, body: &str) -> StoredResponse {
    StoredResponse {
        status,
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("location".to_owned(), "/api/v1/posts/1".to_owned()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

async fn claim(store: &dyn Store, scope: &str, key: &str, fingerprint: &[u8]) -> IdempotencyClaim {
    let now = Timestamp::now();
    store
        .claim_idempotency_key(
            scope,
            key,
            fingerprint,
            now,
            Timestamp(now.millis() - 60_000),
            Timestamp(now.millis() - 24 * 3600 * 1000),
        )
        .await
        .unwrap()
}

pub async fn idempotency_keys_claim_once_then_replay(store: Arc<dyn Store>) {
    assert_eq!(
        claim(&*store, "u:1", "k1", b"post A").await,
        IdempotencyClaim::Claimed
    );
    // While the first attempt runs, a retry is told so.
    assert_eq!(
        claim(&*store, "u:1", "k1", b"post A").await,
        IdempotencyClaim::InProgress
    );
    let response = stored(201, r#"{"id":"1"}"#);
    store
        .complete_idempotency_key("u:1", "k1", &response)
        .await
        .unwrap();
    assert_eq!(
        claim(&*store, "u:1", "k1", b"post A").await,
        IdempotencyClaim::Completed(response.clone())
    );
    // Keys are per scope: another caller's same key is its own.
    assert_eq!(
        claim(&*store, "u:2", "k1", b"post A").await,
        IdempotencyClaim::Claimed
    );
    // A released key (its attempt failed) can be claimed again.
    store.release_idempotency_key("u:2", "k1").await.unwrap();
    assert_eq!(
        claim(&*store, "u:2", "k1", b"post A").await,
        IdempotencyClaim::Claimed
    );
    // Releasing never drops a completed answer.
    store.release_idempotency_key("u:1", "k1").await.unwrap();
    assert_eq!(
        claim(&*store, "u:1", "k1", b"post A").await,
        IdempotencyClaim::Completed(response)
    );
}

pub async fn idempotency_keys_refuse_another_request_and_expire(store: Arc<dyn Store>) {
    assert_eq!(
        claim(&*store, "u:1", "k", b"post A").await,
        IdempotencyClaim::Claimed
    );
    assert_eq!(
        claim(&*store, "u:1", "k", b"post B").await,
        IdempotencyClaim::Mismatch
    );
    store
        .complete_idempotency_key("u:1", "k", &stored(201, "{}"))
        .await
        .unwrap();
    assert_eq!(
        claim(&*store, "u:1", "k", b"post B").await,
        IdempotencyClaim::Mismatch
    );

    // An attempt that died mid-way (still in progress past the stale mark)
    // is taken over.
    let long_ago = Timestamp(Timestamp::now().millis() - 120_000);
    store
        .claim_idempotency_key("u:1", "stuck", b"x", long_ago, long_ago, Timestamp(0))
        .await
        .unwrap();
    assert_eq!(
        claim(&*store, "u:1", "stuck", b"x").await,
        IdempotencyClaim::Claimed
    );

    // Past 24 hours a key is new again, whatever it was used for.
    let yesterday = Timestamp(Timestamp::now().millis() - 25 * 3600 * 1000);
    store
        .claim_idempotency_key("u:1", "old", b"x", yesterday, Timestamp(0), Timestamp(0))
        .await
        .unwrap();
    store
        .complete_idempotency_key("u:1", "old", &stored(201, "{}"))
        .await
        .unwrap();
    assert_eq!(
        claim(&*store, "u:1", "old", b"y").await,
        IdempotencyClaim::Claimed
    );

    // Pruning removes what expired and keeps the rest.
    let before = Timestamp(Timestamp::now().millis() - 60_000);
    store
        .claim_idempotency_key(
            "u:9",
            "ancient",
            b"x",
            yesterday,
            Timestamp(0),
            Timestamp(0),
        )
        .await
        .unwrap();
    assert_eq!(store.prune_idempotency_keys(before).await.unwrap(), 1);
    assert_eq!(
        claim(&*store, "u:1", "k", b"post A").await,
        IdempotencyClaim::Completed(stored(201, "{}"))
    );
}

pub async fn concurrent_claims_of_one_key_let_one_through(store: Arc<dyn Store>) {
    let claims = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { claim(&*store, "u:7", "same", b"post").await })
        })
        .collect::<Vec<_>>();
    let mut claimed = 0;
    for outcome in claims {
        match outcome.await.unwrap() {
            IdempotencyClaim::Claimed => claimed += 1,
            IdempotencyClaim::InProgress => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(claimed, 1);
}

pub async fn blocks_and_mutes_are_idempotent_listed_and_hidden(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let cat = fixture.user("cat").await;
    let dan = fixture.user("dan").await;
    let add = |relation, owner: UserId, other: UserId| {
        let store = store.clone();
        let position = fixture.ids.next_raw();
        async move {
            store
                .add_relation(relation, owner, other, position, Timestamp::now())
                .await
        }
    };
    assert!(add(Relation::Block, ada.id, bob.id).await.unwrap());
    assert!(
        !add(Relation::Block, ada.id, bob.id).await.unwrap(),
        "idempotent"
    );
    assert!(add(Relation::Block, ada.id, cat.id).await.unwrap());
    assert!(add(Relation::Block, dan.id, ada.id).await.unwrap());
    assert!(add(Relation::Mute, ada.id, dan.id).await.unwrap());
    assert!(matches!(
        add(Relation::Mute, ada.id, UserId(424_242)).await,
        Err(StoreError::NotFound(Missing::Account))
    ));

    let listed: Vec<UserId> = store
        .relations(Relation::Block, ada.id, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, user)| user.id)
        .collect();
    assert_eq!(listed, vec![cat.id, bob.id], "newest first");
    let first = store
        .relations(Relation::Block, ada.id, None, 1)
        .await
        .unwrap();
    let rest = store
        .relations(Relation::Block, ada.id, Some(first[0].0), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1.id, bob.id);

    assert!(store.blocked_either_way(ada.id, bob.id).await.unwrap());
    assert!(store.blocked_either_way(bob.id, ada.id).await.unwrap());
    assert!(store.blocked_either_way(ada.id, dan.id).await.unwrap());
    assert!(!store.blocked_either_way(bob.id, cat.id).await.unwrap());

    let mut hidden = store.hidden_from(ada.id).await.unwrap();
    hidden.blocked.sort();
    let mut expected = vec![bob.id, cat.id, dan.id];
    expected.sort();
    assert_eq!(
        hidden,
        Hidden {
            blocked: expected,
            muted: vec![dan.id]
        }
    );
    // A block hides both ways; a mute only for the muter.
    assert_eq!(
        store.hidden_from(bob.id).await.unwrap().blocked,
        vec![ada.id]
    );
    assert!(store.hidden_from(dan.id).await.unwrap().muted.is_empty());

    assert!(
        store
            .remove_relation(Relation::Block, ada.id, bob.id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_relation(Relation::Block, ada.id, bob.id)
            .await
            .unwrap()
    );
    assert!(!store.blocked_either_way(ada.id, bob.id).await.unwrap());
    assert!(
        store
            .remove_relation(Relation::Mute, ada.id, dan.id)
            .await
            .unwrap()
    );
    assert!(store.hidden_from(ada.id).await.unwrap().muted.is_empty());
}

pub async fn a_block_forbids_follows_both_ways(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    store
        .add_relation(
            Relation::Block,
            ada.id,
            bob.id,
            fixture.ids.next_raw(),
            Timestamp::now(),
        )
        .await
        .unwrap();
    let after = store.events_after(0, 1000).await.unwrap().len();
    for (follower, followee) in [(ada.id, bob.id), (bob.id, ada.id)] {
        assert_eq!(
            fixture.follow(follower, followee).await,
            FollowOutcome::AlreadyFollowing,
            "nothing changes"
        );
        assert!(!store.is_following(follower, followee).await.unwrap());
    }
    assert_eq!(fixture.fresh(ada.id).await.followers_count, 0);
    assert_eq!(fixture.fresh(bob.id).await.followers_count, 0);
    assert_eq!(
        decoded(&*store, 0, 1000).await.len(),
        after,
        "no follow event committed"
    );
    // Unblocked, they may follow again.
    store
        .remove_relation(Relation::Block, ada.id, bob.id)
        .await
        .unwrap();
    assert!(matches!(
        fixture.follow(bob.id, ada.id).await,
        FollowOutcome::Followed {
            followee_followers: 1
        }
    ));
}

/// Files as the store sees them: which were deleted.
#[derive(Default)]
struct Files(parking_lot::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl crate::ports::BlobStore for Files {
    async fn put(&self, _: &str, _: bytes::Bytes) -> Result<(), crate::ports::BlobError> {
        Ok(())
    }
    async fn get(&self, _: &str) -> Result<Option<bytes::Bytes>, crate::ports::BlobError> {
        Ok(None)
    }
    async fn get_range(
        &self,
        _: &str,
        _: std::ops::Range<u64>,
    ) -> Result<Option<bytes::Bytes>, crate::ports::BlobError> {
        Ok(None)
    }
    async fn size(&self, _: &str) -> Result<Option<u64>, crate::ports::BlobError> {
        Ok(None)
    }
    async fn delete(&self, key: &str) -> Result<(), crate::ports::BlobError> {
        self.0.lock().push(key.to_owned());
        Ok(())
    }
}

fn media_file(hash: &str) -> starling_domain::MediaFile {
    starling_domain::MediaFile {
        hash: hash.to_owned(),
        kind: starling_domain::MediaKind::Png,
        width: 4,
        height: 3,
        bytes: 100,
    }
}

async fn upload(
    store: &Arc<dyn Store>,
    fixture: &Fixture,
    owner: UserId,
    hash: &str,
    created_at: Timestamp,
) -> starling_domain::Media {
    let media = starling_domain::Media {
        id: fixture.ids.next_media_id(),
        owner,
        file: media_file(hash),
        thumbnail: None,
        alt: "a cat".to_owned(),
        state: starling_domain::MediaState::Uploading,
        post: None,
        created_at,
    };
    store.add_media(&media).await.unwrap();
    media
}

pub async fn uploads_go_from_uploading_to_ready_and_attach_once(store: Arc<dyn Store>) {
    use starling_domain::MediaState;
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let media = upload(&store, &fixture, ada.id, &"a".repeat(64), Timestamp::now()).await;
    let found = store.media_by_ids(&[media.id]).await.unwrap();
    assert_eq!(found, std::slice::from_ref(&media));
    // Not ready: no thumbnail before the file is stored.
    assert!(
        !store
            .set_thumbnail(media.id, &media_file("t1"))
            .await
            .unwrap()
    );
    let after = store.events_after(0, 1000).await.unwrap().len();
    store
        .media_stored(
            media.id,
            fixture.event(Event::MediaUploaded {
                media_id: media.id,
                owner_id: ada.id,
            }),
            Timestamp::now(),
        )
        .await
        .unwrap();
    let events: Vec<Event> = decoded(&*store, 0, 1000)
        .await
        .into_iter()
        .map(|envelope| envelope.event)
        .collect();
    assert_eq!(
        events[after..],
        [Event::MediaUploaded {
            media_id: media.id,
            owner_id: ada.id
        }]
    );
    assert!(
        store
            .set_thumbnail(media.id, &media_file("t1"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_thumbnail(media.id, &media_file("t2"))
            .await
            .unwrap(),
        "once"
    );
    let ready = store
        .media_by_ids(&[media.id])
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(ready.state, MediaState::Ready);
    assert_eq!(ready.thumbnail, Some(media_file("t1")));
    let attachment = ready.attachment().unwrap();

    let post_with =
        |author: UserId| fixture.new_post(author, None, Vec::new(), vec![attachment.clone()]);
    // Someone else's upload cannot be attached.
    assert!(matches!(
        store.create_post(post_with(bob.id)).await,
        Err(StoreError::MediaUnavailable)
    ));
    let post = store.create_post(post_with(ada.id)).await.unwrap();
    assert_eq!(post.media, std::slice::from_ref(&attachment));
    assert_eq!(
        fixture.stored_post(post.id).await.media,
        std::slice::from_ref(&attachment)
    );
    let attached = store
        .media_by_ids(&[media.id])
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(attached.post, Some(post.id));
    // Nor attached twice.
    assert!(matches!(
        store.create_post(post_with(ada.id)).await,
        Err(StoreError::MediaUnavailable)
    ));
    // Deleting the post detaches it, for the sweep.
    store
        .delete_post(
            post.id,
            PostDeleter::Author(ada.id),
            fixture.deletes(post.id),
            Timestamp::now(),
        )
        .await
        .unwrap();
    let detached = store
        .media_by_ids(&[media.id])
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(detached.post, None);
    assert!(fixture.stored_post(post.id).await.media.is_empty());
}

pub async fn removing_uploads_deletes_files_no_upload_names(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let old = Timestamp(Timestamp::now_ms() - 48 * 3600 * 1000);
    let shared = "b".repeat(64);
    let alone = "c".repeat(64);
    // Two uploads of the same bytes, one old; one old upload of its own.
    let old_twin = upload(&store, &fixture, ada.id, &shared, old).await;
    let new_twin = upload(&store, &fixture, ada.id, &shared, Timestamp::now()).await;
    let lonely = upload(&store, &fixture, ada.id, &alone, old).await;
    let files = Files::default();
    let removed = store
        .remove_media(
            MediaSelection::UnattachedBefore {
                before: Timestamp(Timestamp::now_ms() - 24 * 3600 * 1000),
                limit: 100,
            },
            &files,
        )
        .await
        .unwrap();
    assert!(removed >= 2);
    let gone = store.media_by_ids(&[old_twin.id, lonely.id]).await.unwrap();
    assert!(gone.is_empty());
    let deleted = files.0.lock().clone();
    assert!(deleted.contains(&alone), "a file no upload names goes");
    assert!(
        !deleted.contains(&shared),
        "a file another upload names stays"
    );
    // Removing the last upload naming it takes the file.
    store
        .remove_media(MediaSelection::One(new_twin.id), &files)
        .await
        .unwrap();
    assert!(files.0.lock().contains(&shared));
}

impl Fixture {
    /// An audit entry of `action` by `actor` on `target`.
    fn audit(&self, actor: Option<UserId>, action: AuditAction, target: UserId) -> AuditEntry {
        AuditEntry {
            id: self.ids.next_raw(),
            actor,
            action,
            target_user: Some(target),
            target_post: None,
            reason: Some(format!("{} for the contract", action.as_str())),
            details: "{}".to_owned(),
            created_at: Timestamp::now(),
        }
    }

    async fn set_status(&self, user: UserId, status: AccountStatus) -> StatusChange {
        let suspend = status != AccountStatus::Active;
        let (action, event) = match suspend {
            true => (
                AuditAction::Suspend,
                Event::AccountSuspended {
                    user_id: user,
                    moderator_id: None,
                },
            ),
            false => (
                AuditAction::Unsuspend,
                Event::AccountReinstated {
                    user_id: user,
                    moderator_id: None,
                },
            ),
        };
        self.store
            .set_suspended(
                user,
                suspend,
                self.audit(None, action, user),
                self.event(event),
                Timestamp::now(),
            )
            .await
            .unwrap()
    }
}

fn handles(page: &(Vec<crate::ports::AccountRecord>, u64)) -> (Vec<String>, u64) {
    (
        page.0
            .iter()
            .map(|account| account.user.handle.as_str().to_owned())
            .collect(),
        page.1,
    )
}

pub async fn staff_find_accounts_by_filter_search_and_sort(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let carol = fixture.user("carol_x").await;
    store
        .set_role(
            bob.id,
            Role::User,
            Role::Moderator,
            fixture.audit(None, AuditAction::GrantRole, bob.id),
        )
        .await
        .unwrap();
    fixture.set_status(carol.id, AccountStatus::Suspended).await;
    fixture.post(bob.id, None).await.unwrap();
    fixture.post(bob.id, None).await.unwrap();
    fixture.post(ada.id, None).await.unwrap();
    let find = |query: AccountQuery| {
        let store = store.clone();
        async move { handles(&store.find_accounts(&query).await.unwrap()) }
    };
    let all = AccountQuery {
        limit: 10,
        ..AccountQuery::default()
    };
    let names = |names: &[&str], total: u64| {
        (
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
            total,
        )
    };
    // Newest first by default (ties by id).
    assert_eq!(
        find(all.clone()).await,
        names(&["carol_x", "bob", "ada"], 3)
    );
    let suspended = find(AccountQuery {
        status: Some(AccountStatus::Suspended),
        ..all.clone()
    });
    assert_eq!(suspended.await, names(&["carol_x"], 1));
    let active = find(AccountQuery {
        status: Some(AccountStatus::Active),
        ..all.clone()
    });
    assert_eq!(active.await, names(&["bob", "ada"], 2));
    let moderators = find(AccountQuery {
        role: Some(Role::Moderator),
        ..all.clone()
    });
    assert_eq!(moderators.await, names(&["bob"], 1));
    let search = |text: &str| {
        find(AccountQuery {
            search: Some(text.to_owned()),
            ..all.clone()
        })
    };
    assert_eq!(search("ad").await, names(&["ada"], 1), "handle");
    assert_eq!(
        search("l_x d").await,
        names(&["carol_x"], 1),
        "display name"
    );
    assert_eq!(search("example.org").await.1, 3, "email");
    assert_eq!(search("%").await.1, 0, "wildcards are literal");
    assert_eq!(search("_").await, names(&["carol_x"], 1));
    assert_eq!(search("nobody").await.1, 0);
    let by_handle = AccountQuery {
        sort: vec![AccountSort {
            field: AccountSortField::Handle,
            descending: false,
        }],
        ..all.clone()
    };
    assert_eq!(
        find(by_handle.clone()).await,
        names(&["ada", "bob", "carol_x"], 3)
    );
    // An offset page counts every match.
    let second = find(AccountQuery {
        offset: 1,
        limit: 1,
        ..by_handle
    });
    assert_eq!(second.await, names(&["bob"], 3));
    let past_the_end = find(AccountQuery {
        offset: 3,
        ..all.clone()
    });
    assert_eq!(past_the_end.await, names(&[], 3));
    let by_posts = find(AccountQuery {
        sort: vec![
            AccountSort {
                field: AccountSortField::PostsCount,
                descending: true,
            },
            AccountSort {
                field: AccountSortField::Handle,
                descending: true,
            },
        ],
        ..all.clone()
    });
    assert_eq!(by_posts.await, names(&["bob", "ada", "carol_x"], 3));
    let record = store.account_record(carol.id).await.unwrap().unwrap();
    assert_eq!(record.email, "carol_x@example.org");
    assert_eq!(record.user.status, AccountStatus::Suspended);
    assert!(record.suspended_at.is_some());
    assert!(store.account_record(UserId(42)).await.unwrap().is_none());
}

pub async fn suspension_ends_sessions_refuses_keys_and_hides_the_account(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let (first, second, bobs) = (
        fixture.token(ada.id, b"s1", 3600),
        fixture.token(ada.id, b"s2", 3600),
        fixture.token(bob.id, b"s3", 3600),
    );
    let sessions = [first.family_id, second.family_id];
    let bobs_session = bobs.family_id;
    for token in [first, second, bobs] {
        fixture.open(token).await;
    }
    let now = Timestamp::now();
    store
        .insert_api_key(ApiKeyRecord {
            id: fixture.ids.next_raw(),
            user_id: ada.id,
            name: "bot".to_owned(),
            prefix: "adasbot".to_owned(),
            key_hash: b"ada-key".to_vec(),
            scopes: "read".to_owned(),
            created_at: now,
            last_used_at: None,
            expires_at: None,
        })
        .await
        .unwrap();
    let events_before = store.events_after(0, 1000).await.unwrap().len();

    let StatusChange::Changed {
        ended_sessions: mut ended,
    } = fixture.set_status(ada.id, AccountStatus::Suspended).await
    else {
        panic!("an active account is suspended");
    };
    ended.sort_unstable();
    let mut expected = sessions.to_vec();
    expected.sort_unstable();
    assert_eq!(ended, expected);
    for session in sessions {
        assert!(!store.session_is_open(session, now).await.unwrap());
    }
    assert!(store.session_is_open(bobs_session, now).await.unwrap());
    assert!(store.use_api_key(b"ada-key", now).await.unwrap().is_none());
    assert_eq!(
        store.standing_of(ada.id).await.unwrap(),
        Some((Role::User, AccountStatus::Suspended))
    );
    assert_eq!(
        store.user_by_id(ada.id).await.unwrap().unwrap().status,
        AccountStatus::Suspended
    );
    let summaries = store.user_summaries(&[ada.id, bob.id]).await.unwrap();
    let hidden: Vec<bool> = [ada.id, bob.id]
        .iter()
        .map(|id| summaries.iter().find(|s| s.id == *id).unwrap().hidden)
        .collect();
    assert_eq!(hidden, [true, false]);
    let events = decoded(store.as_ref(), 0, 1000).await;
    assert_eq!(events.len(), events_before + 1, "the suspension's event");
    assert_eq!(events.last().unwrap().event.kind(), "account_suspended");
    // A second suspension changes and writes nothing.
    assert_eq!(
        fixture.set_status(ada.id, AccountStatus::Suspended).await,
        StatusChange::Unchanged
    );

    assert_eq!(
        fixture.set_status(ada.id, AccountStatus::Active).await,
        StatusChange::Changed {
            ended_sessions: Vec::new()
        }
    );
    let reinstated = store.account_record(ada.id).await.unwrap().unwrap();
    assert_eq!(reinstated.user.status, AccountStatus::Active);
    assert_eq!(reinstated.suspended_at, None);
    assert!(store.use_api_key(b"ada-key", now).await.unwrap().is_some());
    // Sessions ended stay ended.
    assert!(!store.session_is_open(sessions[0], now).await.unwrap());
    let (entries, total) = store
        .audit_log(&AuditQuery {
            target_user: Some(ada.id),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        total, 2,
        "the suspension and the reinstatement, not the no-op"
    );
    let actions: Vec<AuditAction> = entries.iter().map(|entry| entry.action).collect();
    assert_eq!(actions, [AuditAction::Unsuspend, AuditAction::Suspend]);
    assert_eq!(
        entries[1].reason.as_deref(),
        Some("suspend for the contract")
    );
    assert!(matches!(
        store
            .set_suspended(
                UserId(42),
                true,
                fixture.audit(None, AuditAction::Suspend, UserId(42)),
                fixture.event(Event::AccountSuspended {
                    user_id: UserId(42),
                    moderator_id: None
                }),
                now,
            )
            .await,
        Err(StoreError::NotFound(Missing::Account))
    ));
}

pub async fn roles_change_by_compare_and_set_and_are_audited(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let grant = |user: UserId, from: Role, to: Role, actor: Option<UserId>| {
        store.set_role(
            user,
            from,
            to,
            fixture.audit(actor, AuditAction::GrantRole, user),
        )
    };
    assert!(grant(ada.id, Role::User, Role::Admin, None).await.unwrap());
    // Not `User` any more: nothing changes, nothing is audited.
    assert!(
        !grant(ada.id, Role::User, Role::Moderator, None)
            .await
            .unwrap()
    );
    assert!(
        grant(bob.id, Role::User, Role::Moderator, Some(ada.id))
            .await
            .unwrap()
    );
    assert!(matches!(
        grant(UserId(42), Role::User, Role::Admin, None).await,
        Err(StoreError::NotFound(Missing::Account))
    ));
    assert_eq!(
        store.standing_of(ada.id).await.unwrap(),
        Some((Role::Admin, AccountStatus::Active))
    );
    assert_eq!(
        store.user_by_id(bob.id).await.unwrap().unwrap().role,
        Role::Moderator
    );
    assert_eq!(store.standing_of(UserId(42)).await.unwrap(), None);

    let page = |query: AuditQuery| {
        let store = store.clone();
        async move { store.audit_log(&query).await.unwrap() }
    };
    let (all, total) = page(AuditQuery {
        limit: 10,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(total, 2);
    let targets: Vec<Option<UserId>> = all.iter().map(|entry| entry.target_user).collect();
    assert_eq!(targets, [Some(bob.id), Some(ada.id)], "newest first");
    assert_eq!(all[0].actor, Some(ada.id));
    assert_eq!(all[1].actor, None, "the command line");
    let (by_ada, total) = page(AuditQuery {
        actor: Some(ada.id),
        limit: 10,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!((by_ada.len(), total), (1, 1));
    let (second, total) = page(AuditQuery {
        action: Some(AuditAction::GrantRole),
        offset: 1,
        limit: 1,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(total, 2);
    assert_eq!(second[0].target_user, Some(ada.id));
    let (none, total) = page(AuditQuery {
        action: Some(AuditAction::Suspend),
        limit: 10,
        ..AuditQuery::default()
    })
    .await;
    assert!(none.is_empty() && total == 0);
}

pub async fn moderators_remove_any_post_with_its_audit_entry(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let moderator = fixture.user("mod").await;
    let post = fixture.post(ada.id, None).await.unwrap();
    let mut audit = fixture.audit(Some(moderator.id), AuditAction::RemovePost, ada.id);
    audit.target_post = Some(post.id);
    let removal = PostDeleter::Moderator(audit.clone());
    assert_eq!(
        store
            .delete_post(
                post.id,
                removal.clone(),
                fixture.deletes(post.id),
                Timestamp::now()
            )
            .await
            .unwrap(),
        DeleteOutcome::Deleted {
            author: ada.id,
            reply_to: None
        }
    );
    assert!(fixture.stored_post(post.id).await.deleted);
    assert_eq!(fixture.fresh(ada.id).await.posts_count, 0);
    let (entries, _) = store
        .audit_log(&AuditQuery {
            action: Some(AuditAction::RemovePost),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(entries, [audit]);
    let events = decoded(store.as_ref(), 0, 1000).await;
    assert_eq!(
        events.last().unwrap().event,
        Event::PostDeleted {
            post_id: post.id,
            author_id: ada.id
        }
    );
    // Removed already: nothing to remove, nothing audited.
    assert!(matches!(
        store
            .delete_post(post.id, removal, fixture.deletes(post.id), Timestamp::now())
            .await,
        Err(StoreError::NotFound(Missing::Post))
    ));
}

pub async fn a_deletion_starts_once_and_moves_step_by_step_with_a_lease(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let session = fixture.token(ada.id, b"ada-session", 3600);
    let family = session.family_id;
    fixture.open(session).await;
    let now = Timestamp::now();

    let ended = store.begin_deletion(ada.id, now).await.unwrap();
    assert_eq!(ended, Some(vec![family]));
    assert!(
        store.begin_deletion(ada.id, now).await.unwrap().is_none(),
        "once"
    );
    assert!(
        store
            .begin_deletion(UserId(42), now)
            .await
            .unwrap()
            .is_none(),
        "nobody"
    );
    assert_eq!(
        store.standing_of(ada.id).await.unwrap(),
        Some((Role::User, AccountStatus::Deleting))
    );
    assert!(store.password_hash_of(ada.id).await.unwrap().is_none());
    assert!(store.credentials_by_login("ada").await.unwrap().is_none());
    assert!(!store.session_is_open(family, now).await.unwrap());
    let summary = store.user_summaries(&[ada.id]).await.unwrap();
    assert!(summary[0].hidden);
    // A suspended account is not deleted by its owner (it cannot sign in).
    fixture.set_status(bob.id, AccountStatus::Suspended).await;
    assert!(store.begin_deletion(bob.id, now).await.unwrap().is_none());

    let record = store.deletion_of(ada.id).await.unwrap().unwrap();
    assert_eq!(record.step, DeletionStep::RevokeCredentials);
    assert_eq!((record.attempts, record.finished_at), (0, None));
    let due = store.due_deletions(now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    // One runner at a time: the lease keeps the others off until it ends.
    let lease = now.plus_seconds(60);
    assert!(store.claim_deletion(ada.id, now, lease).await.unwrap());
    assert!(!store.claim_deletion(ada.id, now, lease).await.unwrap());
    assert!(store.due_deletions(now, 10).await.unwrap().is_empty());
    assert!(
        store
            .claim_deletion(ada.id, lease, lease.plus_seconds(60))
            .await
            .unwrap(),
        "a lease that ran out is taken over"
    );

    // A failure is recorded with its retry time (the lease let go).
    let retry_at = now.plus_seconds(30);
    store
        .deletion_failed(
            ada.id,
            DeletionStep::RevokeCredentials,
            "disk on fire",
            retry_at,
        )
        .await
        .unwrap();
    let failed = store.deletion_of(ada.id).await.unwrap().unwrap();
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("disk on fire"));
    assert_eq!(failed.next_attempt_at, retry_at);
    assert!(store.due_deletions(now, 10).await.unwrap().is_empty());
    assert_eq!(store.due_deletions(retry_at, 10).await.unwrap().len(), 1);

    // Steps move only from where they are, and forget failures.
    assert!(
        !store
            .advance_deletion(
                ada.id,
                DeletionStep::DeletePosts,
                DeletionStep::DeleteMedia,
                now,
                now
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .advance_deletion(
                ada.id,
                DeletionStep::RevokeCredentials,
                DeletionStep::RemoveFollows,
                now,
                now
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.due_deletions(now, 10).await.unwrap().len(),
        1,
        "the lease went with the step"
    );
    let moved = store.deletion_of(ada.id).await.unwrap().unwrap();
    assert_eq!(
        (moved.step, moved.attempts, moved.last_error),
        (DeletionStep::RemoveFollows, 0, None)
    );
    assert!(
        store
            .advance_deletion(
                ada.id,
                DeletionStep::RemoveFollows,
                DeletionStep::Done,
                now,
                now
            )
            .await
            .unwrap()
    );
    let done = store.deletion_of(ada.id).await.unwrap().unwrap();
    assert_eq!(done.step, DeletionStep::Done);
    assert_eq!(done.finished_at, Some(now));
    assert_eq!(
        store.standing_of(ada.id).await.unwrap(),
        Some((Role::User, AccountStatus::Deleted))
    );
    assert!(store.due_deletions(retry_at, 10).await.unwrap().is_empty());
}

pub async fn deletion_batches_remove_what_an_account_had(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let bob = fixture.user("bob").await;
    let cy = fixture.user("cy").await;
    fixture.follow(ada.id, bob.id).await;
    fixture.follow(cy.id, ada.id).await;
    fixture.follow(bob.id, cy.id).await;
    let follows = store.follows_of(ada.id, 10).await.unwrap();
    let mut follows: Vec<(UserId, UserId)> = follows;
    follows.sort_unstable();
    let mut expected = vec![(ada.id, bob.id), (cy.id, ada.id)];
    expected.sort_unstable();
    assert_eq!(follows, expected, "both ways, nobody else's");
    assert_eq!(store.follows_of(ada.id, 1).await.unwrap().len(), 1);

    let bobs = fixture.post(bob.id, None).await.unwrap();
    let cys = fixture.post(cy.id, None).await.unwrap();
    fixture.like(ada.id, bobs.id).await.unwrap();
    fixture.like(ada.id, cys.id).await.unwrap();
    fixture.like(bob.id, cys.id).await.unwrap();
    let first = store.remove_likes_of(ada.id, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let second = store.remove_likes_of(ada.id, 10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(store.remove_likes_of(ada.id, 10).await.unwrap().is_empty());
    assert_eq!(fixture.stored_post(bobs.id).await.like_count, 0);
    assert_eq!(
        fixture.stored_post(cys.id).await.like_count,
        1,
        "bob's like stays"
    );

    let now = Timestamp::now();
    for (relation, owner, other) in [
        (Relation::Block, bob.id, ada.id),
        (Relation::Mute, ada.id, cy.id),
        (Relation::Mute, cy.id, ada.id),
        (Relation::Block, bob.id, cy.id),
    ] {
        store
            .add_relation(relation, owner, other, fixture.ids.next_raw(), now)
            .await
            .unwrap();
    }
    let mut related = store.remove_relations_of(ada.id).await.unwrap();
    related.sort_unstable();
    related.dedup();
    let mut expected = vec![bob.id, cy.id];
    expected.sort_unstable();
    assert_eq!(related, expected);
    assert_eq!(store.hidden_from(ada.id).await.unwrap(), Hidden::default());
    assert_eq!(
        store.hidden_from(bob.id).await.unwrap().blocked,
        [cy.id],
        "others' blocks stay"
    );

    store.revoke_api_keys_of(ada.id, now).await.unwrap();
    store.release_handle(ada.id).await.unwrap();
    assert!(store.user_by_handle(None, "ada").await.unwrap().is_none());
    store.scrub_account(ada.id).await.unwrap();
    let scrubbed = store.account_record(ada.id).await.unwrap().unwrap();
    assert_eq!(scrubbed.user.display_name, "");
    assert!(
        scrubbed.email.ends_with("@deleted.invalid"),
        "{}",
        scrubbed.email
    );
    // The handle and the email are anyone's again.
    let again = fixture.user("ada").await;
    assert_ne!(again.id, ada.id);

    let files = Files::default();
    let mine = upload(&store, &fixture, bob.id, &"a".repeat(64), now).await;
    let theirs = upload(&store, &fixture, cy.id, &"b".repeat(64), now).await;
    assert_eq!(
        store
            .remove_media(
                MediaSelection::OwnedBy {
                    owner: bob.id,
                    limit: 10
                },
                &files
            )
            .await
            .unwrap(),
        1
    );
    let left: Vec<_> = store
        .media_by_ids(&[mine.id, theirs.id])
        .await
        .unwrap()
        .into_iter()
        .map(|media| media.id)
        .collect();
    assert_eq!(left, [theirs.id]);
}

pub async fn exports_are_asked_for_once_built_by_lease_and_expired(store: Arc<dyn Store>) {
    let fixture = Fixture::new(store.clone());
    let ada = fixture.user("ada").await;
    let now = Timestamp::now();
    assert!(store.latest_export(ada.id).await.unwrap().is_none());
    let id = fixture.ids.next_raw();
    let asked = store.request_export(id, ada.id, now).await.unwrap();
    assert_eq!((asked.id, asked.state), (id, ExportState::Pending));
    // While one is pending, asking again answers it.
    let again = store
        .request_export(fixture.ids.next_raw(), ada.id, now)
        .await
        .unwrap();
    assert_eq!(again.id, id);
    assert_eq!(store.due_exports(now, 10).await.unwrap().len(), 1);
    let lease = now.plus_seconds(60);
    assert!(store.claim_export(id, now, lease).await.unwrap());
    assert!(!store.claim_export(id, now, lease).await.unwrap());
    assert!(store.due_exports(now, 10).await.unwrap().is_empty());
    let retry_at = now.plus_seconds(5);
    store
        .export_failed(id, "storage away", retry_at)
        .await
        .unwrap();
    let failed = store.latest_export(ada.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.attempts, failed.last_error.as_deref()),
        (1, Some("storage away"))
    );
    assert!(store.due_exports(now, 10).await.unwrap().is_empty());
    assert_eq!(store.due_exports(retry_at, 10).await.unwrap().len(), 1);

    let expires = now.plus_seconds(60);
    store
        .export_ready(id, "exports/x.zip", 1234, expires, now)
        .await
        .unwrap();
    let ready = store.latest_export(ada.id).await.unwrap().unwrap();
    assert_eq!(ready.state, ExportState::Ready);
    assert_eq!(ready.archive_key.as_deref(), Some("exports/x.zip"));
    assert_eq!((ready.size, ready.expires_at), (Some(1234), Some(expires)));
    assert!(store.due_exports(retry_at, 10).await.unwrap().is_empty());
    assert!(store.expired_exports(now, 10).await.unwrap().is_empty());
    assert_eq!(
        store.expired_exports(expires, 10).await.unwrap(),
        [(id, "exports/x.zip".to_owned())]
    );
    store.export_expired(id).await.unwrap();
    assert_eq!(
        store.latest_export(ada.id).await.unwrap().unwrap().state,
        ExportState::Expired
    );
    assert!(store.expired_exports(expires, 10).await.unwrap().is_empty());
    // Once built, a new one is a new export.
    let next = store
        .request_export(fixture.ids.next_raw(), ada.id, now)
        .await
        .unwrap();
    assert_ne!(next.id, id);
}
