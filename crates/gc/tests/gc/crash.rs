//! Crash tests (gc.md, "Tests that would prove it", item 3): the registry is
//! killed with SIGKILL while a writer is paused at W1, W2, M1 or M2 (after
//! the manifest's commit, before its links), and Postgres
//! terminates the collector's step B session while it is paused at G2. After
//! a restart the client tries again at once, as skopeo or docker would, and
//! then a GC runs with reconcile. Every time: what a client can see pulls
//! whole, the retry lands, I1–I3 hold, nothing is left `deleting`, and the
//! digest can be pushed again. (jobservice is killed at G1–G3 in its tests.)

use std::time::Duration;

use reqwest::StatusCode;
use wharf_gc::Params;

use crate::support::*;

const REPO: &str = "crash/app";
const MUST_HIT: Duration = Duration::from_secs(10);

/// What a client does: HEAD each blob, upload only those the registry does
/// not have, then PUT the manifest.
async fn push_like_a_client(
    site: &Site,
    repo: &str,
    tag: &str,
    blobs: &[&[u8]],
    manifest: &[u8],
) -> (StatusCode, String) {
    for b in blobs {
        if site.head_blob(repo, &sha256(b)).await != StatusCode::OK {
            let (s, body) = site.upload(repo, b).await;
            if s != StatusCode::CREATED {
                return (s, format!("upload of {}: {body}", sha256(b)));
            }
        }
    }
    site.put_manifest(repo, tag, manifest).await
}

/// Whatever `repo:tag` shows a client is whole: no manifest, or one whose
/// blobs all pull with the right digests.
async fn assert_visible_is_whole(site: &Site, repo: &str, tag: &str) {
    if site.get_manifest(repo, tag).await.is_some() {
        if let Err(e) = site.pull_verified(repo, tag).await {
            panic!("{repo}:{tag} is visible but broken: {e}");
        }
    }
}

async fn registry_killed_at(failpoint: &str) {
    let mut site = Site::start().await;
    let kept = site
        .push_image("crash/kept", "v1", &[random_bytes(1500)])
        .await;
    let layer = Layer::random(3000);
    let (config, manifest) = image_of(&[&layer]);
    let is_manifest = failpoint.starts_with('M');
    if is_manifest {
        site.push_blob(REPO, &layer.gz).await;
        site.push_blob(REPO, &config).await;
    }

    site.fp.arm(failpoint);
    let (http, base) = (site.http.clone(), site.base.clone());
    let (gz, m) = (layer.gz.clone(), manifest.clone());
    let writer = tokio::spawn(async move {
        let r = if is_manifest {
            http.put(format!("{base}/v2/{REPO}/manifests/v1"))
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(m)
                .send()
                .await
        } else {
            http.post(format!(
                "{base}/v2/{REPO}/blobs/uploads/?digest={}",
                sha256(&gz)
            ))
            .body(gz)
            .send()
            .await
        };
        r.map(|r| r.status())
    });
    assert!(
        wait_until(MUST_HIT, || site.fp.was_hit(failpoint)).await,
        "the writer never reached {failpoint}"
    );
    site.crash_registry().await;
    let answer = writer.await.unwrap();
    assert!(
        answer.is_err(),
        "the client got an answer from a killed registry: {answer:?}"
    );
    site.fp.release(failpoint);
    site.restart_registry().await;

    // Right after the restart: nothing half-written is visible.
    assert_visible_is_whole(&site, REPO, "v1").await;
    if site.head_blob(REPO, &layer.digest).await == StatusCode::OK {
        let b = site.get_blob(REPO, &layer.digest).await;
        assert_eq!(b.as_deref(), Some(&layer.gz[..]), "a visible blob is whole");
    }

    if failpoint == "M2" {
        // Committed but not visible: the index protects its blobs meanwhile.
        assert!(site.get_manifest(REPO, "v1").await.is_none());
        site.collector().run(&eager_params(), None).await.unwrap();
        site.assert_live(&layer.digest).await;
        site.assert_live(&sha256(&config)).await;
    }

    // The client tries again at once, and it lands.
    let (s, body) = push_like_a_client(&site, REPO, "v1", &[&layer.gz, &config], &manifest).await;
    assert_eq!(s, StatusCode::CREATED, "retry after the crash: {body}");
    site.pull_verified(REPO, "v1").await.unwrap();
    site.assert_index_consistent().await;

    // A GC with reconcile keeps everything that is referenced, and after it
    // storage holds the index's blobs and nothing else.
    let report = site.collector().run(&eager_params(), None).await.unwrap();
    assert_eq!(report.errors, 0, "{report:?}");
    site.assert_index_consistent().await;
    site.pull_verified(REPO, "v1").await.unwrap();
    site.pull_verified("crash/kept", "v1").await.unwrap();
    for d in kept.all() {
        site.assert_live(&d).await;
    }
    site.assert_live(&layer.digest).await;
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT digest FROM blob")
        .fetch_all(&site.pool)
        .await
        .unwrap();
    let indexed: std::collections::BTreeSet<String> =
        rows.iter().map(|k| format!("sha256:{}", hex(k))).collect();
    assert_eq!(
        site.blob_files(),
        indexed,
        "storage holds what the index holds"
    );
}

