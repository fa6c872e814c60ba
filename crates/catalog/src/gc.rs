//! The garbage collector's SQL (shared/docs/gc.md): the mark, the sweep's
//! claim and step A run by the collector, and step B's locks and deletes run
//! by the registry. Digests are raw bytes here, as in the tables.
//!
//! Every locking statement is followed by a **new** statement that re-checks
//! the predicate: in READ COMMITTED the locking statement's subqueries used a
//! snapshot taken before the lock was held.

use sqlx::{PgConnection, PgExecutor, Row};

use crate::Result;

/// Key of the session-level advisory lock that keeps GC runs one at a time.
pub const RUN_LOCK: i64 = 0x5748_4152_465f_4743; // "WHARF_GC"

/// Queue kinds.
pub const BLOB: &str = "blob";
pub const MANIFEST: &str = "manifest";

fn secs(grace_secs: i64) -> f64 {
    grace_secs.max(0) as f64
}

// ---------------------------------------------------------------------------
// Runs.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCounters {
    pub examined: i64,
    pub deleted: i64,
    pub manifests_deleted: i64,
    pub kept: i64,
    pub bytes_freed: i64,
    pub errors: i64,
}

pub async fn create_run(
    db: impl PgExecutor<'_>,
    params: &serde_json::Value,
    dry_run: bool,
    execution_id: Option<i64>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO gc_run (params, phase, dry_run, execution_id) VALUES ($1, 'starting', $2, $3) RETURNING id",
    )
    .bind(params)
    .bind(dry_run)
    .bind(execution_id)
    .fetch_one(db)
    .await?)
}

pub async fn set_phase(db: impl PgExecutor<'_>, run: i64, phase: &str) -> Result<()> {
    sqlx::query("UPDATE gc_run SET phase = $2, heartbeat_at = now() WHERE id = $1")
        .bind(run)
        .bind(phase)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn heartbeat(db: impl PgExecutor<'_>, run: i64) -> Result<()> {
    sqlx::query("UPDATE gc_run SET heartbeat_at = now() WHERE id = $1")
        .bind(run)
        .execute(db)
        .await?;
    Ok(())
}

/// Adds a chunk's counts to the run and beats its heart; returns `stop_requested`.
pub async fn add_progress(db: impl PgExecutor<'_>, run: i64, c: &RunCounters) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "UPDATE gc_run SET examined = examined + $2, deleted = deleted + $3,
                manifests_deleted = manifests_deleted + $4, kept = kept + $5,
                bytes_freed = bytes_freed + $6, errors = errors + $7, heartbeat_at = now()
          WHERE id = $1 RETURNING stop_requested",
    )
    .bind(run)
    .bind(c.examined)
    .bind(c.deleted)
    .bind(c.manifests_deleted)
    .bind(c.kept)
    .bind(c.bytes_freed)
    .bind(c.errors)
    .fetch_one(db)
    .await?)
}

pub async fn stop_requested(db: impl PgExecutor<'_>, run: i64) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT stop_requested FROM gc_run WHERE id = $1")
            .bind(run)
            .fetch_optional(db)
            .await?
            .unwrap_or(false),
    )
}

pub async fn request_stop(db: impl PgExecutor<'_>, run: i64) -> Result<bool> {
    Ok(
        sqlx::query(
            "UPDATE gc_run SET stop_requested = true WHERE id = $1 AND finished_at IS NULL",
        )
        .bind(run)
        .execute(db)
        .await?
        .rows_affected()
            > 0,
    )
}

pub async fn finish_run(
    db: impl PgExecutor<'_>,
    run: i64,
    status: &str,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE gc_run SET status = $2, error = $3, phase = 'done', finished_at = now(), heartbeat_at = now() WHERE id = $1",
    )
    .bind(run)
    .bind(status)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// Overwrites the counters (a dry run reports what it would do).
pub async fn set_counters(db: impl PgExecutor<'_>, run: i64, c: &RunCounters) -> Result<()> {
    sqlx::query(
        "UPDATE gc_run SET examined = $2, deleted = $3, manifests_deleted = $4, kept = $5, bytes_freed = $6, errors = $7 WHERE id = $1",
    )
    .bind(run)
    .bind(c.examined)
    .bind(c.deleted)
    .bind(c.manifests_deleted)
    .bind(c.kept)
    .bind(c.bytes_freed)
    .bind(c.errors)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub params: serde_json::Value,
    pub phase: String,
    pub status: String,
    pub dry_run: bool,
    pub execution_id: Option<i64>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub examined: i64,
    pub deleted: i64,
    pub manifests_deleted: i64,
    pub kept: i64,
    pub bytes_freed: i64,
    pub errors: i64,
    pub stop_requested: bool,
    pub error: Option<String>,
}

