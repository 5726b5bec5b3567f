//! Integration tests: the real server, built with `App::build` on port 0,
//! each test with its own SQLite file and policy directory.

mod account_mail;
mod accounts;
mod admin_users;
mod api_keys;
mod bad_input;
mod bus;
mod caching;
mod cli;
mod decisions;
mod entities_schema;
mod ext_authz;
mod helpers;
mod iam;
mod journal;
mod journal_routes;
mod ldap;
mod mfa;
mod oidc;
mod ops;
mod policies;
mod rbac;
mod recovery;
mod resilience;
mod storage;
mod stores;
mod switch;
mod sync;
