//! Handlers, one module per resource, each exposing its `routes()`.

pub mod artifacts;
pub mod audit;
pub mod gc;
pub mod health;
pub mod immutable;
pub mod members;
pub mod projects;
pub mod quotas;
pub mod repositories;
pub mod robots;
pub mod session;
pub mod system;
pub mod tags;
pub mod token;
pub mod users;
