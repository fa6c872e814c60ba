//! Online garbage collection of the storage index (shared/docs/gc.md): the
//! collector that recovers interrupted deletes, queues untagged manifests,
//! marks unreferenced blobs, sweeps them in parallel chunks under Postgres row
//! locks (the registry performs the unlinks) and reconciles files no row knows.

mod registry;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use wharf_catalog::gc::{self as sql, RunCounters};
use wharf_oci::Digest;
use wharf_storage::failpoint;

pub use registry::{ManifestsVacuumed, Reconciled, RegistryClient, Vacuumed};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("another garbage collection is running")]
    AlreadyRunning,
    #[error(transparent)]
    Catalog(#[from] wharf_catalog::Error),
    #[error("catalogue database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("calling the registry failed: {0}")]
    Registry(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A run's parameters, Harbor's `parameters` of `/system/gc/schedule`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    pub delete_untagged: bool,
    pub dry_run: bool,
    /// Parallel sweep loops.
    pub workers: usize,
    /// The grace window G in seconds (Harbor's `time_window`, given in hours there).
    pub grace_secs: i64,
    /// Run Phase 4 (reconcile the files no row knows).
    pub reconcile: bool,
    /// Phase 0 finishes `deleting` rows whose owner has been silent this long.
    pub recover_after_secs: i64,
    /// Queue rows per sweep chunk.
    pub chunk: i64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            delete_untagged: false,
            dry_run: false,
            workers: 4,
            grace_secs: 2 * 3600,
            reconcile: false,
            recover_after_secs: 60,
            chunk: 500,
        }
    }
}

/// What a run did (or, dry, would do), with Harbor's names.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    pub run: i64,
    pub dry_run: bool,
    pub stopped: bool,
    pub freed_space: i64,
    pub purged_blobs: i64,
    pub purged_manifests: i64,
    pub examined: i64,
    pub kept: i64,
    pub errors: i64,
    pub recovered: i64,
}

/// Where a run's log lines go besides `tracing` (jobservice keeps them).
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone)]
pub struct Collector {
    db: PgPool,
    registry: RegistryClient,
    log: Option<LogSink>,
    /// Where this collector's failpoints (G1, G3) look; `None` means the
    /// process-wide `WHARF_FAILPOINTS_DIR`, if set.
    failpoints: Option<Arc<Path>>,
}

/// Counters shared by the sweep loops.
#[derive(Default)]
struct Totals {
    examined: AtomicI64,
    deleted: AtomicI64,
    manifests: AtomicI64,
    kept: AtomicI64,
    bytes: AtomicI64,
    errors: AtomicI64,
    stop: AtomicBool,
}

