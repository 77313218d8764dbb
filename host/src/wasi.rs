//! The WASI a guest may import: what language runtimes need (stdio, clocks,
//! random, exit, environment, filesystem types), none of it granting
//! anything: no preopened directories, no variables, no arguments, and no
//! `wasi:sockets` at all, so a component importing it is refused at load.

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiView};

use std::sync::Arc;

use crate::guest_log::{GuestOutput, LogBudget};

/// Add the granted WASI interfaces, async flavour, to `linker`.
pub fn add_to_linker<T: WasiView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    use wasmtime_wasi_io::bindings::wasi::io;
    io::error::add_to_linker::<T, Io>(linker, |t| t.ctx().table)?;
    io::poll::add_to_linker::<T, Io>(linker, |t| t.ctx().table)?;
    io::streams::add_to_linker::<T, Io>(linker, |t| t.ctx().table)?;

    clocks::wall_clock::add_to_linker::<T, WasiClocks>(linker, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(linker, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(linker, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(linker, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(linker, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    filesystem::types::add_to_linker::<T, WasiFilesystem>(linker, T::filesystem)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(linker, T::filesystem)?;
    Ok(())
}

/// A WASI context that grants nothing; stdout and stderr go to the host
/// log tagged with `service`, within the service's log allowance.
pub fn context(service: &Arc<str>, budget: &LogBudget) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(GuestOutput::new(service.clone(), "stdout", budget.clone()))
        .stderr(GuestOutput::new(service.clone(), "stderr", budget.clone()))
        .build()
}

/// `wasi:io` works on the resource table alone.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}
