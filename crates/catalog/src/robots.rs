//! Robot accounts and their permissions.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

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
