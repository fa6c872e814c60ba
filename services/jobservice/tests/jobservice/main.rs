//! Integration tests: the real `wharf-jobservice` (one or two processes) and
//! `wharf-registry` binaries on ports chosen by the OS, against real Postgres
//! and Redis. Jobs are enqueued the way core enqueues them (`wharf_jobs`).

mod support;

mod queue;
