//! The end of a `cargo test --workspace` run: how many tests were skipped
//! for missing services, and how to run them. Cargo runs test binaries in
//! package-name order, so this one (of `starling-testing`) runs last; the
//! second test keeps it so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn say_how_many_tests_were_skipped_for_missing_services() {
    let skipped = starling_testing::skips::take_this_runs_skips();
    starling_testing::skips::show(&format!("\n{}", skipped.summary()));
}

#[test]
fn this_package_sorts_last_so_its_tests_run_last() {
    // Where the test runs (a shared build directory may hold a binary
    // built in another checkout).
    let package = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let root = Path::new(&package).join("../..");
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members: Vec<&str> = workspace
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| {
            list.split(',')
                .map(|member| member.trim().trim_matches('"'))
                .filter(|member| !member.is_empty())
                .collect()
        })
        .unwrap();
    assert!(members.len() > 5, "{members:?}");
    let names: Vec<String> = members
        .iter()
        .map(|member| {
            let manifest = std::fs::read_to_string(root.join(member).join("Cargo.toml")).unwrap();
            manifest
                .lines()
                .find_map(|line| line.strip_prefix("name = "))
                .map(|name| name.trim_matches('"').to_owned())
                .unwrap()
        })
        .collect();
    let last = names.iter().max().unwrap();
    assert_eq!(
        last,
        env!("CARGO_PKG_NAME"),
        "cargo runs {last}'s tests after the skip summary: move \
         skipped_for_missing_services.rs to the package that sorts last"
    );
}
