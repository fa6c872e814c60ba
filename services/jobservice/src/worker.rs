//! A worker: pops a task id, takes the task with a compare-and-set in
//! Postgres, runs its job under a deadline while renewing its lease, then
//! records success, a retry with backoff, or the final error.
//!
//! The lease is the fence: a worker whose heartbeat finds the task no longer
//! its own (it was paused past the lease and the task was taken over) cancels
//! its job and records nothing, so no task runs to completion twice at once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wharf_catalog::jobs::{self as store, Task};

use crate::jobs::{Context, Outcome};
use crate::AppState;

pub async fn run(app: AppState, n: usize, stop: CancellationToken) {
    let mut popper = None;
    loop {
        if stop.is_cancelled() {
            return;
        }
        if popper.is_none() {
            match app.queue.popper().await {
                Ok(p) => popper = Some(p),
                Err(e) => {
                    tracing::warn!(worker = n, error = %e, "cannot reach the queue; retrying");
                    pause(&stop, Duration::from_secs(2)).await;
                    continue;
                }
            }
        }
        let Some(p) = popper.as_mut() else { continue };
        let id = tokio::select! {
            _ = stop.cancelled() => return,
            r = p.pop(Duration::from_secs(2)) => r,
        };
        let id = match id {
            Ok(Some(id)) => id,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(worker = n, error = %e, "queue pop failed; reconnecting");
                popper = None;
                pause(&stop, Duration::from_secs(1)).await;
                continue;
            }
        };
        let task = match store::reserve(&app.db, id, &app.worker_id).await {
            Ok(Some(t)) => t,
            // Not pending, not due, stopped, or taken by another worker.
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(job.id = id, error = %e, "could not reserve task; the sweeper will push it again");
                continue;
            }
        };
        app.busy.fetch_add(1, Ordering::Relaxed);
        run_task(&app, task, &stop).await;
        app.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn pause(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Why a job was cancelled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cancel {
    Stop,
    LeaseLost,
    Shutdown,
}

async fn run_task(app: &AppState, task: Task, shutdown: &CancellationToken) {
    use tracing::Instrument;
    let span = tracing::info_span!("job", job.id = task.id, job.name = %task.job_name, execution = task.execution_id, attempt = task.attempts);
    run_task_in_span(app, task, shutdown).instrument(span).await
}

async fn run_task_in_span(app: &AppState, task: Task, shutdown: &CancellationToken) {
    if let Err(e) = store::started(&app.db, task.execution_id).await {
        tracing::warn!(error = %e, "could not mark the execution running");
    }
    let ctx = Context::new(app.db.clone(), &task);
    ctx.log(format!(
        "task {} ({}) started on {}, attempt {} of {}",
        task.id, task.job_name, app.worker_id, task.attempts, task.max_attempts
    ));
    let cancel = ctx.cancel.clone();
    let reason = std::sync::Arc::new(std::sync::Mutex::new(None::<Cancel>));
    let beat = {
        let db = app.db.clone();
        let worker = app.worker_id.clone();
        let cancel = cancel.clone();
        let reason = reason.clone();
        let shutdown = shutdown.clone();
        let every = Duration::from_secs(app.config.queue.heartbeat_secs);
        let id = task.id;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let set = |why: Cancel| {
                let mut r = reason.lock().unwrap_or_else(|e| e.into_inner());
                r.get_or_insert(why);
            };
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => {
                        set(Cancel::Shutdown);
                        cancel.cancel();
                        return;
                    }
                }
                match store::heartbeat(&db, id, &worker).await {
                    Ok((true, false)) => {}
                    Ok((true, true)) => {
                        set(Cancel::Stop);
                        cancel.cancel();
                    }
                    Ok((false, _)) => {
                        set(Cancel::LeaseLost);
                        cancel.cancel();
                        return;
                    }
                    // A database blip: keep going; the lease outlives a few misses.
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        })
    };

    let job = app.jobs.get(&task.job_name);
    let outcome = match job {
        None => Err(format!(
            "no job is registered under the name {:?}",
            task.job_name
        )),
        Some(job) => {
            let fut = tokio::spawn(job(ctx.clone(), task.payload.clone()));
            let abort = fut.abort_handle();
            let deadline = Duration::from_secs(task.deadline_secs.max(1) as u64);
            let grace = Duration::from_secs(app.config.queue.stop_grace_secs);
            let joined = tokio::select! {
                r = tokio::time::timeout(deadline, fut) => r.map_err(|_| format!("deadline of {} s exceeded", deadline.as_secs())),
                _ = async { cancel.cancelled().await; tokio::time::sleep(grace).await } => {
                    Err("did not wind down after it was cancelled".to_owned())
                }
            };
            abort.abort();
            match joined {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(format!("the job panicked or was aborted: {e}")),
                Err(e) => Err(e),
            }
        }
    };
    beat.abort();
    ctx.flush().await;
    let why = *reason.lock().unwrap_or_else(|e| e.into_inner());
    let worker = &app.worker_id;
    let result = match (why, outcome) {
        (Some(Cancel::LeaseLost), _) => {
            tracing::warn!("lease lost; another worker owns this task now");
            return;
        }
        (Some(Cancel::Shutdown), Ok(Outcome::Stopped)) | (Some(Cancel::Shutdown), Err(_)) => {
            // Give the task back at once rather than waiting for the lease.
            ctx.log("jobservice is shutting down; the task goes back to the queue".to_owned());
            ctx.flush().await;
            store::retry(
                &app.db,
                task.id,
                worker,
                0,
                "jobservice shut down while it ran",
            )
            .await
            .map(|_| ())
        }
        (_, Ok(Outcome::Done)) => finish(app, &task, store::SUCCESS, None).await,
        (Some(Cancel::Stop), _) | (_, Ok(Outcome::Stopped)) => {
            finish(app, &task, store::STOPPED, Some("stopped on request")).await
        }
        (_, Err(e)) => {
            if task.attempts < task.max_attempts {
                let delay = backoff(task.attempts);
                ctx.log(format!(
                    "attempt {} failed: {e}; retrying in {delay} s",
                    task.attempts
                ));
                ctx.flush().await;
                store::retry(&app.db, task.id, worker, delay, &e)
                    .await
                    .map(|_| ())
            } else {
                ctx.log(format!("failed: {e}"));
                ctx.flush().await;
                finish(app, &task, store::ERROR, Some(&e)).await
            }
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "could not record the task's outcome; its lease will expire and it will be taken over");
    }
}

async fn finish(
    app: &AppState,
    task: &Task,
    status: &str,
    message: Option<&str>,
) -> Result<(), wharf_catalog::Error> {
    let mut tx = app.db.begin().await?;
    let ours = store::finish(&mut tx, task.id, &app.worker_id, status, message).await?;
    tx.commit().await?;
    if ours {
        tracing::info!(status, "task finished");
    } else {
        tracing::warn!("task finished but its lease was lost; the outcome was not recorded");
    }
    Ok(())
}

/// 10 s, 20 s, 40 s … capped at 10 minutes.
fn backoff(attempt: i32) -> i64 {
    let exp = attempt.clamp(1, 7) - 1;
    (10_i64 << exp).min(600)
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(super::backoff(1), 10);
        assert_eq!(super::backoff(2), 20);
        assert_eq!(super::backoff(3), 40);
        assert_eq!(super::backoff(50), 600);
    }
}
