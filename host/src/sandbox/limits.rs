//! The bounds every guest instance and connection runs under: each limit
//! has a default here, a `weft serve` flag and a per-service override
//! (`COMPONENT@ENDPOINT,name=value`), all parsed by [`Limits::set`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How often the epoch ticker advances. A guest busy in a call yields its
/// thread back to the reactor at every tick, so this bounds how long guest
/// code holds a reactor thread at a stretch, and how far past its deadline
/// a spinning guest can run.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// A call's wall-clock limit, in deadlines: it bounds the time calls wait
/// (a guest sleeping through `wasi:io/poll`) rather than run, which the
/// deadline does not count; time queued after a tick's yield is neither.
pub const WALL_CLOCK_DEADLINES: u32 = 10;

/// Bytes read from a socket per `data-received` call (Twisted reads 64 KiB).
pub const READ_CHUNK: usize = 64 * 1024;

/// How long shutdown waits, by default, for connections to flush and
/// guests to see `connection-lost` before the process exits anyway
/// (`--shutdown-grace`).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// On SIGTERM, how long weft keeps accepting after `/readyz` turns 503
/// (`--drain-delay`): a balancer checking every second or two has marked
/// the process down by then.
pub const DRAIN_DELAY: Duration = Duration::from_secs(5);

/// How long a reload lets connections on the version it replaced run on
/// before closing them (`--drain-timeout`): long enough for downloads and
/// keep-alive clients to finish, short enough that old versions do not
/// pile up.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Most workers one service may run: each is a thread with a reactor and
/// an instance of its own, so more than the machine has cores only costs.
pub const MAX_WORKERS: usize = 256;

/// Elements a guest table may grow to (function tables of language runtimes).
pub const TABLE_ELEMENTS: usize = 20_000;

/// Core instances, tables and memories one component instance may create:
/// enough for any language runtime's component, few enough to bound the host.
pub const MAX_CORE_INSTANCES: usize = 64;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_TABLES: usize = 64;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_MEMORIES: usize = 16;

/// The longest datagram a `udp:` service takes by default
/// (`--max-datagram`): Twisted's `maxPacketSize`.
pub const DEFAULT_MAX_DATAGRAM: usize = 8192;

/// The most a UDP datagram over IPv4 can carry.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Host stack an in-flight guest call runs on, beyond its wasm stack limit.
pub const HOST_STACK_HEADROOM: usize = 1024 * 1024;

/// Per-service limits on guest execution and connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time one call into the guest may run; past it the call traps. Time
    /// the guest was not running is not counted, but a call may not last
    /// more than [`WALL_CLOCK_DEADLINES`] deadlines of wall-clock time.
    pub deadline: Duration,
    /// Linear memory one guest instance may grow to, in bytes.
    pub memory: usize,
    /// Wasm stack one call may use; deeper recursion traps.
    pub stack: usize,
    /// Handles (transports, WASI streams) one instance may hold at once.
    pub handles: usize,
    /// Connections served at once; more wait in the kernel's listen backlog.
    pub max_connections: usize,
    /// Close connections with no traffic for this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Output queued for a connection above which the host stops reading
    /// from its peer until the queue drains.
    pub write_buffer: usize,
    /// Output queued for a connection at which the connection is aborted.
    pub write_limit: usize,
    /// Guest log lines (stdout, stderr, the log interface) per second, per
    /// service; a burst of twice this many passes at once.
    pub log_rate: u32,
    /// Traps within `restart_window` after which the service is marked
    /// failed and refuses connections until the window has passed.
    pub max_restarts: u32,
    /// See `max_restarts`.
    pub restart_window: Duration,
    /// One instance for all connections, or one per connection.
    pub isolation: Isolation,
    /// Workers serving the service, each a reactor thread with its own
    /// listener, instance and connections: nothing is shared between them,
    /// and every other limit applies to each worker on its own.
    pub workers: usize,
    /// Calls (`reactor.call-later`) one instance may have scheduled at once.
    pub timers: usize,
    /// Outbound connections (`reactor.connect`) one instance may have open
    /// or being made at once.
    pub max_outbound: usize,
    /// The longest an outbound connection may take to resolve and connect;
    /// a guest may ask for less.
    pub connect_timeout: Duration,
    /// The longest a TLS handshake (`ssl:` endpoints) may take; the
    /// connection is closed past it, before it reaches the guest.
    pub handshake_timeout: Duration,
    /// The longest a `haproxy:` endpoint waits for a connection's PROXY
    /// header; the connection is closed past it, before it reaches the guest.
    pub proxy_header_timeout: Duration,
    /// The longest datagram a `udp:` service receives or sends; longer
    /// ones are dropped (received) or refused (sent).
    pub max_datagram: usize,
    /// Datagrams per second one instance of a `udp:` service receives,
    /// and as many it sends; a burst of twice this many passes at once.
    /// Past it, received datagrams are dropped and sends refused.
    pub datagram_rate: u32,
    /// The largest value a guest may store in a key-value bucket.
    pub kv_value_size: usize,
    /// Buckets of its own a service may make in the embedded key-value
    /// store.
    pub kv_buckets: usize,
    /// Keys one bucket of the embedded key-value store may hold.
    pub kv_keys: usize,
    /// Bytes (keys and values) one bucket of the embedded key-value store
    /// may hold.
    pub kv_bytes: usize,
    /// Topics one instance may subscribe to at once.
    pub subscriptions: usize,
    /// The largest message a guest may publish.
    pub message_size: usize,
    /// Messages per second one worker's instances may publish together; a
    /// burst of twice this many passes at once. Past it, `publish` is
    /// refused with `rate`.
    pub publish_rate: u32,
    /// Messages waiting to be delivered to one instance; past it the
    /// oldest is dropped, and the instance told how many.
    pub pending_messages: usize,
}

