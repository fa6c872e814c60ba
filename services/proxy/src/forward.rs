//! Forwarding one request: choose the upstream, rewrite the head (forwarding
//! headers, request id, hop-by-hop headers), stream both bodies through
//! untouched, and turn upstream failures into clear answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use wharf_storage::offload::{self, Offload};
use wharf_storage::Layout;

use crate::body::{AccessLog, Activity, FileBody, Idle, Logged, RequestBody, ResponseBody};
use crate::config::{upstream_authority, Config};
use crate::error::{self, Failure};
use crate::routes::{classify, Route};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static OFFLOAD: HeaderName = HeaderName::from_static(offload::HEADER);

/// The connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Everything a request needs, shared behind one `Arc`.
pub struct Proxy {
    client: Client<HttpConnector, RequestBody>,
    registry: Authority,
    /// The registry's storage, when blob pulls are offloaded to the proxy.
    registry_storage: Option<Layout>,
    core: Authority,
    portal: Authority,
    /// With HTTPS on, the port plain-HTTP requests are redirected to.
    https_port: Option<u16>,
    idle: Duration,
}

impl Proxy {
    pub fn new(config: &Config, https_port: Option<u16>) -> anyhow::Result<Proxy> {
        let authority = |url: &str| upstream_authority(url).map_err(anyhow::Error::msg);
        let t = &config.timeouts;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(t.connect_secs)));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(t.pool_idle_secs))
            .pool_max_idle_per_host(128)
            .build(connector);
        Ok(Proxy {
            client,
            registry: authority(&config.upstreams.registry)?,
            registry_storage: config
                .upstreams
                .registry_storage
                .as_deref()
                .map(Layout::new),
            core: authority(&config.upstreams.core)?,
            portal: authority(&config.upstreams.portal)?,
            https_port,
            idle: Duration::from_secs(t.idle_secs),
        })
    }

    /// The service function: never fails, every problem is an HTTP answer.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Conn,
    ) -> Result<Response<Logged>, Infallible> {
        let started = std::time::Instant::now();
        let request_id = req
            .headers()
            .get(&X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let host = original_host(&req);
        let route = classify(&path);

        let mut resp: Response<ResponseBody> = match (self.https_port, conn.tls) {
            (Some(port), false) => redirect(host.as_deref(), port, req.uri()).map(Into::into),
            _ => match route {
                Route::Internal => error::not_found().map(Into::into),
                Route::V1 => error::json(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "the Docker v1 registry API is not supported",
                )
                .map(Into::into),
                _ => self.forward(req, route, conn, host, &request_id).await,
            },
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
        }
        let log = AccessLog {
            method,
            path,
            status: resp.status().as_u16(),
            route: route.name(),
            request_id,
            started,
        };
        Ok(resp.map(|b| Logged::new(b, log)))
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        route: Route,
        conn: Conn,
        host: Option<String>,
        request_id: &str,
    ) -> Response<ResponseBody> {
        let upstream = match route {
            Route::Registry => &self.registry,
            Route::Core => &self.core,
            _ => &self.portal,
        };
        let (mut parts, body) = req.into_parts();
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(upstream.clone());
        uri.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        parts.uri = match Uri::from_parts(uri) {
            Ok(u) => u,
            Err(_) => {
                return error::json(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "invalid request target",
                )
                .map(Into::into)
            }
        };
        parts.version = Version::HTTP_11;
        forwarding_headers(&mut parts.headers, conn, host.as_deref(), request_id);

        // Only the proxy may ask for an offload, and only where it can read
        // the registry's volume; the registry offloads blob GETs alone.
        parts.headers.remove(&OFFLOAD);
        let offload_retry = match (&self.registry_storage, route) {
            (Some(_), Route::Registry)
                if parts.method == http::Method::GET && parts.uri.path().contains("/blobs/") =>
            {
                let retry = (
                    parts.method.clone(),
                    parts.uri.clone(),
                    parts.headers.clone(),
                );
                parts
                    .headers
                    .insert(OFFLOAD.clone(), HeaderValue::from_static("1"));
                Some(retry)
            }
            _ => None,
        };

        let activity = Activity::new();
        let body = Idle::new(body, self.idle, "client", Some(activity.clone()));
        let request = Request::from_parts(parts, RequestBody::Left(body));
        let mut resp = match self.send(request, route, &activity).await {
            Ok(resp) => resp,
            Err(failure) => return error::upstream(route, failure).map(Into::into),
        };
        if let Some(value) = resp.headers_mut().remove(&OFFLOAD) {
            let Some((method, uri, headers)) = offload_retry else {
                tracing::error!("the registry offloaded a blob the proxy did not ask for");
                return error::upstream(route, Failure::Broken).map(Into::into);
            };
            match self.open_offloaded(&value).await {
                Ok((file, o)) => {
                    let (mut parts, _) = resp.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, o.length.into());
                    let body = ResponseBody::File(FileBody::new(file, o.offset, o.length));
                    return Response::from_parts(parts, body);
                }
                Err(e) => {
                    // The pull itself is fine: ask the registry for the bytes.
                    tracing::warn!(error = %e, "cannot send an offloaded blob; relaying it instead");
                    let mut request = Request::new(RequestBody::Right(Empty::new()));
                    *request.method_mut() = method;
                    *request.uri_mut() = uri;
                    *request.headers_mut() = headers;
                    resp = match self.send(request, route, &Activity::new()).await {
                        Ok(resp) => resp,
                        Err(failure) => return error::upstream(route, failure).map(Into::into),
                    };
                }
            }
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = ResponseBody::Upstream(Idle::new(body, self.idle, "upstream", None));
        Response::from_parts(parts, body)
    }

    /// Sends `request` and waits for the response head, with no deadline
    /// while the request body still streams: the clock restarts whenever
    /// bytes of it move.
    async fn send(
        &self,
        request: Request<RequestBody>,
        route: Route,
        activity: &Activity,
    ) -> Result<Response<Incoming>, Failure> {
        let pending = self.client.request(request);
        tokio::pin!(pending);
        loop {
            let deadline = activity.last() + self.idle;
            tokio::select! {
                r = &mut pending => break r.map_err(|e| {
                    let failure = if e.is_connect() { Failure::Unreachable } else { Failure::Broken };
                    tracing::warn!(upstream = route.name(), error = %error_chain(&e), "upstream request failed");
                    failure
                }),
                _ = tokio::time::sleep_until(deadline) => {
                    if activity.last() + self.idle <= tokio::time::Instant::now() {
                        tracing::warn!(upstream = route.name(), "upstream did not answer within the idle timeout");
                        break Err(Failure::Timeout);
                    }
                }
            }
        }
    }

    /// Opens the blob range the registry approved, checking it is all there.
    async fn open_offloaded(
        &self,
        value: &HeaderValue,
    ) -> Result<(std::fs::File, Offload), String> {
        let layout = self.registry_storage.clone().ok_or("no registry storage")?;
        let o = value
            .to_str()
            .ok()
            .and_then(Offload::parse)
            .ok_or_else(|| format!("malformed {} header {value:?}", offload::HEADER))?;
        let path = layout.blob_data(&o.digest);
        let end = o.offset.checked_add(o.length).ok_or("range overflows")?;
        let file = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)
                .map_err(|e| format!("opening {}: {e}", path.display()))?;
            let size = file
                .metadata()
                .map_err(|e| format!("reading {}: {e}", path.display()))?
                .len();
            if size < end {
                return Err(format!("{} holds {size} bytes, not {end}", path.display()));
            }
            Ok(file)
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok((file, o))
    }
}

