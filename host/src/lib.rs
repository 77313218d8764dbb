//! weft: a WebAssembly-sandboxed protocol host in the shape of Twisted.
//!
//! The host owns the reactor (tokio), the listeners and every socket; each
//! connection's events cross the WIT contract in `wit/` into a guest
//! component that implements the protocol, sandboxed by wasmtime.
//!
//! Layout: `server` (bind services, accept, shut down), `alerts` (waking
//! connections on retirement or shutdown), `service` (a
//! component on an endpoint and its current instance), `connection` (one
//! socket's I/O loop), `instance` (a live guest and its calls), `transport`
//! (the resource guests write to), `runtime` (engine, linker, loading),
//! `bindings` (the WIT world), `state` (per-instance host state),
//! `call_time` (the CPU time calls are charged), `clock` (the coarse
//! clock), `wasi`
//! (what WASI guests get: nothing granted), `cache` (compiled components
//! on disk), `guest_log`, `endpoint` (Twisted's endpoint strings),
//! `limits`, and `measure` (in-process figures for the benchmark).

#![deny(missing_docs)]

mod alerts;
mod bindings;
pub mod cache;
mod call_time;
mod clock;
mod connection;
pub mod endpoint;
mod guest_log;
mod instance;
pub mod limits;
pub mod measure;
pub mod runtime;
pub mod server;
mod service;
mod state;
mod transport;
mod wasi;

pub use cache::CompileCache;
pub use endpoint::Endpoint;
pub use limits::Limits;
pub use runtime::Runtime;
pub use server::{Server, ServiceSpec};
