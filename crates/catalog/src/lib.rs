//! The shared Postgres catalogue: its schema and migrations, and the storage
//! index's repository functions. Every function takes an executor or a
//! transaction so that the caller decides what commits together.

pub mod artifacts;
pub mod audit;
pub mod auditlog;
pub mod doublestar;
pub mod filter;
pub mod gc;
pub mod immutable;
pub mod index;
pub mod jobs;
pub mod policy;
pub mod projects;
pub mod quotas;
pub mod repositories;
pub mod robots;
pub mod users;

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

/// Creates the database named in `url` when it does not exist yet, so a first
/// `migrate` works against a fresh server.
pub async fn ensure_database(url: &str) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let opts: PgConnectOptions = url.parse()?;
    let Some(name) = opts.get_database().map(str::to_owned) else {
        return Ok(());
    };
    if opts.clone().connect().await.is_ok() {
        return Ok(());
    }
    let mut admin = opts.database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        // Identifiers cannot be bound parameters; quote it as Postgres does.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut admin)
            .await?;
    }
    admin.close().await?;
    Ok(())
}

/// Applies every pending migration. The one place migrations run.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
