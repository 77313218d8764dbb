//! weft: a WebAssembly-sandboxed protocol host in the shape of Twisted.
//!
//! The host owns the reactor (tokio), the listeners and every socket; each
//! connection's events cross the WIT contract in `wit/` into a guest
//! component that implements the protocol, sandboxed by wasmtime.
//!
//! Layout, by concern: `net` (endpoints, the server and its workers, each
//! worker's accept loop, TLS, each connection's I/O loop), `sandbox` (engines, instances, their state,
//! limits and deadlines, the compile cache), `guest` (what a guest can
//! reach, one module per capability), `service` (a component on an
//! endpoint and its current instance), `ops` (metrics, the admin endpoint,
//! what `weft check` says of a component) and `measure` (in-process
//! figures for the benchmark).

#![deny(missing_docs)]

mod guest;
pub mod measure;
mod net;
pub mod ops;
mod sandbox;
mod service;

pub use net::{endpoint, server};
pub use ops::{admin, check};
pub use sandbox::{cache, limits, runtime};

pub use cache::CompileCache;
pub use endpoint::Endpoint;
pub use guest::outbound::policy::ConnectRule;
pub use limits::Limits;
pub use net::worker::Timeouts;
pub use runtime::Runtime;
pub use server::{Server, ServiceSpec};