const RUN_COLUMNS: &str = "id, params, phase, status, dry_run, execution_id, started_at, heartbeat_at, finished_at, examined, deleted, manifests_deleted, kept, bytes_freed, errors, stop_requested, error";

fn run_row(r: sqlx::postgres::PgRow) -> RunRow {
    RunRow {
        id: r.get(0),
        params: r.get(1),
        phase: r.get(2),
        status: r.get(3),
        dry_run: r.get(4),
        execution_id: r.get(5),
        started_at: r.get(6),
        heartbeat_at: r.get(7),
        finished_at: r.get(8),
        examined: r.get(9),
        deleted: r.get(10),
        manifests_deleted: r.get(11),
        kept: r.get(12),
        bytes_freed: r.get(13),
        errors: r.get(14),
        stop_requested: r.get(15),
        error: r.get(16),
    }
}

pub async fn get_run(db: impl PgExecutor<'_>, run: i64) -> Result<Option<RunRow>> {
    Ok(
        sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM gc_run WHERE id = $1"))
            .bind(run)
            .fetch_optional(db)
            .await?
            .map(run_row),
    )
}

pub async fn run_by_execution(db: impl PgExecutor<'_>, execution: i64) -> Result<Option<RunRow>> {
    Ok(sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM gc_run WHERE execution_id = $1 ORDER BY id DESC LIMIT 1"
    ))
    .bind(execution)
    .fetch_optional(db)
    .await?
    .map(run_row))
}

// ---------------------------------------------------------------------------
// Phase 0: what crashed owners left `deleting`.

/// Blobs left `deleting` by a run whose heartbeat (or, without a run, whose
/// `deleting_since`) is older than `stale_secs`, excluding `current` run.
pub async fn stale_deleting_blobs(
    db: impl PgExecutor<'_>,
    current: i64,
    stale_secs: i64,
    limit: i64,
) -> Result<Vec<Vec<u8>>> {
    Ok(sqlx::query_scalar(
        "SELECT b.digest FROM blob b LEFT JOIN gc_run g ON g.id = b.gc_run
          WHERE b.state = 'deleting' AND b.gc_run IS DISTINCT FROM $1
            AND COALESCE(g.heartbeat_at, b.deleting_since, b.created_at) < now() - make_interval(secs => $2)
          ORDER BY b.digest LIMIT $3",
    )
    .bind(current)
    .bind(secs(stale_secs))
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Manifests left `deleting` (by an API delete or a GC run) longer than `stale_secs`.
pub async fn stale_deleting_manifests(
    db: impl PgExecutor<'_>,
    stale_secs: i64,
    limit: i64,
) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM manifest WHERE state = 'deleting'
            AND COALESCE(deleting_since, pushed_at) < now() - make_interval(secs => $1)
          ORDER BY id LIMIT $2",
    )
    .bind(secs(stale_secs))
    .bind(limit)
    .fetch_all(db)
    .await?)
}

// ---------------------------------------------------------------------------
// Phase 1 and 2: queueing candidates.

/// The untagged-manifest predicate of Phase 1 and of the manifest sweep's re-check.
const UNTAGGED: &str = "m.state = 'live'
    AND m.pushed_at < now() - make_interval(secs => $1)
    AND NOT EXISTS (SELECT 1 FROM tag t WHERE t.manifest_id = m.id)
    AND NOT EXISTS (SELECT 1 FROM manifest_ref r JOIN manifest p ON p.id = r.manifest_id
                     WHERE r.child_digest = m.digest AND r.kind = 'manifest' AND p.repo_id = m.repo_id)
    AND (m.subject_digest IS NULL OR NOT EXISTS (
           SELECT 1 FROM manifest s WHERE s.repo_id = m.repo_id AND s.digest = m.subject_digest AND s.state = 'live'))";

/// Phase 1: queues every untagged manifest that nothing needs; returns how many.
pub async fn queue_untagged(db: impl PgExecutor<'_>, grace_secs: i64) -> Result<u64> {
    Ok(sqlx::query(&format!(
        "INSERT INTO gc_queue (kind, key, review_after)
         SELECT 'manifest', int8send(m.id), now() FROM manifest m WHERE {UNTAGGED}
         ON CONFLICT (kind, key) DO UPDATE SET review_after = now() WHERE gc_queue.attempts = 0"
    ))
    .bind(secs(grace_secs))
    .execute(db)
    .await?
    .rows_affected())
}

