//! Cranelift's compiled functions, kept beside the compile cache, so that a
//! component compiled for the first time reuses the work done for every
//! function it shares with one compiled before: every Python guest carries
//! the same CPython, every JavaScript guest the same StarlingMonkey.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// One engine's compiled functions, by Cranelift's key for each (the
/// function's code and the compiler's settings), in a file of records that
/// every compile appends to. While a compile runs, only an index of the
/// file is held and each function is read when asked for, so neither a
/// compile nor a serving process holds the file in memory.
#[derive(Debug, Default)]
pub struct FunctionCache {
    file: OnceLock<PathBuf>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Compiles under way on this engine.
    compiling: usize,
    /// The file as the first of them opened it, and where its records are.
    reading: Option<(File, HashMap<Vec<u8>, Record>)>,
    /// Records inserted since, encoded, and where each value is in them.
    fresh: Vec<u8>,
    fresh_index: HashMap<Vec<u8>, Record>,
    /// The file was damaged after its last whole record: it is written
    /// anew, not appended to.
    damaged: bool,
    reused: Reused,
}

/// Where a record's value is, and its checksum.
#[derive(Clone, Copy, Debug)]
struct Record {
    at: u64,
    length: usize,
    checksum: [u8; 8],
}

/// Functions looked up while compiling, and how many were found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reused {
    pub found: usize,
    pub looked_up: usize,
}

/// A compile under way: the file is indexed while one lives, and what it
/// added is written when the last one ends.
pub struct Compiling<'a>(Option<&'a FunctionCache>);

impl FunctionCache {
    /// Keep this engine's functions in `file` (named for the engine's
    /// settings, so that each engine reads only what it can use).
    pub fn bind(&self, file: PathBuf) {
        let _ = self.file.set(file);
    }

    /// The file the functions are kept in, once bound.
    pub fn file(&self) -> Option<&Path> {
        self.file.get().map(PathBuf::as_path)
    }

    /// Index the functions for a compile, until the returned guard drops.
    pub fn compiling(&self) -> Compiling<'_> {
        let mut state = self.lock();
        state.compiling += 1;
        if state.compiling == 1
            && let Some(path) = self.file()
        {
            state.reused = Reused::default();
            match File::open(path).and_then(|file| Ok((scan(&file)?, file))) {
                Ok(((index, whole), file)) => {
                    state.reading = Some((file, index));
                    state.damaged = !whole;
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!("cannot read {}: {error}", path.display()),
            }
        }
        Compiling(Some(self))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only a cache behind it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the compiles since the file was indexed found in it.
    fn finish(&self) -> Reused {
        let mut state = self.lock();
        state.compiling -= 1;
        if state.compiling > 0 {
            return state.reused;
        }
        let reading = state.reading.take();
        let fresh = std::mem::take(&mut state.fresh);
        state.fresh_index = HashMap::new();
        let damaged = std::mem::take(&mut state.damaged);
        let reused = state.reused;
        drop(state);
        let Some(path) = self.file() else {
            return reused;
        };
        let written = match reading {
            // Appended after a damaged record, new records would never be
            // read: copy the whole ones into a new file instead.
            Some((file, index)) if damaged => rewrite(path, &file, &index, &fresh),
            _ if fresh.is_empty() => Ok(()),
            _ => append(path, &fresh),
        };
        if let Err(error) = written {
            tracing::warn!("cannot write {}: {error}", path.display());
        }
        reused
    }
}

impl Compiling<'_> {
    /// End the compile: what it found in the cache.
    pub fn finish(mut self) -> Reused {
        self.0.take().map(FunctionCache::finish).unwrap_or_default()
    }
}

impl Drop for Compiling<'_> {
    /// A compile that failed ends too.
    fn drop(&mut self) {
        if let Some(cache) = self.0.take() {
            cache.finish();
        }
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let mut state = self.lock();
        state.reused.looked_up += 1;
        let value = if let Some(record) = state.fresh_index.get(key) {
            let at = record.at as usize;
            Some(state.fresh[at..at + record.length].to_vec())
        } else {
            let (file, index) = state.reading.as_ref()?;
            let record = index.get(key)?;
            let mut value = vec![0; record.length];
            // A record whose bytes changed since is compiled again.
            (file.read_exact_at(&mut value, record.at).is_ok()
                && checksum(key, &value) == record.checksum)
                .then_some(value)
        };
        state.reused.found += usize::from(value.is_some());
        value.map(Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut state = self.lock();
        if state.compiling == 0 {
            return false;
        }
        let record = encode(&mut state.fresh, key, &value);
        state.fresh_index.insert(key.to_vec(), record);
        true
    }
}

/// Append `records` in one write, so that processes compiling at once
/// (each appending) never interleave their records; the file is made
/// private to this user, as the compile cache's directory is.
fn append(path: &Path, records: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = File::options()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(records)
}

/// Replace the file at `path` (by a rename, so that a reader sees the old
/// file or the new one) with the whole records of `old`, then `fresh`.
fn rewrite(
    path: &Path,
    old: &File,
    index: &HashMap<Vec<u8>, Record>,
    fresh: &[u8],
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let mut writer = std::io::BufWriter::new(
        File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?,
    );
    let mut records = Vec::new();
    for (key, record) in index {
        let mut value = vec![0; record.length];
        old.read_exact_at(&mut value, record.at)?;
        if checksum(key, &value) == record.checksum {
            records.clear();
            encode(&mut records, key, &value);
            writer.write_all(&records)?;
        }
    }
    writer.write_all(fresh)?;
    writer.flush()?;
    std::fs::rename(&partial, path)
}

