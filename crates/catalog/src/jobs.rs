//! Executions, tasks, job logs and cron schedules: the record of every job.
//! Redis only carries task ids; what is pending, running or finished, and who
//! runs it, is decided here with compare-and-set updates, so a flushed Redis
//! or a killed worker loses nothing and no task runs twice at the same time.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Row};

use crate::Result;

pub const PENDING: &str = "Pending";
pub const RUNNING: &str = "Running";
pub const SUCCESS: &str = "Success";
pub const ERROR: &str = "Error";
pub const STOPPED: &str = "Stopped";

#[derive(Debug, Clone, serde::Serialize)]
pub struct Execution {
    pub id: i64,
    pub vendor_type: String,
    pub vendor_id: Option<i64>,
    pub status: String,
    pub status_message: Option<String>,
    pub trigger: String,
    pub extra_attrs: serde_json::Value,
    pub stop_requested: bool,
    pub start_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
}

const EXECUTION_COLUMNS: &str = "id, vendor_type, vendor_id, status, status_message, trigger, extra_attrs, stop_requested, start_time, update_time, end_time";

fn execution_row(r: sqlx::postgres::PgRow) -> Execution {
    Execution {
        id: r.get(0),
        vendor_type: r.get(1),
        vendor_id: r.get(2),
        status: r.get(3),
        status_message: r.get(4),
        trigger: r.get(5),
        extra_attrs: r.get(6),
        stop_requested: r.get(7),
        start_time: r.get(8),
        update_time: r.get(9),
        end_time: r.get(10),
    }
}

/// A task as a worker sees it once reserved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Task {
    pub id: i64,
    pub execution_id: i64,
    pub job_name: String,
    pub payload: serde_json::Value,
    pub status: String,
    pub status_message: Option<String>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub worker: Option<String>,
    pub deadline_secs: i32,
    pub creation_time: DateTime<Utc>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

const TASK_COLUMNS: &str = "id, execution_id, job_name, payload, status, status_message, attempts, max_attempts, worker, deadline_secs, creation_time, start_time, end_time";

fn task_row(r: sqlx::postgres::PgRow) -> Task {
    Task {
        id: r.get(0),
        execution_id: r.get(1),
        job_name: r.get(2),
        payload: r.get(3),
        status: r.get(4),
        status_message: r.get(5),
        attempts: r.get(6),
        max_attempts: r.get(7),
        worker: r.get(8),
        deadline_secs: r.get(9),
        creation_time: r.get(10),
        start_time: r.get(11),
        end_time: r.get(12),
    }
}

pub struct NewJob<'a> {
    pub vendor_type: &'a str,
    pub vendor_id: Option<i64>,
    pub trigger: &'a str,
    pub extra_attrs: &'a serde_json::Value,
    pub job_name: &'a str,
    pub payload: &'a serde_json::Value,
    pub max_attempts: i32,
    pub deadline_secs: i32,
}

