//! The wasmtime engines and linkers of a weft process, sized for its
//! services and shared by those with the same stack and isolation (pooling
//! allocator, copy-on-write memory images); the epoch ticker that enforces
//! deadlines; compiling each component once, with what the caller links.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::sandbox::cache::CompileCache;
use crate::sandbox::function_cache::FunctionCache;
use crate::sandbox::limits::{self, HOST_STACK_HEADROOM, Isolation, Limits};
use crate::sandbox::outline::Outline;
use crate::sandbox::ticker;
use crate::sandbox::write_leak;

/// Instance slots a shared service needs per worker: its live instance
/// plus retired ones whose connections are still closing.
const SHARED_SLOTS: u32 = 4;

/// Per instance slot, what a component may use of the pool: generous for
/// Rust guests (2-4 core instances, 1 memory, 2-3 tables).
const CORE_INSTANCES_PER_SLOT: u32 = 16;
const MEMORIES_PER_SLOT: u32 = 2;
const TABLES_PER_SLOT: u32 = 8;

/// Guard pages after each linear memory of an isolated engine, whose
/// memories are reserved at their cap rather than at 4 GiB.
const ISOLATED_MEMORY_GUARD: u64 = 32 << 20;

/// The engines and linkers shared by every service, whose stores hold `T`.
pub struct Runtime<T: 'static> {
    engines: Vec<EngineSlot<T>>,
    cache: Option<CompileCache>,
}

/// One engine, the services' settings it was built for, and its linker.
struct EngineSlot<T: 'static> {
    stack: usize,
    isolation: Isolation,
    engine: Engine,
    linker: Linker<T>,
    /// The engine's compiled functions, when there is a compile cache.
    functions: Option<Arc<FunctionCache>>,
}

/// A compiled component, linked and ready to instantiate.
pub struct Compiled<T: 'static> {
    pub engine: Engine,
    pub pre: InstancePre<T>,
}

/// The linker has nothing for one of a component's imports.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unlinked(pub String);

impl Unlinked {
    /// The import named in wasmtime's "component imports instance `X`, but
    /// a matching implementation was not found in the linker", if any.
    pub fn import(&self) -> Option<&str> {
        let name = self.0.split('`').nth(1)?;
        self.0.contains("import").then_some(name)
    }
}

impl<T: Send + 'static> Runtime<T> {
    /// Build an engine for each (stack, isolation) the services ask for,
    /// its pool sized for them and its linker filled by `link`, and start
    /// the epoch ticker, which stops when the engines are dropped.
    pub fn new(
        services: &[Limits],
        cache: Option<CompileCache>,
        link: fn(&mut Linker<T>) -> wasmtime::Result<()>,
    ) -> anyhow::Result<Arc<Self>> {
        let mut engines: Vec<EngineSlot<T>> = Vec::new();
        let mut keys: Vec<(usize, Isolation)> =
            services.iter().map(|l| (l.stack, l.isolation)).collect();
        keys.sort_by_key(|(stack, isolation)| (*stack, *isolation == Isolation::Connection));
        keys.dedup();
        for (stack, isolation) in keys {
            let sharing: Vec<&Limits> = services
                .iter()
                .filter(|l| l.stack == stack && l.isolation == isolation)
                .collect();
            let functions = cache.as_ref().map(|_| Arc::new(FunctionCache::default()));
            let engine = engine(stack, isolation, &sharing, functions.clone())?;
            if let (Some(cache), Some(functions)) = (&cache, &functions) {
                functions.bind(cache.functions_file(&engine));
            }
            let mut linker = Linker::new(&engine);
            link(&mut linker)?;
            engines.push(EngineSlot {
                stack,
                isolation,
                engine,
                linker,
                functions,
            });
        }

        let weak = engines.iter().map(|slot| slot.engine.weak()).collect();
        ticker::spawn(weak).context("cannot start the epoch ticker thread")?;

        Ok(Arc::new(Self { engines, cache }))
    }

    /// What can be told of the component `bytes` (read from `path`) before
    /// compiling it, or why it cannot be served at all, or not under
    /// `limits`.
    pub fn outline(&self, path: &Path, bytes: &[u8], limits: &Limits) -> anyhow::Result<Outline> {
        let shown = path.display();
        check_header(bytes).with_context(|| format!("{shown} cannot be served"))?;
        let outline = Outline::read(bytes)
            .with_context(|| format!("{shown} is not a valid WebAssembly component"))?;
        let needed = outline.memory_at_start;
        if needed > limits.memory as u64 {
            anyhow::bail!(
                "{shown} cannot be served: memory={} is below the {} this component needs \
                 at start",
                limits::show_size(limits.memory as u64),
                limits::show_size_near(needed)
            );
        }
        Ok(outline)
    }

    /// Compile the component `bytes`, read from `path`, for a service with
    /// `limits` (which must be among those the runtime was built for),
    /// through the compile cache, and link it. An import the linker lacks
    /// fails with [`Unlinked`].
    pub fn compile(
        &self,
        path: &Path,
        bytes: &[u8],
        limits: &Limits,
    ) -> anyhow::Result<Compiled<T>> {
        let slot = self
            .engines
            .iter()
            .find(|slot| slot.stack == limits.stack && slot.isolation == limits.isolation)
            .context("no engine was built for these limits")?;
        let shown = path.display();
        // A Python guest leaks every write unless its runtime is fixed.
        let fixed = write_leak::fixed(bytes);
        let to_compile = fixed.as_deref().unwrap_or(bytes);
        let compiled = match &self.cache {
            Some(cache) => cache.load(
                &slot.engine,
                slot.functions.as_deref(),
                to_compile,
                &shown.to_string(),
            ),
            None => compile(&slot.engine, to_compile, &shown.to_string()),
        };
        let component =
            compiled.with_context(|| format!("{shown} is not a valid WebAssembly component"))?;
        let pre = slot
            .linker
            .instantiate_pre(&component)
            .map_err(|error| Unlinked(error.to_string()))?;
        Ok(Compiled {
            engine: slot.engine.clone(),
            pre,
        })
    }
}

