//! `SqliteStore`: the embedded default store, one file (or `:memory:`).
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly
//! one connection (no `SQLITE_BUSY` upgrades, transactions serialize in
//! order) while reads use a separate pool under WAL and never wait for them.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use tracing::instrument;

use super::{
    Expect, Op, ScanPage, Store, StoreError, Versioned, check_items, check_ops, decode_cursor,
    prefix_end, unavailable, unreachable, version_of,
};

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "kv",
    include_str!("../../backends/sqlite/migrations/0001_kv.sql"),
)];

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let in_memory = path.as_os_str() == ":memory:";
        let options = if in_memory {
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(unavailable)?
        } else {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(unavailable)?;
            }
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        }
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);

        // An in-memory database lives in its connection: keep exactly one,
        // forever, and let reads share it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await
                .map_err(unavailable)?
        };

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
        migrator.run(&writer).await.map_err(unavailable)?;
        Ok(SqliteStore { reader, writer })
    }
}

async fn current_version(
    conn: &mut SqliteConnection,
    ns: &str,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    let row = sqlx::query("SELECT version FROM kv WHERE ns = ? AND key = ?")
        .bind(ns)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    row.map(|r| version_of(r.get::<i64, _>(0))).transpose()
}

fn check(ns: &str, key: &str, expect: Expect, found: Option<u64>) -> Result<(), StoreError> {
    let ok = match expect {
        Expect::Any => true,
        Expect::Absent => found.is_none(),
        Expect::Version(v) => found == Some(v),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            ns: ns.to_owned(),
            key: key.to_owned(),
            expected: expect,
            found,
        })
    }
}

async fn next_version(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let row = sqlx::query("UPDATE kv_sequence SET last = last + 1 WHERE id = 1 RETURNING last")
        .fetch_one(&mut *conn)
        .await
        .map_err(unavailable)?;
    version_of(row.get::<i64, _>(0))
}

/// Applies one op inside an open transaction.
async fn apply(conn: &mut SqliteConnection, op: &Op) -> Result<u64, StoreError> {
    match op {
        Op::Put {
            ns,
            key,
            value,
            expect,
        } => {
            let found = current_version(conn, ns, key).await?;
            check(ns, key, *expect, found)?;
            let version = next_version(conn).await?;
            sqlx::query(
                "INSERT INTO kv (ns, key, value, version) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, version = excluded.version",
            )
            .bind(ns)
            .bind(key)
            .bind(value)
            .bind(i64::try_from(version).map_err(|_| StoreError::Corrupt("version overflow".into()))?)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
            Ok(version)
        }
        Op::Delete { ns, key, expect } => {
            let found = current_version(conn, ns, key).await?;
            check(ns, key, *expect, found)?;
            sqlx::query("DELETE FROM kv WHERE ns = ? AND key = ?")
                .bind(ns)
                .bind(key)
                .execute(&mut *conn)
                .await
                .map_err(unavailable)?;
            Ok(u64::from(found.is_some()))
        }
        Op::Clear { ns } => {
            sqlx::query("DELETE FROM kv WHERE ns = ?")
                .bind(ns)
                .execute(&mut *conn)
                .await
                .map_err(unavailable)?;
            Ok(0)
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    #[instrument(name = "store.get", skip(self), fields(backend = "sqlite"))]
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        let row = sqlx::query("SELECT value, version FROM kv WHERE ns = ? AND key = ?")
            .bind(ns)
            .bind(key)
            .fetch_optional(&self.reader)
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

    #[instrument(name = "store.scan", skip(self), fields(backend = "sqlite"))]
    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let limit = limit.clamp(1, 10_000);
        // A key range on the (ns, key) index; keys compare bytewise.
        let end = prefix_end(prefix);
        let rows = sqlx::query(
            "SELECT key, value, version FROM kv \
             WHERE ns = ? AND key >= ? AND (? IS NULL OR key < ?) AND (? IS NULL OR key > ?) \
             ORDER BY key LIMIT ?",
        )
        .bind(ns)
        .bind(prefix)
        .bind(end.as_deref())
        .bind(end.as_deref())
        .bind(after.as_deref())
        .bind(after.as_deref())
        .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
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

    #[instrument(name = "store.transact", skip_all, fields(backend = "sqlite", ops = ops.len()))]
    async fn transact(&self, ops: Vec<Op>) -> Result<Vec<u64>, StoreError> {
        check_ops(&ops)?;
        let mut tx = self.writer.begin().await.map_err(unreachable)?;
        let mut versions = Vec::with_capacity(ops.len());
        for op in &ops {
            // An early return drops `tx`, which rolls everything back.
            versions.push(apply(&mut tx, op).await?);
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(versions)
    }

    #[instrument(name = "store.import", skip(self, items), fields(backend = "sqlite", keys = items.len()))]
    async fn import(&self, ns: &str, items: &[(String, Versioned)]) -> Result<(), StoreError> {
        check_items(ns, items)?;
        let mut tx = self.writer.begin().await.map_err(unreachable)?;
        let mut highest = 0;
        // 4 parameters a row, well under SQLite's limit of 32,766 per statement.
        for chunk in items.chunks(500) {
            let mut insert = sqlx::QueryBuilder::new("INSERT INTO kv (ns, key, value, version) ");
            let mut versions = Vec::with_capacity(chunk.len());
            for (_, item) in chunk {
                let version = i64::try_from(item.version)
                    .map_err(|_| StoreError::Corrupt("version overflow".into()))?;
                highest = highest.max(version);
                versions.push(version);
            }
            insert.push_values(
                chunk.iter().zip(versions),
                |mut row, ((key, item), version)| {
                    row.push_bind(ns)
                        .push_bind(key)
                        .push_bind(&item.value)
                        .push_bind(version);
                },
            );
            insert.push(
                " ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, version = excluded.version",
            );
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        sqlx::query("UPDATE kv_sequence SET last = max(last, ?) WHERE id = 1")
            .bind(highest)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT ns FROM kv ORDER BY ns")
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    #[instrument(name = "store.health", skip(self), fields(backend = "sqlite"))]
    async fn health(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
