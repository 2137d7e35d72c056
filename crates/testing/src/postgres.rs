//! A fresh PostgreSQL database per test, dropped afterwards, on the server
//! named by `STARLING_TEST_DATABASE_URL`.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// The same database on the streaming replica named by
    /// `STARLING_TEST_REPLICA_URL` (started by `.ci/start-pg-replica`), or
    /// `None` (skip).
    pub fn on_replica(&self) -> Option<String> {
        let replica = crate::service_url("STARLING_TEST_REPLICA_URL", "PostgreSQL replica")?;
        Some(with_database(&replica, &self.name))
    }
}

/// `url` with its database replaced by `name`, keeping any query.
fn with_database(url: &str, name: &str) -> String {
    match url.rsplit_once('/') {
        Some((server, rest)) => {
            let query = rest
                .split_once('?')
                .map(|(_, query)| format!("?{query}"))
                .unwrap_or_default();
            format!("{server}/{name}{query}")
        }
        None => panic!("a PostgreSQL URL must name a database: {url}"),
    }
}

/// A new empty database, or `None` (with the reason printed) when no server
/// is configured; with `STARLING_REQUIRE_SERVICES=1` a missing server fails.
pub async fn test_database() -> Option<TestDatabase> {
    let admin_url = crate::service_url("STARLING_TEST_DATABASE_URL", "PostgreSQL")?;
    let name = crate::unique_name("starling_test");
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("connect to STARLING_TEST_DATABASE_URL");
    // The name is ours: letters, digits and underscores only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    admin.close().await.ok();
    let url = with_database(&admin_url, &name);
    Some(TestDatabase {
        url,
        admin_url,
        name,
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        crate::run_detached(async move {
            if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
                let _ = admin.close().await;
            }
        });
    }
}
