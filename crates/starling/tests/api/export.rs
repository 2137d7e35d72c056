//! Data export: asked for, built off the request, downloaded as a ZIP of
//! the person's data and the images of their posts; only theirs, only by
//! them.

use std::io::Read;
use std::time::Duration;

use image::ImageFormat;
use reqwest::Method;
use serde_json::{Value, json};
use starling_test_macros::both_modes;

use crate::helpers::{FANOUT_WAIT, Mode, TestApp, TestUser, eventually};
use crate::media::{encode, media_app, picture, ready_upload};

/// The entries of a ZIP archive: name and bytes.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|index| {
            let mut file = archive.by_index(index).unwrap();
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            (file.name().unwrap().into_owned(), content)
        })
        .collect()
}

fn document(entries: &[(String, Vec<u8>)], name: &str) -> Value {
    let (_, bytes) = entries
        .iter()
        .find(|(entry, _)| entry == name)
        .unwrap_or_else(|| panic!("{name} is in the archive"));
    serde_json::from_slice(bytes).unwrap()
}

fn handles(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|account| account["handle"].as_str().unwrap())
        .collect()
}

async fn export_state(app: &TestApp, user: &TestUser) -> Value {
    let reply = app.get("/api/v1/me/export", Some(&user.access_token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

#[both_modes]
async fn an_export_holds_what_its_owner_has_and_only_they_download_it(mode: Mode) {
    let Some((app, s3)) = media_app(mode, |config| {
        config.export.poll_ms = 50;
    })
    .await
    else {
        return;
    };
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let cy = app.register("cy").await;
    let dave = app.register("dave").await;
    app.follow(&ada, &bob).await;
    app.follow(&cy, &ada).await;
    let image = ready_upload(
        &app,
        &ada,
        encode(&picture(40, 30), ImageFormat::Png),
        "a cat",
    )
    .await;
    let pictured = app
        .post(
            "/api/v1/posts",
            Some(&ada.access_token),
            json!({"text": "my cat @bob", "media_ids": [image["id"]]}),
        )
        .await;
    assert_eq!(pictured.status, 201, "{}", pictured.text);
    let plain = app.create_post(&ada, "hello world").await;
    let bobs = app.create_post(&bob, "bob's post").await;
    let liked = app
        .post(
            &format!("/api/v1/posts/{bobs}/like"),
            Some(&ada.access_token),
            json!({}),
        )
        .await;
    assert!(liked.status.is_success(), "{}", liked.text);
    for (path, user) in [("block", &dave), ("mute", &bob)] {
        let done = app
            .post(
                &format!("/api/v1/users/{}/{path}", user.id),
                Some(&ada.access_token),
                json!({}),
            )
            .await;
        assert!(done.status.is_success(), "{}", done.text);
    }

    app.get("/api/v1/me/export", Some(&ada.access_token))
        .await
        .assert_problem(404);
    app.get("/api/v1/me/export/archive", Some(&ada.access_token))
        .await
        .assert_problem(404);
    let asked = app
        .post("/api/v1/me/export", Some(&ada.access_token), json!({}))
        .await;
    assert_eq!(asked.status, 202, "{}", asked.text);
    assert_eq!(asked.headers["location"], "/api/v1/me/export");
    assert_eq!(asked.body["state"], "pending");
    assert_eq!(asked.body["download_url"], Value::Null);
    eventually("the archive is built", FANOUT_WAIT, || async {
        export_state(&app, &ada).await["state"] == "ready"
    })
    .await;
    let ready = export_state(&app, &ada).await;
    assert_eq!(ready["id"], asked.body["id"]);
    assert_eq!(ready["download_url"], "/api/v1/me/export/archive");
    assert!(ready["expires_at"].is_string());

    let download = app
        .client
        .get(app.url("/api/v1/me/export/archive"))
        .bearer_auth(&ada.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "application/zip");
    assert_eq!(download.headers()["cache-control"], "private, no-store");
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"starling-export-")
    );
    let bytes = download.bytes().await.unwrap();
    assert_eq!(Some(bytes.len() as u64), ready["size"].as_u64());
    let entries = unzip(&bytes);

    let profile = document(&entries, "profile.json");
    assert_eq!(profile["handle"], "ada");
    assert_eq!(profile["email"], "ada@example.org");
    let posts = document(&entries, "posts.json");
    let texts: Vec<&str> = posts
        .as_array()
        .unwrap()
        .iter()
        .map(|post| post["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello world", "my cat @bob"]);
    assert_eq!(posts[0]["id"], plain.as_str());
    assert_eq!(posts[1]["mentions"][0]["handle"], "bob");
    let file = posts[1]["media"][0]["file"].as_str().unwrap();
    assert_eq!(posts[1]["media"][0]["alt"], "a cat");
    assert_eq!(handles(&document(&entries, "following.json")), ["bob"]);
    assert_eq!(handles(&document(&entries, "followers.json")), ["cy"]);
    assert_eq!(handles(&document(&entries, "blocks.json")), ["dave"]);
    assert_eq!(handles(&document(&entries, "mutes.json")), ["bob"]);
    assert_eq!(document(&entries, "likes.json"), json!([{"post_id": bobs}]));
    // The image as it is served.
    let (_, image_bytes) = entries.iter().find(|(name, _)| name == file).unwrap();
    let served = app
        .client
        .get(app.url(image["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(image_bytes.as_slice(), served.as_ref());
    assert!(entries.iter().any(|(name, _)| name == "README.txt"));

    // Only its owner, and only signed in as a person.
    app.get("/api/v1/me/export/archive", Some(&bob.access_token))
        .await
        .assert_problem(404);
    let key = app
        .post(
            "/api/v1/me/api-keys",
            Some(&ada.access_token),
            json!({"name": "bot", "scopes": ["read", "write"]}),
        )
        .await;
    let key = key.body["key"].as_str().unwrap().to_owned();
    for (method, path) in [
        (Method::POST, "/api/v1/me/export"),
        (Method::GET, "/api/v1/me/export"),
        (Method::GET, "/api/v1/me/export/archive"),
    ] {
        app.call(method.clone(), path, Some(&key), None)
            .await
            .assert_problem(403);
        app.call(method, path, None, None).await.assert_problem(401);
    }
    let metrics = app.metrics().await;
    assert!(metrics.contains("starling_exports_total{outcome=\"ready\"}"));
    drop(s3);
}

#[both_modes]
async fn one_export_at_a_time_and_archives_expire(mode: Mode) {
    let Some((app, s3)) = media_app(mode, |config| {
        // Slow enough to ask twice while the first is pending.
        config.export.poll_ms = 1_500;
        config.export.retention_secs = 3;
    })
    .await
    else {
        return;
    };
    let ada = app.register("ada").await;
    let first = app
        .post("/api/v1/me/export", Some(&ada.access_token), json!({}))
        .await;
    let again = app
        .post("/api/v1/me/export", Some(&ada.access_token), json!({}))
        .await;
    assert_eq!(first.status, 202, "{}", first.text);
    assert_eq!(
        again.body["id"], first.body["id"],
        "the pending one answers"
    );
    let early = app
        .get("/api/v1/me/export/archive", Some(&ada.access_token))
        .await;
    if export_state(&app, &ada).await["state"] == "pending" {
        early.assert_problem(409);
    }
    eventually("the archive is built", Duration::from_secs(15), || async {
        export_state(&app, &ada).await["state"] == "ready"
    })
    .await;
    let archive = "/api/v1/me/export/archive";
    assert_eq!(app.get(archive, Some(&ada.access_token)).await.status, 200);
    // Past its retention the archive is deleted.
    eventually("the archive expires", Duration::from_secs(15), || async {
        export_state(&app, &ada).await["state"] == "expired"
    })
    .await;
    app.get(archive, Some(&ada.access_token))
        .await
        .assert_problem(404);
    assert_eq!(export_state(&app, &ada).await["download_url"], Value::Null);
    // A new one may be asked for.
    let second = app
        .post("/api/v1/me/export", Some(&ada.access_token), json!({}))
        .await;
    assert_ne!(second.body["id"], first.body["id"]);
    drop(s3);
}
