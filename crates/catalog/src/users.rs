//! Users and their credentials (core's identity tables).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

use crate::Result;

#[derive(Debug, Clone, FromRow)]
pub struct User {
    pub user_id: i64,
    pub username: String,
    pub email: String,
    pub realname: String,
    pub comment: String,
    pub password_hash: String,
    pub sysadmin_flag: bool,
    pub creation_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

const COLUMNS: &str = "user_id, username, email, realname, comment, password_hash, sysadmin_flag, creation_time, update_time";

pub async fn by_name(db: impl PgExecutor<'_>, username: &str) -> Result<Option<User>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM harbor_user WHERE lower(username) = lower($1)"
    ))
    .bind(username)
    .fetch_optional(db)
    .await?)
}

pub async fn by_id(db: impl PgExecutor<'_>, id: i64) -> Result<Option<User>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM harbor_user WHERE user_id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub realname: &'a str,
    pub comment: &'a str,
    pub password_hash: &'a str,
    pub sysadmin: bool,
}

/// Inserts a user; `None` when the username or email is taken.
pub async fn create(db: impl PgExecutor<'_>, u: &NewUser<'_>) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "INSERT INTO harbor_user (username, email, realname, comment, password_hash, sysadmin_flag)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING user_id",
    )
    .bind(u.username)
    .bind(u.email)
    .bind(u.realname)
    .bind(u.comment)
    .bind(u.password_hash)
    .bind(u.sysadmin)
    .fetch_optional(db)
    .await?)
}
