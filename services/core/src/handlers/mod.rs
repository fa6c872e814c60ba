//! Handlers, one module per resource, each exposing its `routes()`.

pub mod system;