#[tokio::test]
async fn registry_killed_at_w1_before_the_rename() {
    registry_killed_at("W1").await;
}

#[tokio::test]
async fn registry_killed_at_w2_after_the_rename_before_commit() {
    registry_killed_at("W2").await;
}

#[tokio::test]
async fn registry_killed_at_m1_with_the_manifest_uncommitted() {
    registry_killed_at("M1").await;
}

#[tokio::test]
async fn registry_killed_at_m2_with_the_manifest_committed_but_not_linked() {
    registry_killed_at("M2").await;
}

#[tokio::test]
async fn step_b_session_terminated_mid_unlink_is_recovered() {
    let site = Site::start().await;
    let kept = site
        .push_image("crash/kept", "v1", &[random_bytes(1500)])
        .await;
    let (a, b) = (Layer::random(1100), Layer::random(1200));
    let (config, manifest) = image_of(&[&a, &b]);
    let blobs: [&[u8]; 3] = [&a.gz, &b.gz, &config];
    let (s, body) = push_like_a_client(&site, REPO, "v1", &blobs, &manifest).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    site.delete_manifest(REPO, &sha256(&manifest)).await;
    let doomed = [
        a.digest.clone(),
        b.digest.clone(),
        sha256(&config),
        sha256(&manifest),
    ];

    site.fp.arm("G2");
    let collector = site.collector();
    let run = tokio::spawn(async move { collector.run(&eager_params(), None).await });
    assert!(
        wait_until(MUST_HIT, || site.fp.was_hit("G2")).await,
        "the collector never reached G2"
    );
    // Step B holds its rows FOR UPDATE, idle in its transaction while paused.
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND state LIKE 'idle in transaction%'",
    )
    .fetch_all(&site.pool)
    .await
    .unwrap();
    assert!(
        !terminated.is_empty() && terminated.iter().all(|t| *t),
        "no step B session to terminate: {terminated:?}"
    );
    site.fp.release("G2");
    let first = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the interrupted run ends")
        .unwrap();
    // The interrupted run may fail or count the chunk as an error; either
    // way the next one finishes the work.
    eprintln!("interrupted run: {first:?}");
    let report = site.collector().run(&eager_params(), None).await.unwrap();
    assert_eq!(report.errors, 0, "{report:?}");
    site.assert_index_consistent().await;
    for d in &doomed {
        site.assert_gone(d).await;
        assert!(
            !site.layer_link(REPO, d).exists(),
            "{d}'s _layers link is left"
        );
    }
    for d in kept.all() {
        site.assert_live(&d).await;
    }
    site.pull_verified("crash/kept", "v1").await.unwrap();
    // The same image can be pushed again, and pulls whole.
    let (s, body) = push_like_a_client(&site, REPO, "v1", &blobs, &manifest).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    site.pull_verified(REPO, "v1").await.unwrap();
    site.assert_index_consistent().await;
}

#[tokio::test]
async fn a_manifest_killed_at_m1_and_never_retried_is_not_left_broken_by_gc() {
    let mut site = Site::start().await;
    let layer = Layer::random(2500);
    let (config, manifest) = image_of(&[&layer]);
    site.push_blob(REPO, &layer.gz).await;
    site.push_blob(REPO, &config).await;
    site.fp.arm("M1");
    let (http, url) = (
        site.http.clone(),
        site.url(&format!("/v2/{REPO}/manifests/v1")),
    );
    let writer = tokio::spawn(async move {
        http.put(url)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest)
            .send()
            .await
            .map(|r| r.status())
    });
    assert!(wait_until(MUST_HIT, || site.fp.was_hit("M1")).await);
    site.crash_registry().await;
    assert!(writer.await.unwrap().is_err());
    site.fp.release("M1");
    site.restart_registry().await;

    // The client gives up; scheduled GCs run (without reconcile, as by default).
    for reconcile in [false, true] {
        let p = Params {
            reconcile,
            ..eager_params()
        };
        site.collector().run(&p, None).await.unwrap();
        assert_visible_is_whole(&site, REPO, "v1").await;
        site.assert_index_consistent().await;
    }
}
