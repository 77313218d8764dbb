//! What a guest can reach, one unit per capability: its connections'
//! transports, the host log, and the WASI that language runtimes need
//! (granting nothing).

pub mod log;
pub mod transport;
pub mod wasi;
