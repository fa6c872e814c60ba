//! Integration tests: the real `wharf-proxy` binary on port 0 in front of
//! the real `wharf-registry` and `wharf-core`, driven by real clients
//! (skopeo, reqwest over HTTP/1.1, HTTP/2 and TLS).

mod support;

mod edge;
mod registry;
mod routing;
