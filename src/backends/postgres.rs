//! `PostgresStore`: the key-value store in one Postgres schema (pooled).
//!
//! Every op is one statement that checks and writes at once (`INSERT … ON
//! CONFLICT`, `UPDATE … WHERE version = $n`), so concurrent writers on one
//! version race inside Postgres and exactly one wins; a transaction makes a
//! multi-op `transact` all-or-nothing.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use tracing::instrument;

use super::{
    Expect, Op, ScanPage, Store, StoreError, Versioned, check_items, check_ops, decode_cursor,
    holdable, unavailable, unreachable, version_of,
};

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "kv",
    include_str!("../../backends/postgres/migrations/0001_kv.sql"),
)];

pub struct PostgresStore {
    pool: PgPool,
}

/// The longest wait for a connection, reconnects included.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

fn raw_version(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::Corrupt("version overflow".into()))
}

/// Schema names are interpolated into DDL, so only plain identifiers pass.
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl PostgresStore {
    /// Connects, creates `schema` if needed, and migrates it.
    pub async fn open(
        url: &str,
        schema: &str,
        max_connections: u32,
    ) -> Result<PostgresStore, StoreError> {
        if !valid_schema_name(schema) {
            return Err(StoreError::Corrupt(format!(
                "invalid schema name `{schema}`"
            )));
        }
        let options = PgConnectOptions::from_str(url).map_err(unavailable)?;
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(unavailable)?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&mut conn)
            .await
            .map_err(unavailable)?;
        conn.close().await.map_err(unavailable)?;

        // While the server is down, sqlx keeps reconnecting until the
        // acquire timeout: that bounds how long a call hangs before it
        // fails, and so how soon the breaker opens (found by `make chaos`:
        // at 5 s, a write took 15 s to fail with its retries, and a 6 s
        // outage never opened the breaker).
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.options([("search_path", schema)]))
            .await
            .map_err(unavailable)?;
        let migrator = Migrator {
            migrations: Cow::Owned(
                MIGRATIONS
                    .iter()
                    .map(|(version, name, sql)| {
                        Migration::new(
                            *version,
                            Cow::Borrowed(*name),
                            MigrationType::Simple,
                            Cow::Borrowed(*sql),
                            false,
                        )
                    })
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        migrator.run(&pool).await.map_err(unavailable)?;
        Ok(PostgresStore { pool })
    }
}

async fn found_version(
    conn: &mut PgConnection,
    ns: &str,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    let row = sqlx::query("SELECT version FROM kv WHERE ns = $1 AND key = $2")
        .bind(ns)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    row.map(|r| version_of(r.get(0))).transpose()
}

async fn conflict(conn: &mut PgConnection, ns: &str, key: &str, expected: Expect) -> StoreError {
    match found_version(conn, ns, key).await {
        Ok(found) => StoreError::Conflict {
            ns: ns.to_owned(),
            key: key.to_owned(),
            expected,
            found,
        },
        Err(e) => e,
    }
}