/// The blob predicate of the mark and of step A's re-check.
const UNREFERENCED: &str = "b.created_at < now() - make_interval(secs => $1)
    AND NOT EXISTS (SELECT 1 FROM manifest m WHERE m.digest = b.digest)
    AND NOT EXISTS (SELECT 1 FROM manifest_ref r WHERE r.child_digest = b.digest)
    AND NOT EXISTS (SELECT 1 FROM repo_blob p WHERE p.digest = b.digest
                     AND p.last_used_at > now() - make_interval(secs => $1))";

/// Phase 2, the mark: one anti-join that queues every unreferenced live blob.
pub async fn mark(db: impl PgExecutor<'_>, grace_secs: i64) -> Result<u64> {
    Ok(sqlx::query(&format!(
        "INSERT INTO gc_queue (kind, key, review_after)
         SELECT 'blob', b.digest, now() FROM blob b WHERE b.state = 'live' AND {UNREFERENCED}
         ON CONFLICT (kind, key) DO UPDATE SET review_after = now()
           WHERE gc_queue.attempts = 0 AND gc_queue.review_after > now()"
    ))
    .bind(secs(grace_secs))
    .execute(db)
    .await?
    .rows_affected())
}

// ---------------------------------------------------------------------------
// Phase 3: the sweep.

/// Claims up to `limit` due queue rows of `kind`, skipping those another worker holds.
pub async fn claim_queue(tx: &mut PgConnection, kind: &str, limit: i64) -> Result<Vec<Vec<u8>>> {
    Ok(sqlx::query_scalar(
        "SELECT key FROM gc_queue WHERE kind = $1 AND review_after <= now()
          ORDER BY review_after LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(kind)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?)
}

/// What step A decided for a chunk.
#[derive(Debug, Default, Clone)]
pub struct StepA {
    /// Now `deleting`, with their sizes: hand them to step B.
    pub doomed: Vec<(Vec<u8>, i64)>,
    /// Still referenced (or gone): their queue rows are dropped.
    pub kept: usize,
    /// Locked by a writer: back in the queue a minute from now.
    pub busy: usize,
}

/// Step A for blobs, inside the claim's transaction. With `apply = false`
/// (dry run) it computes the same sets and changes nothing but the queue.
pub async fn step_a_blobs(
    tx: &mut PgConnection,
    run: i64,
    claimed: &[Vec<u8>],
    grace_secs: i64,
    apply: bool,
) -> Result<StepA> {
    // 1. Lock the live rows; a writer's KEY SHARE makes us skip.
    let locked: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT digest FROM blob WHERE digest = ANY($1) AND state = 'live' ORDER BY digest FOR UPDATE SKIP LOCKED",
    )
    .bind(claimed)
    .fetch_all(&mut *tx)
    .await?;
    // 2. A new statement re-checks the predicate now that the locks are held.
    let rows = sqlx::query(&format!(
        "SELECT b.digest, b.size FROM blob b WHERE b.digest = ANY($2) AND b.state = 'live' AND {UNREFERENCED}"
    ))
    .bind(secs(grace_secs))
    .bind(&locked)
    .fetch_all(&mut *tx)
    .await?;
    let doomed: Vec<(Vec<u8>, i64)> = rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    let doomed_keys: Vec<&[u8]> = doomed.iter().map(|(d, _)| d.as_slice()).collect();
    // Live rows we could not lock: a writer holds them. Review them later.
    let unlocked: Vec<&Vec<u8>> = claimed.iter().filter(|c| !locked.contains(c)).collect();
    let busy: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT digest FROM blob WHERE digest = ANY($1) AND state = 'live'")
            .bind(&unlocked)
            .fetch_all(&mut *tx)
            .await?;
    // 3. Mark them deleting.
    if apply && !doomed_keys.is_empty() {
        sqlx::query(
            "UPDATE blob SET state = 'deleting', gc_run = $2, deleting_since = now() WHERE digest = ANY($1)",
        )
        .bind(&doomed_keys)
        .bind(run)
        .execute(&mut *tx)
        .await?;
    }
    // 4. Drop the claimed queue rows; the busy ones come back in a minute.
    requeue(tx, BLOB, claimed, &busy).await?;
    Ok(StepA {
        kept: claimed.len() - doomed.len() - busy.len(),
        busy: busy.len(),
        doomed,
    })
}

