//! Portcullis: a lean Cedar policy decision point that runs beside your
//! services. See `DESIGN.md` for the architecture; `app` wires the modules.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod authz;
pub mod backends;
pub mod config;
pub mod domain;
pub mod services;
pub mod telemetry;

pub use app::App;
