//! wharf-gc's tests: the model of the protocol, and runs against real
//! Postgres, the real registry binary and Debian's `docker-registry`:
//! collector runs, failpoint races between writers and the collector,
//! crashes at the failpoints, and a bounded soak.

mod collect;
mod crash;
mod failpoints;
mod model;
mod soak;
mod support;
