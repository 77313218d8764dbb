//! Components loaded as weft guests: read, checked against the weft worlds
//! before compiling (which takes seconds for a Python or JavaScript guest),
//! compiled once on the sandbox's engines, with the worlds linked, and
//! ready to instantiate by the WIT version they were built for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use wasmtime::Engine;
use wasmtime::component::InstancePre;

use crate::guest::state::GuestState;
use crate::guest::world::{self, Exported};
use crate::sandbox::cache::CompileCache;
use crate::sandbox::limits::Limits;
use crate::sandbox::runtime::{Digest, Runtime, Unlinked, digest, read_component};
use crate::wit::{
    EventsIndices, ProducersIndices, ProtocolsIndices, SubscriberIndices, datagram, v1,
};

/// Loads components as weft guests, on engines built for the services'
/// limits, each with the weft worlds linked.
pub struct Loader {
    runtime: Arc<Runtime<GuestState>>,
}

/// A compiled component, checked against the weft world and ready to
/// instantiate.
pub struct GuestComponent {
    /// Where the component was loaded from.
    pub path: PathBuf,
    /// What it was loaded from: a reload recompiles only when this changes.
    pub digest: Digest,
    pub(crate) engine: Engine,
    pub(crate) pre: GuestPre,
}

impl GuestComponent {
    /// Whether it serves datagrams (`udp:` endpoints) rather than
    /// connections.
    pub fn is_datagram(&self) -> bool {
        matches!(self.pre, GuestPre::Datagram(_))
    }
}

/// A component ready to instantiate, by the WIT version it was built for.
pub(crate) enum GuestPre {
    /// Boxed: its export indices are several times the others' size.
    Current(Box<CurrentPre>),
    V1(v1::ServicePre<GuestState>),
    /// A datagram service's (`udp:` endpoints).
    Datagram(datagram::DatagramServicePre<GuestState>),
}

/// A component of the current `service` world (0.2.x), with the exports
/// its version may lack: `producers` (0.2.5), and `subscriber` of the
/// `stateful-service` world.
pub(crate) struct CurrentPre {
    pub pre: InstancePre<GuestState>,
    pub protocols: ProtocolsIndices,
    pub events: EventsIndices,
    pub producers: Option<ProducersIndices>,
    pub subscriber: Option<SubscriberIndices>,
}

impl CurrentPre {
    fn new(pre: InstancePre<GuestState>) -> wasmtime::Result<Self> {
        Ok(Self {
            protocols: ProtocolsIndices::new(&pre)?,
            events: EventsIndices::new(&pre)?,
            producers: ProducersIndices::new(&pre).ok(),
            subscriber: SubscriberIndices::new(&pre).ok(),
            pre,
        })
    }
}

impl Loader {
    /// A loader for services with these limits, compiling through `cache`
    /// if given.
    pub fn new(services: &[Limits], cache: Option<CompileCache>) -> anyhow::Result<Self> {
        Ok(Self {
            runtime: Runtime::new(services, cache, world::link)?,
        })
    }

    /// Read, check and compile the component at `path` for a service
    /// with `limits` (which must be among those the loader was built for).
    pub fn load(&self, path: &Path, limits: &Limits) -> anyhow::Result<Arc<GuestComponent>> {
        self.load_bytes(path, &read_component(path)?, limits)
    }

    /// [`Loader::load`] for a component already read from `path`, so
    /// that a caller which needed its bytes first does not read it twice.
    pub fn load_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        limits: &Limits,
    ) -> anyhow::Result<Arc<GuestComponent>> {
        let shown = path.display();
        // Refuse what can be refused before compiling.
        let outline = self.runtime.outline(path, bytes, limits)?;
        let exported = world::check(&outline, &shown.to_string())?;
        let compiled = self
            .runtime
            .compile(path, bytes, limits)
            .map_err(|error| match error.downcast_ref::<Unlinked>() {
                Some(unlinked) => anyhow::anyhow!(
                    "{shown} cannot be served: {}",
                    unlinked
                        .import()
                        .map_or_else(|| unlinked.to_string(), world::not_provided)
                ),
                None => error,
            })?;
        let instance_pre = compiled.pre;
        let pre = match exported {
            Exported::Service => {
                CurrentPre::new(instance_pre).map(|current| GuestPre::Current(Box::new(current)))
            }
            Exported::ServiceV1 => v1::ServicePre::new(instance_pre).map(GuestPre::V1),
            Exported::Datagram => {
                datagram::DatagramServicePre::new(instance_pre).map(GuestPre::Datagram)
            }
        };
        let pre = pre
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{shown} does not match the weft:protocol world"))?;
        Ok(Arc::new(GuestComponent {
            path: path.to_owned(),
            digest: digest(bytes),
            engine: compiled.engine,
            pre,
        }))
    }
}