/// How a service maps connections to guest instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// One instance serves every connection, so guest state is shared, as
    /// in a Twisted factory; a trap closes all of its connections.
    Shared,
    /// Each connection gets its own instance: no state is shared between
    /// connections, and a trap closes only the connection that caused it.
    Connection,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(100),
            memory: 64 << 20,
            stack: 512 << 10,
            handles: 50_000,
            max_connections: 10_000,
            idle_timeout: None,
            write_buffer: 1 << 20,
            write_limit: 16 << 20,
            log_rate: 100,
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            isolation: Isolation::Shared,
            // One, so that a service's state is all in one instance, as a
            // Twisted factory's is.
            workers: 1,
            timers: 10_000,
            max_outbound: 100,
            // Twisted's default for client endpoints.
            connect_timeout: Duration::from_secs(30),
            // Ample for a handshake across the world; a client that sends
            // nothing holds a connection slot no longer.
            handshake_timeout: Duration::from_secs(10),
            // A balancer sends the header with its first packet.
            proxy_header_timeout: Duration::from_secs(3),
            max_datagram: DEFAULT_MAX_DATAGRAM,
            datagram_rate: 10_000,
            kv_value_size: 1 << 20,
            kv_buckets: 16,
            kv_keys: 100_000,
            kv_bytes: 64 << 20,
            subscriptions: 100,
            message_size: 64 << 10,
            publish_rate: 10_000,
            pending_messages: 1024,
        }
    }
}

/// The names [`Limits::set`] takes, as flags and per-service overrides.
pub const NAMES: [&str; 28] = [
    "deadline",
    "memory",
    "stack",
    "handles",
    "max-connections",
    "idle-timeout",
    "write-buffer",
    "write-limit",
    "log-rate",
    "max-restarts",
    "restart-window",
    "isolation",
    "workers",
    "timers",
    "max-outbound",
    "connect-timeout",
    "handshake-timeout",
    "proxy-header-timeout",
    "max-datagram",
    "datagram-rate",
    "kv-value-size",
    "kv-buckets",
    "kv-keys",
    "kv-bytes",
    "subscriptions",
    "message-size",
    "publish-rate",
    "pending-messages",
];

