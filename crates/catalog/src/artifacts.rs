//! Artifacts and tags as core's catalogue shows them: an artifact is a
//! manifest row of the storage index, with its tags, the children of an
//! index, its referrers (accessories), pull statistics and the metadata core
//! read from its bytes.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, Postgres, QueryBuilder};

use crate::filter::TextMatch;
use crate::repositories::{artifact_count, push_children_of, read_tx, INDEX_TYPES};
use crate::Result;

#[derive(Debug, Clone, FromRow)]
pub struct ArtifactRow {
    pub id: i64,
    pub repo_id: i64,
    pub digest: Vec<u8>,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject_digest: Option<Vec<u8>>,
    /// The manifest and everything it references (an index: its children too).
    pub size: i64,
    pub push_time: DateTime<Utc>,
    pub pull_time: Option<DateTime<Utc>>,
    pub pull_count: i64,
    /// JSON text of what core read from the bytes, when it has.
    pub extra_attrs: Option<String>,
    pub annotations: Option<String>,
    pub platforms: Option<String>,
    /// Whether core has read the manifest's bytes yet.
    pub has_meta: bool,
}

/// The columns of [`ArtifactRow`] for the manifest aliased `m`.
fn artifact_columns() -> &'static str {
    "m.id, m.repo_id, m.digest, m.media_type, m.artifact_type, m.subject_digest, \
     (m.size \
       + coalesce((SELECT sum(b.size) FROM manifest_ref r JOIN blob b ON b.digest = r.child_digest WHERE r.manifest_id = m.id), 0) \
       + coalesce((SELECT sum(b.size) FROM manifest_ref r \
                     JOIN manifest c ON c.repo_id = m.repo_id AND c.digest = r.child_digest \
                     JOIN manifest_ref cr ON cr.manifest_id = c.id JOIN blob b ON b.digest = cr.child_digest \
                    WHERE r.manifest_id = m.id AND r.kind = 'manifest'), 0))::int8 AS size, \
     m.pushed_at AS push_time, ps.last_pulled_at AS pull_time, coalesce(ps.pull_count, 0) AS pull_count, \
     am.extra_attrs::text AS extra_attrs, am.annotations::text AS annotations, am.platforms::text AS platforms, \
     am.digest IS NOT NULL AS has_meta"
}

const ARTIFACT_JOINS: &str =
    "LEFT JOIN pull_stat ps ON ps.repo_id = m.repo_id AND ps.digest = m.digest \
     LEFT JOIN artifact_meta am ON am.digest = m.digest";

/// Harbor's `tags=` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagCond {
    /// `tags=*`: tagged artifacts.
    Any,
    /// `tags=nil`: untagged artifacts.
    None,
    Name(TextMatch),
}

#[derive(Debug, Clone, Default)]
pub struct ArtifactQuery {
    pub digest: Option<Vec<u8>>,
    pub tags: Vec<TagCond>,
    /// The manifest's or the artifact's (config) media type.
    pub media_type: Option<String>,
    /// `base=*`: an index's children and referrers too, not only top-level artifacts.
    pub all: bool,
    /// Oldest first instead of newest first.
    pub ascending: bool,
    pub limit: i64,
    pub offset: i64,
}

fn push_artifact_where(qb: &mut QueryBuilder<'_, Postgres>, repo_id: i64, q: &ArtifactQuery) {
    qb.push(" FROM manifest m WHERE m.repo_id = ")
        .push_bind(repo_id);
    if q.all {
        qb.push(" AND m.state = 'live'");
    } else {
        qb.push(" AND m.state = 'live' AND m.subject_digest IS NULL AND m.digest NOT IN (");
        push_children_of(qb, repo_id);
        qb.push(")");
    }
    if let Some(d) = &q.digest {
        qb.push(" AND m.digest = ").push_bind(d.clone());
    }
    if let Some(t) = &q.media_type {
        qb.push(" AND (m.media_type = ")
            .push_bind(t.clone())
            .push(" OR m.artifact_type = ")
            .push_bind(t.clone())
            .push(")");
    }
    for t in &q.tags {
        match t {
            TagCond::Any => {
                qb.push(" AND EXISTS (SELECT 1 FROM tag t WHERE t.manifest_id = m.id)");
            }
            TagCond::None => {
                qb.push(" AND NOT EXISTS (SELECT 1 FROM tag t WHERE t.manifest_id = m.id)");
            }
            TagCond::Name(n) => {
                qb.push(" AND EXISTS (SELECT 1 FROM tag t WHERE t.manifest_id = m.id");
                n.push_and(qb, "t.name");
                qb.push(")");
            }
        }
    }
}

/// A page of a repository's artifacts and the total that match. The page's
/// ids come from the index alone (`manifest_top_level`), then only that
/// page's rows are read and decorated.
pub async fn list(
    db: &sqlx::PgPool,
    repo_id: i64,
    q: &ArtifactQuery,
) -> Result<(Vec<ArtifactRow>, i64)> {
    let mut tx = read_tx(db).await?;
    let out = list_on(&mut tx, repo_id, q).await?;
    tx.commit().await?;
    Ok(out)
}