async fn apply(conn: &mut PgConnection, op: &Op) -> Result<u64, StoreError> {
    let (ns, key, expect) = match op {
        Op::Put {
            ns, key, expect, ..
        }
        | Op::Delete { ns, key, expect } => (ns, key, *expect),
        Op::Clear { ns } => {
            sqlx::query("DELETE FROM kv WHERE ns = $1")
                .bind(ns)
                .execute(&mut *conn)
                .await
                .map_err(unavailable)?;
            return Ok(0);
        }
    };
    let query = match (op, expect) {
        (Op::Put { value, .. }, Expect::Any) => sqlx::query(
            "INSERT INTO kv (ns, key, value, version) VALUES ($1, $2, $3, nextval('kv_version')) \
             ON CONFLICT (ns, key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version \
             RETURNING version",
        )
        .bind(ns)
        .bind(key)
        .bind(value),
        (Op::Put { value, .. }, Expect::Absent) => sqlx::query(
            "INSERT INTO kv (ns, key, value, version) VALUES ($1, $2, $3, nextval('kv_version')) \
             ON CONFLICT (ns, key) DO NOTHING RETURNING version",
        )
        .bind(ns)
        .bind(key)
        .bind(value),
        (Op::Put { value, .. }, Expect::Version(v)) => sqlx::query(
            "UPDATE kv SET value = $3, version = nextval('kv_version') \
             WHERE ns = $1 AND key = $2 AND version = $4 RETURNING version",
        )
        .bind(ns)
        .bind(key)
        .bind(value)
        .bind(raw_version(v)?),
        (_, Expect::Any) => {
            sqlx::query("DELETE FROM kv WHERE ns = $1 AND key = $2 RETURNING version")
                .bind(ns)
                .bind(key)
        }
        (_, Expect::Version(v)) => sqlx::query(
            "DELETE FROM kv WHERE ns = $1 AND key = $2 AND version = $3 RETURNING version",
        )
        .bind(ns)
        .bind(key)
        .bind(raw_version(v)?),
        // Deleting what must not exist: a no-op, or a conflict.
        (_, Expect::Absent) => {
            return match found_version(conn, ns, key).await? {
                None => Ok(0),
                Some(_) => Err(conflict(conn, ns, key, expect).await),
            };
        }
    };
    let row = query
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    match (op, row, expect) {
        (Op::Put { .. }, Some(row), _) => version_of(row.get(0)),
        (_, Some(_), _) => Ok(1),
        (Op::Delete { .. }, None, Expect::Any) => Ok(0),
        (_, None, _) => Err(conflict(conn, ns, key, expect).await),
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    #[instrument(name = "store.get", skip(self), fields(backend = "postgres"))]
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        // Postgres refuses a NUL even in a query; no stored key has one.
        if !holdable(ns) || !holdable(key) {
            return Ok(None);
        }
        let row = sqlx::query("SELECT value, version FROM kv WHERE ns = $1 AND key = $2")
            .bind(ns)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|r| {
            Ok(Versioned {
                value: r.get(0),
                version: version_of(r.get(1))?,
            })
        })
        .transpose()
    }

    #[instrument(name = "store.put", skip(self, value), fields(backend = "postgres"))]
    async fn put(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        expect: Expect,
    ) -> Result<u64, StoreError> {
        let op = Op::Put {
            ns: ns.to_owned(),
            key: key.to_owned(),
            value: value.to_vec(),
            expect,
        };
        check_ops(std::slice::from_ref(&op))?;
        let mut conn = self.pool.acquire().await.map_err(unreachable)?;
        apply(&mut conn, &op).await
    }

    #[instrument(name = "store.delete", skip(self), fields(backend = "postgres"))]
    async fn delete(&self, ns: &str, key: &str, expect: Expect) -> Result<bool, StoreError> {
        let op = Op::Delete {
            ns: ns.to_owned(),
            key: key.to_owned(),
            expect,
        };
        check_ops(std::slice::from_ref(&op))?;
        let mut conn = self.pool.acquire().await.map_err(unreachable)?;
        Ok(apply(&mut conn, &op).await? == 1)
    }

    #[instrument(name = "store.scan", skip(self), fields(backend = "postgres"))]
    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let limit = limit.clamp(1, 10_000);
        if ![ns, prefix]
            .into_iter()
            .chain(after.as_deref())
            .all(holdable)
        {
            return Ok(ScanPage::default());
        }
        let rows = sqlx::query(
            "SELECT key, value, version FROM kv \
             WHERE ns = $1 AND starts_with(key, $2) AND ($3::text IS NULL OR key > $3) \
             ORDER BY key LIMIT $4",
        )
        .bind(ns)
        .bind(prefix)
        .bind(after.as_deref())
        .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let items = rows
            .into_iter()
            .map(|r| {
                Ok((
                    r.get::<String, _>(0),
                    Versioned {
                        value: r.get(1),
                        version: version_of(r.get(2))?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(ScanPage::from_overfetch(items, limit))
    }

    #[instrument(name = "store.transact", skip_all, fields(backend = "postgres", ops = ops.len()))]
    async fn transact(&self, ops: Vec<Op>) -> Result<Vec<u64>, StoreError> {
        check_ops(&ops)?;
        let mut tx = self.pool.begin().await.map_err(unreachable)?;
        let mut results = Vec::with_capacity(ops.len());
        for op in &ops {
            // An early return drops `tx`, which rolls everything back.
            results.push(apply(&mut tx, op).await?);
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(results)
    }

    #[instrument(name = "store.import", skip(self, items), fields(backend = "postgres", keys = items.len()))]
    async fn import(&self, ns: &str, items: &[(String, Versioned)]) -> Result<(), StoreError> {
        check_items(ns, items)?;
        let mut tx = self.pool.begin().await.map_err(unreachable)?;
        let mut highest = 0;
        for chunk in items.chunks(1000) {
            let mut keys = Vec::with_capacity(chunk.len());
            let mut values = Vec::with_capacity(chunk.len());
            let mut versions = Vec::with_capacity(chunk.len());
            for (key, item) in chunk {
                let version = raw_version(item.version)?;
                highest = highest.max(version);
                keys.push(key.as_str());
                values.push(item.value.as_slice());
                versions.push(version);
            }
            sqlx::query(
                "INSERT INTO kv (ns, key, value, version) \
                 SELECT $1, k, v, n FROM UNNEST($2::text[], $3::bytea[], $4::bigint[]) AS t(k, v, n) \
                 ON CONFLICT (ns, key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version",
            )
            .bind(ns)
            .bind(&keys)
            .bind(&values)
            .bind(&versions)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        if highest > 0 {
            sqlx::query(
                "SELECT setval('kv_version', GREATEST($1, (SELECT last_value FROM kv_version)))",
            )
            .bind(highest)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT ns FROM kv ORDER BY ns")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    #[instrument(name = "store.health", skip(self), fields(backend = "postgres"))]
    async fn health(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
