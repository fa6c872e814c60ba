//! The jobs jobservice knows, by name, and what a running job is handed.

pub mod gc;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Config;

/// How a job ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// It saw the cancellation and stopped with consistent state.
    Stopped,
}

/// A job: its payload in, an outcome or an error message out.
pub type JobFn = Arc<
    dyn Fn(Context, serde_json::Value) -> BoxFuture<'static, Result<Outcome, String>> + Send + Sync,
>;

/// The jobs by name.
#[derive(Clone)]
pub struct Catalogue(HashMap<&'static str, JobFn>);

impl Catalogue {
    pub fn new(config: &Config, db: PgPool) -> Catalogue {
        let mut jobs: HashMap<&'static str, JobFn> = HashMap::new();
        jobs.insert(wharf_jobs::GARBAGE_COLLECTION, gc::job(config, db));
        Catalogue(jobs)
    }

    pub fn get(&self, name: &str) -> Option<JobFn> {
        self.0.get(name).cloned()
    }
}

/// What a running job is handed: its ids, its log, and the token that is
/// cancelled when the job must stop (stop requested, lease lost, shutdown).
#[derive(Clone)]
pub struct Context {
    pub task: i64,
    pub execution: i64,
    pub cancel: CancellationToken,
    log: mpsc::UnboundedSender<LogMsg>,
}

enum LogMsg {
    Line(String),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl Context {
    pub fn new(db: PgPool, task: &wharf_catalog::jobs::Task) -> Context {
        let (tx, mut rx) = mpsc::unbounded_channel::<LogMsg>();
        let id = task.id;
        // Log lines are written in order by one writer, off the job's path.
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                match m {
                    LogMsg::Line(line) => {
                        if let Err(e) = wharf_catalog::jobs::append_log(&db, id, &line).await {
                            tracing::warn!(job.id = id, error = %e, "could not store a job log line");
                        }
                    }
                    LogMsg::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Context {
            task: task.id,
            execution: task.execution_id,
            cancel: CancellationToken::new(),
            log: tx,
        }
    }

    /// Appends a line to the job's log (readable through core's API).
    pub fn log(&self, line: String) {
        tracing::info!(job.id = self.task, "{line}");
        let _ = self.log.send(LogMsg::Line(line));
    }

    /// Appends a line to the job's log only (the caller traced it already).
    pub fn log_quiet(&self, line: String) {
        let _ = self.log.send(LogMsg::Line(line));
    }

    /// Waits until every line logged so far is stored.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.log.send(LogMsg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
