//! The write path: each operation is one short Postgres transaction that
//! checks policy, records the storage index and the outbox event, and places
//! the files before it commits (the protocol of shared/docs/gc.md). The one
//! exception: a manifest's revision and tag links, which make it visible to
//! pulls, are written just after its commit (see `write_manifest_links`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use wharf_catalog::index::{self, BlobClaim, Event, ManifestClaim, NewManifest};
use wharf_catalog::policy::{self, Write};
use wharf_oci::{Digest, Manifest, RefKind, Reference, RepositoryName, Tag};
use wharf_storage::{failpoint, FinishedUpload, Store};

use crate::error::{Error, Result};
use crate::App;

/// How long a writer waits for the collector to finish with a digest before
/// telling the client to retry.
const MAX_WAIT: Duration = Duration::from_secs(10);

struct Backoff {
    started: Instant,
    attempt: u32,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            started: Instant::now(),
            attempt: 0,
        }
    }

    async fn wait(&mut self, what: &str) -> Result<()> {
        if self.started.elapsed() > MAX_WAIT {
            return Err(Error::Busy(format!(
                "{what} is being garbage-collected; retry shortly"
            )));
        }
        let ms = (50u64 << self.attempt.min(8)).min(2_000);
        self.attempt += 1;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
}

/// Runs blocking file work on the blocking pool.
async fn fs<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> wharf_storage::Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| Error::Internal(e.into()))?
        .map_err(Error::from)
}

/// Upload finish: the verified upload becomes a blob of `repo`.
pub async fn commit_blob(
    app: &App,
    repo: &RepositoryName,
    up: FinishedUpload,
    actor: Option<&str>,
) -> Result<()> {
    let digest = up.digest.clone();
    let size = up.size as i64;
    let mut backoff = Backoff::new();
    loop {
        let mut tx = app.db.begin().await?;
        policy::check_write(
            &mut tx,
            Write::Blob {
                repository: repo.as_str(),
                digest: &digest,
                size,
            },
        )
        .await?;
        let repo_id = index::ensure_repository(&mut tx, repo.as_str()).await?;
        match index::claim_blob(&mut tx, &digest, size).await? {
            BlobClaim::Inserted => {
                failpoint::pause("W1").await;
                let (src, d) = (up.data.clone(), digest.clone());
                fs(&app.store, move |s| s.place_blob(&src, &d)).await?;
            }
            BlobClaim::Live => {}
            BlobClaim::Deleting | BlobClaim::Gone => {
                drop(tx);
                backoff.wait("this blob").await?;
                continue;
            }
        }
        index::link_blob(&mut tx, repo_id, &digest).await?;
        let link = app.store.layout.layer_link(repo, &digest);
        let d = digest.clone();
        fs(&app.store, move |s| s.write_link(&link, &d)).await?;
        index::queue_blobs(
            &mut tx,
            std::slice::from_ref(&digest),
            app.config.gc_grace_secs,
        )
        .await?;
        index::append_event(
            &mut tx,
            &Event {
                event_type: "blob_push",
                repository: repo.as_str(),
                digest: Some(&digest),
                tag: None,
                media_type: None,
                size: Some(size),
                actor,
            },
        )
        .await?;
        // After the rename (or, for a live row, holding its KEY SHARE).
        failpoint::pause("W2").await;
        tx.commit().await?;
        let dir = up.dir.clone();
        fs(&app.store, move |s| s.remove_tree(&dir)).await?;
        return Ok(());
    }
}

/// A blob of `repo` that storage serves but the index does not know: an
/// upload killed after its rename and link, before its commit, leaves one.
/// HEAD (served from files) says it is there, so clients will not upload it
/// again; the manifest that names it takes it into the index instead of
/// being refused until a reconcile. The file is trusted because only a
/// verified upload ever renames into a content-addressed path, and claiming
/// the row first means a collector can no longer remove it under us. A row
/// the collector holds is left to it: the manifest is refused as before.
/// Returns whether the blob is now a live, linked blob of `repo`.
async fn adopt_unrecorded(
    app: &App,
    tx: &mut sqlx::PgConnection,
    repo: &RepositoryName,
    repo_id: i64,
    d: &Digest,
) -> Result<bool> {
    let (r, dd) = (repo.clone(), d.clone());
    let size = fs(&app.store, move |s| {
        if s.read_link(&s.layout.layer_link(&r, &dd))?.as_ref() != Some(&dd) {
            return Ok(None);
        }
        s.blob_size(&dd)
    })
    .await?;
    let Some(size) = size else {
        return Ok(false);
    };
    if index::blob_held_by_collector(tx, d).await? {
        return Ok(false);
    }
    // Live: the row exists (an upload committed while we waited on it, or
    // only this repository's record of the link was lost).
    let unrecorded = match index::claim_blob(tx, d, size as i64).await? {
        BlobClaim::Inserted => true,
        BlobClaim::Live => false,
        BlobClaim::Deleting | BlobClaim::Gone => return Ok(false),
    };
    // Gone between the look and the claim (a collector finished with it).
    let dd = d.clone();
    if fs(&app.store, move |s| s.blob_size(&dd)).await?.is_none() {
        return Ok(false);
    }
    index::link_blob(tx, repo_id, d).await?;
    if unrecorded {
        tracing::warn!(repository = %repo, digest = %d, "took a blob storage held but the index did not (left by an interrupted upload) into the index");
    }
    Ok(true)
}

