//! What operators use beside the services: the metrics weft keeps, the
//! admin endpoint that serves them, and `weft check`.

pub mod admin;
pub mod check;
pub(crate) mod metrics;

pub use metrics::Metrics;
