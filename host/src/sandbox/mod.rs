//! The sandbox, knowing no capability: engines and compiling (and what can
//! be told before), what every store keeps (memory caps, the call's
//! deadline), limits, CPU time charged, traps, the compile cache, and the
//! fix of componentize-py's write leak.

pub mod cache;
pub mod call_time;
pub mod clock;
pub mod limits;
pub mod outline;
pub mod runtime;
pub mod store;
pub mod ticker;
pub mod trap;
mod write_leak;
