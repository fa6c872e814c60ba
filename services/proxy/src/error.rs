//! The responses the proxy writes itself: the Harbor/OCI error envelope
//! `{"errors":[{"code","message"}]}` on API paths and an HTML page for browsers.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::routes::Route;

/// Why forwarding failed before the upstream answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Could not connect: the service is down or refusing connections.
    Unreachable,
    /// Connected, but nothing came back within the idle timeout.
    Timeout,
    /// The connection broke before a response head arrived.
    Broken,
}

pub fn json(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn not_found() -> Response<Full<Bytes>> {
    json(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")
}

fn html(status: StatusCode, title: &str, text: &str) -> Response<Full<Bytes>> {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:4em auto;color:#333}}</style></head>\n\
         <body><h1>{title}</h1><p>{text}</p></body></html>\n"
    );
    let mut resp = Response::new(Full::new(Bytes::from(page)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// The answer when `route`'s upstream failed before it answered.
pub fn upstream(route: Route, failure: Failure) -> Response<Full<Bytes>> {
    let service = match route {
        Route::Registry => "registry",
        Route::Core => "core",
        _ => "portal",
    };
    let (status, what) = match failure {
        Failure::Unreachable => (
            StatusCode::BAD_GATEWAY,
            format!("Wharf {service} is not reachable: it is not running or refuses connections"),
        ),
        Failure::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("Wharf {service} did not answer in time"),
        ),
        Failure::Broken => (
            StatusCode::BAD_GATEWAY,
            format!("Wharf {service} closed the connection before answering"),
        ),
    };
    let mut resp = match route {
        Route::Portal if failure == Failure::Unreachable => html(
            StatusCode::SERVICE_UNAVAILABLE,
            "Wharf portal is not running",
            "Wharf portal is not running or not reachable yet. The registry (<code>/v2/</code>) \
             and the API (<code>/api/v2.0/</code>) are served separately; try this page again in \
             a moment, and if it stays, check the portal service and its log.",
        ),
        Route::Portal => html(status, "Bad gateway", &what),
        _ => json(status, "UNAVAILABLE", &what),
    };
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if failure == Failure::Unreachable {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}
