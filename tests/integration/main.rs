//! weft end to end: the real host, the real components built from
//! `guests/` and `tests/guests/`, real sockets on 127.0.0.1.

mod chat;
mod cli;
mod differential;
mod echo;
mod hostile;
mod http_counter;
mod isolation;
mod limits;
mod transport;
