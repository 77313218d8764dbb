//! What a guest can reach, one unit per capability: its connections'
//! transports, a datagram service's socket, timers, outbound connections,
//! its configuration, the host log, and the WASI that language runtimes
//! need (granting nothing).

pub mod config;
pub mod datagram;
pub mod log;
pub mod outbound;
pub mod rate;
pub mod reactor;
pub mod timers;
pub mod transport;
pub mod wasi;

use std::sync::{Arc, OnceLock};

use wasmtime_wasi_config::WasiConfigVariables;

use crate::ops::metrics::ServiceMetrics;
use crate::sandbox::limits::Limits;

/// What a service's instances are granted: its name and limits, its
/// share of the log, its outbound policy, its configuration and where
/// what they do is counted.
pub struct Grants {
    pub service: Arc<str>,
    pub limits: Limits,
    pub log_budget: log::LogBudget,
    pub outbound: Arc<outbound::Outbound>,
    pub config: Arc<WasiConfigVariables>,
    pub metrics: Arc<ServiceMetrics>,
    /// For a `udp:` service, its worker's socket, set before the first
    /// instance starts.
    pub datagram: OnceLock<Arc<datagram::DatagramPort>>,
}
