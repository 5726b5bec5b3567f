//! `RedisStore`: the key-value store in Redis, under one key prefix.
//!
//! Per namespace `ns`: hash `<prefix>kv:<ns>` (key → value), hash
//! `<prefix>ver:<ns>` (key → version) and sorted set `<prefix>idx:<ns>` (keys,
//! for ordered scans with `ZRANGEBYLEX`); set `<prefix>namespaces`; counter
//! `<prefix>seq` for versions. Writes and scans are Lua scripts, which Redis
//! runs atomically: a `transact` checks every expectation first and writes
//! only when all hold, so it is all-or-nothing.

use std::sync::LazyLock;

use async_trait::async_trait;
use deadpool_redis::redis::{self, Script};
use deadpool_redis::{Config, Pool, Runtime};
use tracing::instrument;

use super::{
    Expect, Op, ScanPage, Store, StoreError, Versioned, check_items, check_ops, decode_cursor,
    unavailable, unreachable,
};

/// ARGV: prefix, op count, then 5 per op: kind (P/D/C), ns, key, expect
/// (`any`, `absent` or a version), value. Returns `{"ok", r1, …}` or
/// `{"conflict", op index, found version or ""}`.
static TRANSACT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local prefix, n = ARGV[1], tonumber(ARGV[2])
local overlay, cleared = {}, {}
local function found(ns, key)
  local id = ns .. "\0" .. key
  if overlay[id] ~= nil then return overlay[id] end
  if cleared[ns] then return false end
  local v = redis.call("HGET", prefix .. "ver:" .. ns, key)
  if v then return v end
  return false
end
local results = {}
for i = 0, n - 1 do
  local b = 3 + i * 5
  local kind, ns, key, expect = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  if kind == "C" then
    cleared[ns] = true
    for id in pairs(overlay) do
      if string.sub(id, 1, #ns + 1) == ns .. "\0" then overlay[id] = false end
    end
    results[i + 1] = "0"
  else
    local current = found(ns, key)
    local ok = expect == "any" or (expect == "absent" and current == false) or (current ~= false and current == expect)
    if not ok then
      return {"conflict", tostring(i), current or ""}
    end
    if kind == "P" then
      local v = tostring(redis.call("INCR", prefix .. "seq"))
      overlay[ns .. "\0" .. key] = v
      results[i + 1] = v
    else
      overlay[ns .. "\0" .. key] = false
      results[i + 1] = current and "1" or "0"
    end
  end
end
for i = 0, n - 1 do
  local b = 3 + i * 5
  local kind, ns, key, value = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 4]
  local kv, ver, idx = prefix .. "kv:" .. ns, prefix .. "ver:" .. ns, prefix .. "idx:" .. ns
  if kind == "C" then
    redis.call("DEL", kv, ver, idx)
    redis.call("SREM", prefix .. "namespaces", ns)
  elseif kind == "P" then
    redis.call("HSET", kv, key, value)
    redis.call("HSET", ver, key, results[i + 1])
    redis.call("ZADD", idx, 0, key)
    redis.call("SADD", prefix .. "namespaces", ns)
  else
    redis.call("HDEL", kv, key)
    redis.call("HDEL", ver, key)
    redis.call("ZREM", idx, key)
    if redis.call("ZCARD", idx) == 0 then
      redis.call("SREM", prefix .. "namespaces", ns)
    end
  end
end
table.insert(results, 1, "ok")
return results
"#,
    )
});

/// ARGV: prefix, ns, min, max, limit. Returns key, value, version triples.
static SCAN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local prefix, ns = ARGV[1], ARGV[2]
local keys = redis.call("ZRANGEBYLEX", prefix .. "idx:" .. ns, ARGV[3], ARGV[4], "LIMIT", 0, tonumber(ARGV[5]))
local out = {}
for _, key in ipairs(keys) do
  table.insert(out, key)
  table.insert(out, redis.call("HGET", prefix .. "kv:" .. ns, key) or "")
  table.insert(out, redis.call("HGET", prefix .. "ver:" .. ns, key) or "0")
end
return out
"#,
    )
});

/// ARGV: prefix, ns, then key, value, version triples. Returns "ok".
static IMPORT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local prefix, ns = ARGV[1], ARGV[2]
local kv, ver, idx = prefix .. "kv:" .. ns, prefix .. "ver:" .. ns, prefix .. "idx:" .. ns
local highest = 0
for i = 3, #ARGV, 3 do
  redis.call("HSET", kv, ARGV[i], ARGV[i + 1])
  redis.call("HSET", ver, ARGV[i], ARGV[i + 2])
  redis.call("ZADD", idx, 0, ARGV[i])
  local v = tonumber(ARGV[i + 2])
  if v > highest then highest = v end
end
if #ARGV >= 3 then redis.call("SADD", prefix .. "namespaces", ns) end
local seq = tonumber(redis.call("GET", prefix .. "seq") or "0")
if highest > seq then redis.call("SET", prefix .. "seq", highest) end
return "ok"
"#,
    )
});

pub struct RedisStore {
    pool: Pool,
    prefix: String,
}

fn parse_version(raw: &str) -> Result<u64, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("version `{raw}` is not a number")))
}

