//! A `udp:` service's worker loop: each datagram its socket receives goes
//! to the worker's instance, one call at a time, within the service's size
//! and rate limits. A reload hands it a new version, which takes the next
//! datagram; the old one is told `stop-protocol`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::capability::datagram::DatagramPort;
use crate::sandbox::limits::MAX_UDP_PAYLOAD;
use crate::server::service::Service;
use crate::server::stop::Stop;
use crate::wit::Address;

/// The pause after a failed receive, so that a lasting error does not spin.
const RECEIVE_RETRY: Duration = Duration::from_millis(10);

/// Serve datagrams from `socket` until `stop` is cancelled or the service
/// is removed, then tell the instance `stop-protocol`.
pub async fn serve(
    socket: UdpSocket,
    mut generations: watch::Receiver<Option<Arc<Service>>>,
    stop: Stop,
) {
    let receiving = match socket.try_clone().and_then(tokio::net::UdpSocket::from_std) {
        Ok(receiving) => receiving,
        Err(error) => {
            tracing::error!("cannot serve: {error}");
            return;
        }
    };
    let Some(mut service) = generations.borrow_and_update().clone() else {
        return;
    };
    let Some(mut port) = attach(&service, &socket).await else {
        return;
    };
    // One more byte than a datagram can hold: none is ever cut short.
    let mut buffer = vec![0u8; MAX_UDP_PAYLOAD + 1];
    // Whether the server is gone without a stop: then serve on, unchanged.
    let mut orphaned = false;
    loop {
        tokio::select! {
            received = receiving.recv_from(&mut buffer) => match received {
                Ok((len, sender)) => deliver(&service, &port, &buffer[..len], sender).await,
                Err(error) => {
                    tracing::debug!("receiving a datagram failed: {error}");
                    tokio::time::sleep(RECEIVE_RETRY).await;
                }
            },
            () = stop.cancelled() => break,
            changed = generations.changed(), if !orphaned => {
                if changed.is_err() {
                    orphaned = true;
                    continue;
                }
                let Some(next) = generations.borrow_and_update().clone() else {
                    tracing::info!("service removed: no longer receiving");
                    break;
                };
                let Some(next_port) = attach(&next, &socket).await else {
                    break;
                };
                tracing::info!("new datagrams go to the reloaded version");
                port = next_port;
                std::mem::replace(&mut service, next).stop_instances().await;
            }
        }
    }
    service.stop_instances().await;
}

/// Give `service` its port on `socket` and start its instance (its
/// `start-protocol` runs before it receives anything).
async fn attach(service: &Arc<Service>, socket: &UdpSocket) -> Option<Arc<DatagramPort>> {
    let port = socket
        .try_clone()
        .and_then(|handle| service.datagram_port(handle));
    match port {
        Ok(port) => {
            service.start_shared().await;
            Some(port)
        }
        Err(error) => {
            tracing::error!("cannot serve: {error}");
            None
        }
    }
}

/// Hand one datagram to the instance, if the limits let it through; a
/// trap retires the instance and the next datagram starts a fresh one.
async fn deliver(service: &Service, port: &DatagramPort, data: &[u8], sender: SocketAddr) {
    if service.health.refusing() || !port.admit(data.len(), sender) {
        return;
    }
    if let Ok(instance) = service.instance(None).await {
        let _ = instance
            .datagram_received(data, Address::from(sender))
            .await;
    }
}
