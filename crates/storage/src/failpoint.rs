//! Named pause points in the garbage-collection protocol, for the race tests
//! of shared/docs/gc.md ("Tests that would prove it", item 2).
//!
//! Why they exist: the protocol's safety rests on what a writer and the
//! collector see when one of them is paused *inside* a transaction (W1: after
//! the upload's blob INSERT, before the rename; W2: after the rename, before
//! commit; M1: a manifest PUT holding `FOR KEY SHARE`, before commit; G1:
//! after step A commits; G2: after each unlink of step B, before it commits;
//! G3: after step B commits). Timing alone almost never produces those
//! interleavings, so the tests force them against the real binaries.
//!
//! Cost in production: none beyond one load of a `OnceLock`. A failpoint is a
//! no-op unless the process was started with `WHARF_FAILPOINTS_DIR` set (read
//! once). When it is, and the file `<dir>/<name>.pause` exists, the caller
//! creates `<dir>/<name>.hit` and waits, polling every 10 ms, until the test
//! removes `<name>.pause`. Code that wants its own directory instead of the
//! process-wide one (the collector, which tests run in-process next to other
//! tests) calls [`pause_in`] / [`pause_in_blocking`] with it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable that enables the process-wide failpoints.
pub const ENV: &str = "WHARF_FAILPOINTS_DIR";

const POLL: Duration = Duration::from_millis(10);

/// The process-wide failpoint directory, from [`ENV`], read once.
pub fn env_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::var_os(ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .as_deref()
}

/// Pauses at failpoint `name` if the process-wide directory arms it.
pub async fn pause(name: &str) {
    pause_in(env_dir(), name).await;
}

/// Blocking form of [`pause`], for code already on the blocking pool.
pub fn pause_blocking(name: &str) {
    pause_in_blocking(env_dir(), name);
}

/// Pauses at failpoint `name` while `<dir>/<name>.pause` exists.
pub async fn pause_in(dir: Option<&Path>, name: &str) {
    let Some(dir) = dir else { return };
    let pause = dir.join(format!("{name}.pause"));
    if !pause.exists() {
        return;
    }
    hit(dir, name);
    while pause.exists() {
        tokio::time::sleep(POLL).await;
    }
}

/// Blocking form of [`pause_in`].
pub fn pause_in_blocking(dir: Option<&Path>, name: &str) {
    let Some(dir) = dir else { return };
    let pause = dir.join(format!("{name}.pause"));
    if !pause.exists() {
        return;
    }
    hit(dir, name);
    while pause.exists() {
        std::thread::sleep(POLL);
    }
}

fn hit(dir: &Path, name: &str) {
    tracing::warn!(failpoint = name, "paused at a failpoint");
    if let Err(e) = std::fs::write(dir.join(format!("{name}.hit")), b"") {
        tracing::warn!(failpoint = name, error = %e, "could not record a failpoint hit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pauses_until_released_and_records_the_hit() {
        let dir = tempfile::tempdir().unwrap();
        pause_in(Some(dir.path()), "X").await; // not armed: returns at once
        assert!(!dir.path().join("X.hit").exists());
        std::fs::write(dir.path().join("X.pause"), b"").unwrap();
        let d = dir.path().to_owned();
        let task = tokio::spawn(async move { pause_in(Some(&d), "X").await });
        while !dir.path().join("X.hit").exists() {
            tokio::time::sleep(POLL).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!task.is_finished(), "still paused");
        std::fs::remove_file(dir.path().join("X.pause")).unwrap();
        task.await.unwrap();
    }
}
