//! The real binary as a process: crash safety and graceful shutdown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::read;
use crate::process::{register, start, terminate};

/// Ids of the posts the server answered 201 for.
type Acknowledged = Arc<Mutex<Vec<String>>>;

/// Posts from `writers` tasks until a request fails; returns the ids of the
/// posts the server acknowledged (answered 201).
fn post_in_a_burst(
    base: &str,
    token: &str,
    writers: usize,
) -> (Acknowledged, Vec<tokio::task::JoinHandle<Vec<u16>>>) {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (base, token, acknowledged) = (base.to_owned(), token.to_owned(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut statuses = Vec::new();
            for index in 0.. {
                let sent = client
                    .post(format!("{base}/api/v1/posts"))
                    .bearer_auth(&token)
                    .json(&json!({"text": format!("writer {writer} post {index}")}))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                let reply = read(response).await;
                statuses.push(reply.status.as_u16());
                if reply.status != 201 {
                    break;
                }
                acknowledged
                    .lock()
                    .unwrap()
                    .push(reply.body["id"].as_str().unwrap().to_owned());
            }
            statuses
        }));
    }
    (acknowledged, tasks)
}

async fn wait_for(acknowledged: &Acknowledged, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < count {
        assert!(Instant::now() < deadline, "the burst is too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn assert_all_stored(base: &str, acknowledged: &[String], author_id: &str) {
    let client = reqwest::Client::new();
    for id in acknowledged {
        let response = client
            .get(format!("{base}/api/v1/posts/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "acknowledged post {id} was lost");
    }
    let profile = read(
        client
            .get(format!("{base}/api/v1/users/{author_id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(profile.body["posts_count"].as_u64().unwrap() >= acknowledged.len() as u64);
}

#[tokio::test]
async fn every_acknowledged_post_survives_kill_dash_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), true).await;
    let client = reqwest::Client::new();
    let author = register(&client, &server.base, "writer").await;
    let (acknowledged, tasks) = post_in_a_burst(&server.base, &author.access_token, 6);
    wait_for(&acknowledged, 150).await;
    server.child.start_kill().unwrap(); // SIGKILL: no chance to flush anything
    server.child.wait().await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 150);

    let restarted = start(dir.path(), true).await;
    assert_all_stored(&restarted.base, &acknowledged, &author.id).await;
}

#[tokio::test]
async fn sigterm_drains_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), false).await;
    let client = reqwest::Client::new();
    let author = register(&client, &server.base, "writer").await;
    let (acknowledged, tasks) = post_in_a_burst(&server.base, &author.access_token, 4);
    wait_for(&acknowledged, 50).await;
    let status = terminate(&mut server).await;
    assert_eq!(status.code(), Some(0), "a drained shutdown exits 0");
    for task in tasks {
        let statuses = task.await.unwrap();
        // Requests either completed or were never accepted; none failed half-way.
        assert!(
            statuses
                .iter()
                .all(|status| *status == 201 || *status == 503),
            "{statuses:?}"
        );
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let restarted = start(dir.path(), false).await;
    assert_all_stored(&restarted.base, &acknowledged, &author.id).await;
}
