//! The registry's internal GC API, as the collector calls it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wharf_oci::Digest;

use crate::{Error, Result};

/// Step B's answer: what was deleted, the bytes freed, what stays `deleting`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Vacuumed {
    pub deleted: Vec<String>,
    pub bytes: i64,
    pub failed: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ManifestsVacuumed {
    pub deleted: Vec<i64>,
    pub failed: Vec<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Reconciled {
    pub examined: u64,
    pub orphans: u64,
    pub orphan_bytes: i64,
    pub deleted: Vec<String>,
    pub bytes: i64,
    pub failed: Vec<String>,
}

/// Calls `/api/internal/gc/*` with the shared internal secret.
#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    secret: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// `base` is the registry's internal URL, e.g. `http://registry:5000`.
    pub fn new(base: &str, secret: &str) -> RegistryClient {
        RegistryClient {
            base: base.trim_end_matches('/').to_owned(),
            secret: secret.to_owned(),
            // Above step B's 30 s deadline, so the registry always answers first.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .expect("a reqwest client"),
        }
    }

    async fn post<B: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R> {
        let resp = self
            .http
            .post(format!("{}/api/internal/gc/{path}", self.base))
            .bearer_auth(&self.secret)
            .json(body)
            .send()
            .await
            .map_err(|e| Error::Registry(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(Error::Registry(format!("{path}: {status}: {text}")));
        }
        resp.json()
            .await
            .map_err(|e| Error::Registry(e.to_string()))
    }

    /// Step B for `digests`, which step A set `deleting`.
    pub async fn vacuum(&self, run: i64, digests: &[Digest]) -> Result<Vacuumed> {
        let digests: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
        self.post(
            "vacuum",
            &serde_json::json!({"run": run, "digests": digests}),
        )
        .await
    }

    pub async fn vacuum_manifests(
        &self,
        run: i64,
        ids: &[i64],
        grace_secs: i64,
    ) -> Result<ManifestsVacuumed> {
        self.post(
            "vacuum-manifests",
            &serde_json::json!({"run": run, "ids": ids, "grace_secs": grace_secs}),
        )
        .await
    }

    pub async fn reconcile(
        &self,
        run: i64,
        prefix: &str,
        grace_secs: i64,
        dry_run: bool,
    ) -> Result<Reconciled> {
        self.post(
            "reconcile",
            &serde_json::json!({"run": run, "prefix": prefix, "grace_secs": grace_secs, "dry_run": dry_run}),
        )
        .await
    }
}
