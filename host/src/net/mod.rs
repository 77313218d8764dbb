//! The network side: listening on endpoints (TCP, TLS, Unix sockets,
//! UDP), accepting, each socket's I/O loop, a UDP socket's receive loop,
//! reloading, and the alerts that wake connections on retirement or
//! shutdown.

pub mod alerts;
pub mod connection;
pub mod datagram;
pub mod endpoint;
pub mod listener;
mod reload;
pub mod server;
pub mod stream;
pub mod tls;
pub mod worker;
