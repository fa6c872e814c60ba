//! The storage index (shared/docs/gc.md): blobs, repository links, manifests,
//! their references, tags and the tag index links, plus the outbox.
//!
//! Lock discipline: a transaction that creates a reference takes `FOR KEY
//! SHARE` on the referenced rows first, sorted by digest, and only proceeds
//! for rows that are `live`. The collector uses `FOR UPDATE SKIP LOCKED`.

use sqlx::{PgConnection, PgExecutor, Row};
use wharf_oci::{Digest, RefKind};

use crate::Result;

/// What the upload-finish protocol found for a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobClaim {
    /// This transaction created the row: it must place the file before commit.
    Inserted,
    /// The blob is live and its file is present (I2); the new copy is dropped.
    Live,
    /// GC is deleting it: roll back, wait, try again.
    Deleting,
    /// GC removed the row between our statements: try again.
    Gone,
}

pub async fn repository_id(db: impl PgExecutor<'_>, name: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM repository WHERE name = $1")
            .bind(name)
            .fetch_optional(db)
            .await?,
    )
}

/// Finds or creates the repository row without taking a row lock on it, so
/// that concurrent pushes to one repository do not queue behind each other.
pub async fn ensure_repository(tx: &mut PgConnection, name: &str) -> Result<i64> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO repository (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        None => Ok(
            sqlx::query_scalar("SELECT id FROM repository WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?,
        ),
    }
}

/// Step 1 of upload finish: create the blob row or key-share lock the existing one.
pub async fn claim_blob(tx: &mut PgConnection, digest: &Digest, size: i64) -> Result<BlobClaim> {
    let inserted = sqlx::query(
        "INSERT INTO blob (digest, size) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest.as_bytes())
    .bind(size)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(BlobClaim::Inserted);
    }
    let state: Option<String> =
        sqlx::query_scalar("SELECT state::text FROM blob WHERE digest = $1 FOR KEY SHARE")
            .bind(digest.as_bytes())
            .fetch_optional(&mut *tx)
            .await?;
    Ok(match state.as_deref() {
        Some("live") => BlobClaim::Live,
        Some(_) => BlobClaim::Deleting,
        None => BlobClaim::Gone,
    })
}

/// Whether a blob row exists in a state other than `live`, read without
/// waiting on the collector's locks.
pub async fn blob_held_by_collector(tx: &mut PgConnection, digest: &Digest) -> Result<bool> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state::text FROM blob WHERE digest = $1")
            .bind(digest.as_bytes())
            .fetch_optional(&mut *tx)
            .await?;
    Ok(state.is_some_and(|s| s != "live"))
}

/// Key-share locks the live rows among `digests` (sorted, to avoid deadlocks)
/// and returns the sizes of those found.
pub async fn lock_live_blobs(
    tx: &mut PgConnection,
    digests: &[Digest],
) -> Result<Vec<(Digest, i64)>> {
    let mut keys: Vec<&[u8]> = digests.iter().map(|d| d.as_bytes()).collect();
    keys.sort();
    keys.dedup();
    let rows = sqlx::query("SELECT digest, size FROM blob WHERE digest = ANY($1) AND state = 'live' ORDER BY digest FOR KEY SHARE")
        .bind(keys)
        .fetch_all(&mut *tx)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((Digest::from_bytes(r.get::<&[u8], _>(0))?, r.get(1))))
        .collect())
}

/// Records the `_layers` link (and refreshes the pin that protects a blob
/// no manifest references yet).
pub async fn link_blob(tx: &mut PgConnection, repo_id: i64, digest: &Digest) -> Result<()> {
    sqlx::query(
        "INSERT INTO repo_blob (repo_id, digest) VALUES ($1, $2)
         ON CONFLICT (repo_id, digest) DO UPDATE SET last_used_at = now()",
    )
    .bind(repo_id)
    .bind(digest.as_bytes())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn unlink_blob(tx: &mut PgConnection, repo_id: i64, digest: &Digest) -> Result<bool> {
    let n = sqlx::query("DELETE FROM repo_blob WHERE repo_id = $1 AND digest = $2")
        .bind(repo_id)
        .bind(digest.as_bytes())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// Key-share locks the blob if `repo` links it and it is live (the mount source check).
pub async fn lock_linked_blob(
    tx: &mut PgConnection,
    repo: &str,
    digest: &Digest,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT b.size FROM blob b
           JOIN repo_blob rb ON rb.digest = b.digest
           JOIN repository r ON r.id = rb.repo_id
          WHERE r.name = $1 AND b.digest = $2 AND b.state = 'live'
          FOR KEY SHARE OF b",
    )
    .bind(repo)
    .bind(digest.as_bytes())
    .fetch_optional(&mut *tx)
    .await?)
}

