//! Projects, their metadata and members (core's tenancy tables).
//!
//! A project owns the repositories whose name starts with `<project>/`.
//! Repository names are `COLLATE "C"`, so that prefix is the index range
//! `[<project>/, <project>0)`: `0` is the byte after `/`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, Postgres, QueryBuilder};

use crate::Result;

/// Role ids as Harbor numbers them.
pub const ROLE_PROJECT_ADMIN: i32 = 1;

#[derive(Debug, Clone, FromRow)]
pub struct Project {
    pub project_id: i64,
    pub name: String,
    pub owner_id: i64,
    pub owner_name: String,
    pub registry_id: i64,
    pub creation_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

const SELECT: &str = "SELECT p.project_id, p.name, p.owner_id, coalesce(u.username, '') AS owner_name, p.registry_id, p.creation_time, p.update_time
    FROM project p LEFT JOIN harbor_user u ON u.user_id = p.owner_id";

/// The SQL condition "repository `r` belongs to the project named by `name`".
fn in_project(r: &str, name: &str) -> String {
    format!("{r}.name >= {name} || '/' AND {r}.name < {name} || '0'")
}

pub async fn by_name(db: impl PgExecutor<'_>, name: &str) -> Result<Option<Project>> {
    Ok(sqlx::query_as(&format!("{SELECT} WHERE p.name = $1"))
        .bind(name)
        .fetch_optional(db)
        .await?)
}

pub async fn by_id(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Project>> {
    Ok(sqlx::query_as(&format!("{SELECT} WHERE p.project_id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// The project a push goes to, key-share locked so that it cannot be
/// deleted before the push commits (deletion refuses while repositories
/// exist, and takes the row lock that this one blocks).
pub async fn by_name_for_write(tx: &mut PgConnection, name: &str) -> Result<Option<Project>> {
    Ok(
        sqlx::query_as(&format!("{SELECT} WHERE p.name = $1 FOR KEY SHARE OF p"))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?,
    )
}

/// Locks the project row for deletion; `false` when it is gone.
pub async fn lock_for_delete(tx: &mut PgConnection, id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT project_id FROM project WHERE project_id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .is_some())
}

pub async fn exists(db: impl PgExecutor<'_>, name: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM project WHERE name = $1)")
            .bind(name)
            .fetch_one(db)
            .await?,
    )
}

/// Claims a one-time start-up step: `true` the first time `key` is claimed
/// in this catalogue, `false` ever after (the claim commits with the caller's
/// transaction).
pub async fn first_start(tx: &mut PgConnection, key: &str) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO system_setting (key, value) VALUES ($1, 'true'::jsonb) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1)
}

pub struct NewProject<'a> {
    pub name: &'a str,
    pub owner_id: i64,
    pub metadata: &'a BTreeMap<String, String>,
    /// Bytes, or -1 for unlimited.
    pub storage_limit: i64,
}

/// Creates the project, its metadata, its quota, and the owner's
/// projectAdmin membership; `None` when the name is taken. Run it in a
/// transaction so that the four commit together.
pub async fn create(tx: &mut PgConnection, p: &NewProject<'_>) -> Result<Option<i64>> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO project (name, owner_id) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING project_id",
    )
    .bind(p.name)
    .bind(p.owner_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else { return Ok(None) };
    let (keys, values): (Vec<&str>, Vec<&str>) = p
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .unzip();
    sqlx::query(
        "INSERT INTO project_metadata (project_id, name, value) SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS t(k, v)",
    )
    .bind(id)
    .bind(keys)
    .bind(values)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO quota (project_id, hard_storage) VALUES ($1, $2)")
        .bind(id)
        .bind(p.storage_limit)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO project_member (project_id, entity_id, entity_type, role) VALUES ($1, $2, 'u', $3)",
    )
    .bind(id)
    .bind(p.owner_id)
    .bind(ROLE_PROJECT_ADMIN)
    .execute(&mut *tx)
    .await?;
    Ok(Some(id))
}

