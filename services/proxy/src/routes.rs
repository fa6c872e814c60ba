//! Where each request goes, on one screen. Paths are matched after
//! percent-decoding (repeatedly), resolving `.` and `..`, dropping empty and
//! `;param` segments and unifying `\` with `/`, so no spelling of
//! `/api/internal/…` gets past the refusal; the upstream still receives the
//! path exactly as the client sent it.

/// The destination of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/v2`, `/v2/…`: the OCI distribution API.
    Registry,
    /// `/api/…`, `/service/…` (the token service), `/c/…` (login).
    Core,
    /// Everything else: the web UI.
    Portal,
    /// `/api/internal/…`: service-to-service only, refused from outside.
    Internal,
    /// `/v1/…`: the Docker v1 registry API, which Wharf (like Harbor) does not serve.
    V1,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Registry => "registry",
            Route::Core => "core",
            Route::Portal => "portal",
            Route::Internal => "internal",
            Route::V1 => "v1",
        }
    }
}

pub fn classify(path: &str) -> Route {
    let path = normalize(path);
    if under(&path.to_ascii_lowercase(), "/api/internal") {
        return Route::Internal;
    }
    if under(&path, "/v2") {
        Route::Registry
    } else if under(&path, "/v1") {
        Route::V1
    } else if ["/api", "/service", "/c"].iter().any(|p| under(&path, p)) {
        Route::Core
    } else {
        Route::Portal
    }
}

fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The path the way a lenient server would resolve it.
pub fn normalize(raw: &str) -> String {
    let mut path = raw.to_owned();
    // Decode until stable (bounded), so `%252e%252e` cannot hide a `..`.
    for _ in 0..4 {
        let decoded = percent_decode(&path);
        if decoded == path {
            break;
        }
        path = decoded;
    }
    let path = path.replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        let seg = seg.split(';').next().unwrap_or("").trim_end_matches('\0');
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (path.ends_with('/') && !segments.is_empty()) {
        out.push('/');
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_prefix() {
        for (path, route) in [
            ("/v2", Route::Registry),
            ("/v2/", Route::Registry),
            ("/v2/library/app/blobs/sha256:00", Route::Registry),
            ("/v2x", Route::Portal),
            ("/v1/_ping", Route::V1),
            ("/service/token", Route::Core),
            ("/api/v2.0/ping", Route::Core),
            ("/api", Route::Core),
            ("/c/login", Route::Core),
            ("/cx", Route::Portal),
            ("/", Route::Portal),
            ("", Route::Portal),
            ("*", Route::Portal),
            ("/harbor/projects", Route::Portal),
            ("/apix/internal", Route::Portal),
        ] {
            assert_eq!(classify(path), route, "{path}");
        }
    }

    #[test]
    fn internal_paths_are_caught_however_they_are_spelled() {
        for path in [
            "/api/internal",
            "/api/internal/",
            "/api/internal/artifacts",
            "/API/Internal/x",
            "//api//internal/x",
            "/api/./internal/x",
            "/api/v2.0/../internal/x",
            "/v2/../api/internal/x",
            "/api/%69nternal/x",
            "/api%2finternal/x",
            "/api%2Finternal",
            "/api/v2.0/%2e%2e/internal",
            "/api/v2.0/%252e%252e/internal",
            "/api/v2.0/..%2finternal",
            "/api\\internal/x",
            "/api;x=1/internal/x",
            "/api/internal;jsessionid=1/x",
            "/x/../../../api/internal",
        ] {
            assert_eq!(classify(path), Route::Internal, "{path}");
        }
    }

    #[test]
    fn normalize_resolves_dots_and_keeps_a_trailing_slash() {
        assert_eq!(normalize("/v2/"), "/v2/");
        assert_eq!(normalize("/a/b/../c/./d"), "/a/c/d");
        assert_eq!(normalize("/.."), "/");
        assert_eq!(normalize("/%zz%2"), "/%zz%2");
    }
}
