//! Whether a built artifact is older than its sources, for the builds cargo
//! does not track (componentize-py, componentize-js, clang).

use std::path::Path;
use std::time::SystemTime;

/// Whether `artifact` is missing or older than a file under `sources`.
pub fn stale<const N: usize>(artifact: &Path, sources: [&Path; N]) -> bool {
    modified(artifact) < newest(sources)
}

/// When a file under any of `dirs` last changed.
fn newest<const N: usize>(dirs: [&Path; N]) -> SystemTime {
    fn walk(path: &Path, newest: &mut SystemTime) {
        if path.file_name().is_some_and(|name| name == "__pycache__") {
            return;
        }
        *newest = (*newest).max(modified(path));
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                walk(&entry.path(), newest);
            }
        }
    }
    let mut newest = SystemTime::UNIX_EPOCH;
    for dir in dirs {
        walk(dir, &mut newest);
    }
    newest
}

/// When `path` last changed; the epoch if it does not exist.
fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}
