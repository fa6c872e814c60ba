//! The collector's side of the registry, under `/api/internal/gc/` (behind
//! the internal secret, like the rest of the internal API): step B of the
//! sweep (gc.md), which removes the files of `deleting` rows under `FOR
//! UPDATE` and then the rows; the same for manifests; and the reconcile that
//! claims files no row knows. Only the registry touches storage.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use wharf_catalog::gc as sql;
use wharf_oci::{Digest, RepositoryName};
use wharf_storage::{failpoint, Store};

use crate::error::{Error, Result};
use crate::{write, App, AppState};

/// Step B must finish well below `idle_in_transaction_session_timeout`.
const STEP_B_DEADLINE: Duration = Duration::from_secs(30);
/// No single batch of storage calls may take longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Unlinks run in this many parallel groups on the blocking pool.
const PARALLEL: usize = 8;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/vacuum", post(vacuum))
        .route("/vacuum-manifests", post(vacuum_manifests))
        .route("/reconcile", post(reconcile))
}

#[derive(Debug, Deserialize)]
pub struct VacuumRequest {
    pub run: i64,
    pub digests: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Vacuumed {
    pub deleted: Vec<String>,
    pub bytes: i64,
    pub failed: Vec<String>,
}

fn parse_digests(list: &[String]) -> Result<Vec<Digest>> {
    list.iter()
        .map(|d| Digest::parse(d).map_err(Error::from))
        .collect()
}

/// `POST /api/internal/gc/vacuum {run, digests}`: step B.
async fn vacuum(
    State(app): State<AppState>,
    Json(req): Json<VacuumRequest>,
) -> Result<Json<Vacuumed>> {
    let digests = parse_digests(&req.digests)?;
    // Detached so that a caller going away cannot leave the transaction half done.
    let out = tokio::spawn(async move { step_b(&app, req.run, &digests).await })
        .await
        .map_err(|e| Error::Internal(e.into()))??;
    Ok(Json(out))
}

/// Locks the `deleting` rows, unlinks their `_layers` links and data files in
/// parallel under a deadline, deletes the rows whose files are all gone, commits.
pub(crate) async fn step_b(app: &App, run: i64, digests: &[Digest]) -> Result<Vacuumed> {
    let deadline = Instant::now() + STEP_B_DEADLINE;
    let keys: Vec<Vec<u8>> = digests.iter().map(|d| d.as_bytes().to_vec()).collect();
    let mut tx = app.db.begin().await?;
    let locked = sql::lock_deleting_blobs(&mut tx, &keys).await?;
    let locked_keys: Vec<Vec<u8>> = locked.iter().map(|(k, _)| k.clone()).collect();
    let links = sql::layer_links(&mut tx, &locked_keys).await?;

    // Work per digest: its links, then its data file.
    let mut work: Vec<(Digest, Vec<RepositoryName>)> = Vec::with_capacity(locked.len());
    for (k, _) in &locked {
        let Some(d) = Digest::from_bytes(k) else {
            continue;
        };
        let repos = links
            .iter()
            .filter(|(_, lk)| lk == k)
            .filter_map(|(r, _)| RepositoryName::parse(r).ok())
            .collect();
        work.push((d, repos));
    }
    let groups = split(work, PARALLEL);
    let mut handles = Vec::new();
    for group in groups {
        let store = app.store.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            unlink_group(&store, group, deadline)
        }));
    }
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut failed: Vec<Digest> = Vec::new();
    for h in handles {
        let left = deadline.saturating_duration_since(Instant::now()) + CALL_TIMEOUT;
        match tokio::time::timeout(left, h).await {
            Ok(Ok((ok, bad))) => {
                done.extend(ok.iter().map(|d| d.as_bytes().to_vec()));
                failed.extend(bad);
            }
            // A group that overran its deadline or panicked: its digests stay
            // `deleting` (I3) and Phase 0 finishes them.
            _ => {
                tracing::warn!(
                    gc.run = run,
                    "a group of unlinks overran the step B deadline"
                );
            }
        }
    }
    sql::purge_blobs(&mut tx, &done).await?;
    tx.commit().await?;
    let bytes = locked
        .iter()
        .filter(|(k, _)| done.contains(k))
        .map(|(_, s)| *s)
        .sum();
    let deleted: Vec<String> = done
        .iter()
        .filter_map(|k| Digest::from_bytes(k))
        .map(|d| d.to_string())
        .collect();
    // Everything asked for that is neither deleted nor failed was not ours to
    // delete (no longer `deleting`: another step B finished it).
    let mut failed: Vec<String> = failed.iter().map(|d| d.to_string()).collect();
    for d in digests {
        let s = d.to_string();
        if !deleted.contains(&s)
            && !failed.contains(&s)
            && locked.iter().any(|(k, _)| k == d.as_bytes())
        {
            failed.push(s);
        }
    }
    tracing::info!(
        gc.run = run,
        deleted = deleted.len(),
        failed = failed.len(),
        size_bytes = bytes,
        "gc step B"
    );
    Ok(Vacuumed {
        deleted,
        bytes,
        failed,
    })
}

fn split<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let per = items.len().div_ceil(n.max(1)).max(1);
    let mut out: Vec<Vec<T>> = Vec::new();
    for item in items {
        match out.last_mut() {
            Some(g) if g.len() < per => g.push(item),
            _ => out.push(vec![item]),
        }
    }
    out
}