impl Limits {
    /// Set the limit `name` (one of [`NAMES`]) from its text form:
    /// durations like `250ms`, `2s`, `5m` (`off` for the idle timeout),
    /// sizes like `64MiB`, `512KiB`, `4096`. Limits that depend on each
    /// other are checked by [`Limits::check`], once all are set.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let bad = |what: &str| format!("{name}={value}: expected {what}");
        let bad_size = |what: &str| bad(&format!("{what} ({SIZE_UNITS})"));
        let bad_duration = |what: &str| bad(&format!("{what} ({DURATION_UNITS})"));
        match name {
            "deadline" => {
                self.deadline = positive(
                    duration(value).ok_or_else(|| bad_duration("a duration such as 100ms"))?,
                    &bad,
                )?
            }
            "memory" => {
                let memory = size(value)
                    .filter(|s| *s >= 1 << 16)
                    .ok_or_else(|| bad_size("a size of at least 64KiB, such as 64MiB"))?;
                if memory > MAX_MEMORY {
                    return Err(bad("at most 4GiB, all that a 32-bit guest can address"));
                }
                self.memory = memory;
            }
            "stack" => {
                self.stack = size(value)
                    .filter(|s| *s >= 16 << 10)
                    .ok_or_else(|| bad_size("a size of at least 16KiB, such as 512KiB"))?
            }
            "handles" => self.handles = count(value).ok_or_else(|| bad("a positive number"))?,
            "max-connections" => {
                self.max_connections = count(value).ok_or_else(|| bad("a positive number"))?
            }
            "idle-timeout" => {
                self.idle_timeout = match value {
                    "off" | "0" => None,
                    _ => Some(positive(
                        duration(value)
                            .ok_or_else(|| bad_duration("a duration such as 5m, or off"))?,
                        &bad,
                    )?),
                }
            }
            "write-buffer" => {
                self.write_buffer = size(value)
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad_size("a size such as 1MiB"))?
            }
            "write-limit" => {
                self.write_limit = size(value)
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad_size("a size such as 16MiB"))?
            }
            "log-rate" => {
                self.log_rate = count(value)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad("lines per second, such as 100"))?
            }
            "max-restarts" => {
                self.max_restarts = count(value)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad("a positive number"))?
            }
            "restart-window" => {
                self.restart_window = positive(
                    duration(value).ok_or_else(|| bad_duration("a duration such as 60s"))?,
                    &bad,
                )?
            }
            "isolation" => {
                self.isolation = value.parse().map_err(|_| bad("shared or connection"))?
            }
            "workers" => {
                self.workers = match value {
                    "auto" => std::thread::available_parallelism().map_or(1, usize::from),
                    _ => count(value).filter(|n| *n <= MAX_WORKERS).ok_or_else(|| {
                        bad(&format!("a number of workers up to {MAX_WORKERS}, or auto"))
                    })?,
                }
            }
            "timers" => self.timers = count(value).ok_or_else(|| bad("a positive number"))?,
            "max-outbound" => {
                self.max_outbound = count(value).ok_or_else(|| bad("a positive number"))?
            }
            "connect-timeout" => {
                self.connect_timeout = positive(
                    duration(value).ok_or_else(|| bad_duration("a duration such as 5s"))?,
                    &bad,
                )?
            }
            "handshake-timeout" => {
                self.handshake_timeout = positive(
                    duration(value).ok_or_else(|| bad_duration("a duration such as 10s"))?,
                    &bad,
                )?
            }
            "proxy-header-timeout" => {
                self.proxy_header_timeout = positive(
                    duration(value).ok_or_else(|| bad_duration("a duration such as 3s"))?,
                    &bad,
                )?
            }
            "max-datagram" => {
                self.max_datagram = size(value)
                    .filter(|s| (1..=MAX_UDP_PAYLOAD).contains(s))
                    .ok_or_else(|| {
                        bad_size("a size from 1 to 65507, the most a UDP datagram holds")
                    })?
            }
            "datagram-rate" => {
                self.datagram_rate = count(value)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad("datagrams per second, such as 10000"))?
            }
            "kv-value-size" => {
                self.kv_value_size = size(value)
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad_size("a size such as 1MiB"))?
            }
            "kv-buckets" => {
                self.kv_buckets = count(value).ok_or_else(|| bad("a positive number"))?
            }
            "kv-keys" => self.kv_keys = count(value).ok_or_else(|| bad("a positive number"))?,
            "kv-bytes" => {
                self.kv_bytes = size(value)
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad_size("a size such as 64MiB"))?
            }
            "subscriptions" => {
                self.subscriptions = count(value).ok_or_else(|| bad("a positive number"))?
            }
            "message-size" => {
                self.message_size = size(value)
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad_size("a size such as 64KiB"))?
            }
            "publish-rate" => {
                self.publish_rate = count(value)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad("messages per second, such as 10000"))?
            }
            "pending-messages" => {
                self.pending_messages = count(value).ok_or_else(|| bad("a positive number"))?
            }
            _ => {
                return Err(format!(
                    "unknown limit `{name}`: the limits are {}",
                    NAMES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Check the limits that depend on each other, once every flag and
    /// override is set, so that the order they were given in does not
    /// matter; the message shows the values in effect.
    pub fn check(&self) -> Result<(), String> {
        if self.write_limit < self.write_buffer {
            let defaults = Limits::default();
            let given = |value: usize, default: usize| {
                let shown = show_size(value as u64);
                if value == default {
                    format!("{shown}, the default")
                } else {
                    shown
                }
            };
            return Err(format!(
                "write-limit ({}) must be at least write-buffer ({}): \
                 a connection is aborted at its write limit, and reading \
                 pauses at its write buffer",
                given(self.write_limit, defaults.write_limit),
                given(self.write_buffer, defaults.write_buffer),
            ));
        }
        Ok(())
    }
}

/// The units [`Limits::set`] takes for sizes, as error messages list them.
const SIZE_UNITS: &str = "sizes take B, KiB, MiB, GiB or K, M, G, all binary: 64MiB";

/// The units [`Limits::set`] takes for durations.
const DURATION_UNITS: &str = "durations take ms, s, m or h: 250ms, 1.5s";

/// The most linear memory a guest can have: all that 32-bit wasm addresses.
const MAX_MEMORY: usize = 4 << 30;

/// `size` in the largest binary unit that divides it: `32MiB`, `1536KiB`.
pub fn show_size(size: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if size >= 1 << shift && size.is_multiple_of(1 << shift) {
            return format!("{}{unit}", size >> shift);
        }
    }
    format!("{size}B")
}

/// `size` to a tenth of the largest binary unit it reaches, rounded up, so
/// that a limit of the size shown holds it: `13.2MiB` for 13,828,096.
pub fn show_size_near(size: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if size >= 1 << shift {
            let tenths = (size * 10).div_ceil(1 << shift);
            return match tenths % 10 {
                0 => format!("{}{unit}", tenths / 10),
                rest => format!("{}.{rest}{unit}", tenths / 10),
            };
        }
    }
    format!("{size}B")
}

