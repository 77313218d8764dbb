//! Compiled components cached on disk, so that a restart skips Cranelift.
//! An entry is keyed by the component's bytes and the engine's compilation
//! settings, so a changed component or a changed setting misses the cache.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components (`*.cwasm`). Loading native code
/// from it is only as safe as the directory: weft creates it private to
/// its user, and it must stay writable by the operator alone.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// A cache in `dir`, created (private to this user) on first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$XDG_CACHE_HOME/weft`, else `$HOME/.cache/weft`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
        Some(base.join("weft"))
    }

    /// The directory entries live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The component for `bytes`: from the cache if an entry for these
    /// bytes and this engine's settings is there, else compiled and stored.
    /// A cache that cannot be read or written costs a compile, never a load.
    pub fn load(&self, engine: &Engine, bytes: &[u8], shown: &str) -> anyhow::Result<Component> {
        let entry = self.dir.join(format!("{}.cwasm", key(engine, bytes)));
        let clock = Instant::now();
        if entry.is_file() {
            // SAFETY: entries are only written by `store` below, into a
            // directory private to this user; wasmtime checks the header,
            // version and engine settings of what it deserializes.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => {
                    tracing::info!(
                        "loaded {shown} from the compile cache in {:?}",
                        clock.elapsed()
                    );
                    return Ok(component);
                }
                Err(error) => {
                    tracing::warn!("ignoring compile cache entry {}: {error}", entry.display())
                }
            }
        }
        let component = super::runtime::compile(engine, bytes, shown)?;
        if let Err(error) = self.store(&entry, &component) {
            tracing::warn!(
                "cannot write the compile cache {}: {error:#}",
                self.dir.display()
            );
        }
        Ok(component)
    }

    fn store(&self, entry: &Path, component: &Component) -> anyhow::Result<()> {
        create_private_dir(&self.dir)?;
        let bytes = component.serialize().map_err(anyhow::Error::from)?;
        // Write then rename, so a reader never sees half an entry.
        let partial = entry.with_extension(format!("partial-{}", std::process::id()));
        std::fs::write(&partial, bytes)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, entry)
            .with_context(|| format!("renaming to {}", entry.display()))?;
        Ok(())
    }
}

/// Hex SHA-256 over the component's bytes and the engine settings that
/// compiled code depends on (wasmtime's own compatibility hash).
fn key(engine: &Engine, bytes: &[u8]) -> String {
    let mut hasher = DigestHasher(Sha256::new());
    hasher.0.update(bytes);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher
        .0
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Feeds `Hash` implementations into a SHA-256 digest.
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0 // Never called: `key` reads the digest instead.
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}
