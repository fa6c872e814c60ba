//! Per-project storage quotas and usage.
//!
//! Usage is computed from the storage index, never kept as a counter that
//! could drift: it is the total size of the distinct blobs that the
//! project's live manifests hold, the manifests themselves included (their
//! own bytes, configs, layers and child manifests). A layer shared by two
//! artifacts, or by two repositories of the project, counts once; deleting
//! an artifact lowers usage at once. Blobs uploaded but not yet referenced
//! by a manifest are not counted: each is checked against the limit when its
//! upload finishes, and the manifest that would reference them is checked
//! with all of them (see `policy`).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor};

use crate::Result;

/// `hard_storage` value meaning "no limit".
pub const UNLIMITED: i64 = -1;

#[derive(Debug, Clone, FromRow)]
pub struct Quota {
    pub id: i64,
    pub project_id: i64,
    pub project_name: String,
    pub owner_name: String,
    pub hard_storage: i64,
    pub used_storage: i64,
    pub creation_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// The digests the project named by the SQL expression `name` holds; see the module doc.
fn content_sql(name: &str) -> String {
    format!(
        "SELECT m.digest FROM manifest m JOIN repository r ON r.id = m.repo_id
          WHERE r.name >= {name} || '/' AND r.name < {name} || '0' AND m.state = 'live'
         UNION
         SELECT mr.child_digest FROM manifest_ref mr JOIN manifest m ON m.id = mr.manifest_id JOIN repository r ON r.id = m.repo_id
          WHERE r.name >= {name} || '/' AND r.name < {name} || '0' AND m.state = 'live'"
    )
}

fn usage_sql(name: &str) -> String {
    format!(
        "(SELECT coalesce(sum(b.size), 0)::int8 FROM blob b WHERE b.digest IN ({}))",
        content_sql(name)
    )
}

fn select() -> String {
    format!(
        "SELECT q.id, q.project_id, p.name AS project_name, coalesce(u.username, '') AS owner_name,
                q.hard_storage, {} AS used_storage, q.creation_time, q.update_time
           FROM quota q JOIN project p ON p.project_id = q.project_id
           LEFT JOIN harbor_user u ON u.user_id = p.owner_id",
        usage_sql("p.name")
    )
}

/// The storage the project named `project` uses, in bytes.
pub async fn usage(db: impl PgExecutor<'_>, project: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(&format!("SELECT {}", usage_sql("$1")))
        .bind(project)
        .fetch_one(db)
        .await?)
}

/// How many bytes `digests` would add to the project's usage: the sizes of
/// those that are known blobs and not counted yet, each once. Digests with
/// no blob row yet are left out (the caller knows their sizes).
pub async fn added_by(
    db: impl PgExecutor<'_>,
    project: &str,
    digests: &[&[u8]],
) -> Result<(i64, Vec<Vec<u8>>)> {
    let rows: Vec<(Vec<u8>, i64, bool)> = sqlx::query_as(&format!(
        "SELECT b.digest, b.size, b.digest IN ({}) AS counted FROM blob b WHERE b.digest = ANY($2)",
        content_sql("$1")
    ))
    .bind(project)
    .bind(digests)
    .fetch_all(db)
    .await?;
    let added = rows.iter().filter(|(_, _, c)| !c).map(|(_, s, _)| *s).sum();
    Ok((added, rows.into_iter().map(|(d, _, _)| d).collect()))
}

pub async fn by_id(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Quota>> {
    Ok(sqlx::query_as(&format!("{} WHERE q.id = $1", select()))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

pub async fn by_project(db: impl PgExecutor<'_>, project_id: i64) -> Result<Option<Quota>> {
    Ok(
        sqlx::query_as(&format!("{} WHERE q.project_id = $1", select()))
            .bind(project_id)
            .fetch_optional(db)
            .await?,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    HardStorage,
    UsedStorage,
    CreationTime,
    UpdateTime,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::HardStorage => "hard_storage",
            SortKey::UsedStorage => "used_storage",
            SortKey::CreationTime => "creation_time",
            SortKey::UpdateTime => "update_time",
        }
    }
}

/// One page of quotas, optionally of one project, and the total.
pub async fn list(
    db: &sqlx::PgPool,
    project_id: Option<i64>,
    sort: Option<(SortKey, bool)>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Quota>, i64)> {
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM quota WHERE $1::int8 IS NULL OR project_id = $1")
            .bind(project_id)
            .fetch_one(db)
            .await?;
    let (key, desc) = sort.unwrap_or((SortKey::Id, false));
    // The column comes from a closed set, never from the request.
    let rows = sqlx::query_as(&format!(
        "SELECT * FROM ({} WHERE $1::int8 IS NULL OR q.project_id = $1) s ORDER BY {} {}, id LIMIT $2 OFFSET $3",
        select(),
        key.column(),
        if desc { "DESC" } else { "ASC" }
    ))
    .bind(project_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    Ok((rows, total))
}

pub async fn set_hard(db: impl PgExecutor<'_>, id: i64, storage: i64) -> Result<bool> {
    Ok(
        sqlx::query("UPDATE quota SET hard_storage = $2, update_time = now() WHERE id = $1")
            .bind(id)
            .bind(storage)
            .execute(db)
            .await?
            .rows_affected()
            == 1,
    )
}

/// The project's storage limit, read without a lock.
pub async fn hard_limit(db: impl PgExecutor<'_>, project_id: i64) -> Result<Option<(i64, i64)>> {
    Ok(
        sqlx::query_as("SELECT id, hard_storage FROM quota WHERE project_id = $1")
            .bind(project_id)
            .fetch_optional(db)
            .await?,
    )
}

/// Locks the project's quota row until the transaction ends, so that the
/// writes checked against one limit are checked one after the other; returns
/// the limit as it stands once the lock is held.
pub async fn lock_hard_limit(tx: &mut PgConnection, project_id: i64) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT hard_storage FROM quota WHERE project_id = $1 FOR UPDATE")
            .bind(project_id)
            .fetch_optional(&mut *tx)
            .await?,
    )
}
