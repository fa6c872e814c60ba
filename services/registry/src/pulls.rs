//! Pull counts, gathered off the request path: a pull only pushes onto a
//! bounded channel (and drops the count if the channel is full), and a
//! background task folds them into the catalogue every few seconds.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use wharf_oci::Digest;

enum Msg {
    Pull(String, Digest),
    Flush(oneshot::Sender<()>),
}

pub struct PullRecorder {
    tx: mpsc::Sender<Msg>,
}

const FLUSH_EVERY: Duration = Duration::from_secs(5);

impl PullRecorder {
    pub fn start(db: PgPool) -> PullRecorder {
        let (tx, rx) = mpsc::channel(65_536);
        tokio::spawn(run(db, rx));
        PullRecorder { tx }
    }

    pub fn record(&self, repository: &str, digest: &Digest) {
        let _ = self
            .tx
            .try_send(Msg::Pull(repository.to_owned(), digest.clone()));
    }

    /// Writes what is pending now (tests and shutdown).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(db: PgPool, mut rx: mpsc::Receiver<Msg>) {
    let mut pending: HashMap<(String, Digest), i64> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Pull(r, d)) => *pending.entry((r, d)).or_default() += 1,
                Some(Msg::Flush(done)) => {
                    write(&db, &mut pending).await;
                    let _ = done.send(());
                }
                None => {
                    write(&db, &mut pending).await;
                    return;
                }
            },
            _ = tick.tick() => write(&db, &mut pending).await,
        }
    }
}

async fn write(db: &PgPool, pending: &mut HashMap<(String, Digest), i64>) {
    if pending.is_empty() {
        return;
    }
    let batch = std::mem::take(pending);
    let mut repos = Vec::with_capacity(batch.len());
    let mut digests = Vec::with_capacity(batch.len());
    let mut counts = Vec::with_capacity(batch.len());
    for ((r, d), c) in batch {
        repos.push(r);
        digests.push(d.as_bytes().to_vec());
        counts.push(c);
    }
    let res = async {
        let mut tx = db.begin().await?;
        wharf_catalog::index::record_pulls(&mut *tx, &repos, &digests, &counts).await?;
        sqlx::query(
            "INSERT INTO outbox (event_type, repository, digest, payload)
             SELECT 'pull', n, 'sha' || (CASE length(d) WHEN 32 THEN '256:' ELSE '512:' END) || encode(d, 'hex'), jsonb_build_object('count', c)
               FROM unnest($1::text[], $2::bytea[], $3::int8[]) AS t(n, d, c)",
        )
        .bind(&repos)
        .bind(&digests)
        .bind(&counts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<_, wharf_catalog::Error>(())
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, pulls = repos.len(), "recording pull counts failed; they are dropped");
    }
}
