//! The timeline-store contract. Stores are made with a cap of `CAP`.

use std::sync::Arc;

use starling_domain::{PostId, UserId};

use crate::ports::{TimelineEntry, TimelineRead, TimelineSlice, TimelineStore};

pub const CAP: usize = 5;

const READER: UserId = UserId(1);
const OTHER_READER: UserId = UserId(2);

fn entry(post: i64, author: i64) -> TimelineEntry {
    TimelineEntry {
        post_id: PostId(post),
        author_id: UserId(author),
    }
}

fn ids(slice: &TimelineSlice) -> Vec<i64> {
    slice
        .entries
        .iter()
        .map(|entry| entry.post_id.get())
        .collect()
}

async fn ready(
    store: &dyn TimelineStore,
    user: UserId,
    before: Option<i64>,
    limit: usize,
) -> TimelineSlice {
    match store.read(user, before.map(PostId), limit).await.unwrap() {
        TimelineRead::Ready(slice) => slice,
        TimelineRead::NotMaterialised => panic!("timeline of {user} should be materialised"),
    }
}

async fn materialise_empty(store: &dyn TimelineStore, user: UserId) {
    store.begin_rebuild(user).await.unwrap();
    store.finish_rebuild(user, &[], None).await.unwrap();
}

#[macro_export]
macro_rules! timeline_store_contract {
    ($make:expr) => {
        $crate::timeline_store_contract!(@cases $make;
            absent_timelines_are_not_materialised,
            rebuilt_timelines_read_newest_first_below_the_bound,
            inserts_keep_order_and_ignore_duplicates,
            inserts_reach_only_materialised_timelines,
            entries_inserted_each_reach_their_own_timelines,
            the_cap_drops_the_oldest_and_raises_the_floor,
            entries_below_the_floor_are_not_kept,
            inserts_racing_a_rebuild_survive_it,
            a_timeline_being_rebuilt_reads_as_not_materialised,
            a_full_rebuild_sets_the_floor_to_its_oldest_entry,
            a_floor_raised_while_rebuilding_survives_the_rebuild,
            removals_while_rebuilding_are_not_undone_by_it,
            a_rebuild_of_an_evicted_timeline_leaves_it_absent,
            a_late_second_rebuild_changes_nothing,
            backfills_raise_the_floor_to_their_source_floor,
            posts_and_authors_can_be_removed,
            evicted_timelines_are_forgotten,
            materialised_timelines_are_counted,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some((store, _guard)) = ($make)($crate::ports::contract::timeline::CAP).await else {
                    return;
                };
                $crate::ports::contract::timeline::$case(store).await;
            }
        )+
    };
}

pub async fn absent_timelines_are_not_materialised(store: Arc<dyn TimelineStore>) {
    assert_eq!(
        store.read(READER, None, 10).await.unwrap(),
        TimelineRead::NotMaterialised
    );
    // Inserting into an absent timeline creates nothing.
    store.insert(&[READER], entry(10, 5)).await.unwrap();
    store
        .insert_many(READER, &[entry(11, 5)], None)
        .await
        .unwrap();
    assert_eq!(
        store.read(READER, None, 10).await.unwrap(),
        TimelineRead::NotMaterialised
    );
}

pub async fn rebuilt_timelines_read_newest_first_below_the_bound(store: Arc<dyn TimelineStore>) {
    store.begin_rebuild(READER).await.unwrap();
    store
        .finish_rebuild(READER, &[entry(40, 7), entry(30, 8), entry(20, 7)], None)
        .await
        .unwrap();
    let all = ready(&*store, READER, None, 10).await;
    assert_eq!(ids(&all), vec![40, 30, 20]);
    assert_eq!(all.entries[1].author_id, UserId(8));
    assert_eq!(all.floor, None);
    assert_eq!(
        ids(&ready(&*store, READER, Some(40), 10).await),
        vec![30, 20]
    );
    assert_eq!(ids(&ready(&*store, READER, Some(35), 1).await), vec![30]);
    assert_eq!(
        ids(&ready(&*store, READER, Some(20), 10).await),
        Vec::<i64>::new()
    );
}

pub async fn inserts_keep_order_and_ignore_duplicates(store: Arc<dyn TimelineStore>) {
    materialise_empty(&*store, READER).await;
    for post in [20, 40, 30, 40, 20] {
        store.insert(&[READER], entry(post, 3)).await.unwrap();
    }
    store
        .insert_many(READER, &[entry(35, 4), entry(30, 3)], None)
        .await
        .unwrap();
    assert_eq!(
        ids(&ready(&*store, READER, None, 10).await),
        vec![40, 35, 30, 20]
    );
}

pub async fn inserts_reach_only_materialised_timelines(store: Arc<dyn TimelineStore>) {
    materialise_empty(&*store, READER).await;
    store
        .insert(&[READER, OTHER_READER], entry(10, 3))
        .await
        .unwrap();
    assert_eq!(ids(&ready(&*store, READER, None, 10).await), vec![10]);
    assert_eq!(
        store.read(OTHER_READER, None, 10).await.unwrap(),
        TimelineRead::NotMaterialised
    );
}

