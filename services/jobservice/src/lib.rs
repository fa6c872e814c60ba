//! `wharf-jobservice`: runs everything that should not happen inside a
//! request. Workers pop task ids from Redis and take each task with a
//! compare-and-set in Postgres; the scheduler fires cron schedules once per
//! tick; the sweeper keeps Redis true to Postgres and takes over tasks whose
//! worker died.

pub mod config;
pub mod jobs;
mod routes;
pub mod scheduler;
pub mod sweeper;
pub mod worker;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wharf_jobs::Queue;

pub use config::Config;

pub struct App {
    pub config: Config,
    pub db: PgPool,
    pub queue: Queue,
    pub jobs: jobs::Catalogue,
    /// Workers that hold a task right now.
    pub busy: AtomicUsize,
    /// This process's worker identity: leases in Postgres name it.
    pub worker_id: String,
}

pub type AppState = Arc<App>;

impl App {
    pub async fn new(config: Config) -> anyhow::Result<AppState> {
        let db =
            wharf_catalog::connect(&config.database.url.0, config.database.max_connections).await?;
        let queue = Queue::connect(&config.redis.url.0, &config.redis.prefix)
            .await
            .context("connecting to Redis")?;
        let jobs = jobs::Catalogue::new(&config, db.clone());
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "jobservice".into());
        let worker_id = format!(
            "{host}:{}:{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(Arc::new(App {
            config,
            db,
            queue,
            jobs,
            busy: AtomicUsize::new(0),
            worker_id,
        }))
    }
}

/// Runs until `shutdown` resolves; workers then finish the job in hand (up to
/// the stop grace) and the rest stays pending in Postgres for the next start.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = App::new(config).await?;
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for n in 0..app.config.max_job_workers {
        tasks.push(tokio::spawn(worker::run(app.clone(), n, stop.clone())));
    }
    tasks.push(tokio::spawn(scheduler::run(app.clone(), stop.clone())));
    tasks.push(tokio::spawn(sweeper::run(app.clone(), stop.clone())));
    tracing::info!(worker = %app.worker_id, "jobservice started");
    let serve_stop = stop.clone();
    let server =
        axum::serve(listener, routes::router(app.clone())).with_graceful_shutdown(async move {
            shutdown.await;
            serve_stop.cancel();
        });
    server.await?;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
