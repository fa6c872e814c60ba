//! The outbox consumer: turns the registry's events (pushes, pulls, deletes)
//! into audit log entries, at least once and written once. Each batch is one
//! transaction that writes the entries (`ON CONFLICT (outbox_id) DO NOTHING`)
//! and advances the cursor, so a crash anywhere replays at most one batch and
//! events that happened while core was down are read when it starts again.
//! Afterwards it warms the artifact metadata of what was pushed.

use std::time::Duration;

use wharf_catalog::auditlog::{self, FromOutbox, OutboxEvent};
use wharf_oci::Digest;

use crate::AppState;

/// The `outbox_cursor` row of this consumer.
pub const CONSUMER: &str = "audit";
const BATCH: i64 = 500;
const IDLE: Duration = Duration::from_millis(500);
const AFTER_ERROR: Duration = Duration::from_secs(5);

/// Runs for as long as the process does.
pub async fn run(app: AppState) {
    loop {
        match consume_once(&app, BATCH).await {
            Ok(n) if n as i64 == BATCH => {}
            Ok(_) => tokio::time::sleep(IDLE).await,
            Err(e) => {
                tracing::warn!(error = %e, "consuming the outbox failed; retrying");
                tokio::time::sleep(AFTER_ERROR).await;
            }
        }
    }
}

/// Handles the next batch of at most `limit` events; returns how many were read.
pub async fn consume_once(app: &AppState, limit: i64) -> wharf_catalog::Result<usize> {
    let mut tx = app.db.begin().await?;
    let cursor = auditlog::lock_cursor(&mut tx, CONSUMER).await?;
    let events = auditlog::outbox_after(&mut tx, cursor, limit).await?;
    let Some(last) = events.last() else {
        tx.rollback().await?;
        return Ok(0);
    };
    let entries: Vec<FromOutbox> = events.iter().filter_map(audit_entry).collect();
    auditlog::insert_from_outbox(&mut tx, &entries).await?;
    auditlog::advance_cursor(&mut tx, CONSUMER, last.cursor()).await?;
    tx.commit().await?;
    let mut pushed: Vec<(String, Digest)> = events
        .iter()
        .filter(|e| e.event_type == "push")
        .filter_map(|e| {
            Some((
                e.repository.clone(),
                Digest::parse(e.digest.as_deref()?).ok()?,
            ))
        })
        .collect();
    pushed.sort_by(|a, b| (&a.0, a.1.as_bytes()).cmp(&(&b.0, b.1.as_bytes())));
    pushed.dedup();
    if !pushed.is_empty() {
        tokio::spawn(warm(app.clone(), pushed));
    }
    Ok(events.len())
}

/// At most this many batches' metadata are read at once, so a backlog read
/// after downtime does not flood the registry.
static WARMING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Reads the metadata of freshly pushed artifacts, best effort: a miss is
/// read on demand later.
async fn warm(app: AppState, pushed: Vec<(String, Digest)>) {
    let Ok(_permit) = WARMING.acquire().await else {
        return;
    };
    for (repo, digest) in pushed {
        if let Err(e) = crate::meta::ensure(&app, &repo, &digest).await {
            tracing::debug!(error = %e, repository.name = %repo, artifact.digest = %digest, "reading artifact metadata failed");
        }
    }
}

/// The audit entry for an outbox event, in Harbor's vocabulary: a push is
/// `create` of an `artifact`, a tag removal `delete` of a `tag`. Events
/// that are not audited (blob uploads and mounts) give `None`.
pub fn audit_entry(e: &OutboxEvent) -> Option<FromOutbox> {
    let repo = &e.repository;
    let by_tag_or_digest = || match (&e.tag, &e.digest) {
        (Some(t), _) => format!("{repo}:{t}"),
        (None, Some(d)) => format!("{repo}@{d}"),
        (None, None) => repo.clone(),
    };
    let (operation, resource_type, resource) = match e.event_type.as_str() {
        "push" => ("create", "artifact", by_tag_or_digest()),
        "delete" => ("delete", "artifact", by_tag_or_digest()),
        "delete_tag" => ("delete", "tag", by_tag_or_digest()),
        "pull" => ("pull", "artifact", by_tag_or_digest()),
        _ => return None,
    };
    let username = e
        .actor
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("anonymous");
    Some(FromOutbox {
        outbox_id: e.id,
        project_name: repo.split('/').next().unwrap_or_default().to_owned(),
        operation: operation.into(),
        resource_type: resource_type.into(),
        resource,
        username: username.into(),
        op_time: e.created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        kind: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        actor: Option<&str>,
    ) -> OutboxEvent {
        OutboxEvent {
            id: 7,
            txid: 100,
            event_type: kind.into(),
            repository: "proj/app".into(),
            digest: digest.map(str::to_owned),
            tag: tag.map(str::to_owned),
            actor: actor.map(str::to_owned),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn events_map_to_harbor_entries() {
        let e = audit_entry(&event("push", Some("v1"), Some("sha256:aa"), Some("alice"))).unwrap();
        assert_eq!(
            (
                e.operation.as_str(),
                e.resource_type.as_str(),
                e.resource.as_str(),
                e.username.as_str()
            ),
            ("create", "artifact", "proj/app:v1", "alice")
        );
        assert_eq!(e.project_name, "proj");
        assert_eq!(e.outbox_id, 7);
        let e = audit_entry(&event("push", None, Some("sha256:aa"), None)).unwrap();
        assert_eq!(e.resource, "proj/app@sha256:aa");
        assert_eq!(e.username, "anonymous");
        let e = audit_entry(&event("delete", None, Some("sha256:aa"), Some("bob"))).unwrap();
        assert_eq!(
            (e.operation.as_str(), e.resource_type.as_str()),
            ("delete", "artifact")
        );
        let e = audit_entry(&event("delete_tag", Some("v1"), None, Some("bob"))).unwrap();
        assert_eq!(
            (
                e.operation.as_str(),
                e.resource_type.as_str(),
                e.resource.as_str()
            ),
            ("delete", "tag", "proj/app:v1")
        );
        let e = audit_entry(&event("pull", None, Some("sha256:aa"), None)).unwrap();
        assert_eq!(e.operation, "pull");
        assert!(audit_entry(&event("blob_push", None, Some("sha256:aa"), None)).is_none());
        assert!(audit_entry(&event("blob_mount", None, Some("sha256:aa"), None)).is_none());
    }
}
