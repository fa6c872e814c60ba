//! Integration tests: the real `wharf-core` and `wharf-registry` binaries as
//! processes on ports chosen by the OS, against real Postgres and Redis,
//! driven over HTTP and by skopeo.

mod support;

mod audit;
mod catalogue;
mod content;
mod gc;
mod health;
mod policy;
mod projects;
mod rbac;
mod robots;
mod session;
mod system;
mod tenants;
mod token;
mod users;
