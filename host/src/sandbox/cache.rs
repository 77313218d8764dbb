//! Compiled components cached on disk, so that a restart skips Cranelift.
//! An entry is keyed by the component's bytes and the engine's compilation
//! settings, so a changed component or a changed setting misses the cache;
//! the least recently used entries are evicted past the size cap. Beside
//! the entries, each engine's compiled functions (`*.functions`, see
//! function_cache.rs) make a first compile cheaper.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::sandbox::function_cache::{Compiling, FunctionCache};
use crate::sandbox::limits;

/// A directory of compiled components (`*.cwasm`). Loading native code
/// from it is only as safe as the directory: weft creates it private to
/// its user, and it must stay writable by the operator alone.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
    max_size: u64,
}

/// What the cache holds by default, at most (`--cache-max-size`): a Python
/// or JavaScript guest compiles to about 36 MB per engine setting, a Rust
/// one to under 1 MB.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

/// What pruning or clearing the cache did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Entries removed, and their bytes.
    pub removed: usize,
    /// See `removed`.
    pub freed: u64,
    /// Entries left, and their bytes.
    pub kept: usize,
    /// See `kept`.
    pub size: u64,
}

impl CompileCache {
    /// A cache in `dir`, created (private to this user) on first write,
    /// holding at most [`DEFAULT_MAX_SIZE`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_size: DEFAULT_MAX_SIZE,
        }
    }

    /// The same cache, holding at most `max_size` bytes of entries.
    pub fn with_max_size(self, max_size: u64) -> Self {
        Self { max_size, ..self }
    }

    /// The same cache, holding at most what `WEFT_CACHE_MAX_SIZE` says
    /// (as `--cache-max-size` does), if it is set and valid.
    pub fn with_max_size_from_env(self) -> Self {
        let size = std::env::var("WEFT_CACHE_MAX_SIZE").map(|size| limits::parse_size(&size));
        match size {
            Ok(Ok(size)) => self.with_max_size(size as u64),
            _ => self,
        }
    }

    /// Evict the least recently used entries until the cache is within
    /// its size cap.
    pub fn prune(&self) -> anyhow::Result<Pruned> {
        self.prune_to(self.max_size, None)
    }

    /// Remove every entry.
    pub fn clear(&self) -> anyhow::Result<Pruned> {
        self.prune_to(0, None)
    }

    /// Remove entries, least recently used first, until they hold at most
    /// `max_size` bytes; `keep` (the entry just written) stays regardless.
    fn prune_to(&self, max_size: u64, keep: Option<&Path>) -> anyhow::Result<Pruned> {
        let mut entries = match std::fs::read_dir(&self.dir) {
            Ok(dir) => dir
                .flatten()
                .filter(|e| {
                    let path = e.path();
                    path.extension()
                        .is_some_and(|x| x == "cwasm" || x == FUNCTIONS)
                })
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    Some((used, meta.len(), e.path()))
                })
                .collect::<Vec<_>>(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", self.dir.display()));
            }
        };
        entries.sort();
        let mut pruned = Pruned {
            kept: entries.len(),
            size: entries.iter().map(|(_, size, _)| size).sum(),
            ..Pruned::default()
        };
        for (_, size, path) in entries {
            if pruned.size <= max_size {
                break;
            }
            if keep == Some(path.as_path()) {
                continue;
            }
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            pruned.removed += 1;
            pruned.freed += size;
            pruned.kept -= 1;
            pruned.size -= size;
        }
        Ok(pruned)
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

    /// Where `engine` keeps its compiled functions: a file named for the
    /// engine's settings, which every compiled function depends on.
    pub fn functions_file(&self, engine: &Engine) -> PathBuf {
        self.dir.join(format!("{}.{FUNCTIONS}", key(engine, &[])))
    }

    /// The component for `bytes`: from the cache if an entry for these
    /// bytes and this engine's settings is there, else compiled (reusing
    /// `functions`, the engine's compiled functions) and stored. A cache
    /// that cannot be read or written costs a compile, never a load.
    pub fn load(
        &self,
        engine: &Engine,
        functions: Option<&FunctionCache>,
        bytes: &[u8],
        shown: &str,
    ) -> anyhow::Result<Component> {
        let entry = self.dir.join(format!("{}.cwasm", key(engine, bytes)));
        let clock = Instant::now();
        if entry.is_file() {
            // SAFETY: entries are only written by `store` below, into a
            // directory private to this user; wasmtime checks the header,
            // version and engine settings of what it deserializes.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => {
                    // Its modification time is its last use, for eviction.
                    let touched = std::fs::File::options()
                        .write(true)
                        .open(&entry)
                        .and_then(|file| file.set_modified(SystemTime::now()));
                    if let Err(error) = touched {
                        tracing::debug!("cannot mark {} as used: {error}", entry.display());
                    }
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
        let compiling = functions.map(FunctionCache::compiling);
        let component = super::runtime::compile(engine, bytes, shown)?;
        // Stored first: `store` makes the directory the functions go in.
        if let Err(error) = self.store(&entry, &component) {
            tracing::warn!(
                "cannot write the compile cache {}: {error:#}",
                self.dir.display()
            );
        }
        if let Some(reused) = compiling.map(Compiling::finish) {
            tracing::info!(
                "{shown}: {} of {} functions reused from earlier compiles",
                reused.found,
                reused.looked_up
            );
        }
        match self.prune_to(self.max_size, Some(&entry)) {
            Ok(pruned) if pruned.removed > 0 => tracing::info!(
                "evicted {} compile cache entries ({} MiB) to stay within {} MiB",
                pruned.removed,
                pruned.freed >> 20,
                self.max_size >> 20
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!("cannot prune the compile cache: {error:#}"),
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

/// The extension of an engine's compiled functions, beside the entries.
const FUNCTIONS: &str = "functions";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_evicts_the_least_recently_used_entries_first() {
        let dir = std::env::temp_dir().join(format!("weft-cache-test-{}", std::process::id()));
        create_private_dir(&dir).unwrap();
        let cache = CompileCache::new(&dir).with_max_size(250);
        let now = SystemTime::now();
        for (name, age) in [("old", 300), ("mid", 200), ("new", 100)] {
            let path = dir.join(format!("{name}.cwasm"));
            std::fs::write(&path, [0u8; 100]).unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(now - std::time::Duration::from_secs(age))
                .unwrap();
        }
        std::fs::write(dir.join("notes.txt"), b"not an entry").unwrap();
        let pruned = cache.prune().unwrap();
        assert_eq!(
            pruned,
            Pruned {
                removed: 1,
                freed: 100,
                kept: 2,
                size: 200
            }
        );
        assert!(!dir.join("old.cwasm").exists() && dir.join("mid.cwasm").exists());
        let cleared = cache.clear().unwrap();
        assert_eq!((cleared.removed, cleared.kept), (2, 0));
        assert!(dir.join("notes.txt").exists(), "only entries are removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
