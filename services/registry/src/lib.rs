//! `wharf-registry`: the OCI distribution v2 registry. Serves content from
//! the distribution on-disk layout without touching Postgres, and records
//! every write in the shared catalogue in the transaction that places it.

pub mod auth;
pub mod config;
pub mod endpoint;
pub mod error;
mod handlers;
pub mod import;
mod manifest_cache;
mod pulls;
mod routes;
mod write;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;
use wharf_storage::{Store, Uploads};

pub use config::Config;

/// Everything a request handler needs, shared behind one `Arc`.
pub struct App {
    pub config: Config,
    pub db: PgPool,
    pub store: Store,
    pub uploads: Uploads,
    pub verifier: Option<auth::Verifier>,
    pub pulls: pulls::PullRecorder,
    pub manifests: manifest_cache::ManifestCache,
}

pub type AppState = Arc<App>;

impl App {
    pub async fn new(config: Config) -> anyhow::Result<AppState> {
        let db =
            wharf_catalog::connect(&config.database.url, config.database.max_connections).await?;
        let store = Store::open(&config.data_dir)?;
        let verifier = config.auth.clone().map(auth::Verifier::new).transpose()?;
        let pulls = pulls::PullRecorder::start(db.clone());
        Ok(Arc::new(App {
            uploads: Uploads::new(store.clone()),
            store,
            verifier,
            manifests: manifest_cache::ManifestCache::new(64 << 20),
            pulls,
            db,
            config,
        }))
    }
}

/// Serves until `shutdown` resolves. Tests call this with a listener on port 0.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = App::new(config).await?;
    if app.config.uploads.purge_enabled {
        tokio::spawn(purge_uploads(app.clone()));
    }
    let router = routes::router(app.clone());
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    app.pulls.flush().await;
    Ok(())
}

async fn purge_uploads(app: AppState) {
    let max_age = Duration::from_secs(app.config.uploads.max_age_secs);
    let mut tick =
        tokio::time::interval(Duration::from_secs(app.config.uploads.interval_secs.max(1)));
    loop {
        tick.tick().await;
        match app.uploads.purge_older_than(max_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged abandoned uploads"),
            Err(e) => tracing::warn!(error = %e, "purging abandoned uploads failed"),
        }
    }
}