pub async fn delete(db: impl PgExecutor<'_>, id: i64) -> Result<bool> {
    Ok(sqlx::query("DELETE FROM project WHERE project_id = $1")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

pub async fn touch(db: impl PgExecutor<'_>, id: i64) -> Result<()> {
    sqlx::query("UPDATE project SET update_time = now() WHERE project_id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Every metadata pair of the given projects.
pub async fn metadata(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<Vec<(i64, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT project_id, name, value FROM project_metadata WHERE project_id = ANY($1) ORDER BY project_id, name",
    )
    .bind(ids)
    .fetch_all(db)
    .await?)
}

pub async fn metadata_of(db: impl PgExecutor<'_>, id: i64) -> Result<BTreeMap<String, String>> {
    Ok(metadata(db, &[id])
        .await?
        .into_iter()
        .map(|(_, k, v)| (k, v))
        .collect())
}

/// Sets a metadata value, creating the key when absent.
pub async fn set_metadata(db: impl PgExecutor<'_>, id: i64, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO project_metadata (project_id, name, value) VALUES ($1, $2, $3)
         ON CONFLICT (project_id, name) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(id)
    .bind(key)
    .bind(value)
    .execute(db)
    .await?;
    Ok(())
}

/// Adds a metadata key; `false` when it exists already.
pub async fn add_metadata(
    db: impl PgExecutor<'_>,
    id: i64,
    key: &str,
    value: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO project_metadata (project_id, name, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(key)
    .bind(value)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn delete_metadata(db: impl PgExecutor<'_>, id: i64, key: &str) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM project_metadata WHERE project_id = $1 AND name = $2")
            .bind(id)
            .bind(key)
            .execute(db)
            .await?
            .rows_affected()
            == 1,
    )
}

/// How many repositories (holding at least one manifest) each named project has.
pub async fn repo_counts(db: impl PgExecutor<'_>, names: &[String]) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(&format!(
        "SELECT n, (SELECT count(*) FROM repository r WHERE {}
                      AND EXISTS (SELECT 1 FROM manifest m WHERE m.repo_id = r.id)) AS c
           FROM unnest($1::text[]) AS n",
        in_project("r", "n")
    ))
    .bind(names)
    .fetch_all(db)
    .await?)
}

pub async fn repo_count(db: impl PgExecutor<'_>, name: &str) -> Result<i64> {
    Ok(repo_counts(db, &[name.to_owned()])
        .await?
        .first()
        .map(|(_, c)| *c)
        .unwrap_or(0))
}