/// Queues a digest for the collector to review once the grace window has
/// passed. A digest already queued keeps the earlier of the two times: the
/// queue is only a hint (step A re-checks every predicate, the grace window
/// included), and a delete made with a shorter window must not wait for a
/// longer one asked for at upload.
pub async fn queue_blobs(tx: &mut PgConnection, digests: &[Digest], grace_secs: i64) -> Result<()> {
    let mut keys: Vec<&[u8]> = digests.iter().map(|d| d.as_bytes()).collect();
    keys.sort();
    keys.dedup();
    sqlx::query(
        "INSERT INTO gc_queue (kind, key, review_after)
         SELECT 'blob', k, now() + make_interval(secs => $2) FROM unnest($1::bytea[]) AS k ORDER BY k
         ON CONFLICT (kind, key) DO UPDATE SET review_after = EXCLUDED.review_after
           WHERE gc_queue.attempts = 0 AND gc_queue.review_after > EXCLUDED.review_after",
    )
    .bind(keys)
    .bind(grace_secs as f64)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn queue_manifest(
    tx: &mut PgConnection,
    manifest_id: i64,
    grace_secs: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO gc_queue (kind, key, review_after) VALUES ('manifest', int8send($1), now() + make_interval(secs => $2))
         ON CONFLICT (kind, key) DO NOTHING",
    )
    .bind(manifest_id)
    .bind(grace_secs as f64)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Key-share locks the live manifests of `repo_id` among `digests`; returns the digests found.
pub async fn lock_live_manifests(
    tx: &mut PgConnection,
    repo_id: i64,
    digests: &[Digest],
) -> Result<Vec<Digest>> {
    let mut keys: Vec<&[u8]> = digests.iter().map(|d| d.as_bytes()).collect();
    keys.sort();
    keys.dedup();
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT digest FROM manifest WHERE repo_id = $1 AND digest = ANY($2) AND state = 'live' ORDER BY digest FOR KEY SHARE",
    )
    .bind(repo_id)
    .bind(keys)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.iter().filter_map(|b| Digest::from_bytes(b)).collect())
}

pub struct NewManifest<'a> {
    pub repo_id: i64,
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub artifact_type: Option<&'a str>,
    pub subject: Option<&'a Digest>,
    pub size: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestClaim {
    Created(i64),
    Existing(i64),
    Deleting,
}

/// Inserts the manifest row or key-share locks the existing one.
pub async fn claim_manifest(tx: &mut PgConnection, m: &NewManifest<'_>) -> Result<ManifestClaim> {
    let created: Option<i64> = sqlx::query_scalar(
        "INSERT INTO manifest (repo_id, digest, media_type, artifact_type, subject_digest, size)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (repo_id, digest) DO NOTHING RETURNING id",
    )
    .bind(m.repo_id)
    .bind(m.digest.as_bytes())
    .bind(m.media_type)
    .bind(m.artifact_type)
    .bind(m.subject.map(|s| s.as_bytes()))
    .bind(m.size)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = created {
        return Ok(ManifestClaim::Created(id));
    }
    let row = sqlx::query(
        "SELECT id, state::text FROM manifest WHERE repo_id = $1 AND digest = $2 FOR KEY SHARE",
    )
    .bind(m.repo_id)
    .bind(m.digest.as_bytes())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(match row {
        Some(r) if r.get::<String, _>(1) == "live" => ManifestClaim::Existing(r.get(0)),
        _ => ManifestClaim::Deleting,
    })
}

pub async fn insert_refs(
    tx: &mut PgConnection,
    manifest_id: i64,
    refs: &[(Digest, RefKind)],
) -> Result<()> {
    let mut refs: Vec<(&[u8], &str)> = refs
        .iter()
        .map(|(d, k)| (d.as_bytes(), k.as_str()))
        .collect();
    refs.sort();
    refs.dedup();
    let (digests, kinds): (Vec<&[u8]>, Vec<&str>) = refs.into_iter().unzip();
    sqlx::query(
        "INSERT INTO manifest_ref (manifest_id, child_digest, kind)
         SELECT $1, d, k::ref_kind FROM unnest($2::bytea[], $3::text[]) AS t(d, k)
         ON CONFLICT DO NOTHING",
    )
    .bind(manifest_id)
    .bind(digests)
    .bind(kinds)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Points `tag` at `manifest_id`; returns the manifest it pointed at before, if another.
pub async fn set_tag(
    tx: &mut PgConnection,
    repo_id: i64,
    tag: &str,
    manifest_id: i64,
) -> Result<Option<i64>> {
    let old: Option<i64> = sqlx::query_scalar(
        "SELECT manifest_id FROM tag WHERE repo_id = $1 AND name = $2 FOR UPDATE",
    )
    .bind(repo_id)
    .bind(tag)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO tag (repo_id, name, manifest_id) VALUES ($1, $2, $3)
         ON CONFLICT (repo_id, name) DO UPDATE SET manifest_id = EXCLUDED.manifest_id, pushed_at = now()",
    )
    .bind(repo_id)
    .bind(tag)
    .bind(manifest_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO tag_index (repo_id, tag, digest) SELECT $1, $2, digest FROM manifest WHERE id = $3 ON CONFLICT DO NOTHING",
    )
    .bind(repo_id)
    .bind(tag)
    .bind(manifest_id)
    .execute(&mut *tx)
    .await?;
    Ok(old.filter(|&o| o != manifest_id))
}

