//! wharf-gc's tests: the model of the protocol, and runs against real
//! Postgres, the real registry binary and Debian's `docker-registry`.

mod collect;
mod model;
mod support;