/// Step A for manifests: lock, re-check untagged-and-unneeded in a new
/// statement, set `deleting`. Returns the doomed ids and counts.
pub async fn step_a_manifests(
    tx: &mut PgConnection,
    claimed: &[Vec<u8>],
    grace_secs: i64,
    apply: bool,
) -> Result<(Vec<i64>, usize, usize)> {
    let ids: Vec<i64> = claimed
        .iter()
        .filter_map(|k| {
            <[u8; 8]>::try_from(k.as_slice())
                .ok()
                .map(i64::from_be_bytes)
        })
        .collect();
    let locked: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM manifest WHERE id = ANY($1) AND state = 'live' ORDER BY id FOR UPDATE SKIP LOCKED",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let doomed: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT m.id FROM manifest m WHERE m.id = ANY($2) AND {UNTAGGED}"
    ))
    .bind(secs(grace_secs))
    .bind(&locked)
    .fetch_all(&mut *tx)
    .await?;
    let unlocked: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|i| !locked.contains(i))
        .collect();
    let busy: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM manifest WHERE id = ANY($1) AND state = 'live'")
            .bind(&unlocked)
            .fetch_all(&mut *tx)
            .await?;
    if apply && !doomed.is_empty() {
        sqlx::query(
            "UPDATE manifest SET state = 'deleting', deleting_since = now() WHERE id = ANY($1)",
        )
        .bind(&doomed)
        .execute(&mut *tx)
        .await?;
    }
    let busy_keys: Vec<Vec<u8>> = busy.iter().map(|i| i.to_be_bytes().to_vec()).collect();
    requeue(tx, MANIFEST, claimed, &busy_keys).await?;
    let kept = claimed.len() - doomed.len() - busy.len();
    Ok((doomed, kept, busy.len()))
}

