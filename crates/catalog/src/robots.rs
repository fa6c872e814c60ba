//! Robot accounts and their permissions.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, Postgres, QueryBuilder};

use crate::Result;

#[derive(Debug, Clone, FromRow)]
pub struct Robot {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub secret_hash: String,
    pub level: String,
    pub project_id: Option<i64>,
    pub duration: i64,
    pub expires_at: i64,
    pub disabled: bool,
    pub creator_ref: String,
    pub creation_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Permission {
    pub kind: String,
    pub namespace: String,
    pub resource: String,
    pub action: String,
}

pub const COLUMNS: &str =
    "id, name, description, secret_hash, level, project_id, duration, expires_at, disabled, creator_ref, creation_time, update_time";

/// Finds a robot by its full name (`robot$name` or `robot$project+name`).
pub async fn by_full_name(db: impl PgExecutor<'_>, name: &str) -> Result<Option<Robot>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM robot WHERE name = $1 ORDER BY id LIMIT 1"
    ))
    .bind(name)
    .fetch_optional(db)
    .await?)
}

pub async fn permissions(db: impl PgExecutor<'_>, robot_id: i64) -> Result<Vec<Permission>> {
    Ok(sqlx::query_as("SELECT kind, namespace, resource, action FROM robot_permission WHERE robot_id = $1 ORDER BY kind, namespace, resource, action")
        .bind(robot_id)
        .fetch_all(db)
        .await?)
}

pub async fn by_id(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Robot>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM robot WHERE id = $1"))
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// Reads a robot and locks its row until the transaction ends.
pub async fn lock(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Robot>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM robot WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Whether any robot already has this full name.
pub async fn name_taken(db: impl PgExecutor<'_>, name: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM robot WHERE name = $1)")
            .bind(name)
            .fetch_one(db)
            .await?,
    )
}

pub struct NewRobot<'a> {
    /// The full name, prefix included (`robot$name`, `robot$project+name`).
    pub name: &'a str,
    pub description: &'a str,
    pub secret_hash: &'a str,
    pub level: &'a str,
    pub project_id: Option<i64>,
    pub duration: i64,
    pub expires_at: i64,
    pub disabled: bool,
    pub creator_ref: &'a str,
}

/// Inserts a robot; `None` when the name is taken.
pub async fn create(db: impl PgExecutor<'_>, r: &NewRobot<'_>) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "INSERT INTO robot (name, description, secret_hash, level, project_id, duration, expires_at, disabled, creator_ref)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(r.name)
    .bind(r.description)
    .bind(r.secret_hash)
    .bind(r.level)
    .bind(r.project_id)
    .bind(r.duration)
    .bind(r.expires_at)
    .bind(r.disabled)
    .bind(r.creator_ref)
    .fetch_optional(db)
    .await?)
}

/// Replaces the editable fields; `false` when there is no such robot.
pub async fn update(
    db: impl PgExecutor<'_>,
    id: i64,
    description: &str,
    duration: i64,
    expires_at: i64,
    disabled: bool,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE robot SET description = $2, duration = $3, expires_at = $4, disabled = $5, update_time = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(description)
    .bind(duration)
    .bind(expires_at)
    .bind(disabled)
    .execute(db)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Stores a new secret hash; `false` when there is no such robot.
pub async fn set_secret(db: impl PgExecutor<'_>, id: i64, secret_hash: &str) -> Result<bool> {
    let n = sqlx::query("UPDATE robot SET secret_hash = $2, update_time = now() WHERE id = $1")
        .bind(id)
        .bind(secret_hash)
        .execute(db)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Deletes a robot with its permissions; `false` when there is no such robot.
pub async fn delete(db: impl PgExecutor<'_>, id: i64) -> Result<bool> {
    let n = sqlx::query("DELETE FROM robot WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Replaces a robot's permissions with `perms` (duplicates are merged).
pub async fn set_permissions(
    tx: &mut PgConnection,
    robot_id: i64,
    perms: &[Permission],
) -> Result<()> {
    sqlx::query("DELETE FROM robot_permission WHERE robot_id = $1")
        .bind(robot_id)
        .execute(&mut *tx)
        .await?;
    let column = |f: fn(&Permission) -> &String| perms.iter().map(f).cloned().collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO robot_permission (robot_id, kind, namespace, resource, action)
         SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(robot_id)
    .bind(column(|p| &p.kind))
    .bind(column(|p| &p.namespace))
    .bind(column(|p| &p.resource))
    .bind(column(|p| &p.action))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The permissions of several robots at once, as (robot id, permission).
pub async fn permissions_of(
    db: impl PgExecutor<'_>,
    robot_ids: &[i64],
) -> Result<Vec<(i64, Permission)>> {
    let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
        "SELECT robot_id, kind, namespace, resource, action FROM robot_permission
         WHERE robot_id = ANY($1) ORDER BY robot_id, kind, namespace, resource, action",
    )
    .bind(robot_ids)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, kind, namespace, resource, action)| {
            (
                id,
                Permission {
                    kind,
                    namespace,
                    resource,
                    action,
                },
            )
        })
        .collect())
}

/// The conditions of a robot listing; every field that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct RobotFilter {
    pub level: Option<String>,
    pub project_id: Option<i64>,
    /// Full names, any of which matches exactly.
    pub names: Option<Vec<String>>,
    pub name: Option<crate::filter::TextMatch>,
}

impl RobotFilter {
    fn push(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        qb.push(" WHERE true");
        if let Some(level) = &self.level {
            qb.push(" AND level = ").push_bind(level.clone());
        }
        if let Some(p) = self.project_id {
            qb.push(" AND project_id = ").push_bind(p);
        }
        if let Some(names) = &self.names {
            qb.push(" AND name = ANY(")
                .push_bind(names.clone())
                .push(")");
        }
        if let Some(m) = &self.name {
            m.push_and(qb, "name");
        }
    }
}

/// The columns a robot listing may be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RobotOrder {
    Id,
    Name,
    Duration,
    ExpiresAt,
    CreationTime,
    UpdateTime,
}

impl RobotOrder {
    fn column(self) -> &'static str {
        match self {
            RobotOrder::Id => "id",
            RobotOrder::Name => "name",
            RobotOrder::Duration => "duration",
            RobotOrder::ExpiresAt => "expires_at",
            RobotOrder::CreationTime => "creation_time",
            RobotOrder::UpdateTime => "update_time",
        }
    }
}

pub async fn count(db: impl PgExecutor<'_>, filter: &RobotFilter) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT count(*) FROM robot");
    filter.push(&mut qb);
    Ok(qb.build_query_scalar().fetch_one(db).await?)
}

/// One page of robots; `order` is (column, descending), ties broken by id.
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &RobotFilter,
    order: &[(RobotOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<Vec<Robot>> {
    let mut qb = QueryBuilder::new(format!("SELECT {COLUMNS} FROM robot"));
    filter.push(&mut qb);
    qb.push(" ORDER BY ");
    for (col, desc) in order {
        qb.push(col.column())
            .push(if *desc { " DESC, " } else { " ASC, " });
    }
    qb.push("id ASC LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    Ok(qb.build_query_as().fetch_all(db).await?)
}
