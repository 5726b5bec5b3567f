//! The config loader: any text as `portcullis.toml`, then, after a line
//! `---`, `PORTCULLIS_*` overrides one per line (`NAME=value`). A config
//! is accepted whole or refused with an error; it never panics, and an
//! accepted one loads again the same from its own overrides-free text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, vars) = text.split_once("\n---\n").unwrap_or((text, ""));
    let vars: Vec<(String, String)> = vars
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let with_vars = Config::from_toml_str_and_vars(toml, vars.clone());
    if vars.is_empty() {
        let plain = Config::from_toml_str(toml);
        assert_eq!(
            with_vars.is_ok(),
            plain.is_ok(),
            "no overrides must mean the plain parse"
        );
    }
    if let Err(e) = with_vars {
        assert!(!e.to_string().is_empty(), "an error says what is wrong");
    }
});
