//! The operator's settings for a service (`config.KEY=VALUE`), answered
//! through the standard `wasi:config/store` with wasmtime's implementation.

use wasmtime::component::Linker;
use wasmtime_wasi_config::WasiConfig;

use crate::sandbox::state::GuestState;

/// Add `wasi:config/store` to `linker`: each instance reads its service's
/// settings; a key that is not set reads as none.
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    wasmtime_wasi_config::add_to_linker(linker, |state| WasiConfig::from(&*state.config))
}
