//! The `reactor` interface: each of its functions belongs to a capability
//! (`timers`, `outbound`), which implements it; this only routes, and
//! registers the interface with a projection onto both.

use wasmtime::component::{HasData, Linker, Resource};

use crate::capability::outbound::OutboundState;
use crate::capability::timers::TimersView;
use crate::wit::ConnectError;
use crate::wit::weft::protocol::reactor::{
    self as wit, DelayedCall, Host, HostDelayedCall, TimerError,
};

/// What the `reactor` interface works on: an instance's timers and its
/// outbound connections.
pub struct ReactorView<'a> {
    pub timers: TimersView<'a>,
    pub outbound: &'a mut OutboundState,
}

/// Add `weft:protocol/reactor` to `linker`, working on what `view`
/// projects from each store.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> ReactorView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Reactor>(linker, view)
}

struct Reactor;

impl HasData for Reactor {
    type Data<'a> = ReactorView<'a>;
}

impl Host for ReactorView<'_> {
    fn call_later(
        &mut self,
        delay: u64,
        token: u64,
    ) -> wasmtime::Result<Result<Resource<DelayedCall>, TimerError>> {
        self.timers.call_later(delay, token)
    }

    fn connect(
        &mut self,
        endpoint: String,
        token: u64,
    ) -> wasmtime::Result<Result<(), ConnectError>> {
        self.outbound.connect(endpoint, token)
    }
}

impl HostDelayedCall for ReactorView<'_> {
    fn cancel(&mut self, this: Resource<DelayedCall>) -> wasmtime::Result<()> {
        self.timers.cancel(this)
    }

    fn reset(&mut self, this: Resource<DelayedCall>, delay: u64) -> wasmtime::Result<()> {
        self.timers.reset(this, delay)
    }

    fn delay(&mut self, this: Resource<DelayedCall>, delay: u64) -> wasmtime::Result<()> {
        self.timers.delay(this, delay)
    }

    fn active(&mut self, this: Resource<DelayedCall>) -> wasmtime::Result<bool> {
        self.timers.active(this)
    }

    fn drop(&mut self, this: Resource<DelayedCall>) -> wasmtime::Result<()> {
        self.timers.drop(this)
    }
}