/// Bytes of a record's header: key length, value length, checksum.
const HEADER: usize = 4 + 4 + 8;

/// Append a record to `out`: the lengths, the first 8 bytes of the SHA-256
/// of key and value, then key and value. Returns where its value is.
fn encode(out: &mut Vec<u8>, key: &[u8], value: &[u8]) -> Record {
    let length = |bytes: &[u8]| u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes();
    let checksum = checksum(key, value);
    out.extend_from_slice(&length(key));
    out.extend_from_slice(&length(value));
    out.extend_from_slice(&checksum);
    out.extend_from_slice(key);
    let at = out.len() as u64;
    out.extend_from_slice(value);
    Record {
        at,
        length: value.len(),
        checksum,
    }
}

/// Where each record of `file` is, up to the first one cut short (a write
/// interrupted by a full disk); and whether every byte was read. Only the
/// headers and keys are read: a damaged value is found when it is read.
fn scan(file: &File) -> std::io::Result<(HashMap<Vec<u8>, Record>, bool)> {
    let size = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let mut index = HashMap::new();
    let mut at = 0;
    let mut header = [0; HEADER];
    while at + HEADER as u64 <= size {
        reader.read_exact(&mut header)?;
        let length = |from: usize| u32::from_le_bytes(header[from..from + 4].try_into().unwrap());
        let (key_length, value_length) = (length(0), length(4));
        let value_at = at + (HEADER as u64) + u64::from(key_length);
        if value_at + u64::from(value_length) > size {
            break;
        }
        let mut key = vec![0; key_length as usize];
        reader.read_exact(&mut key)?;
        reader.seek_relative(i64::from(value_length))?;
        let record = Record {
            at: value_at,
            length: value_length as usize,
            checksum: header[8..].try_into().unwrap(),
        };
        index.insert(key, record);
        at = value_at + u64::from(value_length);
    }
    Ok((index, at == size))
}

fn checksum(key: &[u8], value: &[u8]) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update((key.len() as u64).to_le_bytes())
        .chain_update(key)
        .chain_update(value)
        .finalize();
    digest[..8].try_into().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore as _;

    fn bound(file: &Path) -> FunctionCache {
        let cache = FunctionCache::default();
        cache.bind(file.to_path_buf());
        cache
    }

    /// The keys of the records in `file`'s whole records.
    fn keys(file: &Path) -> (Vec<Vec<u8>>, bool) {
        let (index, whole) = scan(&File::open(file).unwrap()).unwrap();
        let mut keys: Vec<_> = index.into_keys().collect();
        keys.sort();
        (keys, whole)
    }

    #[test]
    fn what_one_compile_inserts_the_next_reads_and_damage_costs_only_its_records() {
        let dir = std::env::temp_dir().join(format!("weft-functions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("engine.functions");
        let first = bound(&file);
        let compiling = first.compiling();
        assert_eq!(first.get(b"a"), None);
        assert!(first.insert(b"a", b"one".to_vec()));
        assert!(first.insert(b"b", b"two".to_vec()));
        assert_eq!(first.get(b"a").as_deref(), Some(&b"one"[..]));
        let reused = compiling.finish();
        assert_eq!((reused.found, reused.looked_up), (1, 2));
        assert_eq!(first.get(b"a"), None, "nothing is held between compiles");
        assert!(!first.insert(b"c", vec![]), "nor taken outside one");

        let second = bound(&file);
        {
            let _compiling = second.compiling();
            assert_eq!(second.get(b"b").as_deref(), Some(&b"two"[..]));
            second.insert(b"c", b"three".to_vec());
        }
        let mut bytes = std::fs::read(&file).unwrap();
        let whole = bytes.len();

        // A value whose bytes changed is compiled again.
        bytes[whole - 1] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let third = bound(&file);
        {
            let _compiling = third.compiling();
            assert_eq!(third.get(b"c"), None);
            assert_eq!(third.get(b"a").as_deref(), Some(&b"one"[..]));
        }
        bytes[whole - 1] ^= 1;

        // A record cut short: those before it stay, and the next compile
        // writes the file anew with them and what it added.
        encode(&mut bytes, b"d", b"four");
        std::fs::write(&file, &bytes[..bytes.len() - 1]).unwrap();
        let cut = keys(&file);
        assert_eq!(
            cut,
            (vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()], false)
        );
        let fourth = bound(&file);
        {
            let _compiling = fourth.compiling();
            fourth.insert(b"e", b"five".to_vec());
        }
        let (written, whole) = keys(&file);
        assert!(whole);
        assert_eq!(written, [&b"a"[..], b"b", b"c", b"e"].map(<[u8]>::to_vec));
        let fifth = bound(&file);
        let _compiling = fifth.compiling();
        assert_eq!(fifth.get(b"e").as_deref(), Some(&b"five"[..]));
        assert_eq!(fifth.get(b"c").as_deref(), Some(&b"three"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