/// Who may see which projects in a list.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    /// Public projects, plus those `user_id` is a member of, plus those named.
    Visible {
        user_id: Option<i64>,
        names: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub enum NameCond {
    Exact(String),
    Fuzzy(String),
    AnyOf(Vec<String>),
}

#[derive(Debug, Clone)]
pub enum IdCond {
    Exact(i64),
    AnyOf(Vec<i64>),
    Range(Option<i64>, Option<i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    ProjectId,
    CreationTime,
    UpdateTime,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::Name => "p.name",
            SortKey::ProjectId => "p.project_id",
            SortKey::CreationTime => "p.creation_time",
            SortKey::UpdateTime => "p.update_time",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ListFilter {
    pub scope: Scope,
    pub names: Vec<NameCond>,
    pub ids: Vec<IdCond>,
    pub public: Option<bool>,
    pub owner: Option<String>,
    /// (key, descending); name ascending when empty.
    pub sort: Vec<(SortKey, bool)>,
}

const PUBLIC: &str = "EXISTS (SELECT 1 FROM project_metadata pm WHERE pm.project_id = p.project_id AND pm.name = 'public' AND pm.value = 'true')";

fn push_where(qb: &mut QueryBuilder<'_, Postgres>, f: &ListFilter) {
    qb.push(" WHERE true");
    if let Scope::Visible { user_id, names } = &f.scope {
        qb.push(" AND (").push(PUBLIC);
        if let Some(uid) = user_id {
            qb.push(" OR EXISTS (SELECT 1 FROM project_member m WHERE m.project_id = p.project_id AND m.entity_type = 'u' AND m.entity_id = ")
                .push_bind(*uid)
                .push(")");
        }
        if !names.is_empty() {
            qb.push(" OR p.name = ANY(")
                .push_bind(names.clone())
                .push(")");
        }
        qb.push(")");
    }
    for n in &f.names {
        match n {
            NameCond::Exact(v) => {
                qb.push(" AND p.name = ").push_bind(v.clone());
            }
            NameCond::Fuzzy(v) => {
                qb.push(" AND p.name LIKE ")
                    .push_bind(crate::filter::contains_pattern(v));
            }
            NameCond::AnyOf(vs) => {
                qb.push(" AND p.name = ANY(")
                    .push_bind(vs.clone())
                    .push(")");
            }
        }
    }
    for c in &f.ids {
        match c {
            IdCond::Exact(v) => {
                qb.push(" AND p.project_id = ").push_bind(*v);
            }
            IdCond::AnyOf(vs) => {
                qb.push(" AND p.project_id = ANY(")
                    .push_bind(vs.clone())
                    .push(")");
            }
            IdCond::Range(lo, hi) => {
                if let Some(lo) = lo {
                    qb.push(" AND p.project_id >= ").push_bind(*lo);
                }
                if let Some(hi) = hi {
                    qb.push(" AND p.project_id <= ").push_bind(*hi);
                }
            }
        }
    }
    match f.public {
        Some(true) => {
            qb.push(" AND ").push(PUBLIC);
        }
        Some(false) => {
            qb.push(" AND NOT ").push(PUBLIC);
        }
        None => {}
    }
    if let Some(owner) = &f.owner {
        qb.push(" AND lower(u.username) = lower(")
            .push_bind(owner.clone())
            .push(")");
    }
}

/// One page of projects and the total that match.
pub async fn list(
    db: &sqlx::PgPool,
    f: &ListFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Project>, i64)> {
    let mut count = QueryBuilder::<Postgres>::new(
        "SELECT count(*) FROM project p LEFT JOIN harbor_user u ON u.user_id = p.owner_id",
    );
    push_where(&mut count, f);
    let total: i64 = count.build_query_scalar().fetch_one(db).await?;

    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    push_where(&mut qb, f);
    qb.push(" ORDER BY ");
    let mut sort = f.sort.clone();
    if sort.is_empty() {
        sort.push((SortKey::Name, false));
    }
    for (i, (k, desc)) in sort.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        qb.push(k.column())
            .push(if *desc { " DESC" } else { " ASC" });
    }
    qb.push(", p.project_id ASC LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    let rows = qb.build_query_as::<Project>().fetch_all(db).await?;
    Ok((rows, total))
}

#[derive(Debug, Clone, FromRow)]
pub struct Member {
    pub id: i64,
    pub project_id: i64,
    pub entity_id: i64,
    pub entity_type: String,
    pub entity_name: String,
    pub role: i32,
    pub creation_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

const MEMBER: &str = "SELECT m.id, m.project_id, m.entity_id, m.entity_type::text AS entity_type,
        coalesce(u.username, '') AS entity_name, m.role, m.creation_time, m.update_time
   FROM project_member m LEFT JOIN harbor_user u ON m.entity_type = 'u' AND u.user_id = m.entity_id";

pub async fn members(
    db: impl PgExecutor<'_>,
    project_id: i64,
    entity_name: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Member>> {
    Ok(sqlx::query_as(&format!(
        "{MEMBER} WHERE m.project_id = $1 AND ($2::text IS NULL OR u.username LIKE $2)
          ORDER BY m.id LIMIT $3 OFFSET $4"
    ))
    .bind(project_id)
    .bind(entity_name.map(crate::filter::contains_pattern))
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?)
}

pub async fn count_members(
    db: impl PgExecutor<'_>,
    project_id: i64,
    entity_name: Option<&str>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM project_member m LEFT JOIN harbor_user u ON m.entity_type = 'u' AND u.user_id = m.entity_id
          WHERE m.project_id = $1 AND ($2::text IS NULL OR u.username LIKE $2)",
    )
    .bind(project_id)
    .bind(entity_name.map(crate::filter::contains_pattern))
    .fetch_one(db)
    .await?)
}

pub async fn member(db: impl PgExecutor<'_>, project_id: i64, id: i64) -> Result<Option<Member>> {
    Ok(
        sqlx::query_as(&format!("{MEMBER} WHERE m.project_id = $1 AND m.id = $2"))
            .bind(project_id)
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// Adds a user as a member; `None` when they are one already.
pub async fn add_member(
    db: impl PgExecutor<'_>,
    project_id: i64,
    user_id: i64,
    role: i32,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "INSERT INTO project_member (project_id, entity_id, entity_type, role) VALUES ($1, $2, 'u', $3)
         ON CONFLICT (project_id, entity_id, entity_type) DO NOTHING RETURNING id",
    )
    .bind(project_id)
    .bind(user_id)
    .bind(role)
    .fetch_optional(db)
    .await?)
}

pub async fn update_member(
    db: impl PgExecutor<'_>,
    project_id: i64,
    id: i64,
    role: i32,
) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE project_member SET role = $3, update_time = now() WHERE project_id = $1 AND id = $2",
    )
    .bind(project_id)
    .bind(id)
    .bind(role)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn delete_member(db: impl PgExecutor<'_>, project_id: i64, id: i64) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM project_member WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(db)
            .await?
            .rows_affected()
            == 1,
    )
}

/// The user's role in the project, if a member.
pub async fn role_of(
    db: impl PgExecutor<'_>,
    project_id: i64,
    user_id: i64,
) -> Result<Option<i32>> {
    Ok(sqlx::query_scalar(
        "SELECT role FROM project_member WHERE project_id = $1 AND entity_type = 'u' AND entity_id = $2",
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?)
}

/// The user's role in each of the given projects where they are a member.
pub async fn roles_in(
    db: impl PgExecutor<'_>,
    user_id: i64,
    project_ids: &[i64],
) -> Result<Vec<(i64, i32)>> {
    Ok(sqlx::query_as(
        "SELECT project_id, role FROM project_member WHERE entity_type = 'u' AND entity_id = $1 AND project_id = ANY($2)",
    )
    .bind(user_id)
    .bind(project_ids)
    .fetch_all(db)
    .await?)
}

/// (role, number of members holding it).
pub async fn role_counts(db: impl PgExecutor<'_>, project_id: i64) -> Result<Vec<(i32, i64)>> {
    Ok(sqlx::query_as(
        "SELECT role, count(*) FROM project_member WHERE project_id = $1 GROUP BY role",
    )
    .bind(project_id)
    .fetch_all(db)
    .await?)
}
