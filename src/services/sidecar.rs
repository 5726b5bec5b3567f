//! Request-to-Cedar mapping for ext_authz: the first route rule whose
//! method, host and path pattern match a checked request gives the Cedar
//! action, the resource (its id filled from the path's captures) and the
//! context (templates filled from the request).
//!
//! Owns: matching and templates. Must not: know HTTP types; the caller hands
//! over the request's parts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::authz::UidInput;
use crate::config::{ExtAuthzConfig, RouteRule, Segment};

/// The parts of a checked request the rules look at.
pub struct CheckedRequest<'a> {
    pub method: &'a str,
    /// The original path, prefix stripped, without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// `Host`, without the port.
    pub host: Option<&'a str>,
    /// The client's address as the proxy saw it.
    pub source: Option<IpAddr>,
    /// A header's value by lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

/// What a request maps to.
#[derive(Debug, PartialEq)]
pub enum Mapping {
    Decide {
        /// Index of the rule, for logs.
        rule: usize,
        action: UidInput,
        resource: UidInput,
        context: Value,
        require_principal: bool,
    },
    Unmatched,
}

pub fn map_request(config: &ExtAuthzConfig, request: &CheckedRequest) -> Mapping {
    for (index, rule) in config.rules.iter().enumerate() {
        if let Some(captures) = matches(rule, request) {
            let fill = |template: &str| fill(template, &captures, request);
            let Some(id) = fill(&rule.resource.id) else {
                continue;
            };
            let mut context = Map::new();
            for (name, value) in &rule.context {
                match value {
                    Value::String(template) => {
                        if let Some(text) = fill(template) {
                            context.insert(name.clone(), Value::String(text));
                        }
                    }
                    other => {
                        context.insert(name.clone(), other.clone());
                    }
                }
            }
            return Mapping::Decide {
                rule: index,
                action: UidInput::Text(rule.action.clone()),
                resource: UidInput::Typed {
                    type_name: rule.resource.type_name.clone(),
                    id,
                },
                context: Value::Object(context),
                require_principal: rule.require_principal,
            };
        }
    }
    Mapping::Unmatched
}

/// The rule's captures when it matches the request.
fn matches(rule: &RouteRule, request: &CheckedRequest) -> Option<BTreeMap<String, String>> {
    if !rule.methods.is_empty() && !rule.methods.iter().any(|m| m == request.method) {
        return None;
    }
    if let Some(host) = &rule.host
        && !request.host.is_some_and(|h| h.eq_ignore_ascii_case(host))
    {
        return None;
    }
    let path = request.path.strip_prefix('/')?;
    let mut parts: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    let mut captures = BTreeMap::new();
    for (index, segment) in rule.path.segments.iter().enumerate() {
        match segment {
            Segment::Literal(text) => {
                if parts.get(index) != Some(&text.as_str()) {
                    return None;
                }
            }
            Segment::Capture(name) => {
                let part = parts.get(index).filter(|p| !p.is_empty())?;
                captures.insert(name.clone(), percent_decode(part)?);
            }
            Segment::Rest(name) => {
                let rest = parts.split_off(index.min(parts.len())).join("/");
                captures.insert(name.clone(), percent_decode(&rest)?);
                return Some(captures);
            }
        }
    }
    (parts.len() == rule.path.segments.len()).then_some(captures)
}

/// A template with `{…}` placeholders filled; `None` when a placeholder
/// names something the request does not have.
fn fill(
    template: &str,
    captures: &BTreeMap<String, String>,
    request: &CheckedRequest,
) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        let name = &rest[start + 1..end];
        // A capture of the rule's own wins over the built-in names.
        let value = match name {
            _ if captures.contains_key(name) => captures.get(name).cloned(),
            "method" => Some(request.method.to_owned()),
            "path" => Some(request.path.to_owned()),
            "host" => request.host.map(str::to_owned),
            "source" => request.source.map(|ip| ip.to_string()),
            _ => match name.split_once(':') {
                Some(("header", header)) => (request.header)(&header.to_ascii_lowercase()),
                Some(("query", key)) => query_value(request.query, key),
                _ => None,
            },
        }?;
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// `%XX` decoding of a path segment; `None` when it is not valid UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> ExtAuthzConfig {
        let config = crate::config::Config::from_toml_str(text).unwrap();
        config.ext_authz
    }

    const RULES: &str = r#"