async fn list_on(
    tx: &mut PgConnection,
    repo_id: i64,
    q: &ArtifactQuery,
) -> Result<(Vec<ArtifactRow>, i64)> {
    let unfiltered = !q.all && q.digest.is_none() && q.media_type.is_none() && q.tags.is_empty();
    let total: i64 = if unfiltered {
        // From the index alone, without a lookup per artifact.
        sqlx::query_scalar(&format!(
            "SELECT {} FROM repository r WHERE r.id = $1",
            artifact_count("r")
        ))
        .bind(repo_id)
        .fetch_one(&mut *tx)
        .await?
    } else {
        let mut count = QueryBuilder::new("SELECT count(*)");
        push_artifact_where(&mut count, repo_id, q);
        count.build_query_scalar().fetch_one(&mut *tx).await?
    };
    if q.offset >= total {
        return Ok((vec![], total));
    }
    let dir = if q.ascending { "ASC" } else { "DESC" };
    let mut qb = QueryBuilder::new("WITH page AS (SELECT m.id, m.pushed_at");
    push_artifact_where(&mut qb, repo_id, q);
    qb.push(format!(" ORDER BY m.pushed_at {dir}, m.id {dir} LIMIT "))
        .push_bind(q.limit)
        .push(" OFFSET ")
        .push_bind(q.offset)
        .push(format!(
            ") SELECT {} FROM page JOIN manifest m ON m.id = page.id {ARTIFACT_JOINS} \
             ORDER BY page.pushed_at {dir}, page.id {dir}",
            artifact_columns()
        ));
    let rows = qb.build_query_as().fetch_all(&mut *tx).await?;
    Ok((rows, total))
}

/// A live artifact of the repository by digest (any artifact: a child or a referrer too).
pub async fn by_digest(
    db: impl PgExecutor<'_>,
    repo_id: i64,
    digest: &[u8],
) -> Result<Option<ArtifactRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {} FROM manifest m {ARTIFACT_JOINS} WHERE m.repo_id = $1 AND m.digest = $2 AND m.state = 'live'",
        artifact_columns()
    ))
    .bind(repo_id)
    .bind(digest)
    .fetch_optional(db)
    .await?)
}

/// The live artifact a tag points at.
pub async fn by_tag(
    db: impl PgExecutor<'_>,
    repo_id: i64,
    tag: &str,
) -> Result<Option<ArtifactRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {} FROM tag t JOIN manifest m ON m.id = t.manifest_id {ARTIFACT_JOINS} \
         WHERE t.repo_id = $1 AND t.name = $2 AND m.state = 'live'",
        artifact_columns()
    ))
    .bind(repo_id)
    .bind(tag)
    .fetch_optional(db)
    .await?)
}

#[derive(Debug, Clone, FromRow)]
pub struct TagRow {
    pub id: i64,
    pub repository_id: i64,
    pub artifact_id: i64,
    pub name: String,
    pub push_time: DateTime<Utc>,
    pub pull_time: Option<DateTime<Utc>>,
}

const TAG_SELECT: &str =
    "SELECT t.id, t.repo_id AS repository_id, t.manifest_id AS artifact_id, t.name, \
     t.pushed_at AS push_time, ps.last_pulled_at AS pull_time \
     FROM tag t JOIN manifest m ON m.id = t.manifest_id \
     LEFT JOIN pull_stat ps ON ps.repo_id = m.repo_id AND ps.digest = m.digest";

/// The tags of these artifacts, newest first within each.
pub async fn tags_of(db: impl PgExecutor<'_>, artifact_ids: &[i64]) -> Result<Vec<TagRow>> {
    Ok(sqlx::query_as(&format!(
        "{TAG_SELECT} WHERE t.manifest_id = ANY($1) ORDER BY t.manifest_id, t.pushed_at DESC, t.name"
    ))
    .bind(artifact_ids)
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone, Default)]
pub struct TagQuery {
    pub name: Vec<TextMatch>,
    /// Sort by name instead of push time.
    pub by_name: bool,
    /// Callers default to newest first.
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

/// A page of one artifact's tags and their total.
pub async fn list_tags(
    db: &sqlx::PgPool,
    artifact_id: i64,
    q: &TagQuery,
) -> Result<(Vec<TagRow>, i64)> {
    let push_where = |qb: &mut QueryBuilder<'_, Postgres>| {
        qb.push(" WHERE t.manifest_id = ").push_bind(artifact_id);
        for n in &q.name {
            n.push_and(qb, "t.name");
        }
    };
    let mut count = QueryBuilder::new("SELECT count(*) FROM tag t");
    push_where(&mut count);
    let total: i64 = count.build_query_scalar().fetch_one(db).await?;
    let mut qb = QueryBuilder::new(TAG_SELECT);
    push_where(&mut qb);
    let dir = if q.descending { "DESC" } else { "ASC" };
    let col = if q.by_name { "t.name" } else { "t.pushed_at" };
    qb.push(format!(" ORDER BY {col} {dir}, t.name {dir}"));
    qb.push(" LIMIT ")
        .push_bind(q.limit)
        .push(" OFFSET ")
        .push_bind(q.offset);
    Ok((qb.build_query_as().fetch_all(db).await?, total))
}

