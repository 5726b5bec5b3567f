//! The LDAP directory (ldap3): a password is checked by binding as the
//! user; users and their groups (nested, by `member` search or by a
//! `memberOf` attribute) are read with the service account.
//!
//! Every call opens its own connection, binds, does its work and unbinds,
//! so a directory restart never leaves a stale connection behind, and runs
//! through the directory's [`Guard`] (retries, then its breaker).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};

use super::resilience::{Guard, read_retry};
use super::{StoreError, unavailable, unreachable};
use crate::config::{LdapConfig, ResilienceConfig};
use crate::domain::{DirectoryGroup, DirectoryIdentity};

/// LDAP result code for a wrong password or an unknown bind DN.
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code for a search base that does not exist.
const NO_SUCH_OBJECT: u32 = 32;
/// Entries per page of a listing (below OpenLDAP's default size limit).
const PAGE_SIZE: i32 = 400;
/// The operational attribute that stamps an entry's last change.
const MODIFIED: &str = "modifyTimestamp";

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

/// Everything a sync reads from one directory; DNs are normalized.
#[derive(Debug)]
pub struct Listing {
    pub directory: String,
    /// Memberships come from `member_of` (users' and groups' own
    /// attribute), not from groups' member lists.
    pub by_member_of: bool,
    pub users: Vec<ListedUser>,
    pub groups: Vec<ListedGroup>,
    /// DNs of the users `disabled_filter` matches.
    pub disabled: BTreeSet<String>,
}

#[derive(Debug)]
pub struct ListedUser {
    pub dn: String,
    pub username: String,
    /// `modifyTimestamp`, when the directory keeps it.
    pub modified: Option<String>,
    /// Read for every user in a full listing; in a changed listing only
    /// for users changed since the stamp.
    pub details: Option<UserDetails>,
    /// Group DNs from the `member_of` attribute, when configured.
    pub member_of: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDetails {
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug)]
pub struct ListedGroup {
    pub dn: String,
    pub id: String,
    /// Member DNs, users and groups.
    pub members: Vec<String>,
    pub member_of: Vec<String>,
    pub modified: Option<String>,
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

    /// Every user and group in scope, read in pages for a sync.
    ///
    /// With `since` (an LDAP generalized time), only users changed at or
    /// after it come with their attributes (`details`); the others are
    /// listed by DN, login name, stamp and groups alone. Groups always come
    /// whole: their member lists are what memberships are made of.
    pub async fn listing(&self, since: Option<&str>) -> Result<Listing, StoreError> {
        self.guard
            .call(read_retry, || async {
                let mut service = self.bounded(self.service()).await?;
                let listing = self.list(&mut service, since).await;
                let _ = service.unbind().await;
                listing
            })
            .await
    }