/// After a manifest PUT commits: key-share locks the manifest row (a delete
/// waits, or has already set it `deleting`) and share-locks the tag row (a
/// move waits, or already points it elsewhere). Returns whether the manifest
/// is still live and whether `tag` still points at it.
pub async fn lock_for_links(
    tx: &mut PgConnection,
    repo_id: i64,
    manifest_id: i64,
    tag: Option<&str>,
) -> Result<(bool, bool)> {
    let live: Option<bool> =
        sqlx::query_scalar("SELECT state = 'live' FROM manifest WHERE id = $1 FOR KEY SHARE")
            .bind(manifest_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(tag) = tag else {
        return Ok((live == Some(true), false));
    };
    let tagged: Option<bool> = sqlx::query_scalar(
        "SELECT manifest_id = $3 FROM tag WHERE repo_id = $1 AND name = $2 FOR SHARE",
    )
    .bind(repo_id)
    .bind(tag)
    .bind(manifest_id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok((live == Some(true), tagged == Some(true)))
}

/// Deletes a tag row; returns the digests of every index link it left behind.
pub async fn delete_tag(
    tx: &mut PgConnection,
    repo_id: i64,
    tag: &str,
) -> Result<Option<(i64, Vec<Digest>)>> {
    let manifest_id: Option<i64> = sqlx::query_scalar(
        "DELETE FROM tag WHERE repo_id = $1 AND name = $2 RETURNING manifest_id",
    )
    .bind(repo_id)
    .bind(tag)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(manifest_id) = manifest_id else {
        return Ok(None);
    };
    let links: Vec<Vec<u8>> = sqlx::query_scalar(
        "DELETE FROM tag_index WHERE repo_id = $1 AND tag = $2 RETURNING digest",
    )
    .bind(repo_id)
    .bind(tag)
    .fetch_all(&mut *tx)
    .await?;
    Ok(Some((
        manifest_id,
        links.iter().filter_map(|b| Digest::from_bytes(b)).collect(),
    )))
}

pub async fn manifest_by_tag(
    db: impl PgExecutor<'_>,
    repo_id: i64,
    tag: &str,
) -> Result<Option<(i64, Digest)>> {
    let row = sqlx::query("SELECT m.id, m.digest FROM tag t JOIN manifest m ON m.id = t.manifest_id WHERE t.repo_id = $1 AND t.name = $2")
        .bind(repo_id)
        .bind(tag)
        .fetch_optional(db)
        .await?;
    Ok(row.and_then(|r| Some((r.get(0), Digest::from_bytes(r.get::<&[u8], _>(1))?))))
}

/// Step 1 of a manifest delete: lock it, drop its tags, mark it `deleting`.
/// Returns the manifest id and the tags it had, or `None` when unknown.
pub async fn begin_manifest_delete(
    tx: &mut PgConnection,
    repo_id: i64,
    digest: &Digest,
) -> Result<Option<(i64, Vec<String>)>> {
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM manifest WHERE repo_id = $1 AND digest = $2 AND state = 'live' FOR UPDATE",
    )
    .bind(repo_id)
    .bind(digest.as_bytes())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else { return Ok(None) };
    let tags: Vec<String> =
        sqlx::query_scalar("DELETE FROM tag WHERE manifest_id = $1 RETURNING name")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    sqlx::query("UPDATE manifest SET state = 'deleting', deleting_since = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(Some((id, tags)))
}

/// What step 2 of a manifest delete must unlink.
#[derive(Debug)]
pub struct DeletingManifest {
    pub digest: Digest,
    pub tag_links: Vec<(String, Digest)>,
}

/// Step 2, first half: lock the `deleting` row and list the links to remove.
pub async fn lock_deleting_manifest(
    tx: &mut PgConnection,
    manifest_id: i64,
) -> Result<Option<DeletingManifest>> {
    let row = sqlx::query(
        "SELECT repo_id, digest FROM manifest WHERE id = $1 AND state = 'deleting' FOR UPDATE",
    )
    .bind(manifest_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let repo_id: i64 = row.get(0);
    let Some(digest) = Digest::from_bytes(row.get::<&[u8], _>(1)) else {
        return Ok(None);
    };
    let links = sqlx::query(
        "DELETE FROM tag_index WHERE repo_id = $1 AND digest = $2 RETURNING tag, digest",
    )
    .bind(repo_id)
    .bind(digest.as_bytes())
    .fetch_all(&mut *tx)
    .await?;
    let tag_links = links
        .into_iter()
        .filter_map(|r| {
            Some((
                r.get::<String, _>(0),
                Digest::from_bytes(r.get::<&[u8], _>(1))?,
            ))
        })
        .collect();
    Ok(Some(DeletingManifest { digest, tag_links }))
}

/// Step 2, second half: delete the row (its references cascade) and queue
/// what it referenced, and its own bytes, for the collector.
pub async fn finish_manifest_delete(
    tx: &mut PgConnection,
    manifest_id: i64,
    grace_secs: i64,
) -> Result<()> {
    let children: Vec<Vec<u8>> = sqlx::query_scalar(
        "WITH gone AS (DELETE FROM manifest WHERE id = $1 RETURNING digest)
         SELECT child_digest FROM manifest_ref WHERE manifest_id = $1
         UNION SELECT digest FROM gone",
    )
    .bind(manifest_id)
    .fetch_all(&mut *tx)
    .await?;
    let digests: Vec<Digest> = children
        .iter()
        .filter_map(|b| Digest::from_bytes(b))
        .collect();
    queue_blobs(tx, &digests, grace_secs).await
}

#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub event_type: &'a str,
    pub repository: &'a str,
    pub digest: Option<&'a Digest>,
    pub tag: Option<&'a str>,
    pub media_type: Option<&'a str>,
    pub size: Option<i64>,
    pub actor: Option<&'a str>,
}

pub async fn append_event(tx: &mut PgConnection, e: &Event<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (event_type, repository, digest, tag, media_type, size, actor) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.event_type)
    .bind(e.repository)
    .bind(e.digest.map(|d| d.to_string()))
    .bind(e.tag)
    .bind(e.media_type)
    .bind(e.size)
    .bind(e.actor)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A manifest that names another as its subject, for the referrers API.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub size: i64,
}

pub async fn referrers(
    db: impl PgExecutor<'_>,
    repo: &str,
    subject: &Digest,
) -> Result<Vec<Referrer>> {
    let rows = sqlx::query(
        "SELECT m.digest, m.media_type, m.artifact_type, m.size FROM manifest m JOIN repository r ON r.id = m.repo_id
          WHERE r.name = $1 AND m.subject_digest = $2 AND m.state = 'live' ORDER BY m.pushed_at, m.id",
    )
    .bind(repo)
    .bind(subject.as_bytes())
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(Referrer {
                digest: Digest::from_bytes(r.get::<&[u8], _>(0))?,
                media_type: r.get(1),
                artifact_type: r.get(2),
                size: r.get(3),
            })
        })
        .collect())
}

