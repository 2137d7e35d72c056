//! `starling-bench seed`: a synthetic social graph written straight into the
//! SQLite store (a bulk path: registering 20,000 accounts through the API
//! would spend minutes hashing passwords), shaped like the reference's
//! estimate: a heavy-tailed follower distribution (Zipf popularity, a few
//! accounts followed by most people), ~200 follows per account on average
//! (log-normal), and days of post history from authors of Zipf activity.
//! Access tokens for a sample of accounts are minted with the server's own
//! signing key and written to a manifest for `starling-bench run`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use starling_app::auth::tokens::load_or_create_signing_key;
use starling_app::auth::{AccessTokens, PasswordHashing, PasswordParams};
use starling_app::ports::StoreHealth;
use starling_domain::id::compose_id;
use starling_domain::{Password, PostId, Timestamp, UserId};
use starling_sql::{BulkFollow, BulkPost, BulkUser, SqliteOptions, SqliteStore};

use crate::manifest::{Manifest, SeededUser};

/// The password of every seeded account.
pub const BENCH_PASSWORD: &str = "starling-bench-password";
/// Seeded ids carry this node number, which no server uses by default.
const SEED_NODE: u16 = 1023;
/// Nobody follows more accounts than this.
const MAX_FOLLOWS: usize = 5_000;
/// Seeded tokens stay valid this long.
const TOKEN_TTL_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// Data directory of the Starling to seed; it must hold no accounts yet.
    #[arg(long, default_value = "./bench-data")]
    pub data_dir: PathBuf,
    /// Accounts to create.
    #[arg(long, default_value_t = 20_000)]
    pub users: usize,
    /// Mean number of accounts each account follows.
    #[arg(long, default_value_t = 200.0)]
    pub follows_mean: f64,
    /// Posts of history to create.
    #[arg(long, default_value_t = 200_000)]
    pub posts: usize,
    /// Days the history spreads over, up to now.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Accounts to mint access tokens for: the ones `starling-bench run` acts as.
    #[arg(long, default_value_t = 2_000)]
    pub active: usize,
    /// Zipf exponent of popularity: higher gives a few accounts most followers.
    #[arg(long, default_value_t = 1.0)]
    pub popularity_skew: f64,
    /// Random seed: the same arguments build the same graph.
    #[arg(long, default_value_t = 42)]
    pub rng_seed: u64,
    /// Where to write the manifest [default: <data-dir>/bench-manifest.json].
    #[arg(long)]
    pub manifest: Option<PathBuf>,
}

impl SeedArgs {
    pub fn manifest_path(&self) -> PathBuf {
        self.manifest
            .clone()
            .unwrap_or_else(|| self.data_dir.join("bench-manifest.json"))
    }
}

#[derive(Debug)]
pub struct SeedSummary {
    pub users: usize,
    pub follows: u64,
    pub posts: usize,
    pub most_followed: Vec<(String, u64)>,
    pub elapsed: Duration,
    pub manifest: Manifest,
}

