//! The audit log's reads, and its entries derived from the registry's outbox
//! (consumed at least once, written once thanks to `audit_log.outbox_id`).
//! Core's own changes are recorded with [`crate::audit::record`].

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, Postgres, QueryBuilder};

use crate::filter::TextMatch;
use crate::Result;

/// How far a consumer has read the outbox: every event ordered at or before
/// `(txid, id)` has been handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub txid: i64,
    pub id: i64,
}

/// Takes the consumer's cursor row lock for the transaction, so replicas of
/// the consumer take turns, and returns where it stands.
pub async fn lock_cursor(tx: &mut PgConnection, consumer: &str) -> Result<Cursor> {
    sqlx::query(
        "INSERT INTO outbox_cursor (consumer) VALUES ($1) ON CONFLICT (consumer) DO NOTHING",
    )
    .bind(consumer)
    .execute(&mut *tx)
    .await?;
    let (txid, id): (i64, i64) = sqlx::query_as(
        "SELECT last_txid::text::int8, last_id FROM outbox_cursor WHERE consumer = $1 FOR UPDATE",
    )
    .bind(consumer)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Cursor { txid, id })
}

pub async fn advance_cursor(tx: &mut PgConnection, consumer: &str, to: Cursor) -> Result<()> {
    sqlx::query(
        "UPDATE outbox_cursor SET last_txid = $2::int8::text::xid8, last_id = $3 WHERE consumer = $1",
    )
    .bind(consumer)
    .bind(to.txid)
    .bind(to.id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct OutboxEvent {
    pub id: i64,
    pub txid: i64,
    pub event_type: String,
    pub repository: String,
    pub digest: Option<String>,
    pub tag: Option<String>,
    pub actor: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl OutboxEvent {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            txid: self.txid,
            id: self.id,
        }
    }
}

/// The next events after `after`, only from transactions that have ended
/// (below the snapshot's xmin): nothing that commits later can sort before them.
pub async fn outbox_after(
    tx: &mut PgConnection,
    after: Cursor,
    limit: i64,
) -> Result<Vec<OutboxEvent>> {
    Ok(sqlx::query_as(
        "SELECT id, txid::text::int8 AS txid, event_type, repository, digest, tag, actor, created_at FROM outbox \
         WHERE (txid, id) > ($1::int8::text::xid8, $2) AND txid < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY txid, id LIMIT $3",
    )
    .bind(after.txid)
    .bind(after.id)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?)
}

/// An audit entry derived from an outbox event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromOutbox {
    pub outbox_id: i64,
    /// Looked up by name when written; `None` when the project is gone.
    pub project_name: String,
    pub operation: String,
    pub resource_type: String,
    pub resource: String,
    pub username: String,
    pub op_time: DateTime<Utc>,
}

/// Writes the entries; an event already recorded (by an earlier attempt) is skipped.
pub async fn insert_from_outbox(tx: &mut PgConnection, entries: &[FromOutbox]) -> Result<u64> {
    if entries.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(entries.len());
    let mut projects = Vec::with_capacity(entries.len());
    let mut ops = Vec::with_capacity(entries.len());
    let mut types = Vec::with_capacity(entries.len());
    let mut resources = Vec::with_capacity(entries.len());
    let mut users = Vec::with_capacity(entries.len());
    let mut times = Vec::with_capacity(entries.len());
    for e in entries {
        ids.push(e.outbox_id);
        projects.push(e.project_name.as_str());
        ops.push(e.operation.as_str());
        types.push(e.resource_type.as_str());
        resources.push(e.resource.as_str());
        users.push(e.username.as_str());
        times.push(e.op_time);
    }
    let n = sqlx::query(
        "INSERT INTO audit_log (project_id, operation, resource_type, resource, username, op_time, outbox_id) \
         SELECT p.project_id, t.op, t.rt, t.res, t.usr, t.at, t.oid \
           FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) \
                AS t(oid, proj, op, rt, res, usr, at) \
           LEFT JOIN project p ON p.name = t.proj \
         ORDER BY t.oid \
         ON CONFLICT (outbox_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&projects)
    .bind(&ops)
    .bind(&types)
    .bind(&resources)
    .bind(&users)
    .bind(&times)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(n)
}

#[derive(Debug, Clone, FromRow)]
pub struct Entry {
    pub id: i64,
    pub project_id: Option<i64>,
    pub username: String,
    pub resource: String,
    pub resource_type: String,
    pub operation: String,
    pub op_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `None`: every entry (a system administrator); otherwise only these projects'.
    pub projects: Option<Vec<i64>>,
    pub operation: Vec<TextMatch>,
    pub resource: Vec<TextMatch>,
    pub resource_type: Vec<TextMatch>,
    pub username: Vec<TextMatch>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Oldest first instead of newest first.
    pub ascending: bool,
    pub limit: i64,
    pub offset: i64,
}

fn push_where(qb: &mut QueryBuilder<'_, Postgres>, q: &Query) {
    qb.push(" FROM audit_log a WHERE true");
    if let Some(p) = &q.projects {
        qb.push(" AND a.project_id = ANY(")
            .push_bind(p.clone())
            .push(")");
    }
    for m in &q.operation {
        m.push_and(qb, "a.operation");
    }
    for m in &q.resource {
        m.push_and(qb, "a.resource");
    }
    for m in &q.resource_type {
        m.push_and(qb, "a.resource_type");
    }
    for m in &q.username {
        m.push_and(qb, "a.username");
    }
    if let Some(t) = q.from {
        qb.push(" AND a.op_time >= ").push_bind(t);
    }
    if let Some(t) = q.to {
        qb.push(" AND a.op_time <= ").push_bind(t);
    }
}

pub async fn list(db: &sqlx::PgPool, q: &Query) -> Result<(Vec<Entry>, i64)> {
    let mut count = QueryBuilder::new("SELECT count(*)");
    push_where(&mut count, q);
    let total: i64 = count.build_query_scalar().fetch_one(db).await?;
    let mut qb = QueryBuilder::new(
        "SELECT a.id, a.project_id, a.username, a.resource, a.resource_type, a.operation, a.op_time",
    );
    push_where(&mut qb, q);
    let dir = if q.ascending { "ASC" } else { "DESC" };
    qb.push(format!(" ORDER BY a.op_time {dir}, a.id {dir} LIMIT "))
        .push_bind(q.limit)
        .push(" OFFSET ")
        .push_bind(q.offset);
    Ok((qb.build_query_as().fetch_all(db).await?, total))
}

/// How many entries came from this outbox event (0 or 1); for tests and checks.
pub async fn count_for_outbox(db: impl PgExecutor<'_>, outbox_id: i64) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE outbox_id = $1")
            .bind(outbox_id)
            .fetch_one(db)
            .await?,
    )
}
