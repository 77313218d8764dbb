//! What a guest can reach, one unit per capability (transport, timers,
//! outbound, config, log, datagram, key-value, messaging, WASI): each holds its state, the host
//! side of its WIT interface on that state, and an `add_to_linker` taking a
//! projection from the store's data to it; no unit knows the store.

pub mod config;
pub mod datagram;
pub mod keyvalue;
pub mod log;
pub mod messaging;
pub mod outbound;
pub mod rate;
pub mod reactor;
pub mod timers;
pub mod transport;
pub mod wasi;
