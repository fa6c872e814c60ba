//! Upload sessions: `_uploads/<uuid>/data` is appended to while it is hashed,
//! and becomes a blob only once its digest is verified.
//!
//! The running hash lives in memory. After a restart a session is found again
//! from its directory and the hash is rebuilt by reading the data back once,
//! so a client can resume a chunked upload across a registry restart.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, Mutex as AsyncMutex, OwnedMutexGuard};
use uuid::Uuid;
use wharf_oci::{Algorithm, Digest, Hasher, RepositoryName};

use crate::{Error, Result, Store};

/// The state of one upload, held under its own lock while a request uses it.
pub struct Session {
    pub id: Uuid,
    pub repo: RepositoryName,
    dir: PathBuf,
    /// Bytes durably appended so far.
    pub offset: u64,
    /// sha256 over the first `offset` bytes, when known.
    hasher: Option<Hasher>,
}

/// A verified upload, fsynced and ready to be placed at its digest.
#[derive(Debug)]
pub struct FinishedUpload {
    pub digest: Digest,
    pub size: u64,
    pub data: PathBuf,
    pub dir: PathBuf,
}

pub struct Uploads {
    store: Store,
    sessions: Mutex<HashMap<Uuid, Arc<AsyncMutex<Session>>>>,
}

const CHANNEL_DEPTH: usize = 16;

