//! The LDAP directory (ldap3): a password is checked by binding as the
//! user; users and their groups (nested, by `member` search or by a
//! `memberOf` attribute) are read with the service account.
//!
//! Every call opens its own connection, binds, does its work and unbinds,
//! so a directory restart never leaves a stale connection behind, and runs
//! through the directory's [`Guard`] (retries, then its breaker).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};

use super::resilience::{Guard, read_retry};
use super::{StoreError, unavailable, unreachable};
use crate::config::{LdapConfig, ResilienceConfig};
use crate::domain::{DirectoryGroup, DirectoryIdentity};

/// LDAP result code for a wrong password or an unknown bind DN.
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code for a search base that does not exist.
const NO_SUCH_OBJECT: u32 = 32;

pub struct LdapDirectory {
    name: String,
    config: LdapConfig,
    timeout: Duration,
    pub guard: Guard,
}

/// A user entry as found.
struct UserEntry {
    dn: String,
    attrs: HashMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LdapFailure(String);

fn failure(what: &str, e: impl std::fmt::Display) -> StoreError {
    unavailable(LdapFailure(format!("{what}: {e}")))
}

impl LdapDirectory {
    pub fn new(name: &str, config: LdapConfig, resilience: &ResilienceConfig) -> LdapDirectory {
        LdapDirectory {
            name: name.to_owned(),
            timeout: Duration::from_millis(config.timeout_ms),
            config,
            guard: Guard::new(name, resilience),
        }
    }

    /// Checks `password` by binding as the user. `Ok(None)`: unknown user
    /// or wrong password, which callers must not tell apart.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<DirectoryIdentity>, StoreError> {
        // An empty password would be an unauthenticated bind, which LDAP
        // servers answer with success.
        if username.is_empty() || password.is_empty() {
            return Ok(None);
        }
        self.guard
            .call(read_retry, || {
                self.bounded(async {
                    let mut service = self.service().await?;
                    let Some(user) = self.find_user(&mut service, username).await? else {
                        let _ = service.unbind().await;
                        return Ok(None);
                    };
                    let mut own = self.connect().await?;
                    let bound = own
                        .simple_bind(&user.dn, password)
                        .await
                        .map_err(|e| failure("user bind", e))?;
                    let _ = own.unbind().await;
                    let identity = match bound.rc {
                        0 => Some(self.identity(&mut service, user).await?),
                        INVALID_CREDENTIALS => None,
                        _ => return Err(failure("user bind", bound)),
                    };
                    let _ = service.unbind().await;
                    Ok(identity)
                })
            })
            .await
    }

    /// The user named `username` with its groups, or `None` when the
    /// directory has no such user.
    pub async fn lookup(&self, username: &str) -> Result<Option<DirectoryIdentity>, StoreError> {
        self.guard
            .call(read_retry, || {
                self.bounded(async {
                    let mut service = self.service().await?;
                    let identity = match self.find_user(&mut service, username).await? {
                        Some(user) => Some(self.identity(&mut service, user).await?),
                        None => None,
                    };
                    let _ = service.unbind().await;
                    Ok(identity)
                })
            })
            .await
    }

