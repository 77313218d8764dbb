//! Whether a built artifact is older than its sources, for the builds cargo
//! does not track (componentize-py, componentize-js, clang), and which
//! sources a folder holds.

use std::path::{Path, PathBuf};
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

/// A build command's arguments, `SOURCE [OUT]`: the source, which must
/// be a file ending in `.extension`, and the output, by default the
/// source with `.wasm` in place of its extension.
pub fn source_and_output(
    args: &[String],
    extension: &str,
    usage: &str,
) -> Result<(PathBuf, PathBuf), String> {
    let (source, out) = match args {
        [source] => (
            PathBuf::from(source),
            Path::new(source).with_extension("wasm"),
        ),
        [source, out] => (PathBuf::from(source), PathBuf::from(out)),
        _ => return Err(format!("usage: {usage}")),
    };
    if source.extension().and_then(|e| e.to_str()) != Some(extension) {
        return Err(format!(
            "{}: expected a .{extension} file",
            source.display()
        ));
    }
    if !source.is_file() {
        return Err(format!("{}: no such file", source.display()));
    }
    Ok((source, out))
}

/// When `path` last changed; the epoch if it does not exist.
fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The files directly in `dir` whose name ends in `.extension`, by name:
/// each one guest.
pub fn each_with_extension(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == extension))
        .collect();
    found.sort();
    Ok(found)
}

/// A source file's name without its extension: its guest's name.
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(String::new, |stem| stem.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_with_the_extension_is_a_guest_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("xtask-sources-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("nested.c")).unwrap();
        for file in ["b.c", "a.c", "a.h", "notes.c.txt"] {
            std::fs::write(dir.join(file), "").unwrap();
        }
        let found = each_with_extension(&dir, "c").unwrap();
        let stems: Vec<String> = found.iter().map(|path| stem(path)).collect();
        assert_eq!(stems, ["a", "b"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