impl FromStr for Isolation {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "shared" => Ok(Isolation::Shared),
            "connection" => Ok(Isolation::Connection),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isolation::Shared => "shared",
            Isolation::Connection => "connection",
        })
    }
}

fn positive(duration: Duration, bad: &dyn Fn(&str) -> String) -> Result<Duration, String> {
    if duration.is_zero() {
        return Err(bad("a duration above zero"));
    }
    Ok(duration)
}

/// A size given on the command line (`1GiB`, `512MiB`), or why not.
pub fn parse_size(text: &str) -> Result<usize, String> {
    size(text).ok_or_else(|| format!("expected a size ({SIZE_UNITS})"))
}

/// A duration given on the command line (`250ms`, `2s`, `5m`), or why not.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    duration(text).ok_or_else(|| format!("expected a duration ({DURATION_UNITS})"))
}

/// `250ms`, `2s`, `1.5s`, `5m`, `1h`; `0` needs no unit.
fn duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// `4096`, `512KiB`, `64MiB`, `1GiB`, `1TiB` (also `K`, `M`, `G`, `T`,
/// binary, in any case: `64mib`).
fn size(text: &str) -> Option<usize> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().ok()?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

fn count(text: &str) -> Option<usize> {
    text.parse().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_can_be_set_by_name() {
        let mut limits = Limits::default();
        let values = [
            ("deadline", "250ms"),
            ("memory", "32MiB"),
            ("stack", "1MiB"),
            ("handles", "100"),
            ("max-connections", "7"),
            ("idle-timeout", "5m"),
            ("write-buffer", "64KiB"),
            ("write-limit", "2M"),
            ("log-rate", "10"),
            ("max-restarts", "3"),
            ("restart-window", "1.5s"),
            ("isolation", "connection"),
            ("workers", "3"),
            ("timers", "50"),
            ("max-outbound", "3"),
            ("connect-timeout", "2s"),
            ("handshake-timeout", "3s"),
            ("proxy-header-timeout", "1s"),
            ("max-datagram", "1KiB"),
            ("datagram-rate", "500"),
            ("kv-value-size", "4KiB"),
            ("kv-buckets", "2"),
            ("kv-keys", "10"),
            ("kv-bytes", "1MiB"),
            ("subscriptions", "5"),
            ("message-size", "1KiB"),
            ("publish-rate", "20"),
            ("pending-messages", "8"),
        ];
        assert_eq!(values.len(), NAMES.len());
        for (name, value) in values {
            limits.set(name, value).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(
            limits,
            Limits {
                deadline: Duration::from_millis(250),
                memory: 32 << 20,
                stack: 1 << 20,
                handles: 100,
                max_connections: 7,
                idle_timeout: Some(Duration::from_secs(300)),
                write_buffer: 64 << 10,
                write_limit: 2 << 20,
                log_rate: 10,
                max_restarts: 3,
                restart_window: Duration::from_millis(1500),
                isolation: Isolation::Connection,
                workers: 3,
                timers: 50,
                max_outbound: 3,
                connect_timeout: Duration::from_secs(2),
                handshake_timeout: Duration::from_secs(3),
                proxy_header_timeout: Duration::from_secs(1),
                max_datagram: 1 << 10,
                datagram_rate: 500,
                kv_value_size: 4 << 10,
                kv_buckets: 2,
                kv_keys: 10,
                kv_bytes: 1 << 20,
                subscriptions: 5,
                message_size: 1 << 10,
                publish_rate: 20,
                pending_messages: 8,
            }
        );
        assert!(limits.set("max-datagram", "65508").is_err());
        limits.set("idle-timeout", "off").unwrap();
        assert_eq!(limits.idle_timeout, None);
        limits.set("workers", "auto").unwrap();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(limits.workers, cores);
    }

    #[test]
    fn sizes_take_binary_units_in_any_case() {
        assert_eq!(size("64mib"), Some(64 << 20));
        assert_eq!(size("64MiB"), Some(64 << 20));
        assert_eq!(size("2k"), Some(2 << 10));
        assert_eq!(size("4GiB"), Some(4 << 30));
        assert_eq!(
            size("64MB"),
            None,
            "decimal or binary: refused, not guessed"
        );
        assert_eq!(show_size(32 << 20), "32MiB");
        assert_eq!(show_size(1536 << 10), "1536KiB");
        assert_eq!(show_size(1000), "1000B");
        assert_eq!(show_size_near(13_828_096), "13.2MiB");
        assert_eq!(show_size_near(64 << 20), "64MiB");
        assert_eq!(show_size_near(1536 << 10), "1.5MiB");
        assert_eq!(show_size_near(1000), "1000B");
    }

    #[test]
    fn dependent_limits_are_checked_together_whatever_their_order() {
        let mut limits = Limits::default();
        limits.set("write-buffer", "32MiB").unwrap();
        let error = limits.check().unwrap_err();
        assert!(
            error.starts_with(
                "write-limit (16MiB, the default) must be at least write-buffer (32MiB)"
            ),
            "{error}"
        );
        limits.set("write-limit", "64MiB").unwrap();
        assert_eq!(limits.check(), Ok(()));
        let mut limits = Limits::default();
        limits.set("write-limit", "64MiB").unwrap();
        limits.set("write-buffer", "32MiB").unwrap();
        assert_eq!(limits.check(), Ok(()));
        limits.set("write-limit", "1KiB").unwrap();
        assert!(
            limits
                .check()
                .unwrap_err()
                .starts_with("write-limit (1KiB) must be at least write-buffer (32MiB)")
        );
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let limits = Limits::default();
        for (name, value, expected) in [
            ("deadline", "fast", "deadline=fast: expected a duration"),
            ("deadline", "0s", "expected a duration above zero"),
            ("memory", "64", "expected a size of at least 64KiB"),
            ("memory", "12XB", "expected a size"),
            (
                "memory",
                "64MB",
                "sizes take B, KiB, MiB, GiB or K, M, G, all binary",
            ),
            ("memory", "5GiB", "memory=5GiB: expected at most 4GiB"),
            ("memory", "1TiB", "memory=1TiB: expected at most 4GiB"),
            ("deadline", "100us", "durations take ms, s, m or h"),
            ("max-connections", "0", "expected a positive number"),
            ("isolation", "thread", "expected shared or connection"),
            (
                "workers",
                "0",
                "expected a number of workers up to 256, or auto",
            ),
            ("workers", "257", "expected a number of workers up to 256"),
            ("colour", "blue", "unknown limit `colour`"),
        ] {
            let error = limits.clone().set(name, value).unwrap_err();
            assert!(error.contains(expected), "{name}={value}: {error}");
        }
    }
}