/// Samples ranks 0..n with probability proportional to 1 / (rank + 1)^skew.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, skew: f64) -> Self {
        let mut total = 0.0;
        let mut cumulative = Vec::with_capacity(n);
        for rank in 0..n {
            total += 1.0 / ((rank + 1) as f64).powf(skew);
            cumulative.push(total);
        }
        for value in &mut cumulative {
            *value /= total;
        }
        Self { cumulative }
    }

    fn sample(&self, rng: &mut StdRng) -> usize {
        let draw: f64 = rng.r#gen();
        self.cumulative
            .partition_point(|&value| value < draw)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

/// A log-normal count with the given mean (sigma 1: long-tailed).
fn follow_count(rng: &mut StdRng, mean: f64, max: usize) -> usize {
    let sigma = 1.0_f64;
    let mu = mean.max(1.0).ln() - sigma * sigma / 2.0;
    // Box-Muller.
    let u1: f64 = rng.r#gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.r#gen();
    let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    ((mu + sigma * normal).exp().round() as usize).clamp(1, max.max(1))
}

const SENTENCES: &[&str] = &[
    "Shipping a small change today, measured twice.",
    "The queue drained in order after the broker came back.",
    "Coffee first, then the capacity plan.",
    "A timeline is just a capped list of ids, newest first.",
    "Read your writes, or your users will write to support.",
    "Fan-out on write for most, merge on read for the famous.",
    "p99 is the user's experience; the mean is a rumour.",
    "Backpressure beats buffering until memory runs out.",
];

pub async fn seed(args: &SeedArgs) -> anyhow::Result<SeedSummary> {
    if args.users < 2 {
        bail!("--users must be at least 2");
    }
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(args.rng_seed);
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store = SqliteStore::open(
        &args.data_dir.join("starling.db"),
        &SqliteOptions::default(),
    )
    .await?;
    if store.highest_id().await? > 0 {
        bail!(
            "{} already holds data; seed a fresh data directory",
            args.data_dir.display()
        );
    }

    let now = Timestamp::now_ms();
    let history_start = now - i64::from(args.days.max(1)) * 86_400_000;
    let password_hash = PasswordHashing::new(PasswordParams::default())?
        .hash(Password::presented(BENCH_PASSWORD))
        .await?;
    let load = store.begin_bulk_load().await?;

    // Accounts, created one millisecond apart before the history starts.
    let users: Vec<BulkUser> = (0..args.users)
        .map(|index| {
            let created_at = history_start - 60_000 - (args.users - index) as i64;
            BulkUser {
                id: UserId(compose_id(created_at, SEED_NODE, 0)),
                handle: format!("user{index}"),
                email: format!("user{index}@bench.invalid"),
                display_name: format!("User {index}"),
                password_hash: password_hash.clone(),
                created_at: Timestamp(created_at),
            }
        })
        .collect();
    store.bulk_insert_users(&users).await?;
    tracing::info!(users = users.len(), "accounts written");

    // The follow graph: popularity by Zipf rank over a random permutation.
    let mut popularity: Vec<usize> = (0..args.users).collect();
    popularity.shuffle(&mut rng);
    let zipf = Zipf::new(args.users, args.popularity_skew);
    let mut followers_of = vec![0u64; args.users];
    let mut follows_written = 0u64;
    let mut batch: Vec<BulkFollow> = Vec::with_capacity(200_000);
    let follows_start = history_start - 30_000;
    for follower in 0..args.users {
        if args.users >= 100_000 && follower % (args.users / 10) == 0 && follower > 0 {
            tracing::info!(
                done = format!("{}%", follower * 100 / args.users),
                follows = follows_written,
                "writing the follow graph"
            );
        }
        let wanted = follow_count(&mut rng, args.follows_mean, MAX_FOLLOWS.min(args.users - 1));
        let mut followees = HashSet::with_capacity(wanted);
        let mut attempts = 0;
        while followees.len() < wanted && attempts < wanted * 20 {
            attempts += 1;
            let followee = popularity[zipf.sample(&mut rng)];
            if followee != follower {
                followees.insert(followee);
            }
        }
        for followee in followees {
            // Follow ids are keyset positions: unique, time-ordered.
            let position = follows_written;
            let id = compose_id(
                follows_start + (position / 4096) as i64,
                SEED_NODE,
                (position % 4096) as u16,
            );
            batch.push(BulkFollow {
                follower: users[follower].id,
                followee: users[followee].id,
                follow_id: id,
                created_at: Timestamp(follows_start),
            });
            followers_of[followee] += 1;
            follows_written += 1;
        }
        if batch.len() >= 150_000 {
            store.bulk_insert_follows(&batch).await?;
            batch.clear();
        }
    }
    store.bulk_insert_follows(&batch).await?;
    tracing::info!(follows = follows_written, "follow graph written");

    // History: authors by Zipf activity, times uniform over the window.
    let mut activity: Vec<usize> = (0..args.users).collect();
    activity.shuffle(&mut rng);
    let author_zipf = Zipf::new(args.users, 0.8);
    let span = (now - 1_000 - history_start).max(1);
    let mut moments: Vec<(i64, usize)> = (0..args.posts)
        .map(|_| {
            (
                history_start + rng.gen_range(0..span),
                activity[author_zipf.sample(&mut rng)],
            )
        })
        .collect();
    moments.sort_unstable();
    let mut posts = Vec::with_capacity(moments.len());
    let mut previous = (i64::MIN, 0u16);
    for (index, (moment, author)) in moments.into_iter().enumerate() {
        let sequence = if moment == previous.0 {
            previous.1 + 1
        } else {
            0
        };
        previous = (moment, sequence);
        posts.push(BulkPost {
            id: PostId(compose_id(moment, SEED_NODE, sequence)),
            author: users[author].id,
            text: format!("{} #{index}", SENTENCES[index % SENTENCES.len()]),
            created_at: Timestamp(moment),
        });
    }
    for chunk in posts.chunks(50_000) {
        store.bulk_insert_posts(chunk).await?;
    }
    tracing::info!(posts = posts.len(), "history written");
    store.finish_bulk_load(load).await?;
    tracing::info!("indexes built, counters recounted");

    // Tokens for the accounts `starling-bench run` acts as.
    let pem = load_or_create_signing_key(&args.data_dir.join("jwt-ed25519.pem"))?;
    let tokens = AccessTokens::from_pem(&pem, TOKEN_TTL_SECS)?;
    let active = args.active.min(args.users);
    let mut seeded = Vec::with_capacity(active);
    for index in rand::seq::index::sample(&mut rng, args.users, active) {
        let user = &users[index];
        seeded.push(SeededUser {
            id: user.id.to_string(),
            handle: user.handle.clone(),
            token: tokens.issue(user.id, None, Timestamp::now())?,
        });
    }
    let sample_posts = rand::seq::index::sample(&mut rng, posts.len(), posts.len().min(10_000))
        .into_iter()
        .map(|index| posts[index].id.to_string())
        .collect();
    let mut ranking: Vec<(usize, u64)> = followers_of.iter().copied().enumerate().collect();
    ranking.sort_unstable_by_key(|(_, count)| std::cmp::Reverse(*count));
    let most_followed: Vec<(String, u64)> = ranking
        .iter()
        .take(10)
        .map(|(index, count)| (users[*index].id.to_string(), *count))
        .collect();
    let manifest = Manifest {
        users: seeded,
        all_user_ids: users.iter().map(|user| user.id.to_string()).collect(),
        sample_posts,
        most_followed: most_followed.clone(),
        follows: follows_written,
        posts: posts.len() as u64,
    };
    manifest.save(&args.manifest_path())?;
    store.close().await;
    Ok(SeedSummary {
        users: users.len(),
        follows: follows_written,
        posts: posts.len(),
        most_followed,
        elapsed: started.elapsed(),
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks_and_covers_all() {
        let zipf = Zipf::new(1000, 1.0);
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        // Rank 0 has ~1/H(1000) ≈ 13% of the mass, rank 9 about a tenth of that.
        assert!((11_000..15_500).contains(&counts[0]), "{}", counts[0]);
        assert!(counts[0] > 5 * counts[9]);
        assert!(counts[999] > 0);
    }

    #[test]
    fn follow_counts_average_the_requested_mean() {
        let mut rng = StdRng::seed_from_u64(2);
        let samples: Vec<usize> = (0..50_000)
            .map(|_| follow_count(&mut rng, 200.0, 5_000))
            .collect();
        let mean = samples.iter().sum::<usize>() as f64 / samples.len() as f64;
        assert!((180.0..220.0).contains(&mean), "mean {mean}");
        assert!(
            samples.iter().any(|&count| count > 1_000),
            "the tail is long"
        );
    }

    #[tokio::test]
    async fn a_small_seed_builds_a_consistent_graph() {
        let dir = tempfile::tempdir().unwrap();
        let args = SeedArgs {
            data_dir: dir.path().to_owned(),
            users: 300,
            follows_mean: 20.0,
            posts: 2_000,
            days: 2,
            active: 50,
            popularity_skew: 1.0,
            rng_seed: 7,
            manifest: None,
        };
        let summary = seed(&args).await.unwrap();
        assert_eq!(summary.users, 300);
        assert_eq!(summary.posts, 2_000);
        assert!(
            (3_000..9_000).contains(&summary.follows),
            "{}",
            summary.follows
        );
        let manifest = Manifest::load(&args.manifest_path()).unwrap();
        assert_eq!(manifest.users.len(), 50);
        assert_eq!(manifest.all_user_ids.len(), 300);
        assert_eq!(manifest.sample_posts.len(), 2_000);
        // Heavy tail: the most followed account has many times the mean.
        assert!(
            summary.most_followed[0].1 > 5 * 20,
            "{:?}",
            summary.most_followed
        );
        assert!(seed(&args).await.is_err(), "a seeded directory is refused");

        let store = SqliteStore::open(&dir.path().join("starling.db"), &SqliteOptions::default())
            .await
            .unwrap();
        use starling_app::ports::{AccountStore, PostStore};
        let star: UserId = UserId(summary.most_followed[0].0.parse().unwrap());
        let profile = store.user_by_id(star).await.unwrap().unwrap();
        assert_eq!(profile.followers_count, summary.most_followed[0].1 as i64);
        let total_posts: i64 = {
            let mut total = 0;
            for id in &manifest.all_user_ids {
                total += store
                    .user_by_id(UserId(id.parse().unwrap()))
                    .await
                    .unwrap()
                    .unwrap()
                    .posts_count;
            }
            total
        };
        assert_eq!(total_posts, 2_000);
        let newest = store.posts_by_author(None, star, None, 1).await.unwrap();
        assert!(newest.iter().all(|post| post.author_id == star));
    }
}
