//! In-process measurements for the benchmark: what one event costs to
//! cross into a guest and bring its write back, with no socket involved.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::task::TaskTracker;

use crate::capability::transport::Outbox;
use crate::guest::component::Loader;
use crate::metrics::{Kind, Metrics};
use crate::net::stream::Ends;
use crate::sandbox::cache::CompileCache;
use crate::sandbox::limits::Limits;
use crate::sandbox::ticker;
use crate::server::service::{Common, Service, Settings};

/// What one event cost, on average.
#[derive(Clone, Copy, Debug)]
pub struct EventCost {
    /// The `data-received` call, the guest's writes included, and the host
    /// taking them from the outbox as a connection would.
    pub time: Duration,
    /// Bytes the guest wrote back per event.
    pub written: f64,
}

/// The mean cost of one `data-received` of `payload` into the component at
/// `path`, compiled through `cache` (so that what is measured is not
/// preceded by seconds of compiling a Python component), over `events`
/// events after a warm-up of a tenth as many, all on one connection. Any
/// guest can be measured: what it writes is taken and counted, whatever it
/// is (an echo writes the payload back, an HTTP guest given a request its
/// response).
pub async fn event_cost(
    path: &Path,
    cache: CompileCache,
    payload: &[u8],
    events: u32,
) -> anyhow::Result<EventCost> {
    let limits = Limits::default();
    let loader = Loader::new(std::slice::from_ref(&limits), Some(cache))?;
    let component = loader.load(path, &limits)?;
    let service = Service::new(
        "measure".into(),
        component,
        limits.clone(),
        Settings::default(),
        &Common::new("measure".into(), Kind::Stream, &limits, &Metrics::new()),
        Arc::default(),
        TaskTracker::new(),
    );
    // Awake all through, as a worker under load is: the epoch tickers
    // tick, and no call pays to tell them.
    let _watched = ticker::watch_this_thread();
    let instance = service
        .instance(None)
        .await
        .context("cannot start the guest")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let outbox = Arc::new(Outbox::new(
        service.name.clone(),
        &Ends::tcp(addr, addr, false),
        limits.write_buffer,
        limits.write_limit,
    ));
    let protocol = instance.build_protocol(outbox.clone(), None).await?;
    let mut written = std::collections::VecDeque::new();

    let mut clock = Instant::now();
    let mut total = 0;
    for round in 0..events + events / 10 {
        if round == events / 10 {
            clock = Instant::now();
            total = 0;
        }
        outbox.set_calling(true);
        instance.data_received(protocol, payload).await?;
        outbox.set_calling(false);
        outbox.take(&mut written);
        let bytes: usize = written.drain(..).map(|write| write.len()).sum();
        outbox.sent(bytes);
        total += bytes;
    }
    Ok(EventCost {
        time: clock.elapsed() / events,
        written: total as f64 / f64::from(events),
    })
}