    async fn list(&self, ldap: &mut Ldap, since: Option<&str>) -> Result<Listing, StoreError> {
        let c = &self.config;
        let a = &c.attributes;
        let all_users = c.user_filter.replace("{username}", "*");
        let mut brief = vec![a.username.as_str(), MODIFIED];
        if let Some(member_of) = &c.member_of_attribute {
            brief.push(member_of);
        }
        let mut full = brief.clone();
        full.extend([a.email.as_str(), a.name.as_str()]);
        let (user_attrs, changed_filter) = match since {
            None => (&full, None),
            Some(stamp) => (
                &brief,
                Some(format!(
                    "(&{all_users}({MODIFIED}>={}))",
                    ldap_escape(stamp)
                )),
            ),
        };
        let mut details: HashMap<String, UserDetails> = HashMap::new();
        if let Some(filter) = &changed_filter {
            for entry in self.paged(ldap, &c.user_base, filter, &full).await? {
                details.insert(normalize_dn(&entry.dn), self.details(&entry.attrs));
            }
        }
        let mut users = Vec::new();
        for entry in self
            .paged(ldap, &c.user_base, &all_users, user_attrs)
            .await?
        {
            let Some(username) = first(&entry.attrs, &a.username) else {
                continue; // not a login: nothing to import
            };
            let dn = normalize_dn(&entry.dn);
            let detail = match since {
                None => Some(self.details(&entry.attrs)),
                Some(_) => details.remove(&dn),
            };
            users.push(ListedUser {
                member_of: self.member_of_dns(&entry.attrs),
                modified: first(&entry.attrs, MODIFIED),
                username,
                details: detail,
                dn,
            });
        }
        let mut group_attrs = vec![a.group_name.as_str(), c.member_attribute.as_str(), MODIFIED];
        if let Some(member_of) = &c.member_of_attribute {
            group_attrs.push(member_of);
        }
        let groups = self
            .paged(ldap, &c.group_base, &c.group_filter, &group_attrs)
            .await?
            .into_iter()
            .map(|entry| ListedGroup {
                id: self.group_id(&entry.dn, &entry.attrs),
                members: values(&entry.attrs, &c.member_attribute)
                    .iter()
                    .map(|dn| normalize_dn(dn))
                    .collect(),
                member_of: self.member_of_dns(&entry.attrs),
                modified: first(&entry.attrs, MODIFIED),
                dn: normalize_dn(&entry.dn),
            })
            .collect();
        let disabled = match &c.disabled_filter {
            Some(filter) => self
                .paged(
                    ldap,
                    &c.user_base,
                    &format!("(&{all_users}{filter})"),
                    &["1.1"],
                )
                .await?
                .into_iter()
                .map(|entry| normalize_dn(&entry.dn))
                .collect(),
            None => BTreeSet::new(),
        };
        Ok(Listing {
            directory: self.name.clone(),
            by_member_of: c.member_of_attribute.is_some(),
            users,
            groups,
            disabled,
        })
    }

    fn details(&self, attrs: &HashMap<String, Vec<String>>) -> UserDetails {
        let a = &self.config.attributes;
        UserDetails {
            email: first(attrs, &a.email),
            name: first(attrs, &a.name),
        }
    }

    fn member_of_dns(&self, attrs: &HashMap<String, Vec<String>>) -> Vec<String> {
        match &self.config.member_of_attribute {
            Some(member_of) => values(attrs, member_of)
                .iter()
                .map(|dn| normalize_dn(dn))
                .collect(),
            None => Vec::new(),
        }
    }

    /// A subtree search read page by page; each page must come within the
    /// directory's timeout.
    async fn paged(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, StoreError> {
        let adapters: Vec<Box<dyn Adapter<'_, &str, Vec<&str>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(PAGE_SIZE)),
        ];
        let mut stream = self
            .bounded(async {
                ldap.streaming_search_with(adapters, base, Scope::Subtree, filter, attrs.to_vec())
                    .await
                    .map_err(|e| failure("search", e))
            })
            .await?;
        let mut out = Vec::new();
        loop {
            let next = self
                .bounded(async { stream.next().await.map_err(|e| failure("search", e)) })
                .await?;
            match next {
                Some(entry) => out.push(SearchEntry::construct(entry)),
                None => break,
            }
        }
        let done = stream.finish().await;
        match done.rc {
            0 => Ok(out),
            NO_SUCH_OBJECT => Ok(Vec::new()),
            _ => Err(failure("search", done)),
        }
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
            // A directory's mail attribute is whatever was typed into it.
            email_verified: false,
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

/// A DN as listings compare them: lower case, no space after separators.
fn normalize_dn(dn: &str) -> String {
    dn.to_ascii_lowercase().replace(", ", ",")
}

fn ends_with_ignore_case(dn: &str, base: &str) -> bool {
    let (dn, base) = (dn.to_ascii_lowercase(), base.to_ascii_lowercase());
    dn.replace(", ", ",").ends_with(&base.replace(", ", ","))
}
