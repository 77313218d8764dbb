//! Sockets, knowing nothing of guests: endpoint strings (server and
//! client), binding and accepting, the byte streams connections run on
//! (TCP, TLS, Unix sockets), TLS configuration and handshakes, and the
//! operator's rules for where a service may connect.

pub mod cidr;
pub mod client;
pub mod endpoint;
pub mod listener;
pub mod policy;
pub mod proxy;
pub mod stream;
pub mod tls;
