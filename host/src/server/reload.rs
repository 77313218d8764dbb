//! Reloading (SIGHUP): compare the new list of services with what runs,
//! load and bind what is new or changed, and only if all of it works hand
//! the workers their new versions; otherwise nothing changes (nginx's
//! rule). Listeners of services that stay are never closed.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::oneshot;

use crate::guest::component::GuestComponent;
use crate::net::listener::{Bound, listen};
use crate::net::tls::Certificates;
use crate::sandbox::cache::CompileCache;
use crate::sandbox::runtime::{Digest, digest, read_component};
use crate::server::stop::Stop;
use crate::server::worker::Timeouts;
use crate::server::{
    Running, Server, ServiceSpec, check_endpoints, generation, load_all, load_tls, service_names,
};

/// What a reload does with one service of the new list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Unchanged: it runs on untouched, connections and instance.
    Keep(usize),
    /// Its component or settings changed: a new version on the same
    /// listeners (the running service at this index).
    Swap(usize),
    /// New, or moved to another endpoint: new listeners.
    Add,
}

/// What the blocking part of a reload prepared: for each new service its
/// change, its component if loaded, and its listeners if new.
struct Plan {
    changes: Vec<Change>,
    components: Vec<Option<Arc<GuestComponent>>>,
    listeners: Vec<Option<Bound>>,
    /// For each `ssl:` service, its key and certificates read afresh.
    tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// Running services not kept in any form.
    removed: Vec<usize>,
}

impl Server {
    /// Make `specs` what runs. Unchanged services carry on untouched. A
    /// service whose component file or settings changed gets a new version
    /// on its listeners: new connections go to it, while those open stay
    /// on the old one until they end or `timeouts.drain` passes. Every
    /// `ssl:` service's files are read again, for new handshakes. A removed
    /// service stops accepting and drains alike; a new one starts. If any
    /// component fails to load or any new endpoint to bind, nothing
    /// changes. Returns what was done, and the new workers' receivers.
    pub(crate) async fn reload(
        &mut self,
        specs: Vec<ServiceSpec>,
        stop: &Stop,
        timeouts: Timeouts,
    ) -> anyhow::Result<(String, Vec<oneshot::Receiver<()>>)> {
        let names = service_names(&specs);
        check_endpoints(&specs, &names)?;
        let running: Vec<(Arc<str>, ServiceSpec, Digest)> = self
            .services
            .iter()
            .map(|s| (s.name.clone(), s.spec.clone(), s.digest))
            .collect();
        let cache = self.cache.clone();
        let (plan_specs, plan_names) = (specs.clone(), names.clone());
        // Reading, hashing and compiling take seconds: off the reactor
        // that serves signals and the admin endpoint.
        let plan =
            tokio::task::spawn_blocking(move || plan(&plan_specs, &plan_names, &running, cache))
                .await
                .context("the reload's loading thread failed")??;

        let mut summary = Vec::new();
        let mut old: Vec<Option<Running>> = std::mem::take(&mut self.services)
            .into_iter()
            .map(Some)
            .collect();
        for index in plan.removed {
            let Some(removed) = old[index].take() else {
                continue;
            };
            for worker in &removed.workers {
                worker.generation.send_replace(None);
            }
            self.metrics.forget(&removed.name);
            summary.push(format!("{} removed", removed.name));
        }
        let mut started = Vec::new();
        let entries = specs
            .into_iter()
            .zip(names)
            .zip(plan.changes)
            .zip(plan.components)
            .zip(plan.listeners)
            .zip(plan.tls);
        for (((((spec, name), change), component), listeners), tls) in entries {
            let service = match change {
                Change::Keep(index) => {
                    let kept = old[index].take().context("a service kept twice")?;
                    renew(&kept, tls);
                    summary.push(format!("{name} unchanged"));
                    kept
                }
                Change::Swap(index) => {
                    let mut swapped = old[index].take().context("a service kept twice")?;
                    let component = component.context("a changed service was loaded")?;
                    let versions = generation(&name, &spec, &component, self.shared());
                    for (worker, version) in swapped.workers.iter().zip(versions) {
                        worker.generation.send_replace(Some(version));
                    }
                    renew(&swapped, tls);
                    swapped.spec = spec;
                    swapped.digest = component.digest;
                    summary.push(format!("{name} reloaded"));
                    swapped
                }
                Change::Add => {
                    let component = component.context("a new service was loaded")?;
                    let listeners = listeners.context("a new service was bound")?;
                    let tls = tls.map(|config| Arc::new(Certificates::new(config)));
                    let mut added = Running::new(
                        name.clone(),
                        spec,
                        &component,
                        listeners,
                        tls,
                        self.shared(),
                    )?;
                    started.extend(added.start(stop, timeouts, None));
                    summary.push(format!("{name} added"));
                    added
                }
            };
            self.services.push(service);
        }
        Ok((summary.join(", "), started))
    }
}

