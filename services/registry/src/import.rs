//! Adopts an existing distribution (`registry:2`) volume: walks its files and
//! builds the storage index from them, so Wharf can serve and collect it.
//! Idempotent: running it again adds only what is new.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use sqlx::PgPool;
use wharf_catalog::index::{self, ManifestClaim, NewManifest};
use wharf_oci::{Algorithm, Digest, Manifest, RepositoryName, Tag};
use wharf_storage::Store;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub blobs: u64,
    pub repositories: u64,
    pub layer_links: u64,
    pub manifests: u64,
    pub tags: u64,
    /// Things found on disk that cannot be indexed, with the reason.
    pub skipped: Vec<String>,
}

pub async fn import(db: &PgPool, store: &Store) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let s = store.clone();
    let blobs = tokio::task::spawn_blocking(move || list_blobs(&s)).await??;
    for chunk in blobs.chunks(1000) {
        let digests: Vec<Vec<u8>> = chunk.iter().map(|(d, _)| d.as_bytes().to_vec()).collect();
        let sizes: Vec<i64> = chunk.iter().map(|(_, s)| *s as i64).collect();
        let n = sqlx::query("INSERT INTO blob (digest, size) SELECT * FROM unnest($1::bytea[], $2::int8[]) ON CONFLICT DO NOTHING")
            .bind(&digests)
            .bind(&sizes)
            .execute(db)
            .await?
            .rows_affected();
        report.blobs += n;
    }
    let s = store.clone();
    let repos = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        find_repos(
            &s.layout.repositories_root(),
            &s.layout.repositories_root(),
            &mut out,
        )?;
        Ok::<_, std::io::Error>(out)
    })
    .await??;
    for name in repos {
        let Ok(repo) = RepositoryName::parse(&name) else {
            report
                .skipped
                .push(format!("repository {name:?}: not a valid name"));
            continue;
        };
        import_repo(db, store, &repo, &mut report).await?;
        report.repositories += 1;
    }
    sqlx::query(
        "INSERT INTO system_setting (key, value) VALUES ('storage_index_imported_at', to_jsonb(now()))
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    .execute(db)
    .await?;
    Ok(report)
}

async fn import_repo(
    db: &PgPool,
    store: &Store,
    repo: &RepositoryName,
    report: &mut Report,
) -> anyhow::Result<()> {
    let dir = store.layout.repo_dir(repo);
    let (layers, revisions, tags) = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let layers = list_links(&dir.join("_layers"))?;
            let revisions = list_links(&dir.join("_manifests/revisions"))?;
            let mut tags = Vec::new();
            if let Ok(rd) = fs::read_dir(dir.join("_manifests/tags")) {
                for e in rd.flatten() {
                    let t = e.file_name().to_string_lossy().into_owned();
                    let current = fs::read_to_string(e.path().join("current/link"))
                        .ok()
                        .and_then(|s| Digest::parse(s.trim()).ok());
                    let index = list_links(&e.path().join("index"))?;
                    tags.push((t, current, index));
                }
            }
            Ok::<_, std::io::Error>((layers, revisions, tags))
        })
        .await??
    };
    let mut tx = db.begin().await?;
    let repo_id = index::ensure_repository(&mut tx, repo.as_str()).await?;
    let live: BTreeSet<Digest> = index::lock_live_blobs(&mut tx, &layers)
        .await?
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    for d in &layers {
        if live.contains(d) {
            index::link_blob(&mut tx, repo_id, d).await?;
            report.layer_links += 1;
        } else {
            report
                .skipped
                .push(format!("{repo}: layer link {d} has no blob data"));
        }
    }
    let mut ids = std::collections::HashMap::new();
    for d in &revisions {
        let Some(bytes) = store.read_blob(d)? else {
            report
                .skipped
                .push(format!("{repo}: manifest {d} has no blob data"));
            continue;
        };
        let parsed = match Manifest::parse(&bytes, "") {
            Ok(m) => m,
            Err(e) => {
                report.skipped.push(format!("{repo}: manifest {d}: {e}"));
                continue;
            }
        };
        let refs = parsed.references();
        let ref_digests: Vec<Digest> = refs.iter().map(|(d, _)| d.clone()).collect();
        let present: BTreeSet<Digest> = index::lock_live_blobs(&mut tx, &ref_digests)
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        let refs: Vec<_> = refs
            .into_iter()
            .filter(|(r, _)| present.contains(r))
            .collect();
        if refs.len() != ref_digests.len() {
            report.skipped.push(format!(
                "{repo}: manifest {d} references content that is not stored"
            ));
        }
        let artifact_type = parsed.effective_artifact_type();
        let new = NewManifest {
            repo_id,
            digest: d,
            media_type: &parsed.media_type,
            artifact_type: artifact_type.as_deref(),
            subject: parsed.subject.as_ref().map(|s| &s.digest),
            size: bytes.len() as i64,
        };
        match index::claim_manifest(&mut tx, &new).await? {
            ManifestClaim::Created(id) => {
                index::insert_refs(&mut tx, id, &refs).await?;
                ids.insert(d.clone(), id);
                report.manifests += 1;
            }
            ManifestClaim::Existing(id) => {
                ids.insert(d.clone(), id);
            }
            ManifestClaim::Deleting => report
                .skipped
                .push(format!("{repo}: manifest {d} is being deleted")),
        }
    }
    for (t, current, index_links) in tags {
        if Tag::parse(&t).is_err() {
            report
                .skipped
                .push(format!("{repo}: tag {t:?} is not a valid tag"));
            continue;
        }
        if let Some(id) = current.as_ref().and_then(|c| ids.get(c)) {
            index::set_tag(&mut tx, repo_id, &t, *id).await?;
            report.tags += 1;
        }
        for d in index_links {
            sqlx::query("INSERT INTO tag_index (repo_id, tag, digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(repo_id)
                .bind(&t)
                .bind(d.as_bytes())
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

fn list_blobs(store: &Store) -> std::io::Result<Vec<(Digest, u64)>> {
    let mut out = Vec::new();
    for algo in [Algorithm::Sha256, Algorithm::Sha512] {
        let root = store.layout.blobs_root().join(algo.as_str());
        for prefix in read_dirs(&root)? {
            for blob in read_dirs(&prefix)? {
                let name = blob
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let Ok(d) = Digest::parse(&format!("{}:{name}", algo.as_str())) else {
                    continue;
                };
                if let Ok(m) = fs::metadata(blob.join("data")) {
                    out.push((d, m.len()));
                }
            }
        }
    }
    Ok(out)
}

/// The digests of `<dir>/<algo>/<hex>/link` files.
fn list_links(dir: &Path) -> std::io::Result<Vec<Digest>> {
    let mut out = Vec::new();
    for algo in read_dirs(dir)? {
        for entry in read_dirs(&algo)? {
            if let Ok(s) = fs::read_to_string(entry.join("link")) {
                if let Ok(d) = Digest::parse(s.trim()) {
                    out.push(d);
                }
            }
        }
    }
    Ok(out)
}

fn read_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(e),
    }
}

fn find_repos(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let subdirs = read_dirs(dir)?;
    if subdirs
        .iter()
        .any(|d| d.ends_with("_layers") || d.ends_with("_manifests"))
    {
        if let Ok(rel) = dir.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    for d in subdirs {
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.starts_with('_') {
            find_repos(root, &d, out)?;
        }
    }
    Ok(())
}
