//! The operator's settings for a service (`config.KEY=VALUE`), answered
//! through the standard `wasi:config/store` with wasmtime's implementation.

use wasmtime::component::Linker;
use wasmtime_wasi_config::WasiConfig;

/// Add `wasi:config/store` to `linker`: each instance reads the settings
/// `settings` projects from its store; a key that is not set reads as none.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    settings: fn(&mut T) -> WasiConfig<'_>,
) -> wasmtime::Result<()> {
    wasmtime_wasi_config::add_to_linker(linker, settings)
}