/// One execution with one pending task; returns (execution id, task id).
pub async fn create(tx: &mut PgConnection, job: &NewJob<'_>) -> Result<(i64, i64)> {
    let execution: i64 = sqlx::query_scalar(
        "INSERT INTO execution (vendor_type, vendor_id, trigger, extra_attrs) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(job.vendor_type)
    .bind(job.vendor_id)
    .bind(job.trigger)
    .bind(job.extra_attrs)
    .fetch_one(&mut *tx)
    .await?;
    let task: i64 = sqlx::query_scalar(
        "INSERT INTO task (execution_id, job_name, payload, max_attempts, deadline_secs, enqueued_at) \
         VALUES ($1, $2, $3, $4, $5, now()) RETURNING id",
    )
    .bind(execution)
    .bind(job.job_name)
    .bind(job.payload)
    .bind(job.max_attempts.max(1))
    .bind(job.deadline_secs.max(1))
    .fetch_one(&mut *tx)
    .await?;
    Ok((execution, task))
}

/// Pending → Running for this worker, if the task is still pending, due and
/// its execution not stopped. The one place a task changes hands.
pub async fn reserve(db: impl PgExecutor<'_>, task: i64, worker: &str) -> Result<Option<Task>> {
    let row = sqlx::query(&format!(
        "UPDATE task SET status = 'Running', worker = $2, attempts = attempts + 1, \
                heartbeat_at = now(), start_time = coalesce(start_time, now()) \
         WHERE id = $1 AND status = 'Pending' AND not_before <= now() \
           AND NOT (SELECT stop_requested FROM execution e WHERE e.id = task.execution_id) \
         RETURNING {TASK_COLUMNS}"
    ))
    .bind(task)
    .bind(worker)
    .fetch_optional(db)
    .await?
    .map(task_row);
    Ok(row)
}

/// Marks the execution running once its first task has started.
pub async fn started(db: impl PgExecutor<'_>, execution: i64) -> Result<()> {
    sqlx::query(
        "UPDATE execution SET status = 'Running', update_time = now() WHERE id = $1 AND status = 'Pending'",
    )
    .bind(execution)
    .execute(db)
    .await?;
    Ok(())
}

/// The lease: true while the task is still this worker's and running.
/// Returns (still ours, stop requested).
pub async fn heartbeat(db: impl PgExecutor<'_>, task: i64, worker: &str) -> Result<(bool, bool)> {
    let row = sqlx::query(
        "UPDATE task SET heartbeat_at = now() WHERE id = $1 AND worker = $2 AND status = 'Running' \
         RETURNING (SELECT stop_requested FROM execution e WHERE e.id = task.execution_id)",
    )
    .bind(task)
    .bind(worker)
    .fetch_optional(db)
    .await?;
    Ok(match row {
        Some(r) => (true, r.get::<bool, _>(0)),
        None => (false, false),
    })
}

/// Ends a task this worker holds with a final status, then rolls the
/// execution's status up from its tasks. False when the lease was lost.
pub async fn finish(
    tx: &mut PgConnection,
    task: i64,
    worker: &str,
    status: &str,
    message: Option<&str>,
) -> Result<bool> {
    let execution: Option<i64> = sqlx::query_scalar(
        "UPDATE task SET status = $3, status_message = $4, end_time = now() \
         WHERE id = $1 AND worker = $2 AND status = 'Running' RETURNING execution_id",
    )
    .bind(task)
    .bind(worker)
    .bind(status)
    .bind(message)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(execution) = execution else {
        return Ok(false);
    };
    roll_up(&mut *tx, execution, message).await?;
    Ok(true)
}

/// Gives a task back to the queue after a failed attempt, due after `delay_secs`.
pub async fn retry(
    db: impl PgExecutor<'_>,
    task: i64,
    worker: &str,
    delay_secs: i64,
    message: &str,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE task SET status = 'Pending', worker = NULL, status_message = $3, \
                not_before = now() + make_interval(secs => $4), enqueued_at = NULL \
         WHERE id = $1 AND worker = $2 AND status = 'Running'",
    )
    .bind(task)
    .bind(worker)
    .bind(message)
    .bind(delay_secs.max(0) as f64)
    .execute(db)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The execution's status from its tasks: running while any is open, then
/// error, stopped or success.
async fn roll_up(tx: &mut PgConnection, execution: i64, message: Option<&str>) -> Result<()> {
    sqlx::query(
        "UPDATE execution e SET \
            status = s.status, \
            status_message = coalesce($2, e.status_message), \
            update_time = now(), \
            end_time = CASE WHEN s.status IN ('Success', 'Error', 'Stopped') THEN now() END \
         FROM (SELECT CASE \
                  WHEN bool_or(status IN ('Pending', 'Running')) THEN 'Running' \
                  WHEN bool_or(status = 'Error') THEN 'Error' \
                  WHEN bool_or(status = 'Stopped') THEN 'Stopped' \
                  ELSE 'Success' END AS status \
               FROM task WHERE execution_id = $1) s \
         WHERE e.id = $1",
    )
    .bind(execution)
    .bind(message)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Merges `attrs` into the execution's `extra_attrs` (results such as
/// `freed_space` are reported there, as Harbor does).
pub async fn merge_attrs(
    db: impl PgExecutor<'_>,
    execution: i64,
    attrs: &serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "UPDATE execution SET extra_attrs = extra_attrs || $2, update_time = now() WHERE id = $1",
    )
    .bind(execution)
    .bind(attrs)
    .execute(db)
    .await?;
    Ok(())
}

/// Asks an execution to stop. Tasks not yet started stop at once; running
/// ones see the flag at their next heartbeat. False when it does not exist or
/// has already ended.
pub async fn request_stop(tx: &mut PgConnection, execution: i64) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE execution SET stop_requested = true, update_time = now() \
         WHERE id = $1 AND status IN ('Pending', 'Running')",
    )
    .bind(execution)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    let stopped = sqlx::query(
        "UPDATE task SET status = 'Stopped', end_time = now(), status_message = 'stopped before it started' \
         WHERE execution_id = $1 AND status = 'Pending'",
    )
    .bind(execution)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if stopped > 0 {
        roll_up(&mut *tx, execution, None).await?;
    }
    Ok(true)
}

