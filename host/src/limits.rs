//! The bounds every guest instance and connection runs under, with their
//! defaults. Each is a named value here, never a number inline elsewhere.

use std::time::Duration;

/// How often the epoch ticker advances. A guest busy in a call yields its
/// thread back to the reactor at every tick, so this bounds how long guest
/// code can hold a reactor thread at a stretch.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Bytes read from a socket per `data-received` call (Twisted reads 64 KiB).
pub const READ_CHUNK: usize = 64 * 1024;

/// How long a closing connection keeps draining what the peer still sends
/// after our FIN, so that the peer reads our last bytes instead of a reset.
pub const LINGER: Duration = Duration::from_secs(2);

/// How long shutdown waits for connections to flush and guests to see
/// `connection-lost` before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Per-service limits on guest execution and connections.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Wall-clock budget of one call into the guest; past it the call traps.
    pub call_deadline: Duration,
    /// Linear memory one guest instance may grow to, in bytes.
    pub memory: usize,
    /// Elements a guest table may grow to.
    pub table_elements: usize,
    /// Handles (transports, WASI streams) one instance may hold at once.
    pub handles: usize,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_deadline: Duration::from_millis(100),
            memory: 64 * 1024 * 1024,
            table_elements: 10_000,
            handles: 50_000,
            max_connections: 10_000,
        }
    }
}

impl Limits {
    /// The call deadline in epoch ticks, at least one.
    pub fn deadline_ticks(&self) -> u64 {
        let ticks = self.call_deadline.as_micros() / EPOCH_TICK.as_micros();
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}

/// Core instances, tables and memories one component may create: enough
/// for any language runtime's component, small enough to bound the host.
pub const MAX_CORE_INSTANCES: usize = 64;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_TABLES: usize = 64;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_MEMORIES: usize = 16;

/// Wasm stack a call may use; deeper recursion traps.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// The host stack each in-flight async call runs on; must exceed
/// `MAX_WASM_STACK` with room for host frames.
pub const ASYNC_STACK: usize = 2 * 1024 * 1024;