    /// Connects and binds as the service account.
    pub async fn health(&self) -> Result<(), StoreError> {
        self.guard
            .call(read_retry, || {
                self.bounded(async {
                    let mut service = self.service().await?;
                    let _ = service.unbind().await;
                    Ok(())
                })
            })
            .await
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(failure(
                    "timed out",
                    format!("no answer within {} ms", self.timeout.as_millis()),
                ))
            })
    }

    async fn connect(&self) -> Result<Ldap, StoreError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.config.starttls);
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(unreachable)?;
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(backend = %name, error = %e, "LDAP connection ended with an error.");
            }
        });
        Ok(ldap)
    }

    async fn service(&self) -> Result<Ldap, StoreError> {
        let mut ldap = self.connect().await?;
        ldap.simple_bind(&self.config.bind_dn, self.config.bind_password.expose())
            .await
            .and_then(|r| r.success())
            .map_err(|e| failure("service account bind", e))?;
        Ok(ldap)
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, StoreError> {
        let result = ldap
            .search(base, scope, filter, attrs.to_vec())
            .await
            .map_err(|e| failure("search", e))?;
        match result.1.rc {
            0 => Ok(result.0.into_iter().map(SearchEntry::construct).collect()),
            NO_SUCH_OBJECT => Ok(Vec::new()),
            _ => Err(failure("search", result.1)),
        }
    }

    async fn find_user(
        &self,
        ldap: &mut Ldap,
        username: &str,
    ) -> Result<Option<UserEntry>, StoreError> {
        let c = &self.config;
        let filter = c.user_filter.replace("{username}", &ldap_escape(username));
        let mut attrs = vec![
            c.attributes.username.as_str(),
            c.attributes.email.as_str(),
            c.attributes.name.as_str(),
        ];
        if let Some(member_of) = &c.member_of_attribute {
            attrs.push(member_of);
        }
        let mut found = self
            .search(ldap, &c.user_base, Scope::Subtree, &filter, &attrs)
            .await?;
        // Two entries for one login name is a directory mistake; refusing
        // beats picking one.
        if found.len() > 1 {
            return Err(StoreError::Corrupt(format!(
                "{} entries match the user filter for one login name",
                found.len()
            )));
        }
        Ok(found.pop().map(|e| UserEntry {
            dn: e.dn,
            attrs: e.attrs,
        }))
    }

    async fn identity(
        &self,
        ldap: &mut Ldap,
        user: UserEntry,
    ) -> Result<DirectoryIdentity, StoreError> {
        let a = &self.config.attributes;
        let username = first(&user.attrs, &a.username).ok_or_else(|| {
            StoreError::Corrupt(format!("user {} has no {}", user.dn, a.username))
        })?;
        let (member_of, groups) = self.groups(ldap, &user).await?;
        Ok(DirectoryIdentity {
            directory: self.name.clone(),
            subject: username.clone(),
            username,
            email: first(&user.attrs, &a.email),
            name: first(&user.attrs, &a.name),
            member_of,
            groups,
        })
    }

    /// The user's direct groups and every group they reach, breadth first,
    /// at most `max_group_depth` levels; cycles end where they close.
    async fn groups(
        &self,
        ldap: &mut Ldap,
        user: &UserEntry,
    ) -> Result<(Vec<String>, Vec<DirectoryGroup>), StoreError> {
        // Group DN -> (id, parent DNs).
        let mut known: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
        let direct = self.parents_of(ldap, &user.dn, &user.attrs).await?;
        // Groups still to look up, with the attributes already read for
        // them (what `parents_of` needs in `memberOf` mode).
        let mut frontier: Vec<(String, HashMap<String, Vec<String>>)> = Vec::new();
        for (dn, (id, attrs)) in &direct {
            known.insert(dn.clone(), (id.clone(), BTreeSet::new()));
            frontier.push((dn.clone(), attrs.clone()));
        }
        let mut depth = 1;
        while !frontier.is_empty() && depth < self.config.max_group_depth {
            let mut next = Vec::new();
            for (dn, attrs) in frontier {
                let parents = self.parents_of(ldap, &dn, &attrs).await?;
                for (parent_dn, (id, parent_attrs)) in parents {
                    if let Some((_, edges)) = known.get_mut(&dn) {
                        edges.insert(parent_dn.clone());
                    }
                    if !known.contains_key(&parent_dn) {
                        known.insert(parent_dn.clone(), (id, BTreeSet::new()));
                        next.push((parent_dn, parent_attrs));
                    }
                }
            }
            frontier = next;
            depth += 1;
        }
        let id_of = |dn: &String| known.get(dn).map(|(id, _)| id.clone());
        let member_of = direct.keys().filter_map(id_of).collect();
        let groups = known
            .values()
            .map(|(id, parents)| DirectoryGroup {
                id: id.clone(),
                parents: parents.iter().filter_map(id_of).collect(),
            })
            .collect();
        Ok((member_of, groups))
    }

    /// The groups `dn` is a direct member of: DN -> (id, attributes).
    async fn parents_of(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        attrs: &HashMap<String, Vec<String>>,
    ) -> Result<BTreeMap<String, (String, HashMap<String, Vec<String>>)>, StoreError> {
        let c = &self.config;
        let mut out = BTreeMap::new();
        match &c.member_of_attribute {
            Some(member_of) => {
                for group_dn in values(attrs, member_of) {
                    let group = self.group_attrs(ldap, group_dn).await?;
                    if group.is_empty() {
                        continue; // outside group_base or filter
                    }
                    out.insert(group_dn.clone(), (self.group_id(group_dn, &group), group));
                }
            }
            None => {
                let filter = format!(
                    "(&{}({}={}))",
                    c.group_filter,
                    c.member_attribute,
                    ldap_escape(dn)
                );
                let found = self
                    .search(
                        ldap,
                        &c.group_base,
                        Scope::Subtree,
                        &filter,
                        &[c.attributes.group_name.as_str()],
                    )
                    .await?;
                for entry in found {
                    let id = self.group_id(&entry.dn, &entry.attrs);
                    out.insert(entry.dn, (id, entry.attrs));
                }
            }
        }
        Ok(out)
    }

    /// A group entry's attributes; empty when it is not a group in scope.
    async fn group_attrs(
        &self,
        ldap: &mut Ldap,
        dn: &str,
    ) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let c = &self.config;
        if !ends_with_ignore_case(dn, &c.group_base) {
            return Ok(HashMap::new());
        }
        let mut attrs = vec![c.attributes.group_name.as_str()];
        if let Some(member_of) = &c.member_of_attribute {
            attrs.push(member_of);
        }
        let found = self
            .search(ldap, dn, Scope::Base, &c.group_filter, &attrs)
            .await?;
        Ok(found
            .into_iter()
            .next()
            .map(|e| e.attrs)
            .unwrap_or_default())
    }

    fn group_id(&self, dn: &str, attrs: &HashMap<String, Vec<String>>) -> String {
        first(attrs, &self.config.attributes.group_name).unwrap_or_else(|| dn.to_owned())
    }
}

/// An attribute's values, matching its name without regard to case as LDAP does.
fn values<'a>(attrs: &'a HashMap<String, Vec<String>>, name: &str) -> &'a [String] {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .unwrap_or_default()
}

fn first(attrs: &HashMap<String, Vec<String>>, name: &str) -> Option<String> {
    values(attrs, name).first().cloned()
}

fn ends_with_ignore_case(dn: &str, base: &str) -> bool {
    let (dn, base) = (dn.to_ascii_lowercase(), base.to_ascii_lowercase());
    dn.replace(", ", ",").ends_with(&base.replace(", ", ","))
}