/// Several posts' fan-out at once: each entry reaches its own user's
/// timeline only, materialised ones only, with the cap and floor of each.
pub async fn entries_inserted_each_reach_their_own_timelines(store: Arc<dyn TimelineStore>) {
    const THIRD_READER: UserId = UserId(3);
    materialise_empty(&*store, READER).await;
    materialise_empty(&*store, THIRD_READER).await;
    // The third reader's timeline is full (floor 10).
    for post in 1..=(CAP as i64 + 1) {
        store
            .insert(&[THIRD_READER], entry(post * 10, 3))
            .await
            .unwrap();
    }
    let mut pairs = vec![
        (READER, entry(100, 7)),
        (OTHER_READER, entry(100, 7)),
        (THIRD_READER, entry(100, 7)),
        (READER, entry(110, 8)),
        (THIRD_READER, entry(5, 9)),
    ];
    store.insert_each(&pairs).await.unwrap();
    assert_eq!(ids(&ready(&*store, READER, None, 10).await), vec![110, 100]);
    assert_eq!(
        store.read(OTHER_READER, None, 10).await.unwrap(),
        TimelineRead::NotMaterialised
    );
    let third = ready(&*store, THIRD_READER, None, 10).await;
    let expected: Vec<i64> = vec![100, 60, 50, 40, 30];
    assert_eq!(ids(&third), expected, "capped, and 5 is below the floor");
    assert_eq!(third.floor, Some(PostId(30)));
    // Idempotent, as every insert.
    pairs.reverse();
    store.insert_each(&pairs).await.unwrap();
    assert_eq!(ids(&ready(&*store, READER, None, 10).await), vec![110, 100]);
}

pub async fn the_cap_drops_the_oldest_and_raises_the_floor(store: Arc<dyn TimelineStore>) {
    materialise_empty(&*store, READER).await;
    for post in 1..=(CAP as i64 + 2) {
        store.insert(&[READER], entry(post * 10, 3)).await.unwrap();
    }
    let slice = ready(&*store, READER, None, 100).await;
    let expected: Vec<i64> = (3..=(CAP as i64 + 2)).rev().map(|post| post * 10).collect();
    assert_eq!(ids(&slice), expected);
    assert_eq!(slice.floor, Some(PostId(30)));
}

pub async fn entries_below_the_floor_are_not_kept(store: Arc<dyn TimelineStore>) {
    materialise_empty(&*store, READER).await;
    for post in 1..=(CAP as i64 + 1) {
        store.insert(&[READER], entry(post * 10, 3)).await.unwrap();
    }
    // The floor is now 20: 10 was dropped, and 15 would sit below the floor.
    store.insert(&[READER], entry(15, 3)).await.unwrap();
    store
        .insert_many(READER, &[entry(5, 4)], None)
        .await
        .unwrap();
    let slice = ready(&*store, READER, None, 100).await;
    assert_eq!(slice.floor, Some(PostId(20)));
    assert!(!ids(&slice).contains(&15));
    assert!(!ids(&slice).contains(&5));
    assert_eq!(ids(&slice).len(), CAP);
}

pub async fn inserts_racing_a_rebuild_survive_it(store: Arc<dyn TimelineStore>) {
    store.begin_rebuild(READER).await.unwrap();
    // The worker inserts a post committed after the rebuild read SQL.
    store.insert(&[READER], entry(50, 9)).await.unwrap();
    store
        .finish_rebuild(READER, &[entry(40, 7), entry(30, 7)], None)
        .await
        .unwrap();
    assert_eq!(
        ids(&ready(&*store, READER, None, 10).await),
        vec![50, 40, 30]
    );
}

pub async fn a_timeline_being_rebuilt_reads_as_not_materialised(store: Arc<dyn TimelineStore>) {
    store.begin_rebuild(READER).await.unwrap();
    assert_eq!(
        store.read(READER, None, 10).await.unwrap(),
        TimelineRead::NotMaterialised
    );
    // Beginning again (a second reader) is harmless.
    store.begin_rebuild(READER).await.unwrap();
    store
        .finish_rebuild(READER, &[entry(10, 2)], None)
        .await
        .unwrap();
    assert_eq!(ids(&ready(&*store, READER, None, 10).await), vec![10]);
}

pub async fn a_full_rebuild_sets_the_floor_to_its_oldest_entry(store: Arc<dyn TimelineStore>) {
    let entries: Vec<TimelineEntry> = (1..=CAP as i64)
        .rev()
        .map(|post| entry(post * 10, 2))
        .collect();
    store.begin_rebuild(READER).await.unwrap();
    store
        .finish_rebuild(READER, &entries, Some(PostId(10)))
        .await
        .unwrap();
    let slice = ready(&*store, READER, None, 100).await;
    assert_eq!(slice.floor, Some(PostId(10)));
    assert_eq!(slice.entries.len(), CAP);
}

