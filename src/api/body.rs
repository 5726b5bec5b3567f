//! Request bodies: read up to the configured limit, then parse as JSON with
//! errors that say what was wrong (syntax → 400, shape → 422, size → 413).
//! A JSON body may come without a `Content-Type`, as cedar-agent clients send
//! it, or as `curl -d` sends it; any other type than JSON is refused (415).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};

/// A JSON body parsed into `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let declared = content_type(&req);
        let bytes = read_body(req, state.body_limit).await?;
        check_json_type(declared.as_deref(), &bytes)?;
        parse_json(&bytes, state.limits.json_depth).map(JsonBody)
    }
}

/// The declared media type, lower-cased, without parameters.
fn content_type(req: &Request) -> Option<String> {
    let value = req.headers().get(CONTENT_TYPE)?.to_str().unwrap_or("?");
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// A JSON body's declared type must be JSON (`application/json`, or any
/// `+json` type), or absent. `curl -d` declares a form and `fetch` plain
/// text: those pass when the body is a JSON object or array (ASVS 13.2.5).
fn check_json_type(declared: Option<&str>, bytes: &[u8]) -> Result<(), ApiError> {
    let Some(declared) = declared else {
        return Ok(());
    };
    let json = declared == "application/json"
        || declared.starts_with("application/") && declared.ends_with("+json");
    let sent_as_text = matches!(declared, "application/x-www-form-urlencoded" | "text/plain")
        && matches!(bytes.trim_ascii_start().first(), Some(b'{' | b'['));
    if json || sent_as_text || bytes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(declared.to_owned()))
    }
}

/// A body that is either an HTML/OAuth2 form (`application/x-www-form-urlencoded`)
/// or JSON (anything else), parsed into `T`. A "form" whose body is a JSON
/// object is read as JSON: that is what `curl -d '{…}'` sends.
pub struct FormOrJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for FormOrJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let declared = content_type(&req);
        let form = declared.as_deref() == Some("application/x-www-form-urlencoded");
        let bytes = read_body(req, state.body_limit).await?;
        let json_object = bytes.trim_ascii_start().starts_with(b"{");
        if form && !json_object {
            serde_urlencoded::from_bytes(&bytes)
                .map(FormOrJson)
                .map_err(|e| ApiError::InvalidBody(e.to_string()))
        } else {
            check_json_type(declared.as_deref(), &bytes)?;
            parse_json(&bytes, state.limits.json_depth).map(FormOrJson)
        }
    }
}

/// The raw body bytes, up to the configured limit.
pub struct RawBody(pub Bytes);

impl FromRequest<Arc<AppState>> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        read_body(req, state.body_limit).await.map(RawBody)
    }
}

async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let body: Body = req.into_body();
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(e) => Err(ApiError::MalformedJson(format!(
            "request body could not be read: {e}"
        ))),
    }
}

/// `bytes` as `T`, refused before parsing when arrays and objects nest
/// deeper than `max_depth`.
fn parse_json<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, ApiError> {
    if nests_deeper_than(bytes, max_depth) {
        return Err(ApiError::JsonTooDeep { limit: max_depth });
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidBody(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    })
}

/// Whether the JSON text `bytes` opens more than `max_depth` arrays and
/// objects inside one another; brackets inside strings do not count. One
/// pass, no allocation: it runs before every body is parsed.
pub fn nests_deeper_than(bytes: &[u8], max_depth: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// `{"confirm": true}`: what a request that replaces everything of
/// something must carry, so it is never sent by accident.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmed {
    #[serde(default)]
    confirm: bool,
}

impl Confirmed {
    /// 400 with "`what`: send {"confirm": true}" unless confirmed.
    pub fn require(&self, what: &str) -> Result<(), super::ApiError> {
        if self.confirm {
            Ok(())
        } else {
            Err(super::ApiError::InvalidParameter(format!(
                "{what}: send {{\"confirm\": true}}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check_json_type, nests_deeper_than};

    #[test]
    fn a_json_body_must_be_declared_json_or_nothing() {
        let body = br#"{"a": 1}"#;
        for fine in [
            None,
            Some("application/json"),
            Some("application/merge-patch+json"),
            Some("application/x-www-form-urlencoded"),
            Some("text/plain"),
        ] {
            assert!(check_json_type(fine, body).is_ok(), "{fine:?}");
        }
        for refused in ["application/xml", "multipart/form-data", "text/html", "?"] {
            assert!(check_json_type(Some(refused), body).is_err(), "{refused}");
        }
        // A form or plain text that is not JSON is not taken for it.
        assert!(check_json_type(Some("text/plain"), b"a=1").is_err());
    }

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(!nests_deeper_than(br#"{"a": [1, {"b": 2}]}"#, 3));
        assert!(nests_deeper_than(br#"{"a": [1, {"b": 2}]}"#, 2));
        assert!(!nests_deeper_than(br#"{"a": "[[[[{{{{"}"#, 1));
        assert!(!nests_deeper_than(br#"{"a": "\"[[["}"#, 1));
        assert!(nests_deeper_than(br#"{"a": "\\", "b": [[]]}"#, 2));
        assert!(!nests_deeper_than(b"[]", 1));
        assert!(nests_deeper_than(&[b'['; 129], 128));
        assert!(!nests_deeper_than(b"", 1));
    }
}
