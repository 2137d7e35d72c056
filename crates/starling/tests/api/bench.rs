//! `starling-bench seed`, `starling-bench run` and `starling plan` as an
//! operator runs them.

use std::process::Command;

use crate::process::{start, terminate};

fn run_binary(binary: &str, args: &[&str]) -> std::process::Output {
    let output = Command::new(binary)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{binary} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn starling(args: &[&str]) -> std::process::Output {
    run_binary(env!("CARGO_BIN_EXE_starling"), args)
}

fn bench(args: &[&str]) -> std::process::Output {
    run_binary(env!("CARGO_BIN_EXE_starling-bench"), args)
}

#[tokio::test]
async fn a_seeded_server_takes_the_mixed_workload_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    bench(&[
        "seed",
        "--data-dir",
        data_arg,
        "--users",
        "200",
        "--follows-mean",
        "15",
        "--posts",
        "1000",
        "--active",
        "40",
    ]);
    std::fs::create_dir_all(&data).unwrap();
    let mut server = start(&data, true).await;
    let out = dir.path().join("run.json");
    let output = bench(&[
        "run",
        "--target",
        &server.base,
        "--manifest",
        data.join("bench-manifest.json").to_str().unwrap(),
        "--rate",
        "100",
        "--duration",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("p99"));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(report["pacing"], "open");
    assert_eq!(report["errors"], 0, "{report:#}");
    let ops: Vec<&str> = report["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["name"].as_str().unwrap())
        .collect();
    for expected in ["feed", "post", "user_posts", "like"] {
        assert!(ops.contains(&expected), "{expected} missing from {ops:?}");
    }
    let completed: u64 = report["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["completed"].as_u64().unwrap())
        .sum();
    assert!(
        (180..=200).contains(&completed),
        "100/s for 2 s sent {completed}"
    );
    assert!(
        report["fanout_lag"]["count"].as_u64().unwrap() > 0,
        "posts were fanned out: {report:#}"
    );
    assert!(terminate(&mut server).await.success());

    // Load never leaves this machine.
    let refused = Command::new(env!("CARGO_BIN_EXE_starling-bench"))
        .args([
            "run",
            "--target",
            "http://192.0.2.1:8080",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("127.0.0.1"));
}

#[test]
fn the_planner_prints_the_reference_figures_by_default() {
    let output = starling(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["write_qps_avg"].as_f64().unwrap().round(), 4630.0);
    assert_eq!(plan["read_qps_avg"].as_f64().unwrap().round(), 23148.0);
    let table =
        String::from_utf8_lossy(&starling(&["plan", "--dau", "1000000"]).stdout).to_string();
    assert!(table.contains("writes (posts)"), "{table}");
}

#[test]
fn the_server_binary_carries_no_benchmarks() {
    let help = starling(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(!help.contains("\n  bench "), "{help}");
    let refused = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["bench", "feed-read"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
}
