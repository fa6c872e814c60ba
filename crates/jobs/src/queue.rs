//! The Redis transport: one list of task ids. Pushes go to the head and
//! workers pop from the tail (FIFO). An id on the list is only a hint that a
//! task may be due; the worker's compare-and-set in Postgres decides, so a
//! duplicate id is harmless and a lost one is pushed again by the sweeper.

use std::time::Duration;

use redis::AsyncCommands;

use crate::Result;

#[derive(Clone)]
pub struct Queue {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    key: String,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("key", &self.key).finish()
    }
}

impl Queue {
    /// `prefix` is the deployment's Redis key prefix (core's and jobservice's
    /// must agree).
    pub async fn connect(url: &str, prefix: &str) -> Result<Queue> {
        let client = redis::Client::open(url)?;
        let conn = redis::aio::ConnectionManager::new(client.clone()).await?;
        Ok(Queue::new(client, conn, prefix))
    }

    pub fn new(client: redis::Client, conn: redis::aio::ConnectionManager, prefix: &str) -> Queue {
        Queue {
            client,
            conn,
            key: format!("{prefix}jobs:queue"),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub async fn push(&self, tasks: &[i64]) -> Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let mut c = self.conn.clone();
        let _: i64 = c.lpush(&self.key, tasks).await?;
        Ok(())
    }

    /// How many ids wait on the list.
    pub async fn depth(&self) -> Result<i64> {
        let mut c = self.conn.clone();
        Ok(c.llen(&self.key).await?)
    }

    /// Whether the id is on the list.
    pub async fn contains(&self, task: i64) -> Result<bool> {
        let mut c = self.conn.clone();
        let pos: Option<i64> = redis::cmd("LPOS")
            .arg(&self.key)
            .arg(task)
            .query_async(&mut c)
            .await?;
        Ok(pos.is_some())
    }

    /// A connection of its own for a worker's blocking pops, so that they do
    /// not hold up the shared connection's other commands.
    pub async fn popper(&self) -> Result<Popper> {
        let conn = self.client.get_multiplexed_async_connection().await?;
        Ok(Popper {
            conn,
            key: self.key.clone(),
        })
    }
}

pub struct Popper {
    conn: redis::aio::MultiplexedConnection,
    key: String,
}

impl Popper {
    /// Waits up to `wait` for a task id.
    pub async fn pop(&mut self, wait: Duration) -> Result<Option<i64>> {
        let got: Option<(String, i64)> = self.conn.brpop(&self.key, wait.as_secs_f64()).await?;
        Ok(got.map(|(_, id)| id))
    }
}
