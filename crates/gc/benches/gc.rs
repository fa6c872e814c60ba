//! GC benchmark (issue 4): a store of 100,000 small blobs under 10,000
//! manifests, half of the manifests deleted through the registry's API, then
//! one timed GC run against real Postgres and the real registry binary.
//!
//! `cargo bench -p wharf-gc` (needs the test Postgres; sizes can be scaled
//! with `WHARF_GC_BENCH_MANIFESTS`, ten blobs per manifest).

#[path = "../tests/gc/support.rs"]
mod support;

use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use support::*;

const REPOS: usize = 100;
const LAYERS: usize = 8;

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let manifests: usize = std::env::var("WHARF_GC_BENCH_MANIFESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let site = Site::start().await;
    let t = Instant::now();
    let built = build(&site, manifests).await;
    println!(
        "built {} blobs under {} manifests in {} repositories in {:.1} s",
        built.blobs,
        manifests,
        REPOS,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let half: Vec<(String, String)> = built.manifests.iter().step_by(2).cloned().collect();
    let http = site.http.clone();
    let base = site.base.clone();
    stream::iter(half.iter())
        .for_each_concurrent(16, |(repo, digest)| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let r = http
                    .delete(format!("{base}/v2/{repo}/manifests/{digest}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        })
        .await;
    println!(
        "deleted {} manifests through DELETE /v2/…/manifests in {:.1} s",
        half.len(),
        t.elapsed().as_secs_f64()
    );

    let params = wharf_gc::Params {
        grace_secs: 0,
        workers: 4,
        ..wharf_gc::Params::default()
    };
    let t = Instant::now();
    let report = site.collector().run(&params, None).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "GC run: {secs:.2} s; purged_blobs {} ({:.0}/s), freed_space {} bytes, examined {}, kept {}, errors {}",
        report.purged_blobs,
        report.purged_blobs as f64 / secs,
        report.freed_space,
        report.examined,
        report.kept,
        report.errors
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM blob")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    println!(
        "blobs left: {left} (expected {}); collector peak RSS {} kB",
        built.blobs - report.purged_blobs as usize,
        peak_rss_kb()
    );
    assert_eq!(report.errors, 0);
    assert_eq!(report.purged_blobs as usize, half.len() * (LAYERS + 2));
}

struct Built {
    blobs: usize,
    /// (repository, manifest digest)
    manifests: Vec<(String, String)>,
}

/// Writes the files on the distribution layout and the index rows directly,
/// as the registry's write path would have left them.
async fn build(site: &Site, manifests: usize) -> Built {
    let v2 = site.v2();
    let mut repo_names = Vec::new();
    for r in 0..REPOS {
        repo_names.push(format!("bench/r{r:03}"));
    }
    let v2c = v2.clone();
    let names = repo_names.clone();
    // (repo index, manifest digest, manifest bytes, config+layers)
    let plan = tokio::task::spawn_blocking(move || {
        let mut plan = Vec::with_capacity(manifests);
        for m in 0..manifests {
            let r = m % REPOS;
            let repo = &names[r];
            let mut children = Vec::new();
            for l in 0..=LAYERS {
                let data = format!("bench blob {m} {l}").into_bytes();
                let d = sha256(&data);
                write_blob(&v2c, &d, &data);
                write_link(&v2c.join(format!("repositories/{repo}/_layers/sha256/{}/link", &d[7..])), &d);
                children.push((d, data.len() as i64));
            }
            let layers: Vec<serde_json::Value> = children[1..]
                .iter()
                .map(|(d, n)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}))
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": children[0].0, "size": children[0].1},
                "layers": layers})).unwrap();
            let md = sha256(&body);
            write_blob(&v2c, &md, &body);
            write_link(&v2c.join(format!("repositories/{repo}/_manifests/revisions/sha256/{}/link", &md[7..])), &md);
            let tag = format!("t{m}");
            write_link(&v2c.join(format!("repositories/{repo}/_manifests/tags/{tag}/current/link")), &md);
            write_link(&v2c.join(format!("repositories/{repo}/_manifests/tags/{tag}/index/sha256/{}/link", &md[7..])), &md);
            plan.push((r, md, body.len() as i64, children));
        }
        plan
    })
    .await
    .unwrap();

    let db = &site.pool;
    let repo_ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO repository (name) SELECT unnest($1::text[]) ORDER BY 1 RETURNING id",
    )
    .bind(&repo_names)
    .fetch_all(db)
    .await
    .unwrap();
    let mut blobs = 0;
    for chunk in plan.chunks(1000) {
        let (mut bd, mut bs) = (Vec::new(), Vec::new());
        let (mut lr, mut ld) = (Vec::new(), Vec::new());
        let (mut mr, mut md, mut ms, mut tags) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (r, m, size, children) in chunk {
            let rid = repo_ids[*r];
            bd.push(hex_decode(&m[7..]));
            bs.push(*size);
            for (d, n) in children {
                bd.push(hex_decode(&d[7..]));
                bs.push(*n);
                lr.push(rid);
                ld.push(hex_decode(&d[7..]));
            }
            mr.push(rid);
            md.push(hex_decode(&m[7..]));
            ms.push(*size);
            tags.push(format!("t{}", blobs / (LAYERS + 2) + tags.len()));
        }
        blobs += bd.len();
        let mut tx = db.begin().await.unwrap();
        sqlx::query("INSERT INTO blob (digest, size, created_at) SELECT d, s, now() - interval '1 day' FROM unnest($1::bytea[], $2::int8[]) AS t(d, s)")
            .bind(&bd).bind(&bs).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO repo_blob (repo_id, digest, last_used_at) SELECT r, d, now() - interval '1 day' FROM unnest($1::int8[], $2::bytea[]) AS t(r, d)")
            .bind(&lr).bind(&ld).execute(&mut *tx).await.unwrap();
        let ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO manifest (repo_id, digest, media_type, size, pushed_at)
             SELECT r, d, 'application/vnd.oci.image.manifest.v1+json', s, now() - interval '1 day'
               FROM unnest($1::int8[], $2::bytea[], $3::int8[]) WITH ORDINALITY AS t(r, d, s, o) ORDER BY o RETURNING id",
        )
        .bind(&mr).bind(&md).bind(&ms).fetch_all(&mut *tx).await.unwrap();
        let (mut rid, mut rd, mut rk) = (Vec::new(), Vec::new(), Vec::new());
        for ((_, _, _, children), id) in chunk.iter().zip(&ids) {
            for (i, (d, _)) in children.iter().enumerate() {
                rid.push(*id);
                rd.push(hex_decode(&d[7..]));
                rk.push(if i == 0 { "config" } else { "layer" });
            }
        }
        sqlx::query("INSERT INTO manifest_ref (manifest_id, child_digest, kind) SELECT m, d, k::ref_kind FROM unnest($1::int8[], $2::bytea[], $3::text[]) AS t(m, d, k)")
            .bind(&rid).bind(&rd).bind(&rk).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO tag (repo_id, name, manifest_id) SELECT r, n, m FROM unnest($1::int8[], $2::text[], $3::int8[]) AS t(r, n, m)")
            .bind(&mr).bind(&tags).bind(&ids).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO tag_index (repo_id, tag, digest) SELECT r, n, d FROM unnest($1::int8[], $2::text[], $3::bytea[]) AS t(r, n, d)")
            .bind(&mr).bind(&tags).bind(&md).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    sqlx::query("ANALYZE").execute(db).await.unwrap();
    Built {
        blobs,
        manifests: plan
            .iter()
            .map(|(r, m, _, _)| (repo_names[*r].clone(), m.clone()))
            .collect(),
    }
}

fn write_blob(v2: &std::path::Path, d: &str, data: &[u8]) {
    let hex = &d[7..];
    let dir = v2.join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data"), data).unwrap();
}

fn write_link(path: &std::path::Path, d: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, d).unwrap();
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
