//! Tests skipped for a missing service, counted over a whole `cargo test`
//! run so that its end can say what was not exercised.
//!
//! A skipped test passes (libtest has no skip at run time), and what it
//! prints is captured and never shown. So each skip is also written as a
//! line to a tally file of the run, and the last test binary cargo runs
//! (`crates/testing/tests/skipped_for_missing_services.rs`: cargo runs test
//! binaries in package-name order, and `starling-testing` sorts last) reads
//! the tally and prints the summary past libtest's capture. The run is told
//! by the process that started the test binaries: `cargo test` itself.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Records that the running test is skipped because `variable` (a service's
/// URL, or the program `program`) is missing.
pub(crate) fn record(variable: &str, what: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_owned();
    let binary = std::env::current_exe()
        .ok()
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    // Test binaries are named `<target>-<hash>`: the target says enough.
    let binary = binary
        .rsplit_once('-')
        .map_or(binary.as_str(), |(target, _)| target)
        .to_owned();
    let line = format!(
        "{}\t{}\t{}\t{}\n",
        clean(&binary),
        clean(&test),
        clean(variable),
        clean(what)
    );
    let Some(file) = tally_file() else {
        return;
    };
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One `write` of one short line in append mode: lines from concurrent
    // tests and test processes do not interleave.
    if let Ok(mut tally) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
    {
        let _ = tally.write_all(line.as_bytes());
    }
}

fn clean(field: &str) -> String {
    field.replace(['\t', '\n'], " ")
}

fn tally_dir() -> PathBuf {
    std::env::temp_dir().join("starling-test-skips")
}

/// The tally of this run: named after the process that started this test
/// binary (cargo), with its start time so that a reused process id does
/// not inherit an old tally.
fn tally_file() -> Option<PathBuf> {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        let started = std::fs::read_to_string(format!("/proc/{parent}/stat"))
            .ok()
            .and_then(|stat| {
                // Fields after the command's closing parenthesis; the start
                // time is the 22nd field of the whole line.
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().nth(19).map(str::to_owned)
            })
            .unwrap_or_default();
        Some(tally_dir().join(format!("{parent}-{started}")))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// What a run skipped: per test, the first thing it found missing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// `(binary, test)` → `(variable, what)`.
    tests: BTreeMap<(String, String), (String, String)>,
}

impl Skipped {
    fn parse(text: &str) -> Self {
        let mut tests = BTreeMap::new();
        for line in text.lines() {
            let mut fields = line.split('\t');
            if let (Some(binary), Some(test), Some(variable), Some(what)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            {
                tests
                    .entry((binary.to_owned(), test.to_owned()))
                    .or_insert_with(|| (variable.to_owned(), what.to_owned()));
            }
        }
        Self { tests }
    }

    pub fn count(&self) -> usize {
        self.tests.len()
    }

    /// The summary a run ends with.
    pub fn summary(&self) -> String {
        if self.tests.is_empty() {
            return "Skipped for missing services: none; every test ran.\n".to_owned();
        }
        let mut by_variable: BTreeMap<(&str, &str), (usize, BTreeSet<&str>)> = BTreeMap::new();
        for ((binary, _), (variable, what)) in &self.tests {
            let entry = by_variable
                .entry((variable.as_str(), what.as_str()))
                .or_default();
            entry.0 += 1;
            entry.1.insert(binary.as_str());
        }
        let mut text = format!(
            "Skipped for missing services: {} tests passed without running, for want of:\n",
            self.tests.len()
        );
        let mut rows: Vec<_> = by_variable.into_iter().collect();
        rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
        for ((variable, what), (count, binaries)) in rows {
            let binaries: Vec<&str> = binaries.into_iter().collect();
            text.push_str(&format!(
                "  {count:>5}  {variable:<34} {what} (in {})\n",
                binaries.join(", ")
            ));
        }
        text.push_str(
            "To run them, set those variables (README.md, \"Set-up\"; .ci/run sets them all) \
             or install the programs named.\n",
        );
        text
    }
}

/// This run's skips so far; the tally is removed, and tallies of runs
/// older than a day (interrupted ones) with it.
pub fn take_this_runs_skips() -> Skipped {
    let Some(file) = tally_file() else {
        return Skipped::default();
    };
    let skipped = std::fs::read_to_string(&file)
        .map(|text| Skipped::parse(&text))
        .unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    if let Ok(entries) = std::fs::read_dir(tally_dir()) {
        let day_ago = SystemTime::now() - Duration::from_secs(24 * 3600);
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .is_ok_and(|modified| modified < day_ago);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    skipped
}

/// Writes `text` to standard error past libtest's capture (which holds
/// back what `eprintln!` prints in a passing test).
pub fn show(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_counts_once_under_the_first_thing_it_missed() {
        let skipped = Skipped::parse(
            "scaled\tfeed::a\tSTARLING_TEST_DATABASE_URL\tPostgreSQL\n\
             scaled\tfeed::a\tSTARLING_TEST_REDIS_URL\tRedis\n\
             scaled\tfeed::b\tSTARLING_TEST_DATABASE_URL\tPostgreSQL\n\
             api\tnginx::c\tSTARLING_TEST_NGINX\tnginx\n\
             a torn line\n",
        );
        assert_eq!(skipped.count(), 3);
        let summary = skipped.summary();
        assert!(
            summary.contains("3 tests passed without running"),
            "{summary}"
        );
        assert!(
            summary.contains("2  STARLING_TEST_DATABASE_URL"),
            "{summary}"
        );
        assert!(summary.contains("1  STARLING_TEST_NGINX"), "{summary}");
        assert!(!summary.contains("STARLING_TEST_REDIS_URL"), "{summary}");
        // Most skipped first.
        assert!(summary.find("DATABASE").unwrap() < summary.find("NGINX").unwrap());
    }

    #[test]
    fn no_skips_say_so() {
        assert!(Skipped::default().summary().contains("none"));
    }
}
