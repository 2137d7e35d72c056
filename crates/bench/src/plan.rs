//! `starling plan`: the reference's back-of-envelope method as a tool.
//! From a workload it derives request rates, fan-out, storage, timeline
//! memory, bandwidth and allowed downtime; given the per-node capacities
//! the benchmark suites measured, it sizes the deployment.

use std::path::PathBuf;

use serde::Serialize;

use crate::suites::Capacity;

const SECONDS_PER_DAY: f64 = 86_400.0;

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Daily active users.
    #[arg(long, default_value_t = 200_000_000.0)]
    pub dau: f64,
    /// Posts per active user per day.
    #[arg(long, default_value_t = 2.0)]
    pub posts_per_user: f64,
    /// Home-timeline reads per active user per day.
    #[arg(long, default_value_t = 10.0)]
    pub reads_per_user: f64,
    /// Accounts followed per user, on average (= followers per post).
    #[arg(long, default_value_t = 200.0)]
    pub follows_mean: f64,
    /// Stored bytes per post, text and metadata.
    #[arg(long, default_value_t = 500.0)]
    pub post_bytes: f64,
    /// Bytes of one home-timeline page on the wire.
    #[arg(long, default_value_t = 50_000.0)]
    pub feed_page_bytes: f64,
    /// Peak over average traffic.
    #[arg(long, default_value_t = 3.0)]
    pub peak_factor: f64,
    /// Days posts are kept.
    #[arg(long, default_value_t = 365.0)]
    pub retention_days: f64,
    /// Copies of every stored byte.
    #[arg(long, default_value_t = 3.0)]
    pub replicas: f64,
    /// Availability objective, in percent.
    #[arg(long, default_value_t = 99.99)]
    pub availability: f64,
    /// Post ids kept per home timeline.
    #[arg(long, default_value_t = 800.0)]
    pub timeline_cap: f64,
    /// Memory per timeline entry (16 in process; about 80 in a Redis sorted set).
    #[arg(long, default_value_t = 80.0)]
    pub timeline_entry_bytes: f64,
    /// Memory of one Redis node, in GiB.
    #[arg(long, default_value_t = 64.0)]
    pub redis_node_gib: f64,
    /// Per-node capacities measured by `starling bench` (its capacity.json).
    #[arg(long)]
    pub capacity: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    pub write_qps_avg: f64,
    pub write_qps_peak: f64,
    pub read_qps_avg: f64,
    pub read_qps_peak: f64,
    pub fanout_inserts_per_s_avg: f64,
    pub fanout_inserts_per_s_peak: f64,
    pub storage_bytes_per_day: f64,
    pub storage_bytes_retained: f64,
    pub storage_bytes_retained_replicated: f64,
    pub timeline_memory_bytes: f64,
    pub bandwidth_in_bytes_per_s_peak: f64,
    pub bandwidth_out_bytes_per_s_peak: f64,
    pub downtime_per_year_s: f64,
    pub downtime_per_month_s: f64,
    pub downtime_per_week_s: f64,
    pub nodes: Option<Nodes>,
}

/// Machines needed at peak, from measured per-node capacities.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Nodes {
    pub measured_on: String,
    pub api: Option<u64>,
    pub fanout_workers: Option<u64>,
    pub database_write_shards: Option<u64>,
    pub redis: u64,
    /// From `starling-bench scaled`'s figures, when it was run.
    pub scaled_out: Option<ScaledNodes>,
}

/// Processes in their roles at peak, scaled out.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScaledNodes {
    /// API instances for the peak's reads and writes together (each
    /// request taking its share of an instance's measured rate).
    pub api: u64,
    pub fanout_workers: u64,
    /// PostgreSQL primaries (shards) for the peak's writes.
    pub postgres_primaries: u64,
}