impl Totals {
    fn add(&self, c: &RunCounters) {
        self.examined.fetch_add(c.examined, Ordering::Relaxed);
        self.deleted.fetch_add(c.deleted, Ordering::Relaxed);
        self.manifests
            .fetch_add(c.manifests_deleted, Ordering::Relaxed);
        self.kept.fetch_add(c.kept, Ordering::Relaxed);
        self.bytes.fetch_add(c.bytes_freed, Ordering::Relaxed);
        self.errors.fetch_add(c.errors, Ordering::Relaxed);
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl Collector {
    pub fn new(db: PgPool, registry: RegistryClient) -> Collector {
        Collector {
            db,
            registry,
            log: None,
            failpoints: None,
        }
    }

    /// Arms this collector's failpoints from `dir` rather than the process-wide
    /// `WHARF_FAILPOINTS_DIR`, so that race tests running next to other tests
    /// in one process pause only their own collector (see
    /// `wharf_storage::failpoint`).
    pub fn with_failpoints(mut self, dir: &Path) -> Collector {
        self.failpoints = Some(Arc::from(dir));
        self
    }

    async fn failpoint(&self, name: &str) {
        match &self.failpoints {
            Some(dir) => failpoint::pause_in(Some(dir), name).await,
            None => failpoint::pause(name).await,
        }
    }

    pub fn with_log(mut self, log: LogSink) -> Collector {
        self.log = Some(log);
        self
    }

    fn log(&self, line: String) {
        tracing::info!(target: "wharf_gc", "{line}");
        if let Some(l) = &self.log {
            l(&line);
        }
    }

    /// Creates the run row; the caller may hand its id to [`Collector::run`].
    pub async fn create_run(&self, params: &Params, execution: Option<i64>) -> Result<i64> {
        let json = serde_json::to_value(params).unwrap_or_default();
        Ok(sql::create_run(&self.db, &json, params.dry_run, execution).await?)
    }

    /// One whole run; only one runs at a time (`pg_try_advisory_lock`).
    pub async fn run(&self, params: &Params, run: Option<i64>) -> Result<Report> {
        let mut lock = self.db.acquire().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(sql::RUN_LOCK)
            .fetch_one(&mut *lock)
            .await?;
        if !got {
            if let Some(run) = run {
                sql::finish_run(
                    &self.db,
                    run,
                    "error",
                    Some("another garbage collection is running"),
                )
                .await?;
            }
            return Err(Error::AlreadyRunning);
        }
        let run = match run {
            Some(r) => r,
            None => self.create_run(params, None).await?,
        };
        let beat = {
            let db = self.db.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    let _ = sql::heartbeat(&db, run).await;
                }
            })
        };
        let result = self.phases(params, run).await;
        beat.abort();
        let unlocked: Result<bool, sqlx::Error> =
            sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                .bind(sql::RUN_LOCK)
                .fetch_one(&mut *lock)
                .await;
        if unlocked.is_err() {
            // Never return a connection that may still hold the lock to the pool.
            let _ = lock.detach();
        }
        match result {
            Ok(report) => {
                let status = if report.stopped { "stopped" } else { "success" };
                sql::finish_run(&self.db, run, status, None).await?;
                self.log(format!(
                    "run {run} {status}: purged {} manifests and {} blobs, freed {} bytes ({} examined, {} kept, {} errors)",
                    report.purged_manifests, report.purged_blobs, report.freed_space, report.examined, report.kept, report.errors
                ));
                Ok(report)
            }
            Err(e) => {
                let msg = e.to_string();
                let _ = sql::finish_run(&self.db, run, "error", Some(&msg)).await;
                self.log(format!("run {run} failed: {msg}"));
                Err(e)
            }
        }
    }

    async fn phases(&self, params: &Params, run: i64) -> Result<Report> {
        let started = Instant::now();
        let mut report = Report {
            run,
            dry_run: params.dry_run,
            ..Report::default()
        };
        if params.dry_run {
            return self.dry_run(params, run, report).await;
        }
        let totals = Arc::new(Totals::default());

        sql::set_phase(&self.db, run, "recover").await?;
        report.recovered = self.recover(params, run, &totals).await?;
        self.log(format!(
            "phase 0: recovered {} interrupted deletes",
            report.recovered
        ));

        if params.delete_untagged {
            sql::set_phase(&self.db, run, "untagged").await?;
            let n = sql::queue_untagged(&self.db, params.grace_secs).await?;
            self.log(format!("phase 1: queued {n} untagged manifests"));
        }
        sql::set_phase(&self.db, run, "mark").await?;
        let t = Instant::now();
        let n = sql::mark(&self.db, params.grace_secs).await?;
        self.log(format!(
            "phase 2: marked {n} candidate blobs in {} ms",
            t.elapsed().as_millis()
        ));

        sql::set_phase(&self.db, run, "sweep").await?;
        if params.delete_untagged && !totals.stopped() {
            self.sweep(params, run, &totals, sql::MANIFEST).await?;
            self.log(format!(
                "phase 3: purged {} manifests",
                totals.manifests.load(Ordering::Relaxed)
            ));
        }
        if !totals.stopped() {
            self.sweep(params, run, &totals, sql::BLOB).await?;
            self.log(format!(
                "phase 3: purged {} blobs, {} bytes",
                totals.deleted.load(Ordering::Relaxed),
                totals.bytes.load(Ordering::Relaxed)
            ));
        }
        if params.reconcile && !totals.stopped() {
            sql::set_phase(&self.db, run, "reconcile").await?;
            self.reconcile(params, run, &totals).await?;
        }
        report.stopped = totals.stopped();
        report.purged_blobs = totals.deleted.load(Ordering::Relaxed);
        report.purged_manifests = totals.manifests.load(Ordering::Relaxed);
        report.freed_space = totals.bytes.load(Ordering::Relaxed);
        report.examined = totals.examined.load(Ordering::Relaxed);
        report.kept = totals.kept.load(Ordering::Relaxed);
        report.errors = totals.errors.load(Ordering::Relaxed);
        self.log(format!("finished in {} ms", started.elapsed().as_millis()));
        Ok(report)
    }

    /// Phase 0: finishes `deleting` manifests and blobs whose owner is gone.
    async fn recover(&self, params: &Params, run: i64, totals: &Totals) -> Result<i64> {
        let mut recovered = 0;
        loop {
            let ids =
                sql::stale_deleting_manifests(&self.db, params.recover_after_secs, 200).await?;
            if ids.is_empty() {
                break;
            }
            let v = self
                .registry
                .vacuum_manifests(run, &ids, params.grace_secs)
                .await?;
            let c = RunCounters {
                manifests_deleted: v.deleted.len() as i64,
                errors: v.failed.len() as i64,
                ..RunCounters::default()
            };
            totals.add(&c);
            sql::add_progress(&self.db, run, &c).await?;
            recovered += v.deleted.len() as i64;
            if v.deleted.is_empty() {
                break;
            }
        }
        loop {
            let keys =
                sql::stale_deleting_blobs(&self.db, run, params.recover_after_secs, params.chunk)
                    .await?;
            if keys.is_empty() {
                break;
            }
            let digests: Vec<Digest> = keys.iter().filter_map(|k| Digest::from_bytes(k)).collect();
            let v = self.registry.vacuum(run, &digests).await?;
            let c = RunCounters {
                examined: keys.len() as i64,
                deleted: v.deleted.len() as i64,
                bytes_freed: v.bytes,
                errors: v.failed.len() as i64,
                ..RunCounters::default()
            };
            totals.add(&c);
            sql::add_progress(&self.db, run, &c).await?;
            recovered += v.deleted.len() as i64;
            if v.deleted.is_empty() {
                break;
            }
        }
        Ok(recovered)
    }

    /// Phase 3 for one kind: `workers` loops claim chunks until nothing is due.
    async fn sweep(
        &self,
        params: &Params,
        run: i64,
        totals: &Arc<Totals>,
        kind: &'static str,
    ) -> Result<()> {
        let mut loops = Vec::new();
        for _ in 0..params.workers.max(1) {
            let this = self.clone();
            let params = params.clone();
            let totals = totals.clone();
            loops.push(tokio::spawn(async move {
                while !totals.stopped() {
                    let more = if kind == sql::BLOB {
                        this.blob_chunk(&params, run, &totals).await?
                    } else {
                        this.manifest_chunk(&params, run, &totals).await?
                    };
                    if !more {
                        break;
                    }
                }
                Ok::<(), Error>(())
            }));
        }
        let mut first_err = None;
        for l in loops {
            match l.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(Error::Registry(format!("a sweep loop panicked: {e}")));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// One blob chunk: claim, step A (one transaction), step B (the registry).
    /// Returns whether there may be more.
    async fn blob_chunk(&self, params: &Params, run: i64, totals: &Totals) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let claimed = sql::claim_queue(&mut tx, sql::BLOB, params.chunk).await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(false);
        }
        let a = sql::step_a_blobs(&mut tx, run, &claimed, params.grace_secs, true).await?;
        tx.commit().await?;
        self.failpoint("G1").await;
        let mut c = RunCounters {
            examined: claimed.len() as i64,
            kept: a.kept as i64,
            ..RunCounters::default()
        };
        if !a.doomed.is_empty() {
            let digests: Vec<Digest> = a
                .doomed
                .iter()
                .filter_map(|(k, _)| Digest::from_bytes(k))
                .collect();
            match self.registry.vacuum(run, &digests).await {
                Ok(v) => {
                    self.failpoint("G3").await;
                    c.deleted = v.deleted.len() as i64;
                    c.bytes_freed = v.bytes;
                    c.errors = v.failed.len() as i64;
                }
                // The rows stay `deleting`; the next run's Phase 0 finishes them (I3).
                Err(e) => {
                    c.errors = digests.len() as i64;
                    self.log(format!("step B failed for {} blobs: {e}", digests.len()));
                }
            }
        }
        totals.add(&c);
        if sql::add_progress(&self.db, run, &c).await? {
            totals.stop.store(true, Ordering::Relaxed);
            self.log("stop requested; stopping after this chunk".into());
        }
        Ok(true)
    }

    async fn manifest_chunk(&self, params: &Params, run: i64, totals: &Totals) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let claimed = sql::claim_queue(&mut tx, sql::MANIFEST, params.chunk).await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(false);
        }
        let (doomed, kept, _busy) =
            sql::step_a_manifests(&mut tx, &claimed, params.grace_secs, true).await?;
        tx.commit().await?;
        let mut c = RunCounters {
            kept: kept as i64,
            ..RunCounters::default()
        };
        if !doomed.is_empty() {
            match self
                .registry
                .vacuum_manifests(run, &doomed, params.grace_secs)
                .await
            {
                Ok(v) => {
                    c.manifests_deleted = v.deleted.len() as i64;
                    c.errors = v.failed.len() as i64;
                }
                Err(e) => {
                    c.errors = doomed.len() as i64;
                    self.log(format!("deleting {} manifests failed: {e}", doomed.len()));
                }
            }
        }
        totals.add(&c);
        if sql::add_progress(&self.db, run, &c).await? {
            totals.stop.store(true, Ordering::Relaxed);
        }
        Ok(true)
    }

    /// Phase 4 over the 256 `blobs/sha256/<xx>/` prefixes, `workers` at a time.
    async fn reconcile(&self, params: &Params, run: i64, totals: &Arc<Totals>) -> Result<()> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let results: Vec<Reconciled> = stream::iter(0..=255u8)
            .map(|p| {
                let prefix = format!("{p:02x}");
                let registry = self.registry.clone();
                let params = params.clone();
                async move {
                    registry
                        .reconcile(run, &prefix, params.grace_secs, params.dry_run)
                        .await
                }
            })
            .buffer_unordered(params.workers.max(1))
            .try_collect()
            .await?;
        let c = RunCounters {
            deleted: results.iter().map(|r| r.deleted.len() as i64).sum(),
            bytes_freed: results.iter().map(|r| r.bytes).sum(),
            errors: results.iter().map(|r| r.failed.len() as i64).sum(),
            ..RunCounters::default()
        };
        let orphans: u64 = results.iter().map(|r| r.orphans).sum();
        totals.add(&c);
        sql::add_progress(&self.db, run, &c).await?;
        self.log(format!(
            "phase 4: {orphans} files no row knows; removed {}, {} bytes",
            c.deleted, c.bytes_freed
        ));
        Ok(())
    }

    /// The mark and step A's predicates in a transaction that is rolled back.
    async fn dry_run(&self, params: &Params, run: i64, mut report: Report) -> Result<Report> {
        sql::set_phase(&self.db, run, "dry-run").await?;
        let mut tx = self.db.begin().await?;
        if params.delete_untagged {
            report.purged_manifests = sql::dry_run_untagged(&mut tx, params.grace_secs).await?;
        }
        let (n, bytes) = sql::dry_run_blobs(&mut tx, params.grace_secs).await?;
        tx.rollback().await?;
        report.purged_blobs = n;
        report.freed_space = bytes;
        if params.reconcile {
            let totals = Arc::new(Totals::default());
            self.reconcile(params, run, &totals).await?;
        }
        sql::set_counters(
            &self.db,
            run,
            &RunCounters {
                examined: n,
                deleted: n,
                manifests_deleted: report.purged_manifests,
                bytes_freed: bytes,
                ..RunCounters::default()
            },
        )
        .await?;
        self.log(format!(
            "dry run: would purge {} manifests and {} blobs, freeing {} bytes",
            report.purged_manifests, n, bytes
        ));
        Ok(report)
    }
}
