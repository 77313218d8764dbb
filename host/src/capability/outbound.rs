//! Outbound connections: `reactor.connect`. The host parses the client
//! endpoint, checks the service's policy before and after resolving the
//! name, connects within the timeout, then serves the connection exactly as
//! an accepted one; or it tells the guest why not (`events.connect-failed`).

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::metrics::{Connect, LimitHit, ServiceMetrics};
use crate::net::client::ClientEndpoint;
use crate::net::policy::Policy;
use crate::sandbox::limits::Limits;
use crate::wit::ConnectError;

/// Destinations whose denial is remembered per service, so that a guest
/// connecting in a loop logs each denied destination once.
const DENIALS_LOGGED: usize = 1024;

/// A future a [`Dialed`] hands back.
pub type Landing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What becomes of a connection a guest asked for, carried out by the
/// layer that knows instances and connections: served by the instance
/// that asked, as an accepted one is, or reported to it as failed.
pub trait Dialed: Send + Sync {
    /// Serve `stream`, made for the guest's `connect(.., token)`.
    fn connected(&self, stream: TcpStream, token: u64) -> Landing;
    /// Tell the guest its `connect(.., token)` failed, and why.
    fn failed(&self, token: u64, reason: ConnectError) -> Landing;
}

/// A service's outbound side, shared by its instances: its policy, its
/// limits, and the tasks its connections run as.
pub struct Outbound {
    policy: Policy,
    service: Arc<str>,
    /// Outbound connections one instance may have, made or being made.
    max_outbound: usize,
    connect_timeout: Duration,
    tasks: TaskTracker,
    denials_logged: Mutex<HashSet<String>>,
}

/// One instance's outbound connections: the service's side, how many it
/// has open or being made, and where what it dials lands.
pub struct OutboundState {
    outbound: Arc<Outbound>,
    open: OpenCount,
    metrics: Arc<ServiceMetrics>,
    /// Set once the instance exists, before its first call.
    dialed: Option<Arc<dyn Dialed>>,
}

impl OutboundState {
    pub fn new(outbound: Arc<Outbound>, metrics: Arc<ServiceMetrics>) -> Self {
        Self {
            outbound,
            open: OpenCount::default(),
            metrics,
            dialed: None,
        }
    }

    /// Where this instance's dialed connections go from now on.
    pub fn land_in(&mut self, dialed: Arc<dyn Dialed>) {
        self.dialed = Some(dialed);
    }
}

/// An instance's outbound connections, made or being made.
#[derive(Clone, Default)]
struct OpenCount(Arc<AtomicUsize>);

/// One counted outbound connection; dropping it uncounts it.
struct Slot(OpenCount);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Outbound {
    /// The outbound side of the service `service`, allowed where `policy`
    /// says, within `limits`; its connections run as `tasks`.
    pub fn new(policy: Policy, service: Arc<str>, limits: &Limits, tasks: TaskTracker) -> Self {
        Self {
            policy,
            service,
            max_outbound: limits.max_outbound,
            connect_timeout: limits.connect_timeout,
            tasks,
            denials_logged: Mutex::default(),
        }
    }

    /// Resolve, check and connect, within the connect timeout.
    async fn dial(&self, target: &ClientEndpoint) -> Result<TcpStream, ConnectError> {
        let destination = format!("{}:{}", target.host, target.port);
        if !self.policy.may_try(&target.host, target.port) {
            self.log_denial(&destination, None);
            return Err(ConnectError::Denied);
        }
        let limit = self.connect_timeout;
        let timeout = target.timeout.map_or(limit, |asked| asked.min(limit));
        let connecting = async {
            let numeric = target.host.parse::<IpAddr>().is_ok();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((target.host.as_str(), target.port))
                    .await
                    .map_err(|_| ConnectError::NotResolvable)?
                    .filter(|addr| numeric || addr.is_ipv6() == target.ipv6)
                    .collect();
            if resolved.is_empty() {
                return Err(ConnectError::NotResolvable);
            }
            let mut allowed = Vec::with_capacity(resolved.len());
            for addr in resolved {
                if self.policy.allows(addr).await {
                    allowed.push(addr);
                } else {
                    self.log_denial(&destination, Some(addr));
                }
            }
            let mut failure = ConnectError::Denied;
            for addr in allowed {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(error) => failure = classify(&error),
                }
            }
            Err(failure)
        };
        tokio::time::timeout(timeout, connecting)
            .await
            .unwrap_or(Err(ConnectError::TimedOut))
    }

    fn log_denial(&self, destination: &str, resolved: Option<SocketAddr>) {
        let key = match resolved {
            Some(addr) => format!("{destination} ({addr})"),
            None => destination.to_owned(),
        };
        let mut logged = self
            .denials_logged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if logged.len() < DENIALS_LOGGED && logged.insert(key.clone()) {
            tracing::warn!(
                service = &*self.service,
                "denied an outbound connection to {key}: no connect= rule allows it"
            );
        }
    }
}

fn classify(error: &io::Error) -> ConnectError {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ConnectError::Refused,
        io::ErrorKind::TimedOut => ConnectError::TimedOut,
        _ => ConnectError::Failed,
    }
}

impl From<ConnectError> for Connect {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::InvalidEndpoint => Self::InvalidEndpoint,
            ConnectError::Limit => Self::Limit,
            ConnectError::Denied => Self::Denied,
            ConnectError::NotResolvable => Self::NotResolvable,
            ConnectError::Refused => Self::Refused,
            ConnectError::TimedOut => Self::TimedOut,
            ConnectError::Failed => Self::Failed,
        }
    }
}

impl OutboundState {
    /// `reactor.connect`: check what can be checked now, then dial in a
    /// task of the service's, which hands the connection, or the failure,
    /// to where this instance's dials land.
    pub fn connect(
        &mut self,
        endpoint: String,
        token: u64,
    ) -> wasmtime::Result<Result<(), ConnectError>> {
        let Ok(target) = ClientEndpoint::parse(&endpoint) else {
            self.metrics.connect(Connect::InvalidEndpoint);
            return Ok(Err(ConnectError::InvalidEndpoint));
        };
        let outbound = self.outbound.clone();
        let cap = outbound.max_outbound;
        if self.open.0.fetch_add(1, Ordering::AcqRel) >= cap {
            self.open.0.fetch_sub(1, Ordering::AcqRel);
            self.metrics.connect(Connect::Limit);
            self.metrics.hit(LimitHit::Outbound);
            tracing::warn!(
                service = &*outbound.service,
                "refused an outbound connection: the guest has its limit of {cap}"
            );
            return Ok(Err(ConnectError::Limit));
        }
        let slot = Slot(self.open.clone());
        // Unset only while the instance is being made: what it dials
        // then has no instance to land in, and is closed.
        let dialed = self.dialed.clone();
        let span = tracing::debug_span!("outbound", token, to = %endpoint);
        let metrics = self.metrics.clone();
        let tasks = outbound.tasks.clone();
        tasks.spawn(
            async move {
                let dialed_stream = outbound.dial(&target).await;
                metrics.connect(match &dialed_stream {
                    Ok(_) => Connect::Connected,
                    Err(reason) => Connect::from(*reason),
                });
                let Some(dialed) = dialed else {
                    return;
                };
                match dialed_stream {
                    Ok(stream) => dialed.connected(stream, token).await,
                    Err(reason) => {
                        tracing::debug!("outbound connection failed: {reason:?}");
                        dialed.failed(token, reason).await;
                    }
                }
                drop(slot);
            }
            .instrument(span),
        );
        Ok(Ok(()))
    }
}
