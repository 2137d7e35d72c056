//! A fresh PostgreSQL database per test, dropped afterwards, on the server
//! named by `STARLING_TEST_DATABASE_URL`.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

pub(crate) struct TestDatabase {
    pub(crate) url: String,
    admin_url: String,
    name: String,
}

/// A new empty database, or `None` (with the reason printed) when no server
/// is configured; with `STARLING_REQUIRE_SERVICES=1` a missing server fails.
pub(crate) async fn test_database() -> Option<TestDatabase> {
    let Ok(admin_url) = std::env::var("STARLING_TEST_DATABASE_URL") else {
        if std::env::var("STARLING_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("STARLING_TEST_DATABASE_URL is not set and STARLING_REQUIRE_SERVICES=1");
        }
        eprintln!("skipped: set STARLING_TEST_DATABASE_URL to run the PostgreSQL tests");
        return None;
    };
    let unique = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let name = format!("starling_test_{unique:x}_{}", rand_suffix());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("connect to STARLING_TEST_DATABASE_URL");
    // The name is ours: letters, digits and underscores only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    admin.close().await.ok();
    let url = match admin_url.rsplit_once('/') {
        Some((server, rest)) => {
            let query = rest
                .split_once('?')
                .map(|(_, query)| format!("?{query}"))
                .unwrap_or_default();
            format!("{server}/{name}{query}")
        }
        None => panic!("STARLING_TEST_DATABASE_URL must name a database: {admin_url}"),
    };
    Some(TestDatabase {
        url,
        admin_url,
        name,
    })
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    hasher.finish() as u32
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async code: use a runtime of our own, on a thread
        // of our own, so this works inside a test's runtime too.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