/// Read the component file at `path`.
pub fn read_component(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read component {}", path.display()))
}

/// A component file's SHA-256.
pub type Digest = [u8; 32];

/// The SHA-256 of a component's bytes.
pub fn digest(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// Compile a component, saying so first: a Python or JavaScript guest
/// takes seconds, and a silent pause looks like a hang.
pub(crate) fn compile(engine: &Engine, bytes: &[u8], shown: &str) -> anyhow::Result<Component> {
    tracing::info!("compiling {shown} ({} KiB)...", bytes.len() / 1024);
    let clock = std::time::Instant::now();
    let component = Component::new(engine, bytes)?;
    tracing::info!("compiled {shown} in {:?}", clock.elapsed());
    Ok(component)
}

/// An engine for services with this stack and isolation, compiling
/// through `functions` when given.
fn engine(
    stack: usize,
    isolation: Isolation,
    services: &[&Limits],
    functions: Option<Arc<FunctionCache>>,
) -> anyhow::Result<Engine> {
    let slots: u32 = services
        .iter()
        .map(|limits| {
            let per_worker = match limits.isolation {
                Isolation::Shared => SHARED_SLOTS,
                Isolation::Connection => u32::try_from(limits.max_connections)
                    .unwrap_or(u32::MAX)
                    .saturating_add(SHARED_SLOTS),
            };
            per_worker.saturating_mul(u32::try_from(limits.workers.max(1)).unwrap_or(u32::MAX))
        })
        .fold(0, u32::saturating_add);
    let max_memory = services.iter().map(|l| l.memory).max().unwrap_or_default();
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_SLOT))
        .total_memories(slots.saturating_mul(MEMORIES_PER_SLOT))
        .total_tables(slots.saturating_mul(TABLES_PER_SLOT))
        .total_stacks(slots)
        .max_memory_size(max_memory)
        .table_elements(limits::TABLE_ELEMENTS)
        .max_core_instances_per_component(limits::MAX_CORE_INSTANCES as u32)
        .max_memories_per_component(limits::MAX_MEMORIES as u32)
        .max_tables_per_component(limits::MAX_TABLES as u32)
        .max_memories_per_module(MEMORIES_PER_SLOT)
        .max_tables_per_module(TABLES_PER_SLOT);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        // Component-model async costs every call ~2.6x; no guest needs it.
        .concurrency_support(false)
        .epoch_interruption(true)
        .max_wasm_stack(stack)
        .async_stack_size(stack + HOST_STACK_HEADROOM)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // For profiling: `WEFT_PERFMAP=1` names guest functions to `perf`
    // (through /tmp/perf-PID.map), so a profile shows where guests spend.
    if std::env::var_os("WEFT_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Some(functions) = functions {
        config.enable_incremental_compilation(functions)?;
    }
    if isolation == Isolation::Connection {
        // Thousands of slots at the default 4 GiB reservation each would
        // exhaust the address space; reserve each memory at its cap.
        config
            .memory_reservation(max_memory as u64)
            .memory_guard_size(ISOLATED_MEMORY_GUARD);
    }
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("cannot create the wasmtime engine")
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
