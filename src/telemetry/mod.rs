//! Observability: the `tracing` subscriber, the Prometheus metrics and the
//! decision log.
//!
//! Owns: log output format and filtering, the metric registry. Must not:
//! decide anything or know about HTTP beyond the label values it is given.

mod decision_log;
mod metrics;

pub use decision_log::{DecisionLog, Entry, Explanation, LogStats, Why, Writer, now_ms};
pub use metrics::Metrics;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Safe to call more than once (tests): later
/// calls keep the first subscriber.
pub fn init(config: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a terminal, never into a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
