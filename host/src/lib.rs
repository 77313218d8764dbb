//! weft: a WebAssembly-sandboxed protocol host in the shape of Twisted.
//!
//! The host owns the reactor (tokio), the listeners and every socket; each
//! connection's events cross the WIT contract in `wit/` into a guest
//! component that implements the protocol, sandboxed by wasmtime.
//!
//! The modules form layers; each uses only those below it, never one
//! above (`module-cycles` checks it in CI), bottom to top:
//!
//! 1. `metrics` (what weft counts; it knows nothing of what reports into
//!    it) and `wit` (the bindings generated from `wit/`): leaves.
//! 2. `net`: sockets, knowing no guest: endpoint strings, listeners, the
//!    streams connections run on, TLS, the operator's connect rules.
//! 3. `sandbox`: engines, compiling, the compile cache, limits, what every
//!    store keeps (memory caps, the call's deadline); it knows no
//!    capability.
//! 4. `capability`: what a guest can reach, one unit each (transport,
//!    timers, outbound, config, log, datagram, WASI), each with its state
//!    and an `add_to_linker` taking a projection onto it.
//! 5. `guest`: the weft worlds: the store that composes the capabilities,
//!    loading a component as a guest, live instances and their exports.
//! 6. `server`: services on endpoints: workers, each connection's I/O
//!    loop, UDP receive loops, reload, shutdown.
//! 7. `ops` (the admin endpoint, `weft check`) and `measure` (in-process
//!    figures for the benchmark): the top, beside the binary.
//!
//! A lower layer that needs something from a higher one is handed it: a
//! trait object (`capability::outbound::Dialed`, `guest::instance::Owner`,
//! `metrics::StateSource`), a callback or a value.

#![deny(missing_docs)]

mod capability;
mod guest;
pub mod measure;
mod metrics;
mod net;
pub mod ops;
mod sandbox;
mod server;
mod wit;

pub use net::endpoint;
pub use ops::{admin, check};
pub use sandbox::{cache, limits};

pub use cache::CompileCache;
pub use endpoint::Endpoint;
pub use guest::component::Loader;
pub use limits::Limits;
pub use metrics::Metrics;
pub use net::policy::ConnectRule;
pub use server::{Server, ServiceSpec, Shutdown, Timeouts};