/// Unlinks each digest's `_layers` links and then its data file, checking the
/// deadline before every call. Returns (done, failed).
fn unlink_group(
    store: &Store,
    group: Vec<(Digest, Vec<RepositoryName>)>,
    deadline: Instant,
) -> (Vec<Digest>, Vec<Digest>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    'digest: for (d, repos) in group {
        for r in &repos {
            if Instant::now() >= deadline {
                bad.push(d);
                continue 'digest;
            }
            let link = store.layout.layer_link(r, &d);
            if let Err(e) = store.remove_link(&link, &store.layout.repo_dir(r)) {
                tracing::warn!(artifact.digest = %d, error = %e, "gc: unlinking a layer link failed");
                bad.push(d);
                continue 'digest;
            }
        }
        if Instant::now() >= deadline {
            bad.push(d);
            continue;
        }
        match store.remove_blob(&d) {
            Ok(()) => {
                // The file is gone, the row still `deleting` under FOR UPDATE.
                failpoint::pause_blocking("G2");
                ok.push(d)
            }
            Err(e) => {
                tracing::warn!(artifact.digest = %d, error = %e, "gc: removing a blob failed");
                bad.push(d);
            }
        }
    }
    (ok, bad)
}

#[derive(Debug, Deserialize)]
pub struct VacuumManifestsRequest {
    pub run: i64,
    pub ids: Vec<i64>,
    #[serde(default)]
    pub grace_secs: i64,
}

#[derive(Debug, Default, Serialize)]
pub struct ManifestsVacuumed {
    pub deleted: Vec<i64>,
    pub failed: Vec<i64>,
}

/// `POST /api/internal/gc/vacuum-manifests {run, ids, grace_secs}`: step 2 of
/// a manifest delete for each `deleting` manifest: unlink its revision and
/// tag index links, delete the row, queue what it referenced.
async fn vacuum_manifests(
    State(app): State<AppState>,
    Json(req): Json<VacuumManifestsRequest>,
) -> Result<Json<ManifestsVacuumed>> {
    let out = tokio::spawn(async move {
        let mut out = ManifestsVacuumed::default();
        for id in req.ids {
            let Some(name) = sql::manifest_repository(&app.db, id).await? else {
                continue;
            };
            let Ok(repo) = RepositoryName::parse(&name) else {
                out.failed.push(id);
                continue;
            };
            match write::finish_manifest_delete(&app, &repo, id, &[], None, req.grace_secs).await {
                Ok(()) => out.deleted.push(id),
                Err(e) => {
                    tracing::warn!(gc.run = req.run, manifest.id = id, error = %e, "gc: deleting a manifest failed");
                    out.failed.push(id);
                }
            }
        }
        Ok::<_, Error>(out)
    })
    .await
    .map_err(|e| Error::Internal(e.into()))??;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub struct ReconcileRequest {
    pub run: i64,
    /// Two hex digits: the `blobs/sha256/<prefix>/` directory to examine.
    pub prefix: String,
    #[serde(default)]
    pub grace_secs: i64,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Reconciled {
    pub examined: u64,
    pub orphans: u64,
    pub orphan_bytes: i64,
    pub deleted: Vec<String>,
    pub bytes: i64,
    pub failed: Vec<String>,
}

/// `POST /api/internal/gc/reconcile {run, prefix, grace_secs, dry_run}`:
/// files under one prefix that no row knows and that are older than the
/// grace window are claimed (`INSERT … 'deleting'`) and removed by step B.
async fn reconcile(
    State(app): State<AppState>,
    Json(req): Json<ReconcileRequest>,
) -> Result<Json<Reconciled>> {
    if req.prefix.len() != 2 || !req.prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Unsupported("prefix must be two hex digits".into()));
    }
    let out = tokio::spawn(async move { reconcile_prefix(&app, &req).await })
        .await
        .map_err(|e| Error::Internal(e.into()))??;
    Ok(Json(out))
}

async fn reconcile_prefix(app: &App, req: &ReconcileRequest) -> Result<Reconciled> {
    let dir = app
        .store
        .layout
        .blobs_root()
        .join("sha256")
        .join(req.prefix.to_ascii_lowercase());
    let grace = Duration::from_secs(req.grace_secs.max(0) as u64);
    let files: Vec<(Vec<u8>, i64)> = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return out;
        };
        for e in rd.flatten() {
            let hex = e.file_name().to_string_lossy().into_owned();
            let Ok(d) = Digest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(e.path().join("data")) else {
                continue;
            };
            let old = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age >= grace);
            if old {
                out.push((d.as_bytes().to_vec(), meta.len() as i64));
            }
        }
        out
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?;
    let mut out = Reconciled {
        examined: files.len() as u64,
        ..Reconciled::default()
    };
    for chunk in files.chunks(500) {
        let keys: Vec<Vec<u8>> = chunk.iter().map(|(k, _)| k.clone()).collect();
        let known = sql::known_blobs(&app.db, &keys).await?;
        let orphans: Vec<(Vec<u8>, i64)> = chunk
            .iter()
            .filter(|(k, _)| !known.contains(k))
            .cloned()
            .collect();
        out.orphans += orphans.len() as u64;
        out.orphan_bytes += orphans.iter().map(|(_, s)| s).sum::<i64>();
        if req.dry_run || orphans.is_empty() {
            continue;
        }
        let claimed = sql::claim_orphans(&app.db, req.run, &orphans).await?;
        let digests: Vec<Digest> = claimed
            .iter()
            .filter_map(|k| Digest::from_bytes(k))
            .collect();
        let v = step_b(app, req.run, &digests).await?;
        out.deleted.extend(v.deleted);
        out.bytes += v.bytes;
        out.failed.extend(v.failed);
    }
    Ok(out)
}