/// The manifest a tag of the repository points at.
pub async fn tag_target(db: impl PgExecutor<'_>, repo_id: i64, tag: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT manifest_id FROM tag WHERE repo_id = $1 AND name = $2")
            .bind(repo_id)
            .bind(tag)
            .fetch_optional(db)
            .await?,
    )
}

/// Every tag of the repository (for the immutability check of a repository delete).
pub async fn repo_tags(db: impl PgExecutor<'_>, repo_id: i64) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT name FROM tag WHERE repo_id = $1 ORDER BY name")
            .bind(repo_id)
            .fetch_all(db)
            .await?,
    )
}

/// A child of an index, as Harbor's `references` lists it.
#[derive(Debug, Clone, FromRow)]
pub struct ReferenceRow {
    pub parent_id: i64,
    pub child_id: Option<i64>,
    pub child_digest: Vec<u8>,
}

pub async fn references_of(
    db: impl PgExecutor<'_>,
    artifact_ids: &[i64],
) -> Result<Vec<ReferenceRow>> {
    Ok(sqlx::query_as(
        "SELECT r.manifest_id AS parent_id, c.id AS child_id, r.child_digest \
         FROM manifest_ref r JOIN manifest p ON p.id = r.manifest_id \
         LEFT JOIN manifest c ON c.repo_id = p.repo_id AND c.digest = r.child_digest AND c.state = 'live' \
         WHERE r.manifest_id = ANY($1) AND r.kind = 'manifest' ORDER BY r.manifest_id, r.child_digest",
    )
    .bind(artifact_ids)
    .fetch_all(db)
    .await?)
}

/// A manifest whose `subject` is one of the listed artifacts (Harbor's accessory).
#[derive(Debug, Clone, FromRow)]
pub struct AccessoryRow {
    pub id: i64,
    pub subject_digest: Vec<u8>,
    pub digest: Vec<u8>,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub size: i64,
    pub push_time: DateTime<Utc>,
}

pub async fn accessories_of(
    db: impl PgExecutor<'_>,
    repo_id: i64,
    subjects: &[Vec<u8>],
) -> Result<Vec<AccessoryRow>> {
    Ok(sqlx::query_as(
        "SELECT m.id, m.subject_digest, m.digest, m.media_type, m.artifact_type, m.size, m.pushed_at AS push_time \
         FROM manifest m WHERE m.repo_id = $1 AND m.subject_digest = ANY($2) AND m.state = 'live' \
         ORDER BY m.pushed_at, m.id",
    )
    .bind(repo_id)
    .bind(subjects)
    .fetch_all(db)
    .await?)
}

/// The live indexes of the repository that list `digest` as a child.
pub async fn parents_of(
    db: impl PgExecutor<'_>,
    repo_id: i64,
    digest: &[u8],
) -> Result<Vec<Vec<u8>>> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT ix.digest FROM manifest ix JOIN manifest_ref mr ON mr.manifest_id = ix.id AND mr.kind = 'manifest' \
         WHERE ix.repo_id = $1 AND ix.media_type IN {INDEX_TYPES} AND ix.state = 'live' AND mr.child_digest = $2"
    ))
    .bind(repo_id)
    .bind(digest)
    .fetch_all(db)
    .await?)
}

/// Every live manifest of the repository, in an order that deletes safely:
/// indexes before the manifests they list, referrers before their subjects.
pub async fn deletion_order(db: impl PgExecutor<'_>, repo_id: i64) -> Result<Vec<Vec<u8>>> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT digest FROM manifest WHERE repo_id = $1 AND state = 'live' \
         ORDER BY (subject_digest IS NOT NULL) DESC, (media_type IN {INDEX_TYPES}) DESC, id DESC"
    ))
    .bind(repo_id)
    .fetch_all(db)
    .await?)
}

/// Which of these digests core has already read metadata for.
pub async fn meta_known(db: impl PgExecutor<'_>, digests: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    Ok(
        sqlx::query_scalar("SELECT digest FROM artifact_meta WHERE digest = ANY($1)")
            .bind(digests)
            .fetch_all(db)
            .await?,
    )
}

/// Stores what core read from a manifest's bytes (JSON texts); the first writer wins.
pub async fn put_meta(
    db: impl PgExecutor<'_>,
    digest: &[u8],
    extra_attrs: Option<&str>,
    annotations: Option<&str>,
    platforms: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO artifact_meta (digest, extra_attrs, annotations, platforms) \
         VALUES ($1, $2::jsonb, $3::jsonb, $4::jsonb) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest)
    .bind(extra_attrs)
    .bind(annotations)
    .bind(platforms)
    .execute(db)
    .await?;
    Ok(())
}
