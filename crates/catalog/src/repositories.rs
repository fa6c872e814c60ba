//! Repositories as core's catalogue shows them: the storage index's
//! repositories that hold artifacts, grouped under the project named by
//! their first path component, plus the statistics and search that read them.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder, Row};

use crate::filter::{project_prefix_bounds, TextMatch, Viewer};
use crate::Result;

/// Index media types, inlined in SQL so that the partial index
/// `manifest_repo_index` matches.
pub(crate) const INDEX_TYPES: &str = "('application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json')";

/// The child digests of the live indexes of repository `repo` (an SQL
/// expression for its id). Uncorrelated when `repo` is a bound parameter, so
/// that `digest NOT IN (…)` is one hashed lookup per row.
pub(crate) fn children_of(repo: &str) -> String {
    format!(
        "SELECT mr.child_digest FROM manifest ix JOIN manifest_ref mr ON mr.manifest_id = ix.id AND mr.kind = 'manifest' \
         WHERE ix.repo_id = {repo} AND ix.media_type IN {INDEX_TYPES} AND ix.state = 'live'"
    )
}

/// Appends [`children_of`] for a repository id as a bound parameter.
pub(crate) fn push_children_of(qb: &mut QueryBuilder<'_, Postgres>, repo_id: i64) {
    qb.push(
        "SELECT mr.child_digest FROM manifest ix JOIN manifest_ref mr ON mr.manifest_id = ix.id AND mr.kind = 'manifest' \
         WHERE ix.repo_id = ",
    )
    .push_bind(repo_id)
    .push(format!(" AND ix.media_type IN {INDEX_TYPES} AND ix.state = 'live'"));
}

/// How many top-level artifacts (live, not a referrer, not an index's
/// child) repository `r` holds: the live manifests, from the index alone,
/// less the children, found digest by digest.
pub(crate) fn artifact_count(r: &str) -> String {
    format!(
        "((SELECT count(*) FROM manifest m WHERE m.repo_id = {r}.id AND m.state = 'live' AND m.subject_digest IS NULL) \
          - (SELECT count(*) FROM manifest c WHERE c.repo_id = {r}.id AND c.state = 'live' AND c.subject_digest IS NULL \
               AND c.digest IN ({})))",
        children_of(&format!("{r}.id"))
    )
}

/// A transaction for the catalogue's list queries. Their data is
/// cached and their indexes cover them, so random reads are costed as on an
/// SSD (Postgres' default assumes spinning disks and would rather sort 100k
/// rows than walk an index); hashes of an index's children stay in memory.
pub(crate) async fn read_tx(db: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, Postgres>> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "SELECT set_config('random_page_cost', '1.1', true), set_config('work_mem', '32MB', true)",
    )
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

/// A repository that holds artifacts, by name: what the artifact and tag
/// handlers need, without counting anything.
#[derive(Debug, Clone, FromRow)]
pub struct RepoRef {
    pub id: i64,
    pub name: String,
}

pub async fn find(db: impl PgExecutor<'_>, name: &str) -> Result<Option<RepoRef>> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.name FROM repository r WHERE r.name = $1 \
           AND EXISTS (SELECT 1 FROM manifest m WHERE m.repo_id = r.id AND m.state = 'live')",
    )
    .bind(name)
    .fetch_optional(db)
    .await?)
}

