//! Integration tests: the real `wharf-registry` binary on port 0, driven
//! over real HTTP and by real clients (skopeo, Debian's docker-registry).

mod support;

mod api;
mod clients;
mod conformance;
mod internal;
