//! The shared Postgres catalogue: its schema and migrations, and the storage
//! index's repository functions. Every function takes an executor or a
//! transaction so that the caller decides what commits together.

pub mod index;
pub mod policy;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use sqlx::{PgConnection, Postgres, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("catalogue database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Denied(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool. Statements are bounded so that a stuck query cannot hold a
/// write transaction (and the row locks GC waits on) forever.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    let opts: PgConnectOptions = url.parse()?;
    let opts = opts
        .options([
            ("statement_timeout", "60s"),
            ("idle_in_transaction_session_timeout", "120s"),
        ])
        .application_name("wharf");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await?)
}

/// Applies every pending migration. The one place migrations run.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
