//! What operators use beside the services: the admin endpoint (metrics
//! and health over HTTP) and `weft check`.

pub mod admin;
pub mod check;
