//! Benchmark 7: images. Uploads per second of a 1280×960 photo through the
//! whole path (multipart, sniffing, decoding, re-encoding without metadata,
//! hashing, storing, the row and its event), against the decoding and
//! re-encoding alone on the same cores in the same run (the work no upload
//! can skip). Then files served per second from `GET /media/{hash}`,
//! against the minimal handler answering a body of the same size.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use starling_app::media::ImageLimits;
use starling_domain::MediaKind;

use super::{SuiteArgs, ratio};
use crate::load::{Limits, Pacing, Request, RequestSource, drive};
use crate::machine::Machine;
use crate::report::{RunReport, write_json};
use crate::server::{start_baseline, start_starling};

#[derive(Debug, Clone, clap::Args)]
pub struct MediaArgs {
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 4)]
    pub uploaders: usize,
    /// Connections for serving.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
}

#[derive(Debug, Serialize)]
pub struct MediaResult {
    pub machine: Machine,
    pub upload_bytes: usize,
    pub stored_bytes: usize,
    pub uploads_per_s: f64,
    pub reencode_per_s: f64,
    pub upload_ratio: f64,
    pub serve: RunReport,
    pub baseline: RunReport,
    pub serve_ratio: f64,
}

/// A photo-like JPEG: smooth gradients with texture, as cameras produce.
fn photo() -> anyhow::Result<Vec<u8>> {
    let image = DynamicImage::ImageRgb8(RgbImage::from_fn(1280, 960, |x, y| {
        let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 24;
        Rgb([
            ((x / 5 + noise) % 256) as u8,
            ((y / 4 + noise) % 256) as u8,
            (((x + y) / 9) % 256) as u8,
        ])
    }));
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Jpeg)?;
    Ok(out.into_inner())
}

/// Runs `work` on every core for `duration`; operations per second.
fn on_every_core(duration: Duration, work: impl Fn() + Send + Sync + 'static) -> f64 {
    let work = Arc::new(work);
    let done = Arc::new(AtomicU64::new(0));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let started = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let (work, done) = (work.clone(), done.clone());
            std::thread::spawn(move || {
                while started.elapsed() < duration {
                    work();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

pub async fn run(args: &MediaArgs) -> anyhow::Result<MediaResult> {
    let original = Arc::new(photo()?);
    let duration = Duration::from_secs(args.suite.duration);
    let data = crate::server::data_dir()?;
    let starling = start_starling(data.path(), &[]).await?;
    let base = starling.base.clone();
    let http = reqwest::Client::new();
    let registered: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"handle": "photographer", "email": "p@bench.example", "password": "benchmark password"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = registered["access_token"]
        .as_str()
        .context("a token")?
        .to_owned();

    // Uploads, closed loop: each uploader sends the next when one answers.
    let uploaded = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut uploaders = Vec::new();
    for _ in 0..args.uploaders.max(1) {
        let (http, base, token, original, uploaded) = (
            http.clone(),
            base.clone(),
            token.clone(),
            original.clone(),
            uploaded.clone(),
        );
        uploaders.push(tokio::spawn(async move {
            let mut last = None;
            while started.elapsed() < duration {
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(original.to_vec()).file_name("photo.jpg"),
                );
                let reply = http
                    .post(format!("{base}/api/v1/media"))
                    .bearer_auth(&token)
                    .multipart(form)
                    .send()
                    .await?;
                anyhow::ensure!(reply.status() == 201, "upload answered {}", reply.status());
                last = Some(reply.json::<serde_json::Value>().await?);
                uploaded.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(last)
        }));
    }
    let mut media = None;
    for uploader in uploaders {
        if let Some(last) = uploader.await?? {
            media = Some(last);
        }
    }
    let uploads_per_s = uploaded.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let media = media.context("no upload finished")?;
    let url = media["url"].as_str().context("a url")?.to_owned();
    let stored_bytes = usize::try_from(media["size"].as_u64().unwrap_or(0))?;

    // The cleaning alone, in process, on every core.
    let limits = ImageLimits::default();
    let bytes = original.clone();
    let reencode_per_s = on_every_core(duration, move || {
        let _ = std::hint::black_box(limits.clean(&bytes, MediaKind::Jpeg));
    });

    // Serving the stored file vs the minimal handler, same size.
    let source = |path: String| -> RequestSource {
        Arc::new(move |_| Request {
            op: "media",
            method: Method::GET,
            path: path.clone(),
            token: None,
            body: None,
        })
    };
    let baseline = start_baseline(stored_bytes).await?;
    let closed = Pacing::Closed {
        connections: args.connections,
    };
    let limits = Limits {
        duration,
        max_requests: None,
    };
    let serve = drive(&starling.address, source(url), closed, limits).await;
    let baseline_run = drive(
        &baseline.address,
        source("/feed".to_owned()),
        closed,
        limits,
    )
    .await;
    starling.stop().await?;
    baseline.stop().await?;

    let result = MediaResult {
        machine: Machine::this(),
        upload_bytes: original.len(),
        stored_bytes,
        uploads_per_s,
        reencode_per_s,
        upload_ratio: ratio(uploads_per_s, reencode_per_s),
        serve_ratio: ratio(serve.throughput_per_s, baseline_run.throughput_per_s),
        serve,
        baseline: baseline_run,
    };
    result
        .serve
        .print("Starling GET /media/{hash}, closed loop");
    result
        .baseline
        .print("Baseline minimal handler, same body size, closed loop");
    println!("\nImages ({}):", result.machine.describe());
    println!(
        "  uploads of a {} KiB 1280x960 JPEG: {:.1}/s vs decode + re-encode alone on every core: {:.1}/s -> ratio {:.2}",
        result.upload_bytes / 1024,
        result.uploads_per_s,
        result.reencode_per_s,
        result.upload_ratio
    );
    println!(
        "  serving the stored file ({} KiB): {:.0}/s vs minimal handler {:.0}/s -> ratio {:.2}",
        result.stored_bytes / 1024,
        result.serve.throughput_per_s,
        result.baseline.throughput_per_s,
        result.serve_ratio
    );
    write_json(&args.suite.results.join("media.json"), &result)?;
    Ok(result)
}
