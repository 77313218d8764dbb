//! The sandbox, knowing no capability: engines and compiling (and what can
//! be told before), what every store keeps (memory caps, the call's
//! deadline), limits, CPU time charged, traps, the compile caches (of
//! components and of their functions), and the fix of componentize-py's
//! write leak.

pub mod cache;
pub mod call_time;
pub mod clock;
pub mod function_cache;
pub mod limits;
pub mod outline;
pub mod runtime;
pub mod store;
pub mod ticker;
pub mod trap;
mod write_leak;
