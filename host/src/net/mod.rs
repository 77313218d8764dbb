//! The network side: listening on endpoints, accepting, and each socket's
//! I/O loop, with the alerts that wake connections on retirement or
//! shutdown.

pub mod alerts;
pub mod connection;
pub mod endpoint;
pub mod server;
pub mod worker;
