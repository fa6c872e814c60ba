//! The cron scheduler. Schedules live in Postgres; each due one is advanced
//! to its next tick with a compare-and-set, and only the winner creates the
//! execution, in the same transaction. So a tick fires once across any
//! number of jobservice processes, and a schedule missed while jobservice was
//! down fires once on return (the next tick is computed from now, not from
//! the missed one).

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use wharf_catalog::jobs;
use wharf_jobs::cron::Cron;

use crate::AppState;

pub async fn run(app: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = fire_due(&app).await {
            tracing::warn!(error = %e, "scheduler tick failed");
        }
    }
}

/// Fires every due schedule once; returns the executions created.
pub async fn fire_due(app: &AppState) -> anyhow::Result<Vec<i64>> {
    let mut fired = Vec::new();
    for s in jobs::due_schedules(&app.db).await? {
        let Some(due) = s.next_run else { continue };
        let next = match Cron::parse(&s.cron) {
            Ok(c) => c.next_after(Utc::now().max(due)),
            Err(e) => {
                tracing::error!(schedule = s.id, error = %e, "schedule disabled: its cron cannot be parsed");
                None
            }
        };
        let mut tx = app.db.begin().await?;
        if !jobs::advance_schedule(&mut tx, s.id, due, next).await? {
            continue; // another replica fired this tick
        }
        let (execution, task) = jobs::create(
            &mut tx,
            &jobs::NewJob {
                vendor_type: &s.vendor_type,
                vendor_id: (s.vendor_id != 0).then_some(s.vendor_id),
                trigger: wharf_jobs::TRIGGER_SCHEDULE,
                extra_attrs: &s.payload,
                job_name: &s.job_name,
                payload: &s.payload,
                max_attempts: 3,
                deadline_secs: 6 * 3600,
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(schedule = s.id, job.name = %s.job_name, execution, "schedule fired");
        if let Err(e) = app.queue.push(&[task]).await {
            tracing::warn!(job.id = task, error = %e, "push failed; the sweeper will retry");
        }
        fired.push(execution);
    }
    Ok(fired)
}
