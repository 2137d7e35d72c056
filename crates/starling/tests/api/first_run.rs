//! What a newcomer meets running the binary for the first time: each
//! mistake answered with what to do, not a bare system error.

use std::process::Output;

use crate::process::{start, terminate};

/// Runs `starling serve` on `listen` and `data_dir` to its end.
async fn serve_once(listen: &str, data_dir: &std::path::Path) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .env("STARLING_LOG_LEVEL", "warn")
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(std::time::Duration::from_secs(20), run)
        .await
        .expect("starling stops by itself")
        .unwrap()
}

#[tokio::test]
async fn a_taken_port_is_explained() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = serve_once(&address, &dir.path().join("data")).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{address} is already in use")) && stderr.contains("--listen"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_second_server_on_one_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = start(dir.path(), true).await;
    let other_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let output = serve_once(&other_port, dir.path()).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another Starling is already serving") && stderr.contains("--data-dir"),
        "{stderr}"
    );
    // The first one never noticed.
    let ready = reqwest::get(format!("{}/readyz", first.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert!(terminate(&mut first).await.success());
    // Once it stopped, the directory is free again.
    let mut again = start(dir.path(), true).await;
    assert!(terminate(&mut again).await.success());
}

#[tokio::test]
async fn the_data_directory_is_made_private_and_a_file_in_its_place_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data, true).await;
    assert!(terminate(&mut server).await.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }

    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"").unwrap();
    let output = serve_once("127.0.0.1:0", &file).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is a file, not a directory"), "{stderr}");
}

#[test]
fn help_shows_examples() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("Examples:"), "{help}");
    assert!(help.contains("/docs/"), "{help}");
    assert!(help.contains("STARLING_DATA_DIR"), "{help}");
}
