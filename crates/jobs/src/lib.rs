//! The job queue that core and jobservice share: job names, enqueueing (the
//! task row in Postgres first, its id on Redis second) and Harbor's cron
//! schedules. Postgres is the record; Redis is only the transport.

pub mod cron;
pub mod queue;

pub use queue::Queue;

/// Job names, as Harbor's vendor types.
pub const GARBAGE_COLLECTION: &str = "GARBAGE_COLLECTION";

/// Execution triggers.
pub const TRIGGER_MANUAL: &str = "MANUAL";
pub const TRIGGER_SCHEDULE: &str = "SCHEDULE";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Catalog(#[from] wharf_catalog::Error),
    #[error("catalogue database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("job queue (redis) error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("invalid cron expression {cron:?}: {reason}")]
    Cron { cron: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to run, for [`enqueue`].
pub struct Submit<'a> {
    pub job_name: &'a str,
    pub trigger: &'a str,
    pub params: &'a serde_json::Value,
    pub max_attempts: i32,
    pub deadline_secs: i32,
}

/// Creates the execution and its task, then pushes the task id. When Redis
/// is down or loses the id, jobservice's sweeper pushes it again from the
/// record, so a committed job is never lost.
pub async fn enqueue(db: &sqlx::PgPool, queue: &Queue, job: &Submit<'_>) -> Result<i64> {
    let mut tx = db.begin().await?;
    let (execution, task) = wharf_catalog::jobs::create(
        &mut tx,
        &wharf_catalog::jobs::NewJob {
            vendor_type: job.job_name,
            vendor_id: None,
            trigger: job.trigger,
            extra_attrs: job.params,
            job_name: job.job_name,
            payload: job.params,
            max_attempts: job.max_attempts,
            deadline_secs: job.deadline_secs,
        },
    )
    .await?;
    tx.commit().await?;
    if let Err(e) = queue.push(&[task]).await {
        tracing::warn!(job.id = task, error = %e, "could not push the task to redis; the sweeper will");
    }
    Ok(execution)
}
