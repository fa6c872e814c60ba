//! The write-path policy: the one place, inside the write's own transaction,
//! where the registry asks whether a write may happen.
//!
//! - Harbor's system-wide read-only switch refuses every write.
//! - When core runs (it sets `enforce_projects` at start; a standalone
//!   registry never has it), a push must go to `<project>/<name>` of an
//!   existing project.
//! - A push that would take its project over its storage quota is refused
//!   (usage as `quotas` defines it). Checks against one limited quota run
//!   one after the other, under a lock on the quota row.
//! - A manifest push that would move an existing tag protected by an enabled
//!   immutability rule is refused; pushing the same digest again is allowed.

use sqlx::PgConnection;
use wharf_oci::Digest;

use crate::projects::Project;
use crate::{immutable, projects, quotas, Error, Result};

/// The `system_setting` key core sets at start.
pub const ENFORCE_PROJECTS: &str = "enforce_projects";

/// What a write is about to do, for the rules that care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write<'a> {
    Blob {
        repository: &'a str,
        digest: &'a Digest,
        size: i64,
    },
    Manifest {
        repository: &'a str,
        tag: Option<&'a str>,
        digest: &'a Digest,
        /// Bytes of the manifest itself.
        size: i64,
        /// Everything it references: config, layers, child manifests.
        references: &'a [Digest],
    },
    Delete {
        repository: &'a str,
    },
}

impl Write<'_> {
    pub fn repository(&self) -> &str {
        match self {
            Write::Blob { repository, .. }
            | Write::Manifest { repository, .. }
            | Write::Delete { repository } => repository,
        }
    }
}

/// Turns on project enforcement (core calls this at start).
pub async fn enforce_projects(db: impl sqlx::PgExecutor<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO system_setting (key, value) VALUES ($1, 'true'::jsonb)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(ENFORCE_PROJECTS)
    .execute(db)
    .await?;
    Ok(())
}

/// Refuses the write with a message for the client, or lets it through.
pub async fn check_write(tx: &mut PgConnection, write: Write<'_>) -> Result<()> {
    let (read_only, enforce): (Option<bool>, Option<bool>) = sqlx::query_as(
        "SELECT (SELECT (value #>> '{}')::boolean FROM system_setting WHERE key = 'read_only'),
                (SELECT (value #>> '{}')::boolean FROM system_setting WHERE key = $1)",
    )
    .bind(ENFORCE_PROJECTS)
    .fetch_one(&mut *tx)
    .await?;
    if read_only == Some(true) {
        return Err(Error::Denied(format!(
            "the registry is in read-only mode; {} cannot be changed until an administrator turns it off",
            write.repository()
        )));
    }
    if matches!(write, Write::Delete { .. }) {
        return Ok(());
    }
    let repository = write.repository();
    let (project_name, rest) = match repository.split_once('/') {
        Some((p, r)) => (p, Some(r)),
        None => (repository, None),
    };
    let project = projects::by_name_for_write(tx, project_name).await?;
    let project = match (project, enforce == Some(true)) {
        (Some(p), _) => p,
        (None, true) => {
            return Err(Error::Denied(format!(
                "project {project_name:?} does not exist; create it before pushing {repository}"
            )))
        }
        (None, false) => return Ok(()),
    };
    let Some(rest) = rest else {
        return Err(Error::Denied(format!(
            "{repository} is a project, not a repository; push to {repository}/<name>"
        )));
    };
    match write {
        Write::Blob { digest, size, .. } => {
            check_quota(tx, &project, &[], Some((digest, size)), "this blob").await
        }
        Write::Manifest {
            tag,
            digest,
            size,
            references,
            ..
        } => {
            if let Some(tag) = tag {
                check_immutable(tx, &project, repository, rest, tag, digest).await?;
            }
            check_quota(
                tx,
                &project,
                references,
                Some((digest, size)),
                "this manifest",
            )
            .await
        }
        Write::Delete { .. } => Ok(()),
    }
}

fn human(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Refuses when `references` plus `own` (a digest and the size of bytes
/// that may have no blob row yet) would take the project over its limit.
async fn check_quota(
    tx: &mut PgConnection,
    project: &Project,
    references: &[Digest],
    own: Option<(&Digest, i64)>,
    what: &str,
) -> Result<()> {
    match quotas::hard_limit(&mut *tx, project.project_id).await? {
        None => return Ok(()),
        Some((_, hard)) if hard == quotas::UNLIMITED => return Ok(()),
        Some(_) => {}
    }
    // Serialise with the other writes against this limit, then re-read
    // everything in new statements (READ COMMITTED) so they see each other.
    let Some(hard) = quotas::lock_hard_limit(tx, project.project_id).await? else {
        return Ok(());
    };
    if hard == quotas::UNLIMITED {
        return Ok(());
    }
    let mut digests: Vec<&[u8]> = references.iter().map(Digest::as_bytes).collect();
    if let Some((d, _)) = own {
        digests.push(d.as_bytes());
    }
    digests.sort();
    digests.dedup();
    let (mut added, known) = quotas::added_by(&mut *tx, &project.name, &digests).await?;
    if let Some((d, size)) = own {
        if !known.iter().any(|k| k.as_slice() == d.as_bytes()) {
            added += size;
        }
    }
    if added == 0 {
        return Ok(());
    }
    let used = quotas::usage(&mut *tx, &project.name).await?;
    if used + added > hard {
        return Err(Error::Denied(format!(
            "quota exceeded: storing {what} ({}) would bring project {:?} to {} of its {} storage quota ({} used); free space or ask an administrator to raise the quota",
            human(added),
            project.name,
            human(used + added),
            human(hard),
            human(used),
        )));
    }
    Ok(())
}

async fn check_immutable(
    tx: &mut PgConnection,
    project: &Project,
    repository: &str,
    within_project: &str,
    tag: &str,
    digest: &Digest,
) -> Result<()> {
    let rules = immutable::enabled(&mut *tx, project.project_id).await?;
    let Some(rule) = rules.iter().find(|r| r.rule.protects(within_project, tag)) else {
        return Ok(());
    };
    // Two pushes racing for a new protected tag: the second one waits here,
    // then sees the first one's tag in the next statement.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7321))")
        .bind(format!("{repository}:{tag}"))
        .execute(&mut *tx)
        .await?;
    let current: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT m.digest FROM tag t JOIN repository r ON r.id = t.repo_id JOIN manifest m ON m.id = t.manifest_id
          WHERE r.name = $1 AND t.name = $2",
    )
    .bind(repository)
    .bind(tag)
    .fetch_optional(&mut *tx)
    .await?;
    match current {
        Some(d) if d.as_slice() != digest.as_bytes() => Err(Error::Denied(format!(
            "tag {tag:?} of {repository} is immutable: immutability rule {} of project {:?} protects {}; push under a new tag",
            rule.id,
            project.name,
            rule.rule.describe()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(2048), "2.0 KiB");
        assert_eq!(human(5 * 1024 * 1024 + 1), "5.0 MiB");
    }
}