pub async fn backfills_raise_the_floor_to_their_source_floor(store: Arc<dyn TimelineStore>) {
    store.begin_rebuild(READER).await.unwrap();
    store
        .finish_rebuild(READER, &[entry(50, 2), entry(10, 2)], None)
        .await
        .unwrap();
    // A followee's newest posts, cut short at 30: older ones exist in SQL.
    store
        .insert_many(READER, &[entry(60, 3), entry(30, 3)], Some(PostId(30)))
        .await
        .unwrap();
    let slice = ready(&*store, READER, None, 100).await;
    assert_eq!(slice.floor, Some(PostId(30)));
    assert_eq!(ids(&slice), vec![60, 50, 30]);
}

pub async fn posts_and_authors_can_be_removed(store: Arc<dyn TimelineStore>) {
    for user in [READER, OTHER_READER] {
        store.begin_rebuild(user).await.unwrap();
        store
            .finish_rebuild(user, &[entry(40, 7), entry(30, 8), entry(20, 7)], None)
            .await
            .unwrap();
    }
    store
        .remove_post(&[READER, OTHER_READER], PostId(30))
        .await
        .unwrap();
    store.remove_post(&[READER], PostId(999)).await.unwrap();
    assert_eq!(ids(&ready(&*store, READER, None, 10).await), vec![40, 20]);
    assert_eq!(
        ids(&ready(&*store, OTHER_READER, None, 10).await),
        vec![40, 20]
    );
    store.remove_author(READER, UserId(7)).await.unwrap();
    store.remove_author(READER, UserId(7)).await.unwrap();
    assert_eq!(
        ids(&ready(&*store, READER, None, 10).await),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&ready(&*store, OTHER_READER, None, 10).await),
        vec![40, 20]
    );
}

pub async fn evicted_timelines_are_forgotten(store: Arc<dyn TimelineStore>) {
    materialise_empty(&*store, READER).await;
    store.insert(&[READER], entry(10, 3)).await.unwrap();
    store.evict(READER).await.unwrap();
    assert_eq!(
        store.read(READER, None, 10).await.unwrap(),
        TimelineRead::NotMaterialised
    );
}

pub async fn materialised_timelines_are_counted(store: Arc<dyn TimelineStore>) {
    assert_eq!(store.materialised_count().await.unwrap(), 0);
    materialise_empty(&*store, READER).await;
    materialise_empty(&*store, OTHER_READER).await;
    assert_eq!(store.materialised_count().await.unwrap(), 2);
}

pub async fn a_floor_raised_while_rebuilding_survives_the_rebuild(store: Arc<dyn TimelineStore>) {
    store.begin_rebuild(READER).await.unwrap();
    // A follow's backfill, cut short at 50, lands while SQL is being read.
    store
        .insert_many(READER, &[entry(60, 3), entry(50, 3)], Some(PostId(50)))
        .await
        .unwrap();
    store
        .finish_rebuild(READER, &[entry(40, 2), entry(30, 2)], None)
        .await
        .unwrap();
    let slice = ready(&*store, READER, None, 100).await;
    assert_eq!(slice.floor, Some(PostId(50)));
    assert_eq!(ids(&slice), vec![60, 50]);
}

pub async fn removals_while_rebuilding_are_not_undone_by_it(store: Arc<dyn TimelineStore>) {
    store.begin_rebuild(READER).await.unwrap();
    // An unfollow and a delete commit after the rebuild read SQL.
    store.remove_author(READER, UserId(7)).await.unwrap();
    store.remove_post(&[READER], PostId(30)).await.unwrap();
    store
        .finish_rebuild(READER, &[entry(40, 7), entry(30, 8), entry(20, 9)], None)
        .await
        .unwrap();
    assert_eq!(ids(&ready(&*store, READER, None, 10).await), vec![20]);
    // Once ready, the same post may come back through a new insert (a re-follow).
    store.insert(&[READER], entry(40, 7)).await.unwrap();
    assert_eq!(ids(&ready(&*store, READER, None, 10).await), vec![40, 20]);
}

pub async fn a_rebuild_of_an_evicted_timeline_leaves_it_absent(store: Arc<dyn TimelineStore>) {
    store.begin_rebuild(READER).await.unwrap();
    store.insert(&[READER], entry(50, 9)).await.unwrap();
    store.evict(READER).await.unwrap();
    store
        .finish_rebuild(READER, &[entry(40, 7)], None)
        .await
        .unwrap();
    assert_eq!(
        store.read(READER, None, 10).await.unwrap(),
        TimelineRead::NotMaterialised
    );
}

pub async fn a_late_second_rebuild_changes_nothing(store: Arc<dyn TimelineStore>) {
    // Two readers begin rebuilding; the first finishes, then a post is deleted.
    store.begin_rebuild(READER).await.unwrap();
    store.begin_rebuild(READER).await.unwrap();
    store
        .finish_rebuild(READER, &[entry(40, 7), entry(30, 7)], None)
        .await
        .unwrap();
    store.remove_post(&[READER], PostId(40)).await.unwrap();
    // The second finishes with rows read before the delete.
    store
        .finish_rebuild(READER, &[entry(40, 7), entry(30, 7)], None)
        .await
        .unwrap();
    assert_eq!(ids(&ready(&*store, READER, None, 10).await), vec![30]);
}
