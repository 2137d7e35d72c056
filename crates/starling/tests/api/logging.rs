//! The request log of the real binary, in its JSON form.

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::helpers::{read, session_user};
use crate::process::{start_with, terminate};

#[tokio::test]
async fn each_request_logs_one_json_line_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_with(
        dir.path(),
        true,
        &[
            ("STARLING_LOG_FORMAT", "json"),
            ("STARLING_LOG_LEVEL", "info"),
        ],
        true,
    )
    .await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).json(&body).send();

    let password = "Secret-Password-9f3a";
    let wrong_password = "Wrong-Password-77c1";
    let registered = read(
        post(
            "/api/v1/auth/register",
            json!({"handle": "ada", "email": "ada@example.org", "password": password}),
        )
        .await
        .unwrap(),
    )
    .await;
    let first = session_user(&registered.body);
    read(
        post(
            "/api/v1/auth/login",
            json!({"login": "ada", "password": wrong_password}),
        )
        .await
        .unwrap(),
    )
    .await;
    let refreshed = read(
        post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": first.refresh_token}),
        )
        .await
        .unwrap(),
    )
    .await;
    let second = session_user(&refreshed.body);
    let me = client
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&second.access_token)
        .header("x-request-id", "log-test-request-1")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    client
        .get(format!("{base}/api/v1/me"))
        .header("authorization", "Bearer not-a-real-token-c0ffee")
        .send()
        .await
        .unwrap();
    // Live streams opened as EventSource does, the token in the query.
    let streamed = client
        .get(format!(
            "{base}/api/v1/stream?access_token={}",
            second.access_token
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    drop(streamed);
    let refused = client
        .get(format!(
            "{base}/api/v1/stream?access_token=query-token-c0ffee"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    read(
        post(
            "/api/v1/auth/logout",
            json!({"refresh_token": second.refresh_token}),
        )
        .await
        .unwrap(),
    )
    .await;

    let status = terminate(&mut server).await;
    assert!(status.success());
    let mut output = String::new();
    server
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .await
        .unwrap();

    for secret in [
        password,
        wrong_password,
        first.access_token.as_str(),
        first.refresh_token.as_str(),
        second.access_token.as_str(),
        second.refresh_token.as_str(),
        "not-a-real-token-c0ffee",
        "query-token-c0ffee",
    ] {
        assert!(
            !output.contains(secret),
            "a secret reached the log: {secret}"
        );
    }
    assert!(
        !output.to_lowercase().contains("authorization"),
        "a header reached the log"
    );

    let lines: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|line| line["message"] == "request")
        .collect();
    assert_eq!(
        requests.len(),
        9,
        "one line per request (readiness probe included)\n{output}"
    );
    let me_line = requests
        .iter()
        .find(|line| line["span"]["request_id"] == "log-test-request-1")
        .expect("the request id given by the client is logged");
    assert_eq!(me_line["span"]["method"], "GET");
    assert_eq!(me_line["span"]["route"], "/api/v1/me");
    assert_eq!(me_line["status"], 200);
    assert_eq!(me_line["user_id"], first.id.as_str());
    assert!(me_line["latency_ms"].as_f64().unwrap() >= 0.0);
    let refused = requests.iter().filter(|line| line["status"] == 401).count();
    assert_eq!(refused, 3, "the wrong password and the two bad tokens");
    for line in &requests {
        let request_id = line["span"]["request_id"].as_str().unwrap_or_default();
        assert!(
            !request_id.is_empty(),
            "every request line has a request id: {line}"
        );
    }
}
