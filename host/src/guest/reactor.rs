//! The `reactor` interface: each of its functions belongs to a capability
//! (`timers`, `outbound`), which implements it; this only routes.

use wasmtime::component::Resource;

use crate::guest::timers::DelayedCall;
use crate::sandbox::bindings::ConnectError;
use crate::sandbox::bindings::weft::protocol::reactor::{Host, TimerError};
use crate::sandbox::state::GuestState;

impl Host for GuestState {
    fn call_later(
        &mut self,
        delay: u64,
        token: u64,
    ) -> wasmtime::Result<Result<Resource<DelayedCall>, TimerError>> {
        GuestState::call_later(self, delay, token)
    }

    fn connect(
        &mut self,
        endpoint: String,
        token: u64,
    ) -> wasmtime::Result<Result<(), ConnectError>> {
        GuestState::connect(self, endpoint, token)
    }
}