/// Drops the claimed queue rows except `busy`, which come back in a minute.
async fn requeue(
    tx: &mut PgConnection,
    kind: &str,
    claimed: &[Vec<u8>],
    busy: &[Vec<u8>],
) -> Result<()> {
    sqlx::query("DELETE FROM gc_queue WHERE kind = $1 AND key = ANY($2) AND NOT (key = ANY($3))")
        .bind(kind)
        .bind(claimed)
        .bind(busy)
        .execute(&mut *tx)
        .await?;
    if !busy.is_empty() {
        sqlx::query(
            "UPDATE gc_queue SET review_after = now() + interval '1 minute' WHERE kind = $1 AND key = ANY($2)",
        )
        .bind(kind)
        .bind(busy)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Puts digests back in the queue with GitLab's backoff after a storage error.
pub async fn backoff_blobs(db: impl PgExecutor<'_>, keys: &[Vec<u8>]) -> Result<()> {
    sqlx::query(
        "INSERT INTO gc_queue (kind, key, review_after, attempts)
         SELECT 'blob', k, now() + interval '5 minutes', 1 FROM unnest($1::bytea[]) AS k
         ON CONFLICT (kind, key) DO UPDATE
           SET attempts = gc_queue.attempts + 1,
               review_after = now() + LEAST(interval '5 minutes' * power(2, gc_queue.attempts + 1), interval '24 hours')",
    )
    .bind(keys)
    .execute(db)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Step B, run by the registry.

/// Locks the `deleting` rows among `keys`; returns them with their sizes.
///
/// This waits for the lock rather than skipping (gc.md's plain `FOR
/// UPDATE`). Nobody holds a `deleting` row for long: a writer that finds it
/// holds `KEY SHARE` only until it rolls back to wait, and another step B on
/// the same digest deletes the row, which the re-check of `state` after the
/// wait then skips. `SKIP LOCKED` here used to leave a row that a waiting
/// writer happened to hold at that instant `deleting`, unreported, until
/// Phase 0 of a later run (60 s on), and every push of the digest got 503
/// in the meantime. `lock_timeout` bounds the wait.
pub async fn lock_deleting_blobs(
    tx: &mut PgConnection,
    keys: &[Vec<u8>],
) -> Result<Vec<(Vec<u8>, i64)>> {
    sqlx::query("SET LOCAL lock_timeout = '5s'")
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(
        "SELECT digest, size FROM blob WHERE digest = ANY($1) AND state = 'deleting'
          ORDER BY digest FOR UPDATE",
    )
    .bind(keys)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Every `_layers` link of `keys`: (repository name, digest).
pub async fn layer_links(
    tx: &mut PgConnection,
    keys: &[Vec<u8>],
) -> Result<Vec<(String, Vec<u8>)>> {
    let rows = sqlx::query(
        "SELECT r.name, rb.digest FROM repo_blob rb JOIN repository r ON r.id = rb.repo_id WHERE rb.digest = ANY($1)",
    )
    .bind(keys)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Deletes the rows of blobs whose files are gone.
pub async fn purge_blobs(tx: &mut PgConnection, keys: &[Vec<u8>]) -> Result<()> {
    sqlx::query("DELETE FROM repo_blob WHERE digest = ANY($1)")
        .bind(keys)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM blob WHERE digest = ANY($1) AND state = 'deleting'")
        .bind(keys)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM gc_queue WHERE kind = 'blob' AND key = ANY($1)")
        .bind(keys)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Repository name of a manifest row.
pub async fn manifest_repository(db: impl PgExecutor<'_>, id: i64) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT r.name FROM manifest m JOIN repository r ON r.id = m.repo_id WHERE m.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

// ---------------------------------------------------------------------------
// Phase 4: reconcile.

/// Which of `keys` have a blob row.
pub async fn known_blobs(db: impl PgExecutor<'_>, keys: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    Ok(
        sqlx::query_scalar("SELECT digest FROM blob WHERE digest = ANY($1)")
            .bind(keys)
            .fetch_all(db)
            .await?,
    )
}

/// Claims files no row knows: inserts them `deleting` so writers wait while
/// step B removes them. Returns the digests this call claimed.
pub async fn claim_orphans(
    db: impl PgExecutor<'_>,
    run: i64,
    files: &[(Vec<u8>, i64)],
) -> Result<Vec<Vec<u8>>> {
    let (keys, sizes): (Vec<&[u8]>, Vec<i64>) =
        files.iter().map(|(k, s)| (k.as_slice(), *s)).unzip();
    Ok(sqlx::query_scalar(
        "INSERT INTO blob (digest, size, state, gc_run, deleting_since)
         SELECT k, s, 'deleting', $3, now() FROM unnest($1::bytea[], $2::int8[]) AS t(k, s) ORDER BY k
         ON CONFLICT (digest) DO NOTHING RETURNING digest",
    )
    .bind(keys)
    .bind(sizes)
    .bind(run)
    .fetch_all(db)
    .await?)
}

// ---------------------------------------------------------------------------
// Dry run: the same predicates inside a transaction the caller rolls back.

/// Deletes (in the caller's doomed transaction) the manifests Phase 1 would;
/// returns how many.
pub async fn dry_run_untagged(tx: &mut PgConnection, grace_secs: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(&format!(
        "WITH gone AS (DELETE FROM manifest m WHERE {UNTAGGED} RETURNING m.id) SELECT count(*) FROM gone"
    ))
    .bind(secs(grace_secs))
    .fetch_one(&mut *tx)
    .await?)
}

/// How many live blobs step A would doom now, and their bytes.
pub async fn dry_run_blobs(tx: &mut PgConnection, grace_secs: i64) -> Result<(i64, i64)> {
    let row = sqlx::query(&format!(
        "SELECT count(*), COALESCE(sum(b.size), 0)::int8 FROM blob b WHERE b.state = 'live' AND {UNREFERENCED}"
    ))
    .bind(secs(grace_secs))
    .fetch_one(&mut *tx)
    .await?;
    Ok((row.get(0), row.get(1)))
}

/// Ends a run whose worker was lost, leaving its heartbeat as it was, so
/// that the next run's Phase 0 sees its `deleting` rows as stale.
pub async fn abandon_run(db: impl PgExecutor<'_>, run: i64, reason: &str) -> Result<()> {
    sqlx::query(
        "UPDATE gc_run SET status = 'error', error = $2, phase = 'done', finished_at = now() WHERE id = $1 AND finished_at IS NULL",
    )
    .bind(run)
    .bind(reason)
    .execute(db)
    .await?;
    Ok(())
}

/// The latest run of each of `executions`, in one query (a history page).
pub async fn runs_by_executions(
    db: impl PgExecutor<'_>,
    executions: &[i64],
) -> Result<Vec<RunRow>> {
    Ok(sqlx::query(&format!(
        "SELECT DISTINCT ON (execution_id) {RUN_COLUMNS} FROM gc_run WHERE execution_id = ANY($1) ORDER BY execution_id, id DESC"
    ))
    .bind(executions)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(run_row)
    .collect())
}
