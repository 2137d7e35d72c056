//! Cache protections seen from outside: a stampede on one uncached post, and
//! a flood of reads of posts that do not exist.

use futures::StreamExt;

use starling_test_macros::both_modes;

use crate::helpers::Mode;
use crate::helpers::{restart, spawn_app};

#[both_modes]
async fn a_stampede_on_one_uncached_post_loads_it_once(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let post = app.create_post(&ada, "about to go viral").await;
    // A restart empties the in-process cache (scaled out, the Redis tier
    // may still hold the post: then nothing reaches SQL at all).
    let app = restart(app.stop().await, |_| {}).await;
    let before = app.core.hydration().post_loads();
    let path = format!("/api/v1/posts/{post}");
    let statuses: Vec<u16> = futures::stream::iter(0..500)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url(&path));
            async move { client.get(url).send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(500)
        .collect()
        .await;
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let loads = app.core.hydration().post_loads() - before;
    println!("stampede: 500 concurrent reads of one uncached post, {loads} SQL load(s)");
    if app.scaled_out() {
        assert!(loads <= 1, "{loads} loads");
    } else {
        assert_eq!(loads, 1, "500 concurrent misses, one SQL load");
    }
}

#[both_modes]
async fn reads_of_missing_posts_stay_off_sql(mode: Mode) {
    let Some(app) = spawn_app(mode).await else {
        return;
    };
    let ada = app.register("ada").await;
    let real = app.create_post(&ada, "the only post").await;
    let real: i64 = real.parse().unwrap();
    // Ten ids that could exist but do not, and ids from the far future.
    let missing: Vec<i64> = (1..=10).map(|offset| real - offset).collect();
    let future: Vec<i64> = (1..=10).map(|offset| real + (offset << 40)).collect();
    let before = app.core.hydration().post_loads();
    let statuses: Vec<u16> = futures::stream::iter(0..10_000)
        .map(|index: usize| {
            let id = if index.is_multiple_of(2) {
                missing[index % 10]
            } else {
                future[index % 10]
            };
            let (client, url) = (app.client.clone(), app.url(&format!("/api/v1/posts/{id}")));
            async move { client.get(url).send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut by_status = std::collections::BTreeMap::new();
    for status in &statuses {
        *by_status.entry(*status).or_insert(0) += 1;
    }
    assert_eq!(
        by_status.keys().copied().collect::<Vec<_>>(),
        vec![404],
        "{by_status:?}"
    );
    let loads = app.core.hydration().post_loads() - before;
    println!("penetration: 10,000 reads of 20 missing ids (10 past, 10 future), {loads} SQL loads");
    assert!(
        loads <= 10,
        "10,000 reads of missing posts made {loads} SQL loads"
    );
    // The real post is still there.
    assert_eq!(
        app.get(&format!("/api/v1/posts/{real}"), None).await.status,
        200
    );
}