[[ext_authz.rules]]
methods = ["GET"]
path = "/documents/{id}"
action = 'Docs::Action::"read"'
resource = { type = "Docs::Document", id = "{id}" }
context = { ip = "{source}", mfa = false, trace = "{header:X-Trace}", page = "{query:page}" }

[[ext_authz.rules]]
path = "/files/{*path}"
host = "files.example.com"
action = 'Docs::Action::"read"'
resource = { type = "Docs::Folder", id = "{path}" }
require_principal = false
"#;

    fn request<'a>(
        method: &'a str,
        path: &'a str,
        host: Option<&'a str>,
        header: &'a dyn Fn(&str) -> Option<String>,
    ) -> CheckedRequest<'a> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        CheckedRequest {
            method,
            path,
            query,
            host,
            source: Some("10.0.0.7".parse().unwrap()),
            header,
        }
    }

    #[test]
    fn captures_fill_the_resource_and_templates_the_context() {
        let config = config(RULES);
        let headers = |name: &str| (name == "x-trace").then(|| "abc".to_owned());
        let mapped = map_request(
            &config,
            &request("GET", "/documents/a%20b?page=2", None, &headers),
        );
        let Mapping::Decide {
            rule,
            resource,
            context,
            require_principal,
            ..
        } = mapped
        else {
            panic!("the first rule matches");
        };
        assert_eq!(rule, 0);
        assert!(require_principal);
        assert_eq!(
            resource,
            UidInput::Typed {
                type_name: "Docs::Document".into(),
                id: "a b".into()
            }
        );
        assert_eq!(
            context,
            serde_json::json!({"ip": "10.0.0.7", "mfa": false, "trace": "abc", "page": "2"})
        );
        // A missing header leaves its attribute out.
        let none = |_: &str| None;
        let Mapping::Decide { context, .. } =
            map_request(&config, &request("GET", "/documents/x", None, &none))
        else {
            panic!("matches");
        };
        assert_eq!(context, serde_json::json!({"ip": "10.0.0.7", "mfa": false}));
    }

    #[test]
    fn method_host_and_shape_must_all_match() {
        let config = config(RULES);
        let none = |_: &str| None;
        for (method, path, host) in [
            ("POST", "/documents/x", None),
            ("GET", "/documents", None),
            ("GET", "/documents/", None),
            ("GET", "/documents/x/y", None),
            ("GET", "/files/a/b", Some("other.example.com")),
            ("GET", "/files/a/b", None),
        ] {
            assert_eq!(
                map_request(&config, &request(method, path, host, &none)),
                Mapping::Unmatched,
                "{method} {path} {host:?}"
            );
        }
        let Mapping::Decide {
            resource,
            require_principal,
            ..
        } = map_request(
            &config,
            &request("DELETE", "/files/a/b%2Fc", Some("FILES.example.com"), &none),
        )
        else {
            panic!("the rest capture matches");
        };
        assert!(!require_principal);
        assert_eq!(
            resource,
            UidInput::Typed {
                type_name: "Docs::Folder".into(),
                id: "a/b/c".into()
            }
        );
    }

    #[test]
    fn bad_patterns_and_rules_are_named() {
        for (rule, key) in [
            ("path = \"documents\"", "path"),
            ("path = \"/a/{*rest}/b\"", "path"),
            ("path = \"/a/x{id}\"", "path"),
            ("path = \"/a/{}\"", "path"),
        ] {
            let text = format!(
                "[[ext_authz.rules]]\n{rule}\naction = 'A::\"b\"'\nresource = {{ type = \"A\", id = \"x\" }}\n"
            );
            let err = crate::config::Config::from_toml_str(&text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
        let text = "[[ext_authz.rules]]\npath = \"/a\"\naction = 'not a uid'\nresource = { type = \"A\", id = \"x\" }\n";
        let err = crate::config::Config::from_toml_str(text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ext_authz.rules[0].action"), "{err}");
    }
}
