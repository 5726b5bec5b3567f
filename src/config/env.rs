//! `PORTCULLIS_*` environment overrides, merged into the parsed TOML table
//! before it is deserialized, so they go through the same validation.

use super::ConfigError;

pub const ENV_PREFIX: &str = "PORTCULLIS_";

/// Variables with the prefix that are not config keys (read by `main`).
const NOT_KEYS: &[&str] = &["PORTCULLIS_CONFIG"];

pub(super) fn apply_overrides(
    table: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, raw) in vars {
        let Some(path) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if NOT_KEYS.contains(&var.as_str()) {
            continue;
        }
        let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(ConfigError::Env {
                var,
                message: "use `__` between a section and its key, e.g. PORTCULLIS_SERVER__LISTEN"
                    .to_owned(),
            });
        }
        insert(table, &keys, parse_value(&raw)).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
    }
    Ok(())
}

/// `42`, `true`, `"quoted"` and `[1, 2]` are TOML values; anything else is a string.
fn parse_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn insert(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is a value, not a section"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}