impl Uploads {
    pub fn new(store: Store) -> Uploads {
        Uploads {
            store,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Creates a session directory with an empty data file and `startedat`, as distribution does.
    pub async fn start(&self, repo: &RepositoryName) -> Result<Uuid> {
        let id = Uuid::new_v4();
        let dir = self.store.layout.upload_dir(repo, &id);
        let d2 = dir.clone();
        blocking(move || {
            fs::create_dir_all(&d2)?;
            File::create(d2.join("data"))?;
            fs::write(d2.join("startedat"), chrono::Utc::now().to_rfc3339())
        })
        .await?;
        let session = Session {
            id,
            repo: repo.clone(),
            dir,
            offset: 0,
            hasher: Some(Hasher::new(Algorithm::Sha256)),
        };
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(id, Arc::new(AsyncMutex::new(session)));
        Ok(id)
    }

    /// Takes the session's lock. A session unknown to this process but present
    /// on disk (a restart happened) is adopted.
    pub async fn lock(&self, repo: &RepositoryName, id: Uuid) -> Result<OwnedMutexGuard<Session>> {
        let existing = self
            .sessions
            .lock()
            .expect("sessions lock")
            .get(&id)
            .cloned();
        let session = match existing {
            Some(s) => s,
            None => {
                let dir = self.store.layout.upload_dir(repo, &id);
                let data = dir.join("data");
                let len = blocking(move || fs::metadata(&data).map(|m| m.len()))
                    .await
                    .map_err(|_| Error::UploadUnknown)?;
                let s = Arc::new(AsyncMutex::new(Session {
                    id,
                    repo: repo.clone(),
                    dir,
                    offset: len,
                    hasher: None,
                }));
                self.sessions
                    .lock()
                    .expect("sessions lock")
                    .entry(id)
                    .or_insert(s)
                    .clone()
            }
        };
        let guard = session.lock_owned().await;
        if &guard.repo != repo || !guard.dir.exists() {
            return Err(Error::UploadUnknown);
        }
        Ok(guard)
    }

    /// Appends a request body to the session. With `start`, the chunk must begin
    /// exactly at the current offset. If the body fails part way (disconnect,
    /// full disk) the file is cut back to where it was, so the session stays
    /// consistent and the chunk can be sent again.
    pub async fn append<S, E>(&self, s: &mut Session, start: Option<u64>, body: S) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if let Some(start) = start {
            if start != s.offset {
                return Err(Error::OutOfOrder {
                    expected: s.offset,
                    got: start,
                });
            }
        }
        let hasher = match s.hasher.take() {
            Some(h) => h,
            None => rehash(&s.dir.join("data"), s.offset, Algorithm::Sha256).await?,
        };
        let before = hasher.clone();
        let path = s.dir.join("data");
        let offset = s.offset;
        let (res, hasher) = stream_to_file(path.clone(), offset, hasher, body).await;
        match res {
            Ok(written) => {
                s.offset += written;
                s.hasher = Some(hasher);
                Ok(s.offset)
            }
            Err(e) => {
                let _ =
                    blocking(move || OpenOptions::new().write(true).open(&path)?.set_len(offset))
                        .await;
                s.hasher = Some(before);
                Err(e)
            }
        }
    }

    /// Verifies the session against `expected`, fsyncs it and hands it over.
    /// A mismatch cancels the session, as the client must start again anyway.
    pub async fn finish(&self, s: &mut Session, expected: &Digest) -> Result<FinishedUpload> {
        let data = s.dir.join("data");
        let actual = match s.hasher.take() {
            Some(h) if h.algorithm() == expected.algorithm() => h.finish(),
            _ => rehash(&data, s.offset, expected.algorithm())
                .await?
                .finish(),
        };
        if &actual != expected {
            self.cancel(s).await?;
            return Err(Error::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        // Only the first `offset` bytes were hashed: nothing written past them
        // (by a request cut short) may become part of the blob.
        let (d2, size) = (data.clone(), s.offset);
        blocking(move || {
            let f = OpenOptions::new().write(true).open(&d2)?;
            f.set_len(size)?;
            f.sync_all()
        })
        .await?;
        Ok(FinishedUpload {
            digest: actual,
            size: s.offset,
            data,
            dir: s.dir.clone(),
        })
    }

    /// Removes the session's directory and forgets it.
    pub async fn cancel(&self, s: &mut Session) -> Result<()> {
        self.forget(s.id);
        let dir = s.dir.clone();
        blocking(move || match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    pub fn forget(&self, id: Uuid) {
        self.sessions.lock().expect("sessions lock").remove(&id);
    }

    /// Deletes sessions started longer than `max_age` ago; returns how many.
    pub async fn purge_older_than(&self, max_age: Duration) -> Result<usize> {
        let root = self.store.layout.repositories_root();
        let stale = blocking(move || {
            let mut found = Vec::new();
            find_upload_dirs(&root, &mut found)?;
            let now = SystemTime::now();
            Ok(found
                .into_iter()
                .filter(|d| {
                    let started = fs::read_to_string(d.join("startedat"))
                        .ok()
                        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok())
                        .map(SystemTime::from)
                        .or_else(|| fs::metadata(d).and_then(|m| m.modified()).ok());
                    started.is_some_and(|t| now.duration_since(t).unwrap_or_default() > max_age)
                })
                .collect::<Vec<_>>())
        })
        .await?;
        let mut purged = 0;
        for dir in stale {
            let Some(id) = dir
                .file_name()
                .and_then(|n| Uuid::parse_str(&n.to_string_lossy()).ok())
            else {
                continue;
            };
            // Skip a session a request is using right now.
            let session = self
                .sessions
                .lock()
                .expect("sessions lock")
                .get(&id)
                .cloned();
            let _guard = match &session {
                Some(s) => match s.try_lock() {
                    Ok(g) => Some(g),
                    Err(_) => continue,
                },
                None => None,
            };
            let d2 = dir.clone();
            if blocking(move || fs::remove_dir_all(&d2)).await.is_ok() {
                purged += 1;
            }
            self.forget(id);
        }
        Ok(purged)
    }
}

fn find_upload_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let path = entry.path();
        if name == "_uploads" {
            for u in fs::read_dir(&path)? {
                out.push(u?.path());
            }
        } else if name != "_layers" && name != "_manifests" {
            find_upload_dirs(&path, out)?;
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
        .map_err(Error::io)
}

/// Rebuilds the hash of the first `len` bytes of `path`.
async fn rehash(path: &Path, len: u64, algorithm: Algorithm) -> Result<Hasher> {
    let path = path.to_owned();
    blocking(move || {
        let mut f = File::open(&path)?.take(len);
        let mut h = Hasher::new(algorithm);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h)
    })
    .await
}

/// Streams `body` into `path` at `offset`, hashing as bytes pass. The network
/// side and the disk side run concurrently: this task receives while a
/// blocking thread hashes and writes what was received before.
async fn stream_to_file<S, E>(
    path: PathBuf,
    offset: u64,
    mut hasher: Hasher,
    mut body: S,
) -> (Result<u64>, Hasher)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // Three stages run at once: this task receives, one thread writes and
    // one hashes the same chunks (a `Bytes` clone is a reference count), so
    // hashing and the page-cache copy overlap instead of adding up.
    let (to_writer, mut writer_rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let (to_hasher, mut hasher_rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let writer = tokio::task::spawn_blocking(move || {
        let mut f = OpenOptions::new().write(true).open(&path)?;
        f.seek(SeekFrom::Start(offset))?;
        let writeback = Writeback::start(&f);
        let mut written = 0u64;
        let mut kicked = 0u64;
        while let Some(chunk) = writer_rx.blocking_recv() {
            f.write_all(&chunk)?;
            written += chunk.len() as u64;
            if written - kicked >= WRITEBACK_EVERY {
                writeback.kick();
                kicked = written;
            }
        }
        Ok::<_, std::io::Error>(written)
    });
    let hashing = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = hasher_rx.blocking_recv() {
            hasher.update(&chunk);
        }
        hasher
    });
    let mut body_err = None;
    while let Some(item) = body.next().await {
        match item {
            Ok(chunk) if chunk.is_empty() => {}
            Ok(chunk) => {
                if to_hasher.send(chunk.clone()).await.is_err()
                    || to_writer.send(chunk).await.is_err()
                {
                    break; // the writer failed; its error is the one to report
                }
            }
            Err(e) => {
                body_err = Some(e.to_string());
                break;
            }
        }
    }
    drop(to_writer);
    drop(to_hasher);
    let res = writer.await;
    let hasher = match hashing.await {
        Ok(h) => h,
        Err(e) => {
            return (
                Err(Error::Io(std::io::Error::other(e))),
                Hasher::new(Algorithm::Sha256),
            )
        }
    };
    let res = match (res, body_err) {
        (Err(e), _) => Err(Error::Io(std::io::Error::other(e))),
        (Ok(Err(e)), _) => Err(Error::io(e)),
        (Ok(Ok(_)), Some(e)) => Err(Error::Body(e)),
        (Ok(Ok(n)), None) => Ok(n),
    };
    (res, hasher)
}

/// Bytes written between two writeback kicks.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Flushes an upload's written pages to disk on a side thread while more
/// bytes arrive, so the fsync that ends an upload finds little left to do
/// and the disk works during the transfer rather than after it. Advisory:
/// if it fails, the final fsync does all the work and reports any error.
struct Writeback {
    tx: Option<std::sync::mpsc::SyncSender<()>>,
}

impl Writeback {
    fn start(f: &File) -> Writeback {
        let Ok(clone) = f.try_clone() else {
            return Writeback { tx: None };
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        tokio::task::spawn_blocking(move || {
            while rx.recv().is_ok() {
                let _ = clone.sync_data();
            }
        });
        Writeback { tx: Some(tx) }
    }

    /// Requests a flush; a request while one is pending is dropped.
    fn kick(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn chunked_upload_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let repo = RepositoryName::parse("r").unwrap();
        let up = Uploads::new(store.clone());
        let id = up.start(&repo).await.unwrap();
        {
            let mut s = up.lock(&repo, id).await.unwrap();
            assert_eq!(
                up.append(&mut s, Some(0), body(&[b"hello ", b"wor"]))
                    .await
                    .unwrap(),
                9
            );
            assert!(matches!(
                up.append(&mut s, Some(3), body(&[b"x"])).await,
                Err(Error::OutOfOrder {
                    expected: 9,
                    got: 3
                })
            ));
        }
        // A new process: nothing in memory.
        let up2 = Uploads::new(store);
        let mut s = up2.lock(&repo, id).await.unwrap();
        assert_eq!(s.offset, 9);
        up2.append(&mut s, None, body(&[b"ld"])).await.unwrap();
        let want = Digest::sha256_of(b"hello world");
        let done = up2.finish(&mut s, &want).await.unwrap();
        assert_eq!(done.size, 11);
        assert_eq!(std::fs::read(&done.data).unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn failed_body_rolls_back_and_bad_digest_cancels() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let repo = RepositoryName::parse("r").unwrap();
        let up = Uploads::new(store);
        let id = up.start(&repo).await.unwrap();
        let mut s = up.lock(&repo, id).await.unwrap();
        up.append(&mut s, None, body(&[b"abc"])).await.unwrap();
        let broken = stream::iter(vec![
            Ok(Bytes::from_static(b"def")),
            Err("reset".to_string()),
        ]);
        assert!(matches!(
            up.append(&mut s, None, broken).await,
            Err(Error::Body(_))
        ));
        assert_eq!(s.offset, 3);
        assert_eq!(std::fs::metadata(s.dir.join("data")).unwrap().len(), 3);
        let sha512 = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(up.finish(&mut s, &sha512).await.unwrap().digest, sha512);
        let id2 = up.start(&repo).await.unwrap();
        let mut s2 = up.lock(&repo, id2).await.unwrap();
        up.append(&mut s2, None, body(&[b"abc"])).await.unwrap();
        assert!(matches!(
            up.finish(&mut s2, &Digest::sha256_of(b"x")).await,
            Err(Error::DigestMismatch { .. })
        ));
        assert!(!s2.dir.exists());
    }
}
