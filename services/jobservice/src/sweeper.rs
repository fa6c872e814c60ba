//! Keeps the Redis queue true to Postgres: pushes again what Postgres says is
//! due and the queue no longer holds (Redis flushed, a push failed, a retry
//! came due), takes over tasks whose worker stopped renewing its lease, and
//! deletes old job logs.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wharf_catalog::jobs;

use crate::AppState;

pub async fn run(app: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(
        app.config.queue.sweep_interval_secs.max(1),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_log_sweep: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = sweep_once(&app).await {
            tracing::warn!(error = %e, "queue sweep failed");
        }
        if last_log_sweep.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            last_log_sweep = Some(Instant::now());
            match jobs::sweep_logs(&app.db, app.config.job_log_retention_days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(lines = n, "deleted old job log lines"),
                Err(e) => tracing::warn!(error = %e, "job log sweep failed"),
            }
        }
    }
}

/// One pass; returns the task ids pushed.
pub async fn sweep_once(app: &AppState) -> anyhow::Result<Vec<i64>> {
    let mut tx = app.db.begin().await?;
    let (requeued, failed) = jobs::reclaim_abandoned(&mut tx, app.config.queue.lease_secs).await?;
    tx.commit().await?;
    for t in &requeued {
        tracing::warn!(
            job.id = t,
            "task's worker stopped answering; taking it over"
        );
    }
    for t in &failed {
        tracing::error!(
            job.id = t,
            "task's worker stopped answering and no attempts are left"
        );
    }
    let mut pushed = Vec::new();
    for id in jobs::due_pending(&app.db, 1000).await? {
        if !app.queue.contains(id).await? {
            pushed.push(id);
        }
    }
    if !pushed.is_empty() {
        app.queue.push(&pushed).await?;
        jobs::mark_enqueued(&app.db, &pushed).await?;
        tracing::info!(
            tasks = pushed.len(),
            "pushed due tasks the queue did not hold"
        );
    }
    Ok(pushed)
}
