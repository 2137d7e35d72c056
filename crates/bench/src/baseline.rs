//! The ceiling for the feed-read benchmark: a minimal axum handler that
//! returns a fixed JSON body of the same size as a real feed page, served by
//! the same HTTP stack (hyper via axum on a multi-threaded tokio runtime) and
//! measured by the same load engine. Starling's feed read can only be slower;
//! the ratio says how much of the machine the feed logic itself costs.

use std::net::SocketAddr;

use axum::http::header;
use axum::routing::get;

#[derive(Debug, Clone, clap::Args)]
pub struct BaselineArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Size of the JSON body to answer, in bytes.
    #[arg(long, default_value_t = 8_000)]
    pub body_bytes: usize,
}

/// A JSON page of `bytes` bytes, shaped like a feed page.
pub fn body_of(bytes: usize) -> String {
    let frame =
        r#"{"data":[{"id":"1","text":""}],"pagination":{"next_cursor":null,"has_more":false}}"#;
    let padding = bytes.saturating_sub(frame.len());
    format!(
        r#"{{"data":[{{"id":"1","text":"{}"}}],"pagination":{{"next_cursor":null,"has_more":false}}}}"#,
        "x".repeat(padding)
    )
}

pub async fn serve(args: &BaselineArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        anyhow::bail!("the baseline server listens on loopback only");
    }
    let body = axum::body::Bytes::from(body_of(args.body_bytes));
    let app = axum::Router::new().route(
        "/feed",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    // Listens as Starling does, so that neither drops a burst of connects.
    let listener = starling_http::listen(args.listen)?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_requested_size_and_are_json() {
        for size in [200, 8_000, 50_000] {
            let body = body_of(size);
            assert_eq!(body.len(), size);
            assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok());
        }
    }
}