/// The host the client addressed: HTTP/2's `:authority` or HTTP/1's `Host`.
fn original_host<B>(req: &Request<B>) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .filter(|h| !h.is_empty())
}

/// Rewrites the request head for the upstream. The upstream sees the
/// client's `Host`, so links it builds point at the proxy.
fn forwarding_headers(h: &mut HeaderMap, conn: Conn, host: Option<&str>, request_id: &str) {
    strip_hop_by_hop(h);
    // The proxy reads the request body as the upstream asks for it; the
    // client already got its `100 Continue` from the proxy.
    h.remove(header::EXPECT);
    let client_ip = conn.peer.ip().to_string();
    let prior: Vec<&str> = h
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = if prior.is_empty() {
        client_ip
    } else {
        format!("{}, {client_ip}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    h.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
    );
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        h.insert(header::HOST, v.clone());
        h.insert(X_FORWARDED_HOST.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID.clone(), v);
    }
}

/// Removes the headers that describe one connection, not the message
/// (RFC 9110 §7.6.1), including any the `Connection` header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        h.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        h.remove(name);
    }
}

/// `308` to the same host on the HTTPS port, with the same path and query.
fn redirect(host: Option<&str>, port: u16, uri: &Uri) -> Response<Full<Bytes>> {
    let Some(host) = host.map(strip_port) else {
        return error::json(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "HTTPS is required and the request names no host",
        );
    };
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("https://{host}{port}{pq}");
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => *resp.status_mut() = StatusCode::BAD_REQUEST,
    }
    resp
}

/// `host[:port]` or `[v6][:port]` without the port.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_keeps_host_path_and_query() {
        let uri: Uri = "/v2/a/b/manifests/x?n=1".parse().unwrap();
        let r = redirect(Some("reg.example.com:8080"), 8443, &uri);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://reg.example.com:8443/v2/a/b/manifests/x?n=1"
        );
        let r = redirect(Some("[::1]:80"), 443, &uri);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://[::1]/v2/a/b/manifests/x?n=1"
        );
        assert_eq!(redirect(None, 443, &uri).status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn hop_by_hop_headers_go_and_forwarding_headers_come() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        let conn = Conn {
            peer: "192.0.2.7:5555".parse().unwrap(),
            tls: true,
        };
        forwarding_headers(&mut h, conn, Some("reg.example.com"), "rid-1");
        assert!(h.get("x-secret").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(h[header::CONTENT_LENGTH], "5");
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2, 192.0.2.7");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "reg.example.com");
        assert_eq!(h[header::HOST], "reg.example.com");
        assert_eq!(h[&X_REQUEST_ID], "rid-1");
    }
}
