use axum::body::Body;
use axum::response::Response;
use http::{header, StatusCode};
use serde_json::json;
use wharf_oci::{media, Digest, Reference, RepositoryName};

use super::{blocking, query_get, query_pairs};
use crate::error::{Error, Result};
use crate::App;

/// Upper bound on one page, so a client cannot ask for the world at once.
const MAX_PAGE: usize = 10_000;

fn page_size(pairs: &[(String, String)]) -> Result<Option<usize>> {
    match query_get(pairs, "n") {
        None | Some("") => Ok(None),
        Some(n) => n
            .parse::<usize>()
            .map(|n| Some(n.min(MAX_PAGE)))
            .map_err(|_| {
                Error::Unsupported(format!("n must be a non-negative integer, not {n:?}"))
            }),
    }
}

fn json_response(
    body: serde_json::Value,
    content_type: &str,
    link: Option<String>,
) -> Result<Response> {
    let bytes = serde_json::to_vec(&body).map_err(|e| Error::Internal(e.into()))?;
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, bytes.len());
    if let Some(l) = link {
        b = b.header(header::LINK, l);
    }
    b.body(Body::from(bytes))
        .map_err(|e| Error::Internal(e.into()))
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn tags(app: &App, repo: &RepositoryName, query: Option<&str>) -> Result<Response> {
    let pairs = query_pairs(query);
    let n = page_size(&pairs)?;
    let last = query_get(&pairs, "last").map(str::to_owned);
    let store = app.store.clone();
    let r = repo.clone();
    let all = blocking(move || Ok(store.list_tags(&r)?)).await?;
    let Some(all) = all else {
        return Err(Error::NameUnknown(format!(
            "repository {repo} is not known to this registry"
        )));
    };
    // Lexical order is case-insensitive (distribution-spec, "Listing Tags"); bytes break ties.
    let order = |t: &str| (t.to_ascii_lowercase(), t.to_owned());
    let mut all = all;
    all.sort_by_cached_key(|t| order(t));
    let last = last.map(|l| order(&l));
    let mut tags: Vec<String> = all
        .into_iter()
        .filter(|t| last.as_ref().is_none_or(|l| order(t) > *l))
        .collect();
    let mut link = None;
    if let Some(n) = n {
        if tags.len() > n {
            tags.truncate(n);
            if let Some(t) = tags.last() {
                link = Some(format!(
                    "</v2/{repo}/tags/list?n={n}&last={}>; rel=\"next\"",
                    encode(t)
                ));
            }
        }
    }
    json_response(
        json!({"name": repo.as_str(), "tags": tags}),
        "application/json",
        link,
    )
}

pub async fn catalog(app: &App, query: Option<&str>) -> Result<Response> {
    let pairs = query_pairs(query);
    let n = page_size(&pairs)?.unwrap_or(1_000);
    // Postgres text cannot hold NUL and no name contains one, so cutting `last`
    // at its first NUL keeps the same position in the list.
    let last = query_get(&pairs, "last").map(|l| l.split('\0').next().unwrap_or(""));
    let mut repos = wharf_catalog::index::list_repositories(&app.db, last, n as i64 + 1).await?;
    let mut link = None;
    if repos.len() > n {
        repos.truncate(n);
        if let Some(r) = repos.last() {
            link = Some(format!(
                "</v2/_catalog?n={n}&last={}>; rel=\"next\"",
                encode(r)
            ));
        }
    }
    json_response(json!({"repositories": repos}), "application/json", link)
}

pub async fn referrers(
    app: &App,
    repo: &RepositoryName,
    subject: &Digest,
    query: Option<&str>,
) -> Result<Response> {
    let pairs = query_pairs(query);
    let filter = query_get(&pairs, "artifactType").map(str::to_owned);
    let found = wharf_catalog::index::referrers(&app.db, repo.as_str(), subject).await?;
    let store = app.store.clone();
    let r = repo.clone();
    let f = filter.clone();
    let manifests = blocking(move || {
        let mut out = Vec::new();
        for m in found {
            if f.as_deref()
                .is_some_and(|want| m.artifact_type.as_deref() != Some(want))
            {
                continue;
            }
            // Annotations come from the referrer's own bytes, as the spec asks.
            let annotations = super::manifests::read_manifest_from(
                &store,
                &r,
                &Reference::Digest(m.digest.clone()),
            )?
            .and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("annotations").cloned());
            let mut d =
                json!({"mediaType": m.media_type, "digest": m.digest.to_string(), "size": m.size});
            if let Some(t) = &m.artifact_type {
                d["artifactType"] = json!(t);
            }
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            out.push(d);
        }
        Ok(out)
    })
    .await?;
    let body = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests});
    let mut resp = json_response(body, media::OCI_INDEX, None)?;
    if filter.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            http::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}
