//! The audit log's writes for core's own changes (users, robots, projects,
//! members…). Entries derived from the registry's outbox, and the list
//! queries, are in [`crate::auditlog`].

use sqlx::PgConnection;

use crate::Result;

/// Records one change made by core (users, robots, projects, members…) in
/// the caller's transaction, so the entry commits with the change.
pub async fn record(
    tx: &mut PgConnection,
    project_id: Option<i64>,
    operation: &str,
    resource_type: &str,
    resource: &str,
    username: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (project_id, operation, resource_type, resource, username) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(project_id)
    .bind(operation)
    .bind(resource_type)
    .bind(resource)
    .bind(username)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