pub fn plan(args: &PlanArgs, capacity: Option<&Capacity>) -> Plan {
    let write_qps_avg = args.dau * args.posts_per_user / SECONDS_PER_DAY;
    let read_qps_avg = args.dau * args.reads_per_user / SECONDS_PER_DAY;
    let write_qps_peak = write_qps_avg * args.peak_factor;
    let read_qps_peak = read_qps_avg * args.peak_factor;
    let storage_bytes_per_day = args.dau * args.posts_per_user * args.post_bytes;
    let storage_bytes_retained = storage_bytes_per_day * args.retention_days;
    // A timeline fills up with what the accounts followed post in a week, up to the cap.
    let entries_per_timeline =
        (args.follows_mean * args.posts_per_user * 7.0).min(args.timeline_cap);
    let timeline_memory_bytes = args.dau * entries_per_timeline * args.timeline_entry_bytes;
    let unavailable = (1.0 - args.availability / 100.0).max(0.0);
    let fanout_peak = write_qps_peak * args.follows_mean;
    let nodes = capacity.map(|capacity| {
        let needed = |load: f64, per_node: Option<f64>| {
            per_node
                .filter(|rate| *rate > 0.0)
                .map(|rate| (load / rate).ceil().max(1.0) as u64)
        };
        // The mixed figure already blends reads and writes at the SLO; fall
        // back to the read ceiling when the ramp was not run.
        let api = needed(
            read_qps_peak + write_qps_peak,
            capacity.mixed_requests_per_s,
        )
        .or_else(|| needed(read_qps_peak, capacity.feed_reads_per_s));
        Nodes {
            measured_on: capacity
                .machine
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), |machine| machine.describe()),
            api,
            fanout_workers: needed(fanout_peak, capacity.fanout_inserts_per_s),
            database_write_shards: needed(write_qps_peak, capacity.posts_per_s),
            redis: (timeline_memory_bytes * 1.25 / (args.redis_node_gib * f64::from(1u32 << 30)))
                .ceil()
                .max(1.0) as u64,
            scaled_out: capacity.scaled.as_ref().and_then(|scaled| {
                let postgres_primaries = needed(write_qps_peak, Some(scaled.posts_per_s))?;
                let fanout_workers = needed(fanout_peak, Some(scaled.fanout_inserts_per_s))?;
                needed(read_qps_peak, Some(scaled.feed_reads_per_s))?;
                // Each request takes its share of an instance's rate.
                let shares =
                    read_qps_peak / scaled.feed_reads_per_s + write_qps_peak / scaled.posts_per_s;
                Some(ScaledNodes {
                    api: shares.ceil().max(1.0) as u64,
                    fanout_workers,
                    postgres_primaries,
                })
            }),
        }
    });
    Plan {
        write_qps_avg,
        write_qps_peak,
        read_qps_avg,
        read_qps_peak,
        fanout_inserts_per_s_avg: write_qps_avg * args.follows_mean,
        fanout_inserts_per_s_peak: fanout_peak,
        storage_bytes_per_day,
        storage_bytes_retained,
        storage_bytes_retained_replicated: storage_bytes_retained * args.replicas,
        timeline_memory_bytes,
        bandwidth_in_bytes_per_s_peak: write_qps_peak * args.post_bytes,
        bandwidth_out_bytes_per_s_peak: read_qps_peak * args.feed_page_bytes,
        downtime_per_year_s: unavailable * 365.25 * SECONDS_PER_DAY,
        downtime_per_month_s: unavailable * 365.25 * SECONDS_PER_DAY / 12.0,
        downtime_per_week_s: unavailable * 7.0 * SECONDS_PER_DAY,
        nodes,
    }
}

fn bytes(value: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut value = value;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn duration(seconds: f64) -> String {
    if seconds >= 3600.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else if seconds >= 60.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{seconds:.1} s")
    }
}

pub fn print(args: &PlanArgs, plan: &Plan) {
    println!(
        "Workload: {:.0} daily users, {} posts and {} reads each a day, {} follows, peak x{}",
        args.dau, args.posts_per_user, args.reads_per_user, args.follows_mean, args.peak_factor
    );
    println!(
        "  writes (posts)         {:>12.0}/s average {:>12.0}/s peak",
        plan.write_qps_avg, plan.write_qps_peak
    );
    println!(
        "  reads (home timeline)  {:>12.0}/s average {:>12.0}/s peak",
        plan.read_qps_avg, plan.read_qps_peak
    );
    println!(
        "  fan-out inserts        {:>12.0}/s average {:>12.0}/s peak",
        plan.fanout_inserts_per_s_avg, plan.fanout_inserts_per_s_peak
    );
    println!(
        "  storage                {:>12} a day, {} over {} days, {} with {} copies",
        bytes(plan.storage_bytes_per_day),
        bytes(plan.storage_bytes_retained),
        args.retention_days,
        bytes(plan.storage_bytes_retained_replicated),
        args.replicas
    );
    println!(
        "  timeline memory        {:>12} ({} entries max, {} B each)",
        bytes(plan.timeline_memory_bytes),
        args.timeline_cap,
        args.timeline_entry_bytes
    );
    println!(
        "  bandwidth at peak      {:>12}/s in, {}/s out",
        bytes(plan.bandwidth_in_bytes_per_s_peak),
        bytes(plan.bandwidth_out_bytes_per_s_peak)
    );
    println!(
        "  allowed downtime at {}%: {} a year, {} a month, {} a week",
        args.availability,
        duration(plan.downtime_per_year_s),
        duration(plan.downtime_per_month_s),
        duration(plan.downtime_per_week_s)
    );
    if let Some(nodes) = &plan.nodes {
        let count = |value: Option<u64>| {
            value.map_or_else(|| "not measured".to_owned(), |count| count.to_string())
        };
        println!(
            "Nodes at peak, from capacities measured on {}:",
            nodes.measured_on
        );
        println!("  API nodes              {}", count(nodes.api));
        println!("  fan-out workers        {}", count(nodes.fanout_workers));
        println!(
            "  database write shards  {}",
            count(nodes.database_write_shards)
        );
        println!(
            "  Redis nodes            {} ({} GiB each, 25% headroom)",
            nodes.redis, args.redis_node_gib
        );
        if let Some(scaled) = &nodes.scaled_out {
            println!(
                "Scaled out (PostgreSQL, Redis, NATS), from `starling-bench scaled`'s per-process figures:"
            );
            println!("  API instances          {}", scaled.api);
            println!("  fan-out workers        {}", scaled.fanout_workers);
            println!("  PostgreSQL primaries   {}", scaled.postgres_primaries);
        }
    }
}

pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let capacity = match &args.capacity {
        Some(path) => Some(Capacity::load(path)?),
        None => None,
    };
    let result = plan(args, capacity.as_ref());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print(args, &result);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        plan: PlanArgs,
    }

    fn defaults() -> PlanArgs {
        Cli::parse_from(["plan"]).plan
    }

    #[test]
    fn the_defaults_reproduce_the_reference_estimate() {
        let plan = plan(&defaults(), None);
        // "Write: 200M users * 2 tweets / 86400 = ~4,600 QPS"
        assert!(
            (plan.write_qps_avg - 4_629.6).abs() < 0.1,
            "{}",
            plan.write_qps_avg
        );
        // "Read: 200M users * 10 feed views / 86400 = ~23,000 QPS"
        assert!(
            (plan.read_qps_avg - 23_148.1).abs() < 0.1,
            "{}",
            plan.read_qps_avg
        );
        // "Peak: 2-3x average = ~70,000 read QPS"
        assert!((plan.read_qps_peak - 69_444.4).abs() < 0.1);
        // "200M * 2 tweets * 500 bytes = 200 GB/day", "~73 TB/year"
        assert_eq!(plan.storage_bytes_per_day, 200e9);
        assert_eq!(plan.storage_bytes_retained, 73e12);
        // "70,000 QPS * 50 KB = 3.5 GB/s outbound"; "4,600 QPS * 500 bytes = 2.3 MB/s inbound" (average)
        assert!((plan.bandwidth_out_bytes_per_s_peak - 3.47e9).abs() < 0.01e9);
        assert!((plan.write_qps_avg * 500.0 - 2.31e6).abs() < 0.01e6);
        // 200 followers per post.
        assert!((plan.fanout_inserts_per_s_avg - 925_925.9).abs() < 0.1);
        // 99.99%: 52.6 minutes a year.
        assert!((plan.downtime_per_year_s / 60.0 - 52.6).abs() < 0.1);
        assert!(plan.nodes.is_none());
    }

    #[test]
    fn measured_capacities_size_the_deployment() {
        let capacity = Capacity {
            machine: None,
            feed_reads_per_s: Some(20_000.0),
            posts_per_s: Some(5_000.0),
            fanout_inserts_per_s: Some(1_000_000.0),
            mixed_requests_per_s: Some(10_000.0),
            scaled: Some(crate::suites::ScaledCapacity {
                feed_reads_per_s: 10_000.0,
                posts_per_s: 3_000.0,
                fanout_inserts_per_s: 50_000.0,
                mixed_requests_per_s: None,
            }),
        };
        let plan = plan(&defaults(), Some(&capacity));
        let nodes = plan.nodes.unwrap();
        // (69,444 + 13,889) / 10,000 -> 9 API nodes.
        assert_eq!(nodes.api, Some(9));
        // 2,777,778 inserts/s peak / 1M -> 3 workers.
        assert_eq!(nodes.fanout_workers, Some(3));
        // 13,889 writes/s peak / 5,000 -> 3 shards.
        assert_eq!(nodes.database_write_shards, Some(3));
        // 200M x 800 x 80 B = 12.8 TB; x1.25 / 64 GiB -> 233.
        assert_eq!(nodes.redis, 233);
        let scaled = nodes.scaled_out.unwrap();
        // 69,444 / 10,000 + 13,889 / 3,000 = 6.94 + 4.63 -> 12 API instances.
        assert_eq!(scaled.api, 12);
        // 2,777,778 inserts/s / 50,000 -> 56 workers.
        assert_eq!(scaled.fanout_workers, 56);
        // 13,889 / 3,000 -> 5 primaries.
        assert_eq!(scaled.postgres_primaries, 5);
    }
}
