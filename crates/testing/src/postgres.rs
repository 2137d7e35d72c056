//! A fresh PostgreSQL database per test, dropped afterwards, on the server
//! named by `STARLING_TEST_DATABASE_URL`.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
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