pub async fn get_execution(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Execution>> {
    Ok(sqlx::query(&format!(
        "SELECT {EXECUTION_COLUMNS} FROM execution WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?
    .map(execution_row))
}

/// A page of one vendor's executions, newest first, and the total count.
pub async fn list_executions(
    db: &sqlx::PgPool,
    vendor_type: &str,
    status: Option<&str>,
    oldest_first: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Execution>, i64)> {
    let order = if oldest_first {
        "start_time, id"
    } else {
        "start_time DESC, id DESC"
    };
    let rows = sqlx::query(&format!(
        "SELECT {EXECUTION_COLUMNS} FROM execution WHERE vendor_type = $1 AND ($2::text IS NULL OR status = $2) \
         ORDER BY {order} LIMIT $3 OFFSET $4"
    ))
    .bind(vendor_type)
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(execution_row)
    .collect();
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM execution WHERE vendor_type = $1 AND ($2::text IS NULL OR status = $2)",
    )
    .bind(vendor_type)
    .bind(status)
    .fetch_one(db)
    .await?;
    Ok((rows, total))
}

/// The oldest of a vendor's executions that is pending or running, if any.
pub async fn open_execution(
    db: impl PgExecutor<'_>,
    vendor_type: &str,
) -> Result<Option<Execution>> {
    Ok(sqlx::query(&format!(
        "SELECT {EXECUTION_COLUMNS} FROM execution WHERE vendor_type = $1 AND status IN ('Pending', 'Running') \
         ORDER BY id LIMIT 1"
    ))
    .bind(vendor_type)
    .fetch_optional(db)
    .await?
    .map(execution_row))
}

pub async fn tasks_of(db: impl PgExecutor<'_>, execution: i64) -> Result<Vec<Task>> {
    Ok(sqlx::query(&format!(
        "SELECT {TASK_COLUMNS} FROM task WHERE execution_id = $1 ORDER BY id"
    ))
    .bind(execution)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(task_row)
    .collect())
}

pub async fn get_task(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Task>> {
    Ok(
        sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM task WHERE id = $1"))
            .bind(id)
            .fetch_optional(db)
            .await?
            .map(task_row),
    )
}

// ---------------------------------------------------------------------------
// The sweeper's view.

/// Pending tasks that are due, oldest first: what the queue should hold.
pub async fn due_pending(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM task WHERE status = 'Pending' AND not_before <= now() ORDER BY not_before, id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Records that a task id was pushed to the queue.
pub async fn mark_enqueued(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<()> {
    sqlx::query("UPDATE task SET enqueued_at = now() WHERE id = ANY($1) AND status = 'Pending'")
        .bind(ids)
        .execute(db)
        .await?;
    Ok(())
}

/// Running tasks whose worker has been silent longer than `lease_secs`: their
/// worker is gone. Each goes back to pending when attempts remain, else it
/// fails; returns (requeued, failed) task ids.
pub async fn reclaim_abandoned(
    tx: &mut PgConnection,
    lease_secs: i64,
) -> Result<(Vec<i64>, Vec<i64>)> {
    let rows = sqlx::query(
        "SELECT id, attempts < max_attempts AND NOT (SELECT stop_requested FROM execution e WHERE e.id = task.execution_id), execution_id \
         FROM task WHERE status = 'Running' AND heartbeat_at < now() - make_interval(secs => $1) \
         FOR UPDATE SKIP LOCKED",
    )
    .bind(lease_secs.max(1) as f64)
    .fetch_all(&mut *tx)
    .await?;
    let mut requeued = Vec::new();
    let mut failed = Vec::new();
    for r in rows {
        let id: i64 = r.get(0);
        let again: bool = r.get(1);
        let execution: i64 = r.get(2);
        if again {
            sqlx::query(
                "UPDATE task SET status = 'Pending', worker = NULL, not_before = now(), enqueued_at = NULL, \
                        status_message = 'its worker stopped answering; taken over' WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            requeued.push(id);
        } else {
            let msg = "its worker stopped answering and no attempts are left";
            sqlx::query(
                "UPDATE task SET status = CASE WHEN (SELECT stop_requested FROM execution e WHERE e.id = task.execution_id) \
                                              THEN 'Stopped' ELSE 'Error' END, \
                        status_message = $2, end_time = now() WHERE id = $1",
            )
            .bind(id)
            .bind(msg)
            .execute(&mut *tx)
            .await?;
            roll_up(&mut *tx, execution, Some(msg)).await?;
            failed.push(id);
        }
    }
    Ok((requeued, failed))
}

/// Counts of open tasks by status and job name, for the health endpoint.
pub async fn open_counts(db: impl PgExecutor<'_>) -> Result<Vec<(String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT job_name, status, count(*) FROM task WHERE status IN ('Pending', 'Running') GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(db)
    .await?)
}

// ---------------------------------------------------------------------------
// Logs.

pub async fn append_log(db: impl PgExecutor<'_>, task: i64, line: &str) -> Result<()> {
    sqlx::query("INSERT INTO job_log (task_id, line) VALUES ($1, $2)")
        .bind(task)
        .bind(line)
        .execute(db)
        .await?;
    Ok(())
}

/// The log of an execution's tasks as text, one timestamped line each.
pub async fn execution_log(db: impl PgExecutor<'_>, execution: i64) -> Result<String> {
    let rows: Vec<(DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT l.at, l.line FROM job_log l JOIN task t ON t.id = l.task_id \
         WHERE t.execution_id = $1 ORDER BY l.id",
    )
    .bind(execution)
    .fetch_all(db)
    .await?;
    let mut out = String::new();
    for (at, line) in rows {
        out.push_str(&at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
        out.push_str(" [INFO] ");
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Deletes log lines older than `days`; returns how many went.
pub async fn sweep_logs(db: impl PgExecutor<'_>, days: i64) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM job_log WHERE at < now() - make_interval(days => $1)")
            .bind(days.max(0) as i32)
            .execute(db)
            .await?
            .rows_affected(),
    )
}

// ---------------------------------------------------------------------------
// Schedules.

#[derive(Debug, Clone, serde::Serialize)]
pub struct Schedule {
    pub id: i64,
    pub vendor_type: String,
    pub vendor_id: i64,
    pub kind: String,
    pub cron: String,
    pub job_name: String,
    pub payload: serde_json::Value,
    pub next_run: Option<DateTime<Utc>>,
    pub creation_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

const SCHEDULE_COLUMNS: &str =
    "id, vendor_type, vendor_id, kind, cron, job_name, payload, next_run, creation_time, update_time";

fn schedule_row(r: sqlx::postgres::PgRow) -> Schedule {
    Schedule {
        id: r.get(0),
        vendor_type: r.get(1),
        vendor_id: r.get(2),
        kind: r.get(3),
        cron: r.get(4),
        job_name: r.get(5),
        payload: r.get(6),
        next_run: r.get(7),
        creation_time: r.get(8),
        update_time: r.get(9),
    }
}

pub struct NewSchedule<'a> {
    pub vendor_type: &'a str,
    pub vendor_id: i64,
    pub kind: &'a str,
    pub cron: &'a str,
    pub job_name: &'a str,
    pub payload: &'a serde_json::Value,
    pub next_run: DateTime<Utc>,
}

/// Creates or replaces the one schedule of a vendor.
pub async fn upsert_schedule(db: impl PgExecutor<'_>, s: &NewSchedule<'_>) -> Result<Schedule> {
    Ok(schedule_row(
        sqlx::query(&format!(
            "INSERT INTO schedule (vendor_type, vendor_id, kind, cron, job_name, payload, next_run) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (vendor_type, vendor_id) DO UPDATE SET kind = $3, cron = $4, job_name = $5, \
                payload = $6, next_run = $7, update_time = now() \
             RETURNING {SCHEDULE_COLUMNS}"
        ))
        .bind(s.vendor_type)
        .bind(s.vendor_id)
        .bind(s.kind)
        .bind(s.cron)
        .bind(s.job_name)
        .bind(s.payload)
        .bind(s.next_run)
        .fetch_one(db)
        .await?,
    ))
}

pub async fn delete_schedule(
    db: impl PgExecutor<'_>,
    vendor_type: &str,
    vendor_id: i64,
) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM schedule WHERE vendor_type = $1 AND vendor_id = $2")
            .bind(vendor_type)
            .bind(vendor_id)
            .execute(db)
            .await?
            .rows_affected()
            > 0,
    )
}

pub async fn get_schedule(
    db: impl PgExecutor<'_>,
    vendor_type: &str,
    vendor_id: i64,
) -> Result<Option<Schedule>> {
    Ok(sqlx::query(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedule WHERE vendor_type = $1 AND vendor_id = $2"
    ))
    .bind(vendor_type)
    .bind(vendor_id)
    .fetch_optional(db)
    .await?
    .map(schedule_row))
}

/// Schedules whose next run has come.
pub async fn due_schedules(db: impl PgExecutor<'_>) -> Result<Vec<Schedule>> {
    Ok(sqlx::query(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedule WHERE next_run <= now() ORDER BY next_run LIMIT 100"
    ))
    .fetch_all(db)
    .await?
    .into_iter()
    .map(schedule_row)
    .collect())
}

/// Moves a schedule from the tick it is firing to the next one. Only one
/// caller wins the compare-and-set, so a tick fires once across replicas.
pub async fn advance_schedule(
    tx: &mut PgConnection,
    id: i64,
    fired: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
) -> Result<bool> {
    Ok(
        sqlx::query("UPDATE schedule SET next_run = $3 WHERE id = $1 AND next_run = $2")
            .bind(id)
            .bind(fired)
            .bind(next)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1,
    )
}
