//! The recovery settings in force: where backups go, whether they are
//! sealed, how often one is taken, how many are kept and for how long, and
//! how long the change journal is kept.
//!
//! The config file's `[recovery]` gives the defaults; `PATCH
//! /iam/recovery/config` stores changes over them in `settings/recovery`.
//! Nothing caches them: every backup, schedule tick and journal prune reads
//! the store, so a change is in force at once on every instance sharing the
//! store, and a rollback of the change undoes it the same way.
//!
//! Owns: the settings, their validation and backup retention. Must not:
//! know HTTP.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SETTINGS;
use super::accounts::merge_settings;
use super::recovery::{Manifest, RecoveryError};
use crate::backends::{Expect, Store, StoreError};
use crate::config::RecoveryConfig;

/// Where the stored settings live, in [`SETTINGS`].
pub const RECOVERY_SETTINGS_KEY: &str = "recovery";
/// The shortest backup interval the schedule accepts.
pub const MIN_BACKUP_INTERVAL_SECONDS: u64 = 60;
const MAX_DIR_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySettings {
    /// The backup location.
    pub dir: PathBuf,
    /// New backups are sealed with `recovery.key` (AES-256-GCM).
    pub encrypt: bool,
    /// A scheduled backup this often; 0: none.
    pub backup_interval_seconds: u64,
    /// Backups kept, newest first; 0: no limit.
    pub retention_count: u32,
    /// Backups older than this are deleted; 0: kept whatever their age.
    pub retention_days: u64,
    /// Change-journal entries older than this are deleted; 0: kept forever.
    pub journal_retention_days: u64,
}

impl RecoverySettings {
    /// The config file's settings.
    pub fn from_config(config: &RecoveryConfig) -> RecoverySettings {
        RecoverySettings {
            dir: config.dir.clone(),
            encrypt: config.encrypt.unwrap_or(config.key.is_some()),
            backup_interval_seconds: config.backup_interval_seconds,
            retention_count: config.retention_count,
            retention_days: config.retention_days,
            journal_retention_days: config.journal_retention_days,
        }
    }

    /// The settings in force: the stored ones over the config file's.
    pub async fn load(
        store: &dyn Store,
        config: &RecoveryConfig,
    ) -> Result<RecoverySettings, StoreError> {
        let defaults = RecoverySettings::from_config(config);
        let Some(item) = store.get(SETTINGS, RECOVERY_SETTINGS_KEY).await? else {
            return Ok(defaults);
        };
        let corrupt =
            |e: String| StoreError::Corrupt(format!("{SETTINGS}/{RECOVERY_SETTINGS_KEY}: {e}"));
        let stored: serde_json::Value =
            serde_json::from_slice(&item.value).map_err(|e| corrupt(e.to_string()))?;
        merge_settings(&defaults, &stored).map_err(corrupt)
    }

    /// Checks the settings as a whole; `key_configured`: whether
    /// `recovery.key` is set, which sealing needs.
    pub fn validate(&self, key_configured: bool) -> Result<(), RecoveryError> {
        let invalid = |field: &str, message: &str| {
            Err(RecoveryError::Invalid {
                field: field.into(),
                message: message.into(),
            })
        };
        let dir = self.dir.to_string_lossy();
        if dir.trim().is_empty() || dir.len() > MAX_DIR_LEN || dir.chars().any(char::is_control) {
            return invalid(
                "dir",
                "must be a path of 1 to 1024 characters without control characters",
            );
        }
        if self.dir.components().any(|c| c == Component::ParentDir) {
            return invalid("dir", "must not contain `..`");
        }
        if self.encrypt && !key_configured {
            return invalid(
                "encrypt",
                "needs `recovery.key` in the config file or PORTCULLIS_RECOVERY__KEY",
            );
        }
        let interval = self.backup_interval_seconds;
        if interval != 0 && !(MIN_BACKUP_INTERVAL_SECONDS..=366 * 86_400).contains(&interval) {
            return invalid(
                "backup_interval_seconds",
                "must be 0 (no schedule) or from 60 to 31622400",
            );
        }
        if self.retention_days > 36_500 || self.journal_retention_days > 36_500 {
            return invalid(
                "retention_days",
                "retention_days and journal_retention_days must be at most 36500",
            );
        }
        Ok(())
    }

