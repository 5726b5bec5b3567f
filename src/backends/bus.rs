//! `RedisBus`: change notices between Portcullis instances over Redis
//! pub/sub, so every instance serving the same store reloads what another
//! one changed.
//!
//! A notice is `<instance id> <topic>`; an instance ignores its own. After
//! its subscription drops it reconnects with backoff and reports `Resync`,
//! since notices sent meanwhile are lost and everything must be reloaded.

use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Config, Pool, Runtime};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{StoreError, unavailable};

/// What a notice asks the receiver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Another instance changed this topic (e.g. `policies`, `entities`).
    Changed(String),
    /// Notices may have been missed: reload everything.
    Resync,
}

pub struct RedisBus {
    url: String,
    channel: String,
    instance: String,
    pool: Pool,
}

impl RedisBus {
    pub fn new(url: &str, channel: &str) -> Result<RedisBus, StoreError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let pool = Config::from_url(url)
            .create_pool(Some(Runtime::Tokio1))
            .map_err(unavailable)?;
        Ok(RedisBus {
            url: url.to_owned(),
            channel: channel.to_owned(),
            instance: format!("{}-{nanos}", std::process::id()),
            pool,
        })
    }

    /// Tells the other instances that `topic` changed.
    #[tracing::instrument(name = "bus.publish", skip(self), fields(backend = "redis-bus"))]
    pub async fn publish(&self, topic: &str) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        conn.publish::<_, _, ()>(&self.channel, format!("{} {topic}", self.instance))
            .await
            .map_err(unavailable)
    }

    /// Notices from other instances, until the receiver is dropped.
    /// Subscribes before returning, so no later publish is missed.
    pub async fn subscribe(&self) -> Result<mpsc::Receiver<Notice>, StoreError> {
        let client = redis::Client::open(self.url.as_str()).map_err(unavailable)?;
        let mut pubsub = client.get_async_pubsub().await.map_err(unavailable)?;
        pubsub.subscribe(&self.channel).await.map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(256);
        let (channel, instance) = (self.channel.clone(), self.instance.clone());
        tokio::spawn(async move {
            let mut pubsub = Some(pubsub);
            let mut delay = Duration::from_millis(100);
            loop {
                if let Some(mut active) = pubsub.take() {
                    let mut messages = active.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(payload) = message.get_payload::<String>() else {
                            continue;
                        };
                        let Some((from, topic)) = payload.split_once(' ') else {
                            continue;
                        };
                        if from != instance
                            && tx.send(Notice::Changed(topic.to_owned())).await.is_err()
                        {
                            return;
                        }
                    }
                    tracing::warn!(channel = %channel, "Change-notice subscription dropped; reconnecting.");
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                let reconnected = async {
                    let mut fresh = client.get_async_pubsub().await?;
                    fresh.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(fresh)
                };
                if let Ok(fresh) = reconnected.await {
                    delay = Duration::from_millis(100);
                    pubsub = Some(fresh);
                    if tx.send(Notice::Resync).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}
