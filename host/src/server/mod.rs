//! Runs services: loads every component and binds every endpoint before
//! serving any, starts each service's workers, hands them new versions on
//! reload (see `reload`), and on shutdown has them stop accepting, close
//! connections (guests see `connection-lost`) and wait for them.

mod connection;
mod datagram;
mod reload;
pub(crate) mod service;
mod stop;
mod worker;

pub use worker::Timeouts;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;

use crate::capability::keyvalue::Embedded;
use crate::capability::keyvalue::spec::KeyValueSpec;
use crate::capability::messaging::Topics;
use crate::capability::messaging::spec::MessagingSpec;
use crate::capability::transport::Alerts;
use crate::guest::component::{GuestComponent, Loader};
use crate::metrics::{BucketSource, Kind, Metrics, Readiness};
use crate::net::cidr::Cidr;
use crate::net::endpoint::{Endpoint, ListenAddress};
use crate::net::listener::{Bound, BoundAddress, SocketFile, listen};
use crate::net::policy::{ConnectRule, Policy};
use crate::net::proxy::ProxyFrom;
use crate::net::tls::{Certificates, TlsFiles};
use crate::sandbox::cache::CompileCache;
use crate::sandbox::limits::{DRAIN_TIMEOUT, Isolation, Limits, SHUTDOWN_GRACE};
use crate::sandbox::runtime::{Digest, read_component};
use crate::server::service::{Common, Service, Settings};
use crate::server::stop::Stop;
use crate::server::worker::{Generation, Worker};

/// One service to run: a component on an endpoint, under limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Its name in logs and errors; by default the component's file stem,
    /// made unique.
    pub name: Option<Arc<str>>,
    /// The component file.
    pub component: PathBuf,
    /// Where to listen.
    pub endpoint: Endpoint,
    /// The limits its instances and connections run under.
    pub limits: Limits,
    /// The destinations its guests may connect to (`connect=`); none
    /// allows nothing.
    pub connect: Vec<ConnectRule>,
    /// Who may send a `haproxy:` endpoint's PROXY header (`proxy-from=`);
    /// none trusts this machine only.
    pub proxy_from: Vec<Cidr>,
    /// Its configuration (`config.KEY=VALUE`), read through `wasi:config`.
    pub config: Vec<(String, String)>,
    /// Where its key-value buckets live (`kv=`, `kv.BUCKET=`) and which
    /// it shares (`kv-shared=`).
    pub kv: KeyValueSpec,
    /// Where its topics live (`pubsub=`) and which it shares
    /// (`pubsub-shared=`).
    pub pubsub: MessagingSpec,
}

impl ServiceSpec {
    /// `component` on `endpoint` with default limits, no outbound
    /// connections and no configuration.
    pub fn new(component: impl Into<PathBuf>, endpoint: Endpoint) -> Self {
        Self {
            name: None,
            component: component.into(),
            endpoint,
            limits: Limits::default(),
            connect: Vec::new(),
            proxy_from: Vec::new(),
            config: Vec::new(),
            kv: KeyValueSpec::default(),
            pubsub: MessagingSpec::default(),
        }
    }

    /// `proxy-from=` names who may send a PROXY header, which only a
    /// `haproxy:` endpoint reads.
    pub fn check_proxy_from(&self) -> Result<(), String> {
        if self.proxy_from.is_empty() || self.endpoint.proxy {
            return Ok(());
        }
        Err(format!(
            "proxy-from= is for `haproxy:` endpoints, which read a PROXY header; \
             `{}` reads none (write `haproxy:{}`)",
            self.endpoint, self.endpoint
        ))
    }
}

/// Services loaded and bound, ready to run.
pub struct Server {
    /// In the order the services were given.
    pub(crate) services: Vec<Running>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) cache: Option<CompileCache>,
    /// The embedded key-value buckets, kept across reloads.
    pub(crate) embedded: Arc<Embedded>,
    /// The embedded topics, which every version of a service shares.
    pub(crate) topics: Arc<Topics>,
}

/// A service as it runs: what it was given, what its component was loaded
/// from, and its workers.
pub(crate) struct Running {
    pub name: Arc<str>,
    pub spec: ServiceSpec,
    pub digest: Digest,
    pub address: BoundAddress,
    pub workers: Vec<WorkerSlot>,
    /// A Unix socket's file, removed when the service goes.
    _socket_file: Option<SocketFile>,
    /// For an `ssl:` endpoint, what its workers' handshakes use.
    pub tls: Option<Arc<Certificates>>,
}