/// Repository names after `last`, in order, that hold at least one manifest or blob link.
pub async fn list_repositories(
    db: impl PgExecutor<'_>,
    last: Option<&str>,
    limit: i64,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM repository r WHERE ($1::text IS NULL OR name > $1)
           AND (EXISTS (SELECT 1 FROM manifest m WHERE m.repo_id = r.id) OR EXISTS (SELECT 1 FROM repo_blob b WHERE b.repo_id = r.id))
          ORDER BY name LIMIT $2",
    )
    .bind(last)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Adds pull counts gathered off the request path.
pub async fn record_pulls(
    db: impl PgExecutor<'_>,
    repos: &[String],
    digests: &[Vec<u8>],
    counts: &[i64],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO pull_stat (repo_id, digest, pull_count, last_pulled_at)
         SELECT r.id, t.d, t.c, now() FROM unnest($1::text[], $2::bytea[], $3::int8[]) AS t(n, d, c)
           JOIN repository r ON r.name = t.n
         ON CONFLICT (repo_id, digest) DO UPDATE
           SET pull_count = pull_stat.pull_count + EXCLUDED.pull_count, last_pulled_at = EXCLUDED.last_pulled_at",
    )
    .bind(repos)
    .bind(digests)
    .bind(counts)
    .execute(db)
    .await?;
    Ok(())
}

/// Which of `digests` `repo_id` links in `_layers` (a manifest may only
/// reference blobs its own repository holds).
pub async fn linked_digests(
    tx: &mut PgConnection,
    repo_id: i64,
    digests: &[Digest],
) -> Result<Vec<Digest>> {
    let keys: Vec<&[u8]> = digests.iter().map(|d| d.as_bytes()).collect();
    let rows: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT digest FROM repo_blob WHERE repo_id = $1 AND digest = ANY($2)")
            .bind(repo_id)
            .bind(keys)
            .fetch_all(&mut *tx)
            .await?;
    Ok(rows.iter().filter_map(|b| Digest::from_bytes(b)).collect())
}
