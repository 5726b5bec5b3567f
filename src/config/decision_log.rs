//! `[decision_log]`: where decision logs go.

use std::path::PathBuf;

use serde::Deserialize;

/// `[decision_log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionLogConfig {
    pub enabled: bool,
    /// `stdout` or `file`.
    pub sink: Sink,
    /// The file sink's path; rotated files get `.1`, `.2`, … appended.
    pub path: PathBuf,
    /// Size at which the file is rotated.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub max_files: u32,
    /// Share of allows written (0.0 to 1.0); denies are always written.
    pub sample_allows: f64,
    /// Context attributes written as `"***"`: names, or dotted paths into
    /// nested records (`payment.card`).
    pub mask: Vec<String>,
    /// Entries waiting to be written; past this, entries are dropped.
    pub queue: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sink {
    Stdout,
    File,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sink: Sink::Stdout,
            path: PathBuf::from("var/decisions.log"),
            max_bytes: 100 * 1024 * 1024,
            max_files: 5,
            sample_allows: 1.0,
            mask: Vec::new(),
            queue: 10_000,
        }
    }
}

impl DecisionLogConfig {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(0.0..=1.0).contains(&self.sample_allows) {
            return Err(("sample_allows", "must be between 0.0 and 1.0".into()));
        }
        if self.queue == 0 {
            return Err(("queue", "must be greater than 0".into()));
        }
        if self.max_bytes < 1024 {
            return Err(("max_bytes", "must be at least 1024".into()));
        }
        Ok(())
    }
}
