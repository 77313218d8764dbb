//! The sandbox: wasmtime engines and loading (with what can be checked
//! before compiling), live guest instances and their per-store state, the
//! limits they run under, the CPU time calls are charged, compiled
//! components cached on disk, and the fix of componentize-py's write leak
//! applied before compiling.

pub mod bindings;
pub mod cache;
pub mod call_time;
pub mod clock;
pub mod instance;
pub mod limits;
pub mod precheck;
pub mod runtime;
pub mod state;
mod write_leak;
