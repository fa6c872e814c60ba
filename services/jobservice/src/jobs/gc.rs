//! The garbage-collection job: runs `wharf_gc::Collector` for one execution.
//! A task taken over after its worker died starts a new run once the dead
//! one is stale, and that run's Phase 0 finishes what was left `deleting`.
//! A stop request becomes the run's `stop_requested`, which the collector
//! checks between chunks.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use wharf_catalog::gc as runs;
use wharf_gc::{Collector, Params, RegistryClient};

use super::{Context, JobFn, Outcome};
use crate::config::{Config, Gc};

/// Harbor's GC parameters; other keys Harbor sends (`time_window`,
/// `redis_url_reg`) are ignored: the grace window is the operator's setting.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Payload {
    delete_untagged: bool,
    dry_run: bool,
    workers: Option<usize>,
}

pub fn job(config: &Config, db: PgPool) -> JobFn {
    let registry = RegistryClient::new(&config.registry.url, &config.registry.internal_secret.0);
    let settings = config.gc.clone();
    Arc::new(move |ctx, payload| {
        let db = db.clone();
        let registry = registry.clone();
        let settings = settings.clone();
        Box::pin(async move { run(ctx, payload, db, registry, settings).await })
    })
}

async fn run(
    ctx: Context,
    payload: serde_json::Value,
    db: PgPool,
    registry: RegistryClient,
    settings: Gc,
) -> Result<Outcome, String> {
    let p: Payload =
        serde_json::from_value(payload).map_err(|e| format!("bad GC parameters: {e}"))?;
    let params = Params {
        delete_untagged: p.delete_untagged,
        dry_run: p.dry_run,
        workers: p.workers.unwrap_or(4).clamp(1, 16),
        grace_secs: settings.grace_secs,
        reconcile: settings.reconcile,
        recover_after_secs: settings.recover_after_secs,
        ..Params::default()
    };
    let sink_ctx = ctx.clone();
    let collector = Collector::new(db.clone(), registry).with_log(Arc::new(move |line: &str| {
        sink_ctx.log_quiet(line.to_owned())
    }));
    let lost = runs::run_by_execution(&db, ctx.execution)
        .await
        .map_err(|e| e.to_string())?
        .filter(|r| r.finished_at.is_none());
    if let Some(old) = lost {
        // The task was taken over from a worker that died mid-run. Wait until
        // its run is stale for Phase 0, which then finishes every delete it
        // left half-done, and end it without refreshing its heartbeat.
        ctx.log(format!(
            "run {} lost its worker; waiting for it to go stale before taking over",
            old.id
        ));
        loop {
            let Some(r) = runs::get_run(&db, old.id)
                .await
                .map_err(|e| e.to_string())?
            else {
                break;
            };
            let silent = (chrono::Utc::now() - r.heartbeat_at).num_seconds();
            if silent > settings.recover_after_secs {
                break;
            }
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Ok(Outcome::Stopped),
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
        runs::abandon_run(&db, old.id, "its worker was lost; a later run took over")
            .await
            .map_err(|e| e.to_string())?;
    }
    let run = collector
        .create_run(&params, Some(ctx.execution))
        .await
        .map_err(|e| e.to_string())?;
    ctx.log(format!(
        "garbage collection run {run}: delete_untagged={} dry_run={} workers={} grace={} s",
        params.delete_untagged, params.dry_run, params.workers, params.grace_secs
    ));
    let watcher = {
        let db = db.clone();
        let cancel = ctx.cancel.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            ctx.log("stop requested: finishing the chunk in hand".to_owned());
            if let Err(e) = runs::request_stop(&db, run).await {
                tracing::warn!(error = %e, "could not flag the GC run to stop");
            }
        })
    };
    let result = collector.run(&params, Some(run)).await;
    watcher.abort();
    let report = result.map_err(|e| e.to_string())?;
    let attrs = json!({
        "freed_space": report.freed_space,
        "purged_blobs": report.purged_blobs,
        "purged_manifests": report.purged_manifests,
        "examined": report.examined,
        "kept": report.kept,
        "errors": report.errors,
        "recovered": report.recovered,
        "gc_run": run,
    });
    wharf_catalog::jobs::merge_attrs(&db, ctx.execution, &attrs)
        .await
        .map_err(|e| e.to_string())?;
    Ok(if report.stopped {
        Outcome::Stopped
    } else {
        Outcome::Done
    })
}
