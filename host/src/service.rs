//! A service: one component served on one endpoint. It hands each new
//! connection the current guest instance, starting a fresh one when there
//! is none yet or the last was retired by a trap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

use crate::instance::Instance;
use crate::limits::Limits;
use crate::runtime::{GuestComponent, Runtime};

/// A component, its limits, and the instance serving its connections.
pub struct Service {
    pub name: Arc<str>,
    pub limits: Limits,
    runtime: Arc<Runtime>,
    component: Arc<GuestComponent>,
    current: Mutex<Option<Arc<Instance>>>,
    instances_started: AtomicU64,
}

impl Service {
    pub fn new(
        name: Arc<str>,
        runtime: Arc<Runtime>,
        component: Arc<GuestComponent>,
        limits: Limits,
    ) -> Self {
        Self {
            name,
            limits,
            runtime,
            component,
            current: Mutex::new(None),
            instances_started: AtomicU64::new(0),
        }
    }

    /// The instance new connections go to: like a Twisted factory, one
    /// instance serves them all, so guest state is shared between them.
    pub async fn instance(&self) -> anyhow::Result<Arc<Instance>> {
        let mut current = self.current.lock().await;
        if let Some(instance) = current.as_ref().filter(|i| !i.is_retired()) {
            return Ok(instance.clone());
        }
        let id = self.instances_started.fetch_add(1, Ordering::Relaxed) + 1;
        let instance = Instance::start(
            &self.runtime,
            &self.component,
            self.name.clone(),
            id,
            &self.limits,
        )
        .await?;
        if id > 1 {
            tracing::info!(
                service = &*self.name,
                instance = id,
                "started a fresh guest instance"
            );
        }
        *current = Some(instance.clone());
        Ok(instance)
    }
}
