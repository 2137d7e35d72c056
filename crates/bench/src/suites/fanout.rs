//! Benchmark 3: timeline inserts per second in the in-process store, with
//! the reference's 200 followers per post on average. Ceiling: appending the
//! same ids to plain vectors in a hash map, with no locks, no order and no
//! cap: the memory traffic the work needs at the least.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use starling_app::ports::{TimelineEntry, TimelineStore};
use starling_domain::{PostId, UserId};
use starling_local::LocalTimelines;

use super::{Capacity, SuiteArgs, ratio};
use crate::machine::Machine;
use crate::report::write_json;

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// Timelines held (all materialised).
    #[arg(long, default_value_t = 100_000)]
    pub readers: usize,
    /// Followers per post.
    #[arg(long, default_value_t = 200)]
    pub followers: usize,
    /// Posts fanned out.
    #[arg(long, default_value_t = 100_000)]
    pub posts: usize,
}

#[derive(Debug, Serialize)]
pub struct FanoutResult {
    pub machine: Machine,
    pub timelines: usize,
    pub followers_per_post: usize,
    pub inserts: u64,
    pub store_inserts_per_s: f64,
    pub ceiling_inserts_per_s: f64,
    pub ratio: f64,
}

pub async fn run(args: &FanoutArgs) -> anyhow::Result<FanoutResult> {
    let mut rng = StdRng::seed_from_u64(3);
    let readers = args.readers.max(args.followers);
    let audiences: Vec<Vec<UserId>> = (0..1_000)
        .map(|_| {
            sample(&mut rng, readers, args.followers)
                .into_iter()
                .map(|index| UserId(index as i64 + 1))
                .collect()
        })
        .collect();
    let posts: Vec<(TimelineEntry, usize)> = (0..args.posts)
        .map(|index| {
            let audience = rng.gen_range(0..audiences.len());
            (
                TimelineEntry {
                    post_id: PostId(1_000_000 + index as i64),
                    author_id: UserId(audience as i64 + 1),
                },
                audience,
            )
        })
        .collect();
    let inserts = (args.posts * args.followers) as u64;

    let store = Arc::new(LocalTimelines::new(800, readers as u64 + 1));
    for reader in 1..=readers as i64 {
        store.begin_rebuild(UserId(reader)).await?;
        store.finish_rebuild(UserId(reader), &[], None).await?;
    }
    let started = Instant::now();
    for (entry, audience) in &posts {
        store.insert(&audiences[*audience], *entry).await?;
    }
    let store_rate = inserts as f64 / started.elapsed().as_secs_f64();

    let mut plain: HashMap<UserId, Vec<PostId>> = (1..=readers as i64)
        .map(|reader| (UserId(reader), Vec::new()))
        .collect();
    let started = Instant::now();
    for (entry, audience) in &posts {
        for follower in &audiences[*audience] {
            if let Some(list) = plain.get_mut(follower) {
                list.push(entry.post_id);
            }
        }
    }
    let ceiling_rate = inserts as f64 / started.elapsed().as_secs_f64();
    std::hint::black_box(&plain);

    let result = FanoutResult {
        machine: Machine::this(),
        timelines: readers,
        followers_per_post: args.followers,
        inserts,
        store_inserts_per_s: store_rate,
        ceiling_inserts_per_s: ceiling_rate,
        ratio: ratio(store_rate, ceiling_rate),
    };
    println!(
        "\nFan-out: timeline inserts per second, in-process store ({})",
        result.machine.describe()
    );
    println!(
        "  {} timelines, {} followers per post, {} inserts",
        readers, args.followers, inserts
    );
    println!(
        "  LocalTimelines (capped, ordered, locked): {:>12.0} inserts/s",
        store_rate
    );
    println!(
        "  ceiling (HashMap<_, Vec> push):           {:>12.0} inserts/s",
        ceiling_rate
    );
    println!("  ratio: {:.2}", result.ratio);
    write_json(&args.suite.results.join("fanout.json"), &result)?;
    Capacity::record(&args.suite.results.join("capacity.json"), |capacity| {
        capacity.fanout_inserts_per_s = Some(store_rate);
    })?;
    Ok(result)
}
