//! Portcullis's own user accounts.

use serde::{Deserialize, Serialize};

/// A user as stored. The password is only ever its Argon2id hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    /// Lower-cased; unique.
    pub email: String,
    pub hashed_password: String,
    pub is_active: bool,
    pub is_verified: bool,
    pub is_superuser: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
}

/// A user as the API shows it: everything but the password hash.
#[derive(Debug, Clone, Serialize)]
pub struct UserView<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub is_active: bool,
    pub is_verified: bool,
    pub is_superuser: bool,
    pub name: Option<&'a str>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl User {
    pub fn view(&self) -> UserView<'_> {
        UserView {
            id: &self.id,
            email: &self.email,
            is_active: self.is_active,
            is_verified: self.is_verified,
            is_superuser: self.is_superuser,
            name: self.name.as_deref(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Checks an e-mail address's shape and returns it normalized (trimmed,
/// lower-cased). Deliverability is what verification is for.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.rsplit_once('@')?;
    let valid = !local.is_empty()
        && local.len() <= 64
        && email.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !local.contains('@');
    valid.then_some(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_or_refused() {
        assert_eq!(
            normalize_email("  Alice@Example.COM "),
            Some("alice@example.com".into())
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "a b@x.io",
            "alice@.io",
            "a@b@c.io",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
    }
}