/// How the server reaches one worker: the version it serves, and, until
/// the server runs, the worker itself.
pub(crate) struct WorkerSlot {
    pub generation: watch::Sender<Generation>,
    pub idle: Option<Worker>,
}

impl Server {
    /// Build the runtime, load every component (through `cache` if
    /// given), then bind every endpoint, once per worker. Fails, with
    /// nothing listening, if any component or endpoint is unusable.
    pub async fn bind(
        specs: Vec<ServiceSpec>,
        cache: Option<CompileCache>,
    ) -> anyhow::Result<Self> {
        let names = service_names(&specs);
        check_endpoints(&specs, &names)?;
        // Keys and certificates first: reading them takes no time, and
        // compiling a component can take seconds.
        let tls = specs
            .iter()
            .zip(&names)
            .map(|(spec, name)| load_tls(&spec.endpoint).with_context(|| format!("service {name}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let read = specs
            .iter()
            .map(|spec| Ok((spec, read_component(&spec.component)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let components = load_all(&read, cache.clone())?;
        let metrics = Arc::new(Metrics::new());
        let embedded = Arc::new(Embedded::default());
        metrics.watch_buckets(Arc::downgrade(&embedded) as Weak<dyn BucketSource>);
        let topics = Arc::new(Topics::default());
        let mut services = Vec::with_capacity(specs.len());
        let each = specs.into_iter().zip(components).zip(names).zip(tls);
        for (((spec, component), name), tls) in each {
            let bound = listen(&spec.endpoint, spec.limits.workers)
                .with_context(|| format!("service {name}"))?;
            let tls = tls.map(|config| Arc::new(Certificates::new(config)));
            let shared = Shared {
                metrics: &metrics,
                embedded: &embedded,
                topics: &topics,
            };
            services.push(Running::new(name, spec, &component, bound, tls, shared)?);
        }
        Ok(Self {
            services,
            metrics,
            cache,
            embedded,
            topics,
        })
    }

    /// Each TCP (`ssl:`, `udp:`) service's name and the address it
    /// listens on; a Unix socket's path is the one its endpoint gave.
    pub fn addresses(&self) -> Vec<(Arc<str>, SocketAddr)> {
        self.services
            .iter()
            .filter_map(|service| match service.address {
                BoundAddress::Tcp(addr) | BoundAddress::Udp(addr) => {
                    Some((service.name.clone(), addr))
                }
                BoundAddress::Unix(_) => None,
            })
            .collect()
    }

    /// What the services count, for the admin endpoint.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Start every worker on its own thread, serve until `shutdown`
    /// resolves, then have each worker stop its instances (`stop`), close
    /// its connections and wait (at most `SHUTDOWN_GRACE`) for them.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        self.run_with_grace(shutdown, SHUTDOWN_GRACE).await;
    }

    /// [`Server::run`], waiting at most `grace` for connections to close.
    pub async fn run_with_grace(self, shutdown: impl Future<Output = ()>, grace: Duration) {
        let timeouts = Timeouts {
            grace,
            drain: DRAIN_TIMEOUT,
        };
        let shutdown = async {
            shutdown.await;
            Shutdown::Now
        };
        self.serve(shutdown, None, timeouts).await;
    }

    /// [`Server::run`], stopping as `shutdown` says once it resolves, and
    /// also taking each list of services `reloads` brings as the new
    /// configuration (see [`Server::reload`]), or the error that kept one
    /// from being read, which fails that reload; connections on a version
    /// a reload replaced may run on for `timeouts.drain`.
    pub async fn serve(
        mut self,
        shutdown: impl Future<Output = Shutdown>,
        mut reloads: Option<mpsc::Receiver<anyhow::Result<Vec<ServiceSpec>>>>,
        timeouts: Timeouts,
    ) {
        let stop = Stop::default();
        let mut running = Vec::new();
        let readiness = self.metrics.readiness().clone();
        for service in &mut self.services {
            running.extend(service.start(&stop, timeouts, Some(&readiness)));
        }
        readiness.counted();
        let mut shutdown = pin!(shutdown);
        let how = loop {
            let next = async {
                match reloads.as_mut() {
                    Some(reloads) => reloads.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                how = &mut shutdown => break how,
                specs = next => match specs {
                    Some(specs) => {
                        let metrics = self.metrics.clone();
                        // A reload that is still compiling when the
                        // shutdown comes is dropped: it changes nothing
                        // until everything new has loaded.
                        let reloaded = match specs {
                            Ok(specs) => tokio::select! {
                                reloaded = self.reload(specs, &stop, timeouts) => reloaded,
                                how = &mut shutdown => break how,
                            },
                            Err(error) => Err(error),
                        };
                        metrics.reloaded(reloaded.is_ok());
                        match reloaded {
                            Ok((summary, started)) => {
                                running.extend(started);
                                tracing::info!("reloaded: {summary}");
                            }
                            Err(error) => tracing::error!(
                                "reload failed, every service carries on as it was: {error:#}"
                            ),
                        }
                    }
                    None => reloads = None,
                },
            }
        };
        readiness.stopping();
        let grace = timeouts.grace;
        // Each worker waits out the grace period on its own (twice over
        // when connections first get to end on their own); this bounds the
        // wait for a worker thread that cannot finish at all.
        let bound = match how {
            Shutdown::Now => {
                tracing::info!("shutting down: closing connections");
                grace * 2
            }
            Shutdown::Drain => grace * 3,
        };
        let deadline = tokio::time::Instant::now() + bound;
        stop.stop(how == Shutdown::Now);
        if how == Shutdown::Drain {
            // Logged once true, after every worker closed its listening
            // socket: whoever reads it may count on a refused connection.
            if tokio::time::timeout_at(deadline, stop.listeners_closed())
                .await
                .is_ok()
            {
                tracing::info!(
                    "shutting down: no longer accepting; open connections have {grace:?} to end"
                );
            }
        }
        if tokio::time::timeout_at(deadline, all_finished(running))
            .await
            .is_err()
        {
            tracing::warn!("a worker is still running after {grace:?}; exiting anyway");
        }
    }
}

/// How the server stops once told to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Stop accepting and close every connection (guests hear
    /// connection-lost), giving their output the grace to flush: SIGINT.
    Now,
    /// Stop accepting, give open connections the grace to end on their
    /// own, then close the rest as `Now` does: SIGTERM, after its drain
    /// delay.
    Drain,
}

impl Server {
    /// What its services share.
    pub(crate) fn shared(&self) -> Shared<'_> {
        Shared {
            metrics: &self.metrics,
            embedded: &self.embedded,
            topics: &self.topics,
        }
    }
}

impl Running {
    /// A service ready to start: one worker per listener, each with a
    /// version of the service of its own.
    pub fn new(
        name: Arc<str>,
        spec: ServiceSpec,
        component: &Arc<GuestComponent>,
        bound: Bound,
        tls: Option<Arc<Certificates>>,
        shared: Shared<'_>,
    ) -> anyhow::Result<Self> {
        let Bound {
            listeners,
            address,
            socket_file,
        } = bound;
        let versions = generation(&name, &spec, component, shared);
        let workers = (1..)
            .zip(listeners.into_iter().zip(versions))
            .map(|(index, (listener, service))| {
                let (generation, generations) = watch::channel(Some(service));
                WorkerSlot {
                    generation,
                    idle: Some(Worker {
                        index,
                        listener,
                        generations,
                        tls: tls.clone(),
                    }),
                }
            })
            .collect();
        Ok(Self {
            name,
            digest: component.digest,
            spec,
            address,
            workers,
            _socket_file: socket_file,
            tls,
        })
    }

    /// Start the workers not yet started; the receivers resolve when each
    /// is done.
    pub fn start(
        &mut self,
        stop: &Stop,
        timeouts: Timeouts,
        readiness: Option<&Arc<Readiness>>,
    ) -> Vec<oneshot::Receiver<()>> {
        let mut running = Vec::new();
        for slot in &mut self.workers {
            let Some(worker) = slot.idle.take() else {
                continue;
            };
            if let Some(readiness) = readiness {
                readiness.expect(1);
            }
            let readiness = readiness.cloned();
            match worker.spawn(&self.name, stop.clone(), timeouts, readiness) {
                Ok(finished) => running.push(finished),
                Err(error) => tracing::error!(service = &*self.name, "{error:#}"),
            }
        }
        tracing::info!(
            service = &*self.name,
            endpoint = %self.spec.endpoint,
            "serving on {}",
            self.address
        );
        running
    }
}

/// What every service of the process shares: where it is counted, and the
/// embedded key-value store and topics.
#[derive(Clone, Copy)]
pub(crate) struct Shared<'a> {
    pub metrics: &'a Metrics,
    pub embedded: &'a Arc<Embedded>,
    pub topics: &'a Arc<Topics>,
}

/// A fresh version of a service for each of its workers: a fresh trap
/// history and log allowance, and instances of `component`.
pub(crate) fn generation(
    name: &Arc<str>,
    spec: &ServiceSpec,
    component: &Arc<GuestComponent>,
    shared: Shared<'_>,
) -> Vec<Arc<Service>> {
    let metrics = shared.metrics;
    let kind = match component.is_datagram() {
        true => Kind::Datagram,
        false => Kind::Stream,
    };
    let common = Common::new(name.clone(), kind, &spec.limits, metrics);
    let settings = Settings {
        policy: Policy::new(spec.connect.clone()),
        proxy: spec
            .endpoint
            .proxy
            .then(|| ProxyFrom::new(&spec.proxy_from)),
        config: spec.config.clone(),
        keyvalue: spec.kv.clone(),
        embedded: shared.embedded.clone(),
        messaging: spec.pubsub.clone(),
        topics: shared.topics.clone(),
    };
    (0..spec.limits.workers.max(1))
        .map(|_| {
            Arc::new(Service::new(
                name.clone(),
                component.clone(),
                spec.limits.clone(),
                settings.clone(),
                &common,
                Arc::new(Alerts::default()),
                TaskTracker::new(),
            ))
        })
        .collect()
}

/// Build a runtime for `specs` and load each one's component, read
/// already, side by side: each compile is only partly parallel, and a
/// Python or JavaScript guest takes seconds. The first failure, in the
/// order given, is the one reported.
pub(crate) fn load_all(
    specs: &[(&ServiceSpec, Vec<u8>)],
    cache: Option<CompileCache>,
) -> anyhow::Result<Vec<Arc<GuestComponent>>> {
    let limits: Vec<Limits> = specs.iter().map(|(spec, _)| spec.limits.clone()).collect();
    let loader = Loader::new(&limits, cache)?;
    let components: Vec<_> = std::thread::scope(|scope| {
        let loading: Vec<_> = specs
            .iter()
            .map(|(spec, bytes)| {
                scope.spawn(|| {
                    let component = loader.load_bytes(&spec.component, bytes, &spec.limits)?;
                    fits_endpoint(spec, component)
                })
            })
            .collect();
        loading
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("compiling a component panicked")))
            })
            .collect()
    });
    components.into_iter().collect()
}