    /// `changes` (a JSON object) over the settings in force, checked, with
    /// the location made and written to once; stored only when all of that
    /// passed.
    pub async fn update(
        store: &dyn Store,
        config: &RecoveryConfig,
        key_configured: bool,
        changes: &serde_json::Value,
    ) -> Result<RecoverySettings, RecoveryError> {
        if !changes.is_object() {
            return Err(RecoveryError::Invalid {
                field: "body".into(),
                message: "must be a JSON object of settings".into(),
            });
        }
        let current = RecoverySettings::load(store, config).await?;
        let next = merge_settings(&current, changes).map_err(|message| RecoveryError::Invalid {
            field: "body".into(),
            message,
        })?;
        next.validate(key_configured)?;
        if next.dir != current.dir {
            probe_dir(&next.dir).map_err(|e| RecoveryError::Invalid {
                field: "dir".into(),
                message: format!("cannot write backups there: {e}"),
            })?;
        }
        let bytes = serde_json::to_vec(&next).map_err(|e| RecoveryError::Invalid {
            field: "body".into(),
            message: e.to_string(),
        })?;
        store
            .put(SETTINGS, RECOVERY_SETTINGS_KEY, &bytes, Expect::Any)
            .await?;
        Ok(next)
    }

    /// The backups that retention removes from `backups` (newest first),
    /// at `now` (Unix seconds); `keep` is never among them.
    pub fn expired<'m>(&self, backups: &'m [Manifest], keep: &str, now: u64) -> Vec<&'m Manifest> {
        let oldest =
            (self.retention_days > 0).then(|| now.saturating_sub(self.retention_days * 86_400));
        backups
            .iter()
            .enumerate()
            .filter(|(_, m)| m.id != keep)
            .filter(|(i, m)| {
                let over_count = self.retention_count > 0 && *i >= self.retention_count as usize;
                let too_old = oldest.is_some_and(|oldest| m.created < oldest);
                over_count || too_old
            })
            .map(|(_, m)| m)
            .collect()
    }
}

/// Makes `dir` and writes and removes a file in it.
fn probe_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".probe-{}", super::tokens::random_id()));
    std::fs::write(&probe, b"portcullis")?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, created: u64) -> Manifest {
        Manifest {
            id: id.into(),
            label: None,
            created,
            store: "sqlite".into(),
            size: 1,
            checksum: String::new(),
            namespaces: Default::default(),
            format: 1,
            encrypted: false,
        }
    }

    fn settings(count: u32, days: u64) -> RecoverySettings {
        RecoverySettings {
            retention_count: count,
            retention_days: days,
            ..RecoverySettings::from_config(&RecoveryConfig::default())
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_the_young() {
        let day = 86_400;
        let now = 100 * day;
        let backups = [
            manifest("e", now),
            manifest("d", now - day),
            manifest("c", now - 3 * day),
            manifest("b", now - 10 * day),
            manifest("a", now - 40 * day),
        ];
        let ids = |s: &RecoverySettings, keep: &str| -> Vec<String> {
            s.expired(&backups, keep, now)
                .iter()
                .map(|m| m.id.clone())
                .collect()
        };
        assert!(ids(&settings(0, 0), "e").is_empty());
        assert_eq!(ids(&settings(2, 0), "e"), ["c", "b", "a"]);
        assert_eq!(ids(&settings(0, 7), "e"), ["b", "a"]);
        assert_eq!(ids(&settings(4, 30), "e"), ["a"]);
        // The backup just taken stays, however old the clock says it is.
        assert_eq!(ids(&settings(1, 0), "a"), ["d", "c", "b"]);
    }

    #[test]
    fn validation_names_the_field() {
        let field = |s: RecoverySettings, key: bool| match s.validate(key) {
            Err(RecoveryError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let base = settings(0, 0);
        assert!(base.validate(false).is_ok());
        let encrypted = RecoverySettings {
            encrypt: true,
            ..base.clone()
        };
        assert!(encrypted.validate(true).is_ok());
        assert_eq!(field(encrypted, false), "encrypt");
        let climbing = RecoverySettings {
            dir: "var/../../etc".into(),
            ..base.clone()
        };
        assert_eq!(field(climbing, false), "dir");
        let empty = RecoverySettings {
            dir: "".into(),
            ..base.clone()
        };
        assert_eq!(field(empty, false), "dir");
        let hasty = RecoverySettings {
            backup_interval_seconds: 59,
            ..base.clone()
        };
        assert_eq!(field(hasty, false), "backup_interval_seconds");
        let hourly = RecoverySettings {
            backup_interval_seconds: 3600,
            ..base
        };
        assert!(hourly.validate(false).is_ok());
    }
}