impl RedisStore {
    /// Connects a pool to `url`; every key starts with `prefix`.
    pub async fn open(
        url: &str,
        prefix: &str,
        max_connections: usize,
    ) -> Result<RedisStore, StoreError> {
        let mut config = Config::from_url(url);
        config.pool = Some(deadpool_redis::PoolConfig::new(max_connections));
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(unavailable)?;
        let store = RedisStore {
            pool,
            prefix: prefix.to_owned(),
        };
        store.health().await?;
        Ok(store)
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, StoreError> {
        self.pool.get().await.map_err(unreachable)
    }

    /// Removes every key under this store's prefix.
    pub async fn purge(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(unavailable)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

fn encode_expect(expect: Expect) -> String {
    match expect {
        Expect::Any => "any".into(),
        Expect::Absent => "absent".into(),
        Expect::Version(v) => v.to_string(),
    }
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    #[instrument(name = "store.get", skip(self), fields(backend = "redis"))]
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        let mut conn = self.conn().await?;
        let (value, version): (Option<Vec<u8>>, Option<String>) = redis::pipe()
            .atomic()
            .hget(format!("{}kv:{ns}", self.prefix), key)
            .hget(format!("{}ver:{ns}", self.prefix), key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match (value, version) {
            (Some(value), Some(version)) => Ok(Some(Versioned {
                value,
                version: parse_version(&version)?,
            })),
            _ => Ok(None),
        }
    }

    #[instrument(name = "store.scan", skip(self), fields(backend = "redis"))]
    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let limit = limit.clamp(1, 10_000);
        // Lexicographic bounds; UTF-8 never contains 0xFF, so `prefix` + 0xFF
        // is above every key that starts with `prefix`.
        let min: Vec<u8> = match &after {
            Some(after) if after.as_str() >= prefix => [b"(", after.as_bytes()].concat(),
            _ if prefix.is_empty() => b"-".to_vec(),
            _ => [b"[", prefix.as_bytes()].concat(),
        };
        let max: Vec<u8> = if prefix.is_empty() {
            b"+".to_vec()
        } else {
            [b"(", prefix.as_bytes(), &[0xff]].concat()
        };
        let mut conn = self.conn().await?;
        let flat: Vec<Vec<u8>> = SCAN
            .arg(&self.prefix)
            .arg(ns)
            .arg(min)
            .arg(max)
            .arg(limit + 1)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut items = Vec::with_capacity(flat.len() / 3);
        for triple in flat.chunks_exact(3) {
            let key = String::from_utf8(triple[0].clone())
                .map_err(|_| StoreError::Corrupt("key is not UTF-8".into()))?;
            let version = parse_version(&String::from_utf8_lossy(&triple[2]))?;
            items.push((
                key,
                Versioned {
                    value: triple[1].clone(),
                    version,
                },
            ));
        }
        Ok(ScanPage::from_overfetch(items, limit))
    }

    #[instrument(name = "store.transact", skip_all, fields(backend = "redis", ops = ops.len()))]
    async fn transact(&self, ops: Vec<Op>) -> Result<Vec<u64>, StoreError> {
        check_ops(&ops)?;
        let mut invocation = TRANSACT.prepare_invoke();
        invocation.arg(&self.prefix).arg(ops.len());
        for op in &ops {
            match op {
                Op::Put {
                    ns,
                    key,
                    value,
                    expect,
                } => invocation
                    .arg("P")
                    .arg(ns)
                    .arg(key)
                    .arg(encode_expect(*expect))
                    .arg(value.as_slice()),
                Op::Delete { ns, key, expect } => invocation
                    .arg("D")
                    .arg(ns)
                    .arg(key)
                    .arg(encode_expect(*expect))
                    .arg(""),
                Op::Clear { ns } => invocation.arg("C").arg(ns).arg("").arg("any").arg(""),
            };
        }
        let mut conn = self.conn().await?;
        let reply: Vec<String> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match reply.first().map(String::as_str) {
            Some("ok") => reply[1..].iter().map(|r| parse_version(r)).collect(),
            Some("conflict") if reply.len() == 3 => {
                let index: usize = reply[1].parse().unwrap_or(0);
                let (ns, key, expected) = match ops.get(index) {
                    Some(
                        Op::Put {
                            ns, key, expect, ..
                        }
                        | Op::Delete { ns, key, expect },
                    ) => (ns.clone(), key.clone(), *expect),
                    _ => return Err(StoreError::Corrupt("conflict on a clear".into())),
                };
                let found = if reply[2].is_empty() {
                    None
                } else {
                    Some(parse_version(&reply[2])?)
                };
                Err(StoreError::Conflict {
                    ns,
                    key,
                    expected,
                    found,
                })
            }
            _ => Err(StoreError::Corrupt(format!("unexpected reply {reply:?}"))),
        }
    }

    #[instrument(name = "store.import", skip(self, items), fields(backend = "redis", keys = items.len()))]
    async fn import(&self, ns: &str, items: &[(String, Versioned)]) -> Result<(), StoreError> {
        check_items(ns, items)?;
        let mut conn = self.conn().await?;
        // Chunks keep each script short; a switch holds writes, so the
        // chunks cannot interleave with other writers.
        for chunk in items.chunks(1000) {
            let mut invocation = IMPORT.prepare_invoke();
            invocation.arg(&self.prefix).arg(ns);
            for (key, item) in chunk {
                invocation
                    .arg(key)
                    .arg(item.value.as_slice())
                    .arg(item.version);
            }
            invocation
                .invoke_async::<String>(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}namespaces", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        names.sort();
        Ok(names)
    }

    #[instrument(name = "store.health", skip(self), fields(backend = "redis"))]
    async fn health(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
