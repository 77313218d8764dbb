//! Outbound connections: `reactor.connect`. The host parses the client
//! endpoint, checks the service's policy before and after resolving the
//! name, connects within the timeout, then serves the connection exactly as
//! an accepted one; or it tells the guest why not (`events.connect-failed`).

pub mod endpoint;
pub mod policy;

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tracing::Instrument as _;

use self::endpoint::ClientEndpoint;
use self::policy::Policy;
use crate::net::connection;
use crate::net::stream::Stream;
use crate::ops::metrics::{Connect, LimitHit};
use crate::sandbox::bindings::ConnectError;
use crate::sandbox::state::GuestState;
use crate::service::Reactor;

/// Destinations whose denial is remembered per service, so that a guest
/// connecting in a loop logs each denied destination once.
const DENIALS_LOGGED: usize = 1024;

/// A service's outbound side, shared by its instances: its policy and the
/// reactor its connections run in.
pub struct Outbound {
    pub policy: Policy,
    reactor: Reactor,
    denials_logged: Mutex<HashSet<String>>,
}

/// An instance's outbound connections, made or being made.
#[derive(Clone, Default)]
pub struct OpenCount(Arc<AtomicUsize>);

/// One counted outbound connection; dropping it uncounts it.
struct Slot(OpenCount);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Outbound {
    pub fn new(policy: Policy, reactor: Reactor) -> Self {
        Self {
            policy,
            reactor,
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
        let limit = self.reactor.limits.connect_timeout;
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
                service = &*self.reactor.service,
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

impl GuestState {
    /// `reactor.connect`: check what can be checked now, then dial in a
    /// task of the service's reactor, which serves the connection or
    /// reports the failure.
    pub(crate) fn connect(
        &mut self,
        endpoint: String,
        token: u64,
    ) -> wasmtime::Result<Result<(), ConnectError>> {
        let Ok(target) = ClientEndpoint::parse(&endpoint) else {
            self.metrics.connect(Connect::InvalidEndpoint);
            return Ok(Err(ConnectError::InvalidEndpoint));
        };
        let outbound = self.outbound.clone();
        let cap = outbound.reactor.limits.max_outbound;
        if self.outbound_open.0.fetch_add(1, Ordering::AcqRel) >= cap {
            self.outbound_open.0.fetch_sub(1, Ordering::AcqRel);
            self.metrics.connect(Connect::Limit);
            self.metrics.hit(LimitHit::Outbound);
            tracing::warn!(
                service = &*self.service,
                "refused an outbound connection: the guest has its limit of {cap}"
            );
            return Ok(Err(ConnectError::Limit));
        }
        let slot = Slot(self.outbound_open.clone());
        let instance = self.instance.clone();
        let span = tracing::debug_span!("outbound", token, to = %endpoint);
        let metrics = self.metrics.clone();
        let tasks = outbound.reactor.tasks.clone();
        tasks.spawn(
            async move {
                let dialed = outbound.dial(&target).await;
                metrics.connect(match &dialed {
                    Ok(_) => Connect::Connected,
                    Err(reason) => Connect::from(*reason),
                });
                let Some(instance) = instance.upgrade() else {
                    return;
                };
                match dialed {
                    Ok(stream) => {
                        connection::serve_outbound(
                            Stream::Tcp(stream),
                            instance,
                            token,
                            &outbound.reactor,
                        )
                        .await;
                    }
                    Err(reason) => {
                        tracing::debug!("outbound connection failed: {reason:?}");
                        let _ = instance.connect_failed(token, reason).await;
                    }
                }
                drop(slot);
            }
            .instrument(span),
        );
        Ok(Ok(()))
    }
}
