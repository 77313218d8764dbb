//! The Redis key-value backend: a bucket is the keys under one prefix
//! (`weft:kv:NAMESPACE/BUCKET:`) of a server the operator named. Each
//! worker connects on first use; after a failure, calls fail at once for
//! a second, then the next one connects again. Publish/subscribe sends
//! its messages through it too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue};

use crate::capability::keyvalue::spec::RedisAddress;

/// The longest a connect or a command may take before the call fails as
/// unavailable: a guest call waits for it, within its wall-clock cap
/// (ten deadlines, 1 s by default).
const TIMEOUT: Duration = Duration::from_millis(300);

/// After a failure, calls fail at once for this long rather than each
/// waiting out a connect to a server that is away.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Keys `list-keys` asks Redis for at a time.
const SCAN_COUNT: usize = 100;

/// One worker's connection to one Redis server.
pub struct Redis {
    address: RedisAddress,
    /// What it backs, for the log: `key-value`, `publish/subscribe`.
    backs: &'static str,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Since when calls fail at once, and until when, after a failure.
    down: Mutex<Option<Instant>>,
}

/// Redis did not answer, or refused the command.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl Redis {
    pub fn new(address: RedisAddress, backs: &'static str) -> Self {
        Self {
            address,
            backs,
            connection: tokio::sync::Mutex::new(None),
            down: Mutex::new(None),
        }
    }

    /// The connection, connecting if there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, Unavailable> {
        let down = *self.down.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = down
            && Instant::now() < until
        {
            return Err(Unavailable(format!("{} is unreachable", self.address)));
        }
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(self.address.host.clone(), self.address.port),
            redis: redis::RedisConnectionInfo {
                db: self.address.db,
                ..Default::default()
            },
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT);
        let connected = match redis::Client::open(info) {
            Ok(client) => client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match connected {
            Ok(connection) => {
                let was_down = self.down.lock().unwrap_or_else(|p| p.into_inner()).take();
                if was_down.is_some() {
                    tracing::info!("{} backend {} is back", self.backs, self.address);
                }
                *slot = Some(connection.clone());
                Ok(connection)
            }
            Err(error) => Err(self.failed(error)),
        }
    }

    /// Note a failure: calls fail at once for a while, then connect anew.
    fn failed(&self, error: String) -> Unavailable {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if down.is_none() {
            tracing::warn!(
                "{} backend {} is unavailable ({error}); its calls fail until it is back",
                self.backs,
                self.address
            );
        }
        *down = Some(Instant::now() + RETRY_AFTER);
        Unavailable(format!("{}: {error}", self.address))
    }

    /// Run `command`; a connection that failed is dropped, to be made
    /// again. Boxed: a connect and a query make a future of kilobytes,
    /// which every key-value call's future would otherwise carry and
    /// move, embedded buckets' too.
    fn run<'a, T: FromRedisValue + Send + 'a>(
        &'a self,
        command: &'a Cmd,
    ) -> Pin<Box<dyn Future<Output = Result<T, Unavailable>> + Send + 'a>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            match command.query_async(&mut connection).await {
                Ok(value) => Ok(value),
                Err(error)
                    if error.is_io_error()
                        || error.is_timeout()
                        || error.is_connection_dropped() =>
                {
                    *self.connection.lock().await = None;
                    Err(self.failed(error.to_string()))
                }
                Err(error) => Err(Unavailable(error.to_string())),
            }
        })
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        self.run(redis::cmd("GET").arg(key)).await
    }

    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), Unavailable> {
        self.run(redis::cmd("SET").arg(key).arg(value)).await
    }

    pub async fn delete(&self, keys: &[String]) -> Result<(), Unavailable> {
        if keys.is_empty() {
            return Ok(());
        }
        self.run(redis::cmd("DEL").arg(keys)).await
    }

    pub async fn exists(&self, key: &str) -> Result<bool, Unavailable> {
        self.run(redis::cmd("EXISTS").arg(key)).await
    }

    /// INCRBY: Redis keeps the number in decimal, as the embedded store
    /// does.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, Unavailable> {
        self.run(redis::cmd("INCRBY").arg(key).arg(delta)).await
    }

    /// Set `key` to `value` if it holds `expected` (`None`: unset), in one
    /// step on the server; whether it did.
    pub async fn swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, Unavailable> {
        const SWAP: &str = "local current = redis.call('GET', KEYS[1]) \
            if (ARGV[1] == '0' and current == false) or (ARGV[1] == '1' and current == ARGV[2]) then \
                redis.call('SET', KEYS[1], ARGV[3]) return 1 \
            end return 0";
        let mut command = redis::cmd("EVAL");
        command.arg(SWAP).arg(1).arg(key);
        match expected {
            Some(expected) => command.arg("1").arg(expected),
            None => command.arg("0").arg(""),
        };
        command.arg(value);
        let swapped: i64 = self.run(&command).await?;
        Ok(swapped == 1)
    }

    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Unavailable> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.run(redis::cmd("MGET").arg(keys)).await
    }

    pub async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), Unavailable> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut command = redis::cmd("MSET");
        for (key, value) in pairs {
            command.arg(key).arg(value);
        }
        self.run(&command).await
    }

    /// PUBLISH `message` on `channel`.
    pub async fn publish(&self, channel: &str, message: &[u8]) -> Result<(), Unavailable> {
        let _receivers: i64 = self
            .run(redis::cmd("PUBLISH").arg(channel).arg(message))
            .await?;
        Ok(())
    }

    /// One page of the keys under `prefix` (with the prefix), and the
    /// cursor of the next page; Redis's SCAN may repeat a key across
    /// pages.
    pub async fn scan(
        &self,
        prefix: &str,
        cursor: u64,
    ) -> Result<(Vec<String>, Option<u64>), Unavailable> {
        let pattern = format!("{}*", escape_glob(prefix));
        let mut command = redis::cmd("SCAN");
        command
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let (next, keys): (u64, Vec<String>) = self.run(&command).await?;
        Ok((keys, (next != 0).then_some(next)))
    }
}

/// `text` as a SCAN pattern that matches only itself.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