/// Refuse a component on an endpoint of the other kind: a datagram guest
/// is served on `udp:` only, a guest that serves connections on anything
/// else.
fn fits_endpoint(
    spec: &ServiceSpec,
    component: Arc<GuestComponent>,
) -> anyhow::Result<Arc<GuestComponent>> {
    let shown = spec.component.display();
    let endpoint = &spec.endpoint;
    match (component.is_datagram(), endpoint.is_datagram()) {
        (true, false) => anyhow::bail!(
            "{shown} is a datagram guest (it exports weft:protocol/datagram-handler): serve it \
             on a `udp:` endpoint, not `{endpoint}`"
        ),
        (false, true) => anyhow::bail!(
            "{shown} serves connections (it exports weft:protocol/protocol), but `{endpoint}` \
             serves datagram guests, built for the `datagram-service` world"
        ),
        _ => Ok(component),
    }
}

/// Read an `ssl:` endpoint's key and certificates; nothing for others.
pub(crate) fn load_tls(endpoint: &Endpoint) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    endpoint.tls().map(TlsFiles::load).transpose()
}

/// Wait for every worker thread to report that it is done (or gone).
async fn all_finished(running: Vec<oneshot::Receiver<()>>) {
    for finished in running {
        let _ = finished.await;
    }
}