/// Hand a service's workers the TLS configuration read afresh.
fn renew(service: &Running, tls: Option<Arc<rustls::ServerConfig>>) {
    if let (Some(certificates), Some(config)) = (&service.tls, tls) {
        certificates.replace(config);
    }
}

/// Decide each new service's change, then load what changed and bind what
/// is new. Blocking. Each component file is read once: to tell whether it
/// changed, and to load it if so.
fn plan(
    specs: &[ServiceSpec],
    names: &[Arc<str>],
    running: &[(Arc<str>, ServiceSpec, Digest)],
    cache: Option<CompileCache>,
) -> anyhow::Result<Plan> {
    // Keys and certificates first: reading them takes no time, and
    // compiling a component can take seconds.
    let tls = specs
        .iter()
        .zip(names)
        .map(|(spec, name)| load_tls(&spec.endpoint).with_context(|| format!("service {name}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut changes = Vec::with_capacity(specs.len());
    let mut to_load = Vec::new();
    for (spec, name) in specs.iter().zip(names) {
        let running_index = running.iter().position(|(old, _, _)| old == name);
        if let Some(index) = running_index {
            let old = &running[index].1;
            if old.endpoint == spec.endpoint && old.limits.workers != spec.limits.workers {
                anyhow::bail!(
                    "service {name}: workers={} would become workers={}; a reload keeps each \
                     service's listeners, one per worker, so the number of workers changes \
                     only when weft restarts",
                    old.limits.workers,
                    spec.limits.workers
                );
            }
        }
        let bytes = read_component(&spec.component).with_context(|| format!("service {name}"))?;
        let change = match running_index {
            // New, or moved: the old listeners close, new ones open.
            None => Change::Add,
            Some(index) if running[index].1.endpoint != spec.endpoint => Change::Add,
            Some(index) if running[index].1 == *spec && running[index].2 == digest(&bytes) => {
                Change::Keep(index)
            }
            Some(index) => Change::Swap(index),
        };
        if !matches!(change, Change::Keep(_)) {
            to_load.push((spec, bytes));
        }
        changes.push(change);
    }
    let mut loaded = if to_load.is_empty() {
        Vec::new()
    } else {
        load_all(&to_load, cache)?
    }
    .into_iter();
    let mut components = Vec::with_capacity(specs.len());
    let mut listeners = Vec::with_capacity(specs.len());
    for ((spec, name), change) in specs.iter().zip(names).zip(&changes) {
        match change {
            Change::Keep(_) => components.push(None),
            Change::Swap(_) | Change::Add => components.push(loaded.next()),
        }
        listeners.push(match change {
            Change::Add => Some(
                listen(&spec.endpoint, spec.limits.workers)
                    .with_context(|| format!("service {name}"))?,
            ),
            Change::Keep(_) | Change::Swap(_) => None,
        });
    }
    let removed = (0..running.len())
        .filter(|index| {
            !changes
                .iter()
                .any(|change| matches!(change, Change::Keep(i) | Change::Swap(i) if i == index))
        })
        .collect();
    Ok(Plan {
        changes,
        components,
        listeners,
        tls,
        removed,
    })
}
