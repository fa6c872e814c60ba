//! The write-path policy: the one place, inside the write's own transaction,
//! where the registry asks whether a write may happen.

use sqlx::PgConnection;

use crate::{Error, Result};

/// What a write is about to do, for the rules that care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write<'a> {
    Blob {
        repository: &'a str,
        size: i64,
    },
    Manifest {
        repository: &'a str,
        tag: Option<&'a str>,
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

/// Refuses the write with a message for the client, or lets it through.
/// Harbor's system-wide read-only switch (`read_only` in the configurations)
/// is honoured here.
pub async fn check_write(tx: &mut PgConnection, write: Write<'_>) -> Result<()> {
    let read_only: Option<bool> = sqlx::query_scalar(
        "SELECT (value #>> '{}')::boolean FROM system_setting WHERE key = 'read_only'",
    )
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    if read_only == Some(true) {
        return Err(Error::Denied(format!(
            "the registry is in read-only mode; {} cannot be changed until an administrator turns it off",
            write.repository()
        )));
    }
    Ok(())
}