/// Cross-repository mount; `false` when `from` does not hold the blob.
pub async fn mount_blob(
    app: &App,
    repo: &RepositoryName,
    from: &RepositoryName,
    digest: &Digest,
    actor: Option<&str>,
) -> Result<bool> {
    let mut tx = app.db.begin().await?;
    let Some(size) = index::lock_linked_blob(&mut tx, from.as_str(), digest).await? else {
        return Ok(false);
    };
    policy::check_write(
        &mut tx,
        Write::Blob {
            repository: repo.as_str(),
            digest,
            size,
        },
    )
    .await?;
    let repo_id = index::ensure_repository(&mut tx, repo.as_str()).await?;
    index::link_blob(&mut tx, repo_id, digest).await?;
    let link = app.store.layout.layer_link(repo, digest);
    let d = digest.clone();
    fs(&app.store, move |s| s.write_link(&link, &d)).await?;
    index::append_event(
        &mut tx,
        &Event {
            event_type: "blob_mount",
            repository: repo.as_str(),
            digest: Some(digest),
            tag: None,
            media_type: None,
            size: Some(size),
            actor,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

/// Largest manifest accepted, as in distribution.
pub const MAX_MANIFEST: usize = 4 << 20;

pub async fn put_manifest(
    app: &App,
    repo: &RepositoryName,
    reference: &Reference,
    body: Bytes,
    content_type: &str,
    actor: Option<&str>,
) -> Result<PutManifest> {
    let manifest = Manifest::parse(&body, content_type)?;
    let (digest, tag) = match reference {
        Reference::Digest(want) => {
            let got = Digest::of(want.algorithm(), &body);
            if &got != want {
                return Err(Error::DigestInvalid(format!(
                    "the manifest's digest is {got}, not {want}"
                )));
            }
            (got, None)
        }
        Reference::Tag(t) => (Digest::sha256_of(&body), Some(t.clone())),
    };
    let refs = manifest.references();
    let blob_refs: Vec<Digest> = refs
        .iter()
        .filter(|(_, k)| *k != RefKind::Manifest)
        .map(|(d, _)| d.clone())
        .collect();
    let child_refs: Vec<Digest> = refs
        .iter()
        .filter(|(_, k)| *k == RefKind::Manifest)
        .map(|(d, _)| d.clone())
        .collect();
    let size = body.len() as i64;
    let all_refs: Vec<Digest> = refs.iter().map(|(d, _)| d.clone()).collect();
    let mut temp: Option<wharf_storage::TempFile> = None;
    let mut backoff = Backoff::new();
    loop {
        // Written and fsynced before the transaction opens, to keep it short.
        let temp_path = match &temp {
            Some(t) => t.path().to_owned(),
            None => {
                let body = body.clone();
                let t = fs(&app.store, move |s| s.write_temp(&body)).await?;
                let p = t.path().to_owned();
                temp = Some(t);
                p
            }
        };
        let mut tx = app.db.begin().await?;
        policy::check_write(
            &mut tx,
            Write::Manifest {
                repository: repo.as_str(),
                tag: tag.as_ref().map(Tag::as_str),
                digest: &digest,
                size,
                references: &all_refs,
            },
        )
        .await?;
        let repo_id = index::ensure_repository(&mut tx, repo.as_str()).await?;

        let all: Vec<Digest> = blob_refs.iter().chain(child_refs.iter()).cloned().collect();
        let live = index::lock_live_blobs(&mut tx, &all).await?;
        let linked = if blob_refs.is_empty() {
            vec![]
        } else {
            index::linked_digests(&mut tx, repo_id, &blob_refs).await?
        };
        for d in blob_refs
            .iter()
            .filter(|d| !linked.contains(d) || !live.iter().any(|(l, _)| l == *d))
        {
            if !adopt_unrecorded(app, &mut tx, repo, repo_id, d).await? {
                return Err(Error::ManifestBlobUnknown(format!(
                    "blob {d} is not in repository {repo}; push it first"
                )));
            }
        }
        if !child_refs.is_empty() {
            let children = index::lock_live_manifests(&mut tx, repo_id, &child_refs).await?;
            if let Some(missing) = child_refs.iter().find(|d| !children.contains(d)) {
                return Err(Error::ManifestBlobUnknown(format!(
                    "manifest {missing} is not in repository {repo}; push it first"
                )));
            }
        }

        let placed = match index::claim_blob(&mut tx, &digest, size).await? {
            BlobClaim::Inserted => {
                let (src, d) = (temp_path.clone(), digest.clone());
                fs(&app.store, move |s| s.place_blob(&src, &d)).await?;
                true
            }
            BlobClaim::Live => false,
            BlobClaim::Deleting | BlobClaim::Gone => {
                drop(tx);
                backoff.wait("this manifest").await?;
                continue;
            }
        };
        let artifact_type = manifest.effective_artifact_type();
        let new = NewManifest {
            repo_id,
            digest: &digest,
            media_type: &manifest.media_type,
            artifact_type: artifact_type.as_deref(),
            subject: manifest.subject.as_ref().map(|s| &s.digest),
            size,
        };
        let manifest_id = match index::claim_manifest(&mut tx, &new).await? {
            ManifestClaim::Created(id) => {
                index::insert_refs(&mut tx, id, &refs).await?;
                id
            }
            ManifestClaim::Existing(id) => id,
            ManifestClaim::Deleting => {
                // Bytes this attempt placed stay where they are: once the row is
                // rolled back another writer may own that path, and removing it
                // could break I2. The reconcile reclaims a file no row knows.
                drop(tx);
                if placed {
                    temp = None;
                }
                backoff.wait("this manifest").await?;
                continue;
            }
        };
        if let Some(t) = &tag {
            if let Some(old) = index::set_tag(&mut tx, repo_id, t.as_str(), manifest_id).await? {
                index::queue_manifest(&mut tx, old, app.config.gc_grace_secs).await?;
            }
        }
        index::append_event(
            &mut tx,
            &Event {
                event_type: "push",
                repository: repo.as_str(),
                digest: Some(&digest),
                tag: tag.as_ref().map(Tag::as_str),
                media_type: Some(&manifest.media_type),
                size: Some(size),
                actor,
            },
        )
        .await?;
        // Holding KEY SHARE on every referenced blob, before commit.
        failpoint::pause("M1").await;
        tx.commit().await?;
        drop(temp);
        // Committed, not yet visible to pulls.
        failpoint::pause("M2").await;
        write_manifest_links(app, repo, repo_id, manifest_id, &digest, tag.as_ref()).await?;
        return Ok(PutManifest {
            digest,
            subject: manifest.subject.map(|s| s.digest),
        });
    }
}

/// Makes a committed manifest visible: pulls read the revision and tag
/// links, so they are written only once the index holds the manifest. A
/// crash before this leaves an indexed manifest that pulls do not see yet
/// (the client's retry of the PUT writes the links), never a visible tag
/// whose blobs the collector may take because no row protects them.
/// The rows stay locked while the links are written, so a delete of the
/// manifest or a move of the tag either waits for this or has already won,
/// and then its links are not written.
async fn write_manifest_links(
    app: &App,
    repo: &RepositoryName,
    repo_id: i64,
    manifest_id: i64,
    digest: &Digest,
    tag: Option<&Tag>,
) -> Result<()> {
    let mut tx = app.db.begin().await?;
    let (live, tagged) =
        index::lock_for_links(&mut tx, repo_id, manifest_id, tag.map(Tag::as_str)).await?;
    if live {
        let layout = app.store.layout.clone();
        let (r, d, t) = (repo.clone(), digest.clone(), tag.cloned());
        fs(&app.store, move |s| {
            s.write_link(&layout.revision_link(&r, &d), &d)?;
            if let (Some(t), true) = (&t, tagged) {
                s.write_link(&layout.tag_index_link(&r, t, &d), &d)?;
                s.write_link(&layout.tag_current_link(&r, t), &d)?;
            }
            Ok(())
        })
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes a manifest and every tag on it, in gc.md's two steps.
pub async fn delete_manifest(
    app: &App,
    repo: &RepositoryName,
    digest: &Digest,
    actor: Option<&str>,
) -> Result<()> {
    let unknown =
        || Error::ManifestUnknown(format!("manifest {digest} is not in repository {repo}"));
    let mut tx = app.db.begin().await?;
    let repo_id = index::repository_id(&mut *tx, repo.as_str())
        .await?
        .ok_or_else(unknown)?;
    policy::check_write(
        &mut tx,
        Write::Delete {
            repository: repo.as_str(),
        },
    )
    .await?;
    let (manifest_id, tags) = index::begin_manifest_delete(&mut tx, repo_id, digest)
        .await?
        .ok_or_else(unknown)?;
    tx.commit().await?;
    finish_manifest_delete(
        app,
        repo,
        manifest_id,
        &tags,
        actor,
        app.config.gc_grace_secs,
    )
    .await
}

/// Step 2 of a manifest delete; also what GC and its recovery run for a
/// `deleting` row. What it referenced is queued for review `grace_secs` later.
pub async fn finish_manifest_delete(
    app: &App,
    repo: &RepositoryName,
    manifest_id: i64,
    tags: &[String],
    actor: Option<&str>,
    grace_secs: i64,
) -> Result<()> {
    let mut tx = app.db.begin().await?;
    let Some(gone) = index::lock_deleting_manifest(&mut tx, manifest_id).await? else {
        return Ok(());
    };
    let layout = app.store.layout.clone();
    let (r, d) = (repo.clone(), gone.digest.clone());
    let tags: Vec<Tag> = tags.iter().filter_map(|t| Tag::parse(t).ok()).collect();
    let links = gone.tag_links.clone();
    fs(&app.store, move |s| {
        let repo_dir = layout.repo_dir(&r);
        s.remove_link(&layout.revision_link(&r, &d), &repo_dir)?;
        for (t, ld) in &links {
            if let Ok(t) = Tag::parse(t) {
                s.remove_link(&layout.tag_index_link(&r, &t, ld), &repo_dir)?;
            }
        }
        for t in &tags {
            s.remove_tree(&layout.tag_dir(&r, t))?;
        }
        Ok(())
    })
    .await?;
    index::finish_manifest_delete(&mut tx, manifest_id, grace_secs).await?;
    index::append_event(
        &mut tx,
        &Event {
            event_type: "delete",
            repository: repo.as_str(),
            digest: Some(&gone.digest),
            tag: None,
            media_type: None,
            size: None,
            actor,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete_tag(
    app: &App,
    repo: &RepositoryName,
    tag: &Tag,
    actor: Option<&str>,
) -> Result<()> {
    let unknown = || Error::ManifestUnknown(format!("tag {tag} is not in repository {repo}"));
    let mut tx = app.db.begin().await?;
    let repo_id = index::repository_id(&mut *tx, repo.as_str())
        .await?
        .ok_or_else(unknown)?;
    policy::check_write(
        &mut tx,
        Write::Delete {
            repository: repo.as_str(),
        },
    )
    .await?;
    let (manifest_id, _links) = index::delete_tag(&mut tx, repo_id, tag.as_str())
        .await?
        .ok_or_else(unknown)?;
    let dir = app.store.layout.tag_dir(repo, tag);
    fs(&app.store, move |s| s.remove_tree(&dir)).await?;
    index::queue_manifest(&mut tx, manifest_id, app.config.gc_grace_secs).await?;
    index::append_event(
        &mut tx,
        &Event {
            event_type: "delete_tag",
            repository: repo.as_str(),
            digest: None,
            tag: Some(tag.as_str()),
            media_type: None,
            size: None,
            actor,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes only this repository's link to a blob; the bytes go through GC.
pub async fn delete_blob_link(app: &App, repo: &RepositoryName, digest: &Digest) -> Result<()> {
    let unknown = || Error::BlobUnknown(format!("blob {digest} is not in repository {repo}"));
    let mut tx = app.db.begin().await?;
    let repo_id = index::repository_id(&mut *tx, repo.as_str())
        .await?
        .ok_or_else(unknown)?;
    policy::check_write(
        &mut tx,
        Write::Delete {
            repository: repo.as_str(),
        },
    )
    .await?;
    if !index::unlink_blob(&mut tx, repo_id, digest).await? {
        return Err(unknown());
    }
    let (link, stop) = (
        app.store.layout.layer_link(repo, digest),
        app.store.layout.repo_dir(repo),
    );
    fs(&app.store, move |s| s.remove_link(&link, &stop)).await?;
    index::queue_blobs(
        &mut tx,
        std::slice::from_ref(digest),
        app.config.gc_grace_secs,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