/// Every project the user is a member of, with the role.
pub async fn member_projects(db: impl PgExecutor<'_>, user_id: i64) -> Result<Vec<(i64, i32)>> {
    Ok(sqlx::query_as(
        "SELECT project_id, role FROM project_member WHERE entity_type = 'u' AND entity_id = $1 ORDER BY project_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone, FromRow)]
pub struct Repository {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub description: String,
    pub artifact_count: i64,
    pub pull_count: i64,
    pub creation_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoSort {
    Name,
    CreationTime,
    UpdateTime,
}

#[derive(Debug, Clone, Default)]
pub struct RepoQuery {
    /// Only this project's repositories.
    pub project: Option<String>,
    pub name: Vec<TextMatch>,
    pub project_id: Option<i64>,
    /// (key, descending); empty means newest first.
    pub sort: Vec<(RepoSort, bool)>,
    pub limit: i64,
    pub offset: i64,
}

fn push_repo_where(qb: &mut QueryBuilder<'_, Postgres>, viewer: &Viewer, q: &RepoQuery) {
    qb.push(
        " FROM repository r JOIN project p ON p.name = split_part(r.name, '/', 1) \
          WHERE EXISTS (SELECT 1 FROM manifest m WHERE m.repo_id = r.id AND m.state = 'live')",
    );
    if let Some(project) = &q.project {
        let (lo, hi) = project_prefix_bounds(project);
        qb.push(" AND r.name > ")
            .push_bind(lo)
            .push(" AND r.name < ")
            .push_bind(hi);
    }
    for m in &q.name {
        m.push_and(qb, "r.name");
    }
    if let Some(id) = q.project_id {
        qb.push(" AND p.project_id = ").push_bind(id);
    }
    qb.push(" AND ");
    viewer.push_condition(qb, "p");
}

const UPDATE_TIME: &str = "greatest(r.created_at, (SELECT max(m.pushed_at) FROM manifest m WHERE m.repo_id = r.id AND m.state = 'live'))";

/// A page of repositories and the total that match.
pub async fn list(
    db: &sqlx::PgPool,
    viewer: &Viewer,
    q: &RepoQuery,
) -> Result<(Vec<Repository>, i64)> {
    let mut tx = read_tx(db).await?;
    let mut count = QueryBuilder::new("SELECT count(*)");
    push_repo_where(&mut count, viewer, q);
    let total: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;

    let mut qb = QueryBuilder::new(format!(
        "WITH page AS (SELECT r.id, r.name, r.created_at, {UPDATE_TIME} AS update_time"
    ));
    push_repo_where(&mut qb, viewer, q);
    let order = order_by(&q.sort);
    qb.push(format!(" ORDER BY {order} LIMIT "))
        .push_bind(q.limit)
        .push(" OFFSET ")
        .push_bind(q.offset)
        .push(") ");
    qb.push(details_select("page"));
    qb.push(format!(" ORDER BY {order}"));
    let rows = qb.build_query_as().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok((rows, total))
}

fn order_by(sort: &[(RepoSort, bool)]) -> String {
    let mut parts: Vec<String> = sort
        .iter()
        .map(|(k, desc)| {
            let col = match k {
                RepoSort::Name => "name",
                RepoSort::CreationTime => "created_at",
                RepoSort::UpdateTime => "update_time",
            };
            format!("{col} {}", if *desc { "DESC" } else { "ASC" })
        })
        .collect();
    if parts.is_empty() {
        parts.push("created_at DESC".into());
    }
    parts.push("id DESC".into());
    parts.join(", ")
}

/// The full row for the repositories in `source` (a relation with `id`).
fn details_select(source: &str) -> String {
    format!(
        "SELECT r.id, p.project_id, r.name, coalesce(rm.description, '') AS description, \
           {count} AS artifact_count, \
           coalesce((SELECT sum(s.pull_count) FROM pull_stat s WHERE s.repo_id = r.id), 0)::int8 AS pull_count, \
           r.created_at AS creation_time, {UPDATE_TIME} AS update_time, r.created_at \
         FROM {source} JOIN repository r ON r.id = {source}.id \
         JOIN project p ON p.name = split_part(r.name, '/', 1) \
         LEFT JOIN repository_meta rm ON rm.repo_id = r.id",
        count = artifact_count("r"),
    )
}

/// One repository by its full name, when it holds artifacts.
pub async fn by_name(db: &sqlx::PgPool, name: &str) -> Result<Option<Repository>> {
    let sql = format!(
        "WITH one AS (SELECT r.id FROM repository r WHERE r.name = $1 \
           AND EXISTS (SELECT 1 FROM manifest m WHERE m.repo_id = r.id AND m.state = 'live')) {}",
        details_select("one")
    );
    let mut tx = read_tx(db).await?;
    let row = sqlx::query_as(&sql)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn set_description(
    db: impl PgExecutor<'_>,
    repo_id: i64,
    description: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO repository_meta (repo_id, description) VALUES ($1, $2)
         ON CONFLICT (repo_id) DO UPDATE SET description = EXCLUDED.description",
    )
    .bind(repo_id)
    .bind(description)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delete_meta(db: impl PgExecutor<'_>, repo_id: i64) -> Result<()> {
    sqlx::query("DELETE FROM repository_meta WHERE repo_id = $1")
        .bind(repo_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Harbor's `/statistics`, counted over what `viewer` may see.
#[derive(Debug, Clone, Default)]
pub struct Statistics {
    pub private_project_count: i64,
    pub private_repo_count: i64,
    pub public_project_count: i64,
    pub public_repo_count: i64,
    pub total_project_count: i64,
    pub total_repo_count: i64,
    /// Bytes of the distinct blobs linked by the visible projects' repositories.
    pub total_storage_consumption: i64,
}

pub async fn statistics(db: &sqlx::PgPool, viewer: &Viewer) -> Result<Statistics> {
    let mut qb = QueryBuilder::new(
        "WITH vp AS (SELECT p.project_id, p.name, \
           EXISTS (SELECT 1 FROM project_metadata pm WHERE pm.project_id = p.project_id AND pm.name = 'public' AND pm.value = 'true') AS public \
           FROM project p WHERE ",
    );
    viewer.push_condition(&mut qb, "p");
    qb.push(
        "), vr AS (SELECT r.id, vp.public FROM repository r JOIN vp ON vp.name = split_part(r.name, '/', 1) \
           WHERE EXISTS (SELECT 1 FROM manifest m WHERE m.repo_id = r.id AND m.state = 'live')) \
         SELECT (SELECT count(*) FILTER (WHERE NOT public) FROM vp), \
                (SELECT count(*) FILTER (WHERE NOT public) FROM vr), \
                (SELECT count(*) FILTER (WHERE public) FROM vp), \
                (SELECT count(*) FILTER (WHERE public) FROM vr), \
                (SELECT count(*) FROM vp), \
                (SELECT count(*) FROM vr), \
                (SELECT coalesce(sum(b.size), 0)::int8 FROM blob b WHERE b.state = 'live' AND EXISTS \
                   (SELECT 1 FROM repo_blob rb JOIN repository r ON r.id = rb.repo_id JOIN vp ON vp.name = split_part(r.name, '/', 1) WHERE rb.digest = b.digest))",
    );
    let row = qb.build().fetch_one(db).await?;
    Ok(Statistics {
        private_project_count: row.get(0),
        private_repo_count: row.get(1),
        public_project_count: row.get(2),
        public_repo_count: row.get(3),
        total_project_count: row.get(4),
        total_repo_count: row.get(5),
        total_storage_consumption: row.get(6),
    })
}

/// A repository found by `/search`.
#[derive(Debug, Clone, FromRow)]
pub struct SearchRepository {
    pub project_id: i64,
    pub project_name: String,
    pub project_public: bool,
    pub repository_name: String,
    pub pull_count: i64,
    pub artifact_count: i64,
}

/// Repositories whose name contains `term`, among the visible projects, by name.
pub async fn search_repositories(
    db: &sqlx::PgPool,
    viewer: &Viewer,
    term: &str,
    limit: i64,
) -> Result<Vec<SearchRepository>> {
    let mut qb = QueryBuilder::new(format!(
        "SELECT p.project_id, p.name AS project_name, \
           EXISTS (SELECT 1 FROM project_metadata pm WHERE pm.project_id = p.project_id AND pm.name = 'public' AND pm.value = 'true') AS project_public, \
           r.name AS repository_name, \
           coalesce((SELECT sum(s.pull_count) FROM pull_stat s WHERE s.repo_id = r.id), 0)::int8 AS pull_count, \
           {} AS artifact_count \
         FROM repository r JOIN project p ON p.name = split_part(r.name, '/', 1) \
         WHERE EXISTS (SELECT 1 FROM manifest m WHERE m.repo_id = r.id AND m.state = 'live') AND r.name ILIKE ",
        artifact_count("r")
    ));
    qb.push_bind(crate::filter::contains_pattern(term))
        .push(" AND ");
    viewer.push_condition(&mut qb, "p");
    qb.push(" ORDER BY r.name LIMIT ").push_bind(limit);
    let mut tx = read_tx(db).await?;
    let rows = qb.build_query_as().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}
