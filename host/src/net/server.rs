//! Runs services: loads every component and binds every endpoint before
//! serving any, accepts connections under each service's limit, and on
//! shutdown stops accepting, closes connections (guests see
//! `connection-lost`) and waits for them.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::guest::outbound::policy::{ConnectRule, Policy};
use crate::net::alerts::Alerts;
use crate::net::connection;
use crate::net::endpoint::Endpoint;
use crate::sandbox::cache::CompileCache;
use crate::sandbox::limits::{Limits, SHUTDOWN_GRACE};
use crate::sandbox::runtime::Runtime;
use crate::service::{Service, Settings};

/// Longest pause between retries when `accept` keeps failing (out of file
/// descriptors, say); the listener never gives up.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// One service to run: a component on an endpoint, under limits.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// The component file.
    pub component: PathBuf,
    /// Where to listen.
    pub endpoint: Endpoint,
    /// The limits its instances and connections run under.
    pub limits: Limits,
    /// The destinations its guests may connect to (`connect=`); none
    /// allows nothing.
    pub connect: Vec<ConnectRule>,
    /// Its configuration (`config.KEY=VALUE`), read through `wasi:config`.
    pub config: Vec<(String, String)>,
}

impl ServiceSpec {
    /// `component` on `endpoint` with default limits, no outbound
    /// connections and no configuration.
    pub fn new(component: impl Into<PathBuf>, endpoint: Endpoint) -> Self {
        Self {
            component: component.into(),
            endpoint,
            limits: Limits::default(),
            connect: Vec::new(),
            config: Vec::new(),
        }
    }
}

/// Services loaded and bound, ready to run.
pub struct Server {
    listeners: Vec<Listener>,
    /// Raised on shutdown; wakes every connection.
    stopping: Arc<Alerts>,
    /// Every connection's task, accepted or outbound.
    tasks: TaskTracker,
}

/// A bound endpoint and the service behind it.
struct Listener {
    service: Arc<Service>,
    listener: TcpListener,
    endpoint: Endpoint,
}

impl Server {
    /// Build the runtime, load every component (through `cache` if
    /// given), then bind every endpoint. Fails, with nothing listening, if
    /// any component or endpoint is unusable.
    pub async fn bind(
        specs: Vec<ServiceSpec>,
        cache: Option<CompileCache>,
    ) -> anyhow::Result<Self> {
        let limits: Vec<Limits> = specs.iter().map(|spec| spec.limits.clone()).collect();
        let runtime = Runtime::new(&limits, cache)?;
        let mut loaded = Vec::with_capacity(specs.len());
        for spec in specs {
            let component = runtime.load(&spec.component, &spec.limits)?;
            loaded.push((spec, component));
        }
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut listeners = Vec::with_capacity(loaded.len());
        let stopping = Arc::new(Alerts::default());
        let tasks = TaskTracker::new();
        for (spec, component) in loaded {
            let name = unique_name(&spec.component, &names);
            names.push(name.clone());
            let listener = listen(&spec.endpoint)?;
            let settings = Settings {
                policy: Policy::new(spec.connect),
                config: spec.config,
            };
            let service = Service::new(
                name,
                component,
                spec.limits,
                settings,
                stopping.clone(),
                tasks.clone(),
            );
            listeners.push(Listener {
                service: Arc::new(service),
                listener,
                endpoint: spec.endpoint,
            });
        }
        Ok(Self {
            listeners,
            stopping,
            tasks,
        })
    }

    /// Each service's name and the address it listens on.
    pub fn addresses(&self) -> Vec<(Arc<str>, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|l| Some((l.service.name.clone(), l.listener.local_addr().ok()?)))
            .collect()
    }

    /// Start each shared instance (its `start` hook runs before anything
    /// connects), serve until `shutdown` resolves, then tell every instance
    /// (`stop`), close every connection and wait (at most
    /// `SHUTDOWN_GRACE`) for them to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let stop = CancellationToken::new();
        let Self {
            listeners,
            stopping,
            tasks,
        } = self;
        let services: Vec<Arc<Service>> = listeners.iter().map(|l| l.service.clone()).collect();
        for service in &services {
            service.start_shared().await;
        }
        for listener in listeners {
            let addr = listener.listener.local_addr().ok();
            tracing::info!(
                service = &*listener.service.name,
                endpoint = %listener.endpoint,
                "serving on {}",
                addr.map_or_else(|| "?".into(), |a| a.to_string())
            );
            let span = tracing::info_span!("service", service = &*listener.service.name);
            tasks.spawn(
                listener
                    .accept_loop(stop.clone(), tasks.clone())
                    .instrument(span),
            );
        }
        shutdown.await;
        tracing::info!("shutting down: closing connections");
        stop.cancel();
        for service in &services {
            service.stop_instances().await;
        }
        stopping.raise();
        tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
        }
    }
}

impl Listener {
    /// Take a connection slot, then accept; each connection runs as its
    /// own task holding the slot.
    async fn accept_loop(self, stop: CancellationToken, tasks: TaskTracker) {
        static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);
        let slots = Arc::new(Semaphore::new(self.service.limits.max_connections));
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return, // The semaphore is never closed.
                },
                _ = stop.cancelled() => return,
            };
            let (stream, peer) = tokio::select! {
                accepted = self.accept() => accepted,
                _ = stop.cancelled() => return,
            };
            if self.service.health.refusing() {
                // A failed service closes new connections at once rather
                // than leave them waiting on a guest that keeps trapping.
                drop(stream);
                continue;
            }
            let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
            let span = tracing::debug_span!("conn", id, %peer);
            let service = self.service.clone();
            let serving = connection::serve(stream, service, permit);
            tasks.spawn(serving.instrument(span));
        }
    }

    /// Accept one connection, retrying with backoff on errors.
    async fn accept(&self) -> (TcpStream, SocketAddr) {
        let mut backoff = Duration::from_millis(1);
        loop {
            match self.listener.accept().await {
                Ok(accepted) => return accepted,
                Err(error) => {
                    tracing::warn!("accept failed, retrying in {backoff:?}: {error}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
            }
        }
    }
}

/// Bind and listen as Twisted does: SO_REUSEADDR, the endpoint's backlog.
fn listen(endpoint: &Endpoint) -> anyhow::Result<TcpListener> {
    let addr = endpoint.addr;
    let bind = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(endpoint.backlog)
    };
    bind().with_context(|| format!("cannot listen on {addr} ({endpoint})"))
}

/// The service's name: the component's file stem, made unique.
fn unique_name(component: &std::path::Path, taken: &[Arc<str>]) -> Arc<str> {
    let stem = component
        .file_stem()
        .map_or_else(|| "service".into(), |s| s.to_string_lossy().into_owned());
    let mut name = stem.clone();
    let mut n = 1;
    while taken.iter().any(|t| **t == *name) {
        n += 1;
        name = format!("{stem}#{n}");
    }
    name.into()
}