/// Refuse two services whose endpoints would take the same port: the
/// second would fail to bind with a bare "address in use", or, with
/// several workers each (SO_REUSEPORT), silently share the first's
/// connections.
pub(crate) fn check_endpoints(specs: &[ServiceSpec], names: &[Arc<str>]) -> anyhow::Result<()> {
    for (spec, name) in specs.iter().zip(names) {
        if spec.endpoint.is_datagram() && spec.limits.isolation == Isolation::Connection {
            anyhow::bail!(
                "service {name} ({}): isolation=connection needs connections; a `udp:` \
                 service has one instance per worker, which every datagram goes to",
                spec.endpoint
            );
        }
    }
    for (i, (a, a_name)) in specs.iter().zip(names).enumerate() {
        for (b, b_name) in specs[..i].iter().zip(names) {
            match (&a.endpoint.address, &b.endpoint.address) {
                (
                    ListenAddress::Tcp { addr: a_addr, .. },
                    ListenAddress::Tcp { addr: b_addr, .. },
                ) if overlap(*a_addr, *b_addr) => {
                    anyhow::bail!(
                        "services {b_name} ({}) and {a_name} ({}) both listen on port {}: \
                         give each its own port",
                        b.endpoint,
                        a.endpoint,
                        a_addr.port()
                    );
                }
                (ListenAddress::Udp(a_addr), ListenAddress::Udp(b_addr))
                    if overlap(*a_addr, *b_addr) =>
                {
                    anyhow::bail!(
                        "services {b_name} ({}) and {a_name} ({}) both use UDP port {}: \
                         give each its own port",
                        b.endpoint,
                        a.endpoint,
                        a_addr.port()
                    );
                }
                (ListenAddress::Unix(a_socket), ListenAddress::Unix(b_socket))
                    if a_socket.path == b_socket.path =>
                {
                    anyhow::bail!(
                        "services {b_name} and {a_name} both listen on {}: give each its own \
                         socket file",
                        a_socket.path.display()
                    );
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Whether listeners on `a` and `b` would take the same port: the same
/// port (other than 0, which picks a free one) on the same address, or on
/// a wildcard address that covers the other (`::` also covers IPv4).
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let covers = |wide: SocketAddr, other: SocketAddr| {
        wide.ip().is_unspecified() && (wide.is_ipv6() || other.is_ipv4())
    };
    a.ip() == b.ip() || covers(a, b) || covers(b, a)
}

/// Each service's name: the one given (in a config file), else its
/// component's file stem, made unique around every other name.
pub(crate) fn service_names(specs: &[ServiceSpec]) -> Vec<Arc<str>> {
    let given: Vec<Arc<str>> = specs.iter().filter_map(|s| s.name.clone()).collect();
    let mut names: Vec<Arc<str>> = Vec::new();
    for spec in specs {
        let name = match &spec.name {
            Some(name) => name.clone(),
            None => {
                let taken: Vec<Arc<str>> = given.iter().chain(&names).cloned().collect();
                unique_name(&spec.component, &taken)
            }
        };
        names.push(name);
    }
    names
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_given_are_kept_and_the_others_made_unique_around_them() {
        let endpoint: Endpoint = "tcp:0".parse().unwrap();
        let spec = |component: &str, name: Option<&str>| ServiceSpec {
            name: name.map(Arc::from),
            ..ServiceSpec::new(component, endpoint.clone())
        };
        let names = service_names(&[
            spec("a/echo.wasm", None),
            spec("b/echo.wasm", None),
            spec("c/chat.wasm", Some("echo")),
        ]);
        let names: Vec<&str> = names.iter().map(|n| &**n).collect();
        assert_eq!(names, ["echo#2", "echo#3", "echo"]);
    }

    #[test]
    fn endpoints_overlap_on_the_same_port_and_covering_addresses() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        for (a, b, expected) in [
            ("127.0.0.1:80", "127.0.0.1:80", true),
            ("0.0.0.0:80", "127.0.0.1:80", true),
            ("[::]:80", "127.0.0.1:80", true),
            ("[::]:80", "[::1]:80", true),
            ("127.0.0.1:80", "127.0.0.2:80", false),
            ("127.0.0.1:80", "127.0.0.1:81", false),
            ("0.0.0.0:80", "[::1]:80", false),
            ("127.0.0.1:0", "127.0.0.1:0", false),
        ] {
            assert_eq!(overlap(addr(a), addr(b)), expected, "{a} {b}");
            assert_eq!(overlap(addr(b), addr(a)), expected, "{b} {a}");
        }
    }
}
