//! Users and their credentials (core's identity tables).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, Postgres, QueryBuilder};

use crate::filter::TextMatch;
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

/// Finds the user a login names, by username or by email (Harbor's database
/// authentication accepts either), ignoring case.
pub async fn by_principal(db: impl PgExecutor<'_>, principal: &str) -> Result<Option<User>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM harbor_user
         WHERE lower(username) = lower($1) OR (email <> '' AND lower(email) = lower($1))
         ORDER BY (lower(username) = lower($1)) DESC, user_id LIMIT 1"
    ))
    .bind(principal)
    .fetch_optional(db)
    .await?)
}

/// Reads a user and locks the row until the transaction ends, for a change
/// that depends on what is read (the old password, the current profile).
pub async fn lock(db: impl PgExecutor<'_>, id: i64) -> Result<Option<User>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM harbor_user WHERE user_id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Whether another user than `except` already has this username (any case).
pub async fn username_taken(
    db: impl PgExecutor<'_>,
    username: &str,
    except: Option<i64>,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM harbor_user
         WHERE lower(username) = lower($1) AND user_id <> coalesce($2, 0))",
    )
    .bind(username)
    .bind(except)
    .fetch_one(db)
    .await?)
}

/// Whether another user than `except` already has this email (any case).
pub async fn email_taken(
    db: impl PgExecutor<'_>,
    email: &str,
    except: Option<i64>,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM harbor_user
         WHERE email <> '' AND lower(email) = lower($1) AND user_id <> coalesce($2, 0))",
    )
    .bind(email)
    .bind(except)
    .fetch_one(db)
    .await?)
}

/// Replaces the editable profile fields; `false` when there is no such user.
pub async fn update_profile(
    db: impl PgExecutor<'_>,
    id: i64,
    email: &str,
    realname: &str,
    comment: &str,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE harbor_user SET email = $2, realname = $3, comment = $4, update_time = now()
         WHERE user_id = $1",
    )
    .bind(id)
    .bind(email)
    .bind(realname)
    .bind(comment)
    .execute(db)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Stores a new password hash; `false` when there is no such user.
pub async fn set_password(db: impl PgExecutor<'_>, id: i64, password_hash: &str) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE harbor_user SET password_hash = $2, update_time = now() WHERE user_id = $1",
    )
    .bind(id)
    .bind(password_hash)
    .execute(db)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Grants or revokes system administration; `false` when there is no such user.
pub async fn set_sysadmin(db: impl PgExecutor<'_>, id: i64, sysadmin: bool) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE harbor_user SET sysadmin_flag = $2, update_time = now() WHERE user_id = $1",
    )
    .bind(id)
    .bind(sysadmin)
    .execute(db)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Deletes a user with their project memberships. Projects they own pass to
/// `heir` (the administrator who deletes them), so no project is left
/// without an owner. `false` when there is no such user.
pub async fn delete(tx: &mut PgConnection, id: i64, heir: i64) -> Result<bool> {
    sqlx::query("DELETE FROM project_member WHERE entity_type = 'u' AND entity_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE project SET owner_id = $2, update_time = now() WHERE owner_id = $1")
        .bind(id)
        .bind(heir)
        .execute(&mut *tx)
        .await?;
    let n = sqlx::query("DELETE FROM harbor_user WHERE user_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// The conditions of a user listing; every field that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Username, email and realname match ignoring case.
    pub username: Option<TextMatch>,
    pub email: Option<TextMatch>,
    pub realname: Option<TextMatch>,
    pub ids: Option<Vec<i64>>,
    pub id_min: Option<i64>,
    pub id_max: Option<i64>,
    pub sysadmin: Option<bool>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub updated_from: Option<DateTime<Utc>>,
    pub updated_to: Option<DateTime<Utc>>,
}

/// The same match on lower-cased text (fuzzy matches ignore case anyway).
fn lowered(m: &TextMatch) -> TextMatch {
    match m {
        TextMatch::Exact(v) => TextMatch::Exact(v.to_lowercase()),
        TextMatch::Fuzzy(v) => TextMatch::Fuzzy(v.clone()),
        TextMatch::AnyOf(vs) => TextMatch::AnyOf(vs.iter().map(|v| v.to_lowercase()).collect()),
    }
}

impl UserFilter {
    fn push(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        qb.push(" WHERE true");
        for (m, column) in [
            (&self.username, "lower(username)"),
            (&self.email, "lower(email)"),
            (&self.realname, "lower(realname)"),
        ] {
            if let Some(m) = m {
                lowered(m).push_and(qb, column);
            }
        }
        if let Some(ids) = &self.ids {
            qb.push(" AND user_id = ANY(")
                .push_bind(ids.clone())
                .push(")");
        }
        if let Some(v) = self.id_min {
            qb.push(" AND user_id >= ").push_bind(v);
        }
        if let Some(v) = self.id_max {
            qb.push(" AND user_id <= ").push_bind(v);
        }
        if let Some(v) = self.sysadmin {
            qb.push(" AND sysadmin_flag = ").push_bind(v);
        }
        if let Some(v) = self.created_from {
            qb.push(" AND creation_time >= ").push_bind(v);
        }
        if let Some(v) = self.created_to {
            qb.push(" AND creation_time <= ").push_bind(v);
        }
        if let Some(v) = self.updated_from {
            qb.push(" AND update_time >= ").push_bind(v);
        }
        if let Some(v) = self.updated_to {
            qb.push(" AND update_time <= ").push_bind(v);
        }
    }
}

/// The columns a user listing may be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrder {
    UserId,
    Username,
    Email,
    Realname,
    SysadminFlag,
    CreationTime,
    UpdateTime,
}

impl UserOrder {
    fn column(self) -> &'static str {
        match self {
            UserOrder::UserId => "user_id",
            UserOrder::Username => "lower(username)",
            UserOrder::Email => "lower(email)",
            UserOrder::Realname => "realname",
            UserOrder::SysadminFlag => "sysadmin_flag",
            UserOrder::CreationTime => "creation_time",
            UserOrder::UpdateTime => "update_time",
        }
    }
}

pub async fn count(db: impl PgExecutor<'_>, filter: &UserFilter) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT count(*) FROM harbor_user");
    filter.push(&mut qb);
    Ok(qb.build_query_scalar().fetch_one(db).await?)
}

/// One page of users; `order` is (column, descending), ties broken by id.
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &UserFilter,
    order: &[(UserOrder, bool)],
    limit: i64,
    offset: i64,
) -> Result<Vec<User>> {
    let mut qb = QueryBuilder::new(format!("SELECT {COLUMNS} FROM harbor_user"));
    filter.push(&mut qb);
    qb.push(" ORDER BY ");
    for (col, desc) in order {
        qb.push(col.column())
            .push(if *desc { " DESC, " } else { " ASC, " });
    }
    qb.push("user_id ASC LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    Ok(qb.build_query_as().fetch_all(db).await?)
}
