//! The API reference at `/docs/`: served whole by the binary, under a
//! Content-Security-Policy that allows no other origin, and rendered by a
//! real browser that can reach nothing but this machine.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::helpers::Mode;
use crate::helpers::spawn_app;

#[tokio::test]
async fn the_docs_are_served_by_the_binary_under_a_strict_policy() {
    let Some(app) = spawn_app(Mode::Embedded).await else {
        return;
    };
    // A browser opening the server's address lands on the reference.
    let root = app.get("/", None).await;
    assert_eq!(root.status, 307);
    assert_eq!(root.headers["location"], "/docs/");
    // The page's relative URLs need the trailing slash.
    let bare = app.get("/docs", None).await;
    assert_eq!(bare.status, 308);
    assert_eq!(bare.headers["location"], "/docs/");

    let page = app.get("/docs/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type().starts_with("text/html"));
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    // No other origin anywhere: not in the policy, not in the page.
    assert!(!policy.contains("http") && !policy.contains('*') && !policy.contains("unsafe"));
    assert!(!page.text.contains("http://") && !page.text.contains("https://"));
    assert_eq!(page.headers["x-content-type-options"], "nosniff");

    // Every file the page names is served, with the same policy.
    let files: Vec<&str> = page
        .text
        .split("=\"./")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let reply = app.get(&format!("/docs/{file}"), None).await;
        assert_eq!(reply.status, 200, "{file}");
        assert_eq!(
            reply.headers["content-security-policy"].to_str().unwrap(),
            policy
        );
        // Revalidated with its ETag: 304, no body.
        let etag = reply.headers["etag"].clone();
        let again = app
            .client
            .get(app.url(&format!("/docs/{file}")))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{file}");
    }
    app.get("/docs/no-such-file.js", None)
        .await
        .assert_problem(404);
}

/// `(METHOD, path)` of every operation in the OpenAPI document.
fn documented_operations(document: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

/// `(METHOD, path)` of every operation Swagger UI rendered.
fn rendered_operations(dom: &str) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for block in dom.split("class=\"opblock-summary-method\">").skip(1) {
        let method = block.split('<').next().unwrap_or_default().to_owned();
        let path = block
            .split_once("data-path=\"")
            .and_then(|(_, rest)| rest.split('"').next())
            .unwrap_or_default()
            .to_owned();
        operations.insert((method, path));
    }
    operations
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_render_every_operation_with_no_network_beyond_this_machine() {
    let Some(browser) = starling_testing::Browser::find() else {
        return;
    };
    let Some(app) = spawn_app(Mode::Embedded).await else {
        return;
    };
    let documented = documented_operations(&app.get("/openapi.json", None).await.body);
    assert!(documented.len() > 25, "{documented:?}");
    let url = app.url("/docs/");
    let page = tokio::task::spawn_blocking(move || browser.render(&url, Duration::from_secs(20)))
        .await
        .unwrap();
    let rendered = rendered_operations(&page.dom);
    assert_eq!(
        rendered, documented,
        "the page shows every documented operation; console: {:#?}",
        page.console
    );
    assert!(
        page.dom.contains("Starling API"),
        "the document's title shows"
    );
    // Nothing was refused by the policy, and nothing failed to load.
    for line in &page.console {
        assert!(
            !line.contains("Content Security Policy")
                && !line.contains("Failed to load")
                && !line.contains("ERR_"),
            "{line}"
        );
    }
}
