//! The `datagram-transport` interface: a `udp:` service's socket, shared by
//! the worker that receives on it and the instance that sends on it, with
//! what the operator allows: datagram size, a rate each way, and where a
//! guest may send (back to recent senders, or as its connect rules allow).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime::component::{HasSelf, Linker};

use crate::capability::rate::Rate;
use crate::metrics::{Datagram, ServiceMetrics};
use crate::net::policy::Policy;
use crate::sandbox::limits::Limits;
use crate::wit::Address;
use crate::wit::datagram::weft::protocol::datagram_transport::{self as wit, Host, SendError};

/// Senders a guest may answer without a connect rule: the most recent
/// this many distinct addresses that sent its socket a datagram.
const REPLY_ADDRESSES: usize = 4096;

/// A worker's UDP socket as one version of its service uses it.
pub struct DatagramPort {
    /// Non-blocking: a send never waits.
    socket: UdpSocket,
    host: SocketAddr,
    max_datagram: usize,
    policy: Policy,
    metrics: Arc<ServiceMetrics>,
    state: Mutex<PortState>,
}

struct PortState {
    received: Rate,
    sent: Rate,
    recent: RecentSenders,
}

impl DatagramPort {
    /// The port for `socket` (a handle on the worker's socket) under
    /// `limits`, sending where `policy` allows.
    pub fn new(
        socket: UdpSocket,
        limits: &Limits,
        policy: Policy,
        metrics: Arc<ServiceMetrics>,
    ) -> io::Result<Self> {
        Ok(Self {
            host: socket.local_addr()?,
            socket,
            max_datagram: limits.max_datagram,
            policy,
            metrics,
            state: Mutex::new(PortState {
                received: Rate::new(limits.datagram_rate),
                sent: Rate::new(limits.datagram_rate),
                recent: RecentSenders::default(),
            }),
        })
    }

    /// Whether a datagram of `len` bytes from `sender` goes to the guest:
    /// within the size and the rate. Counts it either way; the guest may
    /// answer a sender it was given.
    pub fn admit(&self, len: usize, sender: SocketAddr) -> bool {
        let result = if len > self.max_datagram {
            Datagram::TooLarge
        } else {
            let mut state = self.lock();
            if state.received.take() {
                state.recent.insert(sender);
                Datagram::Received
            } else {
                Datagram::OverRate
            }
        };
        self.metrics.datagram(result);
        if result == Datagram::Received {
            self.metrics.received.inc_by(len as u64);
        }
        result == Datagram::Received
    }

    /// Send `data` to `to` for the guest, if it may.
    fn send(&self, data: &[u8], to: &Address) -> Result<(), SendError> {
        let sent = self.try_send(data, to);
        self.metrics.datagram(match sent {
            Ok(()) => Datagram::Sent,
            Err(SendError::TooLarge) => Datagram::SendTooLarge,
            Err(SendError::InvalidAddress | SendError::Denied) => Datagram::SendDenied,
            Err(SendError::Limit) => Datagram::SendOverRate,
            Err(SendError::Failed) => Datagram::SendFailed,
        });
        if sent.is_ok() {
            self.metrics.sent.inc_by(data.len() as u64);
        }
        sent
    }

    fn try_send(&self, data: &[u8], to: &Address) -> Result<(), SendError> {
        if data.len() > self.max_datagram {
            return Err(SendError::TooLarge);
        }
        let ip: IpAddr = to.host.parse().map_err(|_| SendError::InvalidAddress)?;
        if ip.is_ipv4() != self.host.is_ipv4() {
            return Err(SendError::InvalidAddress);
        }
        let to = SocketAddr::new(ip, to.port);
        {
            let mut state = self.lock();
            if !state.recent.contains(&to) && !self.policy.allows_address(to) {
                return Err(SendError::Denied);
            }
            if !state.sent.take() {
                return Err(SendError::Limit);
            }
        }
        match self.socket.send_to(data, to) {
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::debug!("a datagram to {to} was not sent: {error}");
                Err(SendError::Failed)
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, PortState> {
        // Only counting happens under the lock; it cannot panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The last [`REPLY_ADDRESSES`] distinct senders, oldest forgotten first.
#[derive(Default)]
struct RecentSenders {
    order: VecDeque<SocketAddr>,
    known: HashSet<SocketAddr>,
}

impl RecentSenders {
    fn insert(&mut self, sender: SocketAddr) {
        if !self.known.insert(sender) {
            return;
        }
        self.order.push_back(sender);
        if self.order.len() > REPLY_ADDRESSES
            && let Some(oldest) = self.order.pop_front()
        {
            self.known.remove(&oldest);
        }
    }

    fn contains(&self, addr: &SocketAddr) -> bool {
        self.known.contains(addr)
    }
}

/// An instance's socket: its worker's, for a `udp:` service; none for a
/// stream guest that imports the interface.
#[derive(Default)]
pub struct DatagramState(Option<Arc<DatagramPort>>);

impl DatagramState {
    pub fn new(port: Option<Arc<DatagramPort>>) -> Self {
        Self(port)
    }
}

/// Add `weft:protocol/datagram-transport` to `linker`: each instance
/// sends through the socket `state` projects from its store.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    state: fn(&mut T) -> &mut DatagramState,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<DatagramState>>(linker, state)
}

impl Host for DatagramState {
    fn write(&mut self, data: Vec<u8>, to: Address) -> wasmtime::Result<Result<(), SendError>> {
        Ok(match &self.0 {
            Some(port) => port.send(&data, &to),
            // A stream guest that imports the interface has no socket.
            None => Err(SendError::Failed),
        })
    }

    fn get_host(&mut self) -> wasmtime::Result<Address> {
        let unbound = SocketAddr::from(([0, 0, 0, 0], 0));
        Ok(Address::from(
            self.0.as_ref().map_or(unbound, |port| port.host),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_sender_is_forgotten_first() {
        let mut recent = RecentSenders::default();
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        for port in 0..=REPLY_ADDRESSES as u16 {
            recent.insert(addr(port));
            // Sending again does not make an address newer.
            recent.insert(addr(1));
        }
        assert!(!recent.contains(&addr(0)), "forgotten");
        assert!(recent.contains(&addr(1)));
        assert!(recent.contains(&addr(REPLY_ADDRESSES as u16)));
    }
}
