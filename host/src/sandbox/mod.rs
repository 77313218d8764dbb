//! The sandbox: wasmtime engines and loading (with what can be checked
//! before compiling), live guest instances and their per-store state, the
//! limits they run under, the CPU time calls are charged, and compiled
//! components cached on disk.

pub mod bindings;
pub mod cache;
pub mod call_time;
pub mod clock;
pub mod instance;
pub mod limits;
pub mod precheck;
pub mod runtime;
pub mod state;
