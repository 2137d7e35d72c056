//! One trace from a request to the fan-out worker, seen by an in-process exporter.

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

use crate::helpers::Mode;
use crate::helpers::{FANOUT_WAIT, eventually, read, spawn_app};

// One thread, so the test's default subscriber sees the server's spans too.
#[tokio::test(flavor = "current_thread")]
async fn a_posts_trace_runs_from_the_request_to_the_fan_out_worker() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // tracing caches each callsite's interest process-wide, computed on the
    // thread that first reaches it; a sibling test thread without a
    // subscriber would cache "never" and hide our spans. A second registered
    // dispatcher makes tracing ask every dispatcher instead, and the rebuild
    // re-asks for callsites already cached.
    let _anchor = tracing::Dispatch::new(tracing_subscriber::registry());
    let _default = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    starling::telemetry::install_propagation();

    let Some(app) = spawn_app(Mode::Embedded).await else {
        return;
    };
    let author = app.register("author").await;
    let fan = app.register("fan").await;
    app.follow(&fan, &author).await;
    app.feed_ids(&fan).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = app
        .client
        .post(app.url("/api/v1/posts"))
        .bearer_auth(&author.access_token)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"text": "traced"}))
        .send()
        .await
        .unwrap();
    let post = read(response).await;
    assert_eq!(post.status, 201);
    let post_id = post.body["id"].as_str().unwrap().to_owned();
    eventually("the fan sees the post", FANOUT_WAIT, || async {
        app.feed_ids(&fan).await.contains(&post_id)
    })
    .await;
    // Let the worker finish the event (its span ends after the last insert).
    eventually("the worker's span ends", FANOUT_WAIT, || async {
        provider.force_flush().unwrap();
        exporter
            .get_finished_spans()
            .unwrap()
            .iter()
            .any(|span| span.name == "fan_out_post")
    })
    .await;

    let trace = TraceId::from_hex(trace_id).unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let in_trace: Vec<_> = spans
        .iter()
        .filter(|span| span.span_context.trace_id() == trace)
        .collect();
    let names: Vec<&str> = in_trace.iter().map(|span| span.name.as_ref()).collect();
    let request = in_trace
        .iter()
        .find(|span| span.name == "request")
        .unwrap_or_else(|| panic!("no request span in the caller's trace: {names:?}"));
    assert_eq!(
        request.parent_span_id,
        SpanId::from_hex(caller_span).unwrap()
    );
    for expected in ["create_post", "handle_event", "fan_out_post"] {
        assert!(
            names.contains(&expected),
            "{expected} is not in the trace: {names:?}"
        );
    }
    // Other requests started traces of their own.
    assert!(
        spans
            .iter()
            .any(|span| span.span_context.trace_id() != trace)
    );
}

/// The real binary with an OTLP endpoint set posts its spans there.
#[tokio::test]
async fn spans_are_exported_over_otlp_http_when_an_endpoint_is_set() {
    use std::sync::{Arc, Mutex};

    let received: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let collector = {
        let received = received.clone();
        axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let received = received.clone();
                    async move {
                        let content_type = headers
                            .get("content-type")
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        received.lock().unwrap().push((content_type, body.len()));
                        axum::http::StatusCode::OK
                    }
                },
            ),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let dir = tempfile::tempdir().unwrap();
    let mut server = crate::process::start_with(
        dir.path(),
        true,
        &[("STARLING_TRACES__OTLP_ENDPOINT", endpoint.as_str())],
        false,
    )
    .await;
    let client = reqwest::Client::new();
    let author = crate::process::register(&client, &server.base, "author").await;
    let response = client
        .post(format!("{}/api/v1/posts", server.base))
        .bearer_auth(&author.access_token)
        .json(&json!({"text": "exported"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // Shutdown flushes the batch exporter.
    assert!(crate::process::terminate(&mut server).await.success());
    let received = received.lock().unwrap();
    assert!(!received.is_empty(), "no spans reached the collector");
    assert!(
        received
            .iter()
            .all(|(content_type, _)| content_type == "application/x-protobuf")
    );
    assert!(received.iter().map(|(_, size)| size).sum::<usize>() > 100);
}
