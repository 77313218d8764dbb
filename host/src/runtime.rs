//! The one wasmtime `Engine` and `Linker` of a weft process, the epoch
//! ticker that enforces call deadlines, and loading components: each is
//! read, checked and compiled once, with a clear error when it can't serve.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use anyhow::Context as _;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::{Service, ServicePre};
use crate::limits::{ASYNC_STACK, EPOCH_TICK, MAX_WASM_STACK};
use crate::state::GuestState;
use crate::wasi;

/// The interface every weft guest exports.
pub const PROTOCOL_EXPORT: &str = "weft:protocol/protocol@0.1.0";

/// The engine and linker shared by every service.
pub struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
}

/// A compiled component, checked against the weft world and ready to
/// instantiate.
pub struct GuestComponent {
    /// Where the component was loaded from.
    pub path: PathBuf,
    pub(crate) pre: ServicePre<GuestState>,
}

impl Runtime {
    /// Build the engine and linker and start the epoch ticker, which stops
    /// when the engine is dropped.
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // Component-model async costs every call ~2.6x; no guest needs it.
            .concurrency_support(false)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .async_stack_size(ASYNC_STACK);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;

        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker)?;
        Service::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;

        let weak = engine.weak();
        thread::Builder::new()
            .name("weft-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    thread::sleep(EPOCH_TICK);
                }
            })
            .context("cannot start the epoch ticker thread")?;

        Ok(Arc::new(Self { engine, linker }))
    }

    /// The engine every store is created in.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Read, check and compile the component at `path`.
    pub fn load(&self, path: &Path) -> anyhow::Result<Arc<GuestComponent>> {
        let shown = path.display();
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read component {shown}"))?;
        check_header(&bytes).with_context(|| format!("{shown} cannot be served"))?;
        let component = Component::new(&self.engine, &bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{shown} is not a valid WebAssembly component"))?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|error| {
            anyhow::anyhow!(
                "{shown} cannot be served: {}",
                missing_import(&error.to_string())
            )
        })?;
        self.check_exports(&component)
            .with_context(|| format!("{shown} is not a weft service"))?;
        let pre = ServicePre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{shown} does not match the weft:protocol world"))?;
        Ok(Arc::new(GuestComponent {
            path: path.to_owned(),
            pre,
        }))
    }

    fn check_exports(&self, component: &Component) -> anyhow::Result<()> {
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        if exports.iter().any(|name| name == PROTOCOL_EXPORT) {
            return Ok(());
        }
        match exports
            .iter()
            .find(|name| name.starts_with("weft:protocol/protocol@"))
        {
            Some(other) => anyhow::bail!(
                "it exports {other}, but this host serves {PROTOCOL_EXPORT}; rebuild it against this weft's wit/"
            ),
            None => anyhow::bail!(
                "it does not export {PROTOCOL_EXPORT}; build it against the `service` world in weft's wit/"
            ),
        }
    }
}

/// Tell a component from a core module or a file that is not WebAssembly.
fn check_header(bytes: &[u8]) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];
    if bytes.get(..4) != Some(MAGIC) {
        anyhow::bail!("it is not WebAssembly (no \\0asm header)");
    }
    if bytes.get(4..8) == Some(&CORE_MODULE) {
        anyhow::bail!(
            "it is a core WebAssembly module, not a component: build it for wasm32-wasip2, \
             or wrap it with `wasm-tools component new`"
        );
    }
    Ok(())
}

/// Turn wasmtime's "component imports instance `X`, but a matching
/// implementation was not found in the linker" into a sentence that names X.
fn missing_import(message: &str) -> String {
    let name = message.split('`').nth(1);
    match name {
        Some(name) if message.contains("import") => format!(
            "it imports `{name}`, which weft does not provide (a guest may import \
             weft:protocol and the WASI runtime interfaces listed in wit/weft.wit)"
        ),
        _ => message.to_owned(),
    }
}
