//! `weft check`: load a component as `serve` would (read, check, compile,
//! link) without listening, and say what it is: the world and WIT version it was
//! built for, what it imports and what weft makes of each, its size, how
//! long it took to load, and the language runtime inside, if recognisable.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use wasmparser::{KnownCustom, Parser, Payload};

use crate::guest::component::Loader;
use crate::guest::world::{
    self, DATAGRAM_EXPORTS, EARLIER_PROTOCOL_EXPORTS, PROTOCOL_EXPORT, SUBSCRIBER_EXPORT,
};
use crate::sandbox::limits::Limits;
use crate::sandbox::outline::Outline;
use crate::sandbox::runtime::read_component;

/// What weft makes of one import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Linked and usable: weft's own interfaces, clocks, random, stdio.
    Granted,
    /// Linked so that language runtimes load, but every use is refused or
    /// sees nothing: sockets, files, environment, stdin.
    Denied,
    /// Not provided: a component importing it is not served.
    Refused,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that `{:<7}` lines the names up.
        f.pad(match self {
            Grant::Granted => "granted",
            Grant::Denied => "denied",
            Grant::Refused => "refused",
        })
    }
}

/// What `weft check` found out about one component.
#[derive(Debug)]
pub struct Report {
    /// The weft protocol version it exports, if any.
    pub version: Option<&'static str>,
    /// The world it is built for: `service` (connections) or
    /// `datagram-service` (datagrams on `udp:`), if it exports either.
    pub world: Option<&'static str>,
    /// Each import, with what weft makes of it.
    pub imports: Vec<(String, Grant)>,
    /// Its size in bytes.
    pub size: usize,
    /// How long loading took (compiling, or reading the compile cache).
    pub load_time: Duration,
    /// The language runtime inside, when it can be told.
    pub language: Option<String>,
    /// Why `serve` would refuse it, or `None` if it would serve it.
    pub refused: Option<String>,
}

/// Check the component at `path` as `serve` would with `limits`.
pub fn check(loader: &Loader, path: &Path, limits: &Limits) -> anyhow::Result<Report> {
    let bytes = read_component(path)?;
    let outline = Outline::read(&bytes).unwrap_or_default();
    let exports = |name: &str| outline.exports.iter().any(|e| e == name);
    // `subscriber` of 0.2.4 and 0.2.5 is served as 0.2.6's.
    let exports_any_version = |name: &str| {
        let unversioned = name.split_once('@').map_or(name, |(path, _)| path);
        outline.exports.iter().any(|e| {
            e.split_once('@')
                .is_some_and(|(path, _)| path == unversioned)
        })
    };
    let export = [PROTOCOL_EXPORT]
        .into_iter()
        .chain(EARLIER_PROTOCOL_EXPORTS)
        .chain(DATAGRAM_EXPORTS)
        .find(|name| exports(name));
    let version = export.and_then(|name| name.split_once('@').map(|(_, version)| version));
    let world = export.map(|name| match name {
        _ if DATAGRAM_EXPORTS.contains(&name) => "datagram-service",
        _ if exports_any_version(SUBSCRIBER_EXPORT) => "stateful-service",
        _ => "service",
    });
    let imports = outline
        .imports
        .iter()
        .map(|name| (name.clone(), grant(name)))
        .collect();
    let clock = Instant::now();
    let refused = loader
        .load_bytes(path, &bytes, limits)
        .err()
        .map(|error| format!("{error:#}"));
    Ok(Report {
        version,
        world,
        imports,
        size: bytes.len(),
        load_time: clock.elapsed(),
        language: language(&bytes),
        refused,
    })
}

/// What weft makes of the interface imported as `name`.
fn grant(name: &str) -> Grant {
    const DENIED: [&str; 4] = [
        "wasi:sockets/",
        "wasi:filesystem/",
        "wasi:cli/environment@",
        "wasi:cli/stdin@",
    ];
    if !world::granted(name) {
        Grant::Refused
    } else if DENIED.iter().any(|prefix| name.starts_with(prefix)) {
        Grant::Denied
    } else {
        Grant::Granted
    }
}

/// The language runtime inside, from the producers sections the toolchains
/// leave (and, for Python, the interpreter's library name).
fn language(bytes: &[u8]) -> Option<String> {
    let mut fields: Vec<(String, String, String)> = Vec::new();
    for payload in Parser::new(0).parse_all(bytes).flatten() {
        let Payload::CustomSection(section) = payload else {
            continue;
        };
        let KnownCustom::Producers(producers) = section.as_known() else {
            continue;
        };
        for field in producers.into_iter().flatten() {
            for value in field.values.into_iter().flatten() {
                fields.push((
                    field.name.to_owned(),
                    value.name.to_owned(),
                    value.version.to_owned(),
                ));
            }
        }
    }
    let find = |field: &str, name: &str| {
        fields
            .iter()
            .find(|(f, n, _)| f == field && n == name)
            .map(|(_, _, version)| version.clone())
    };
    let with_version = |language: &str, tool: &str, version: Option<String>| match version {
        Some(version) if !version.is_empty() => format!("{language} ({tool} {version})"),
        _ => format!("{language} ({tool})"),
    };
    if let Some(version) = find("processed-by", "ComponentizeJS") {
        return Some(with_version("JavaScript", "ComponentizeJS", Some(version)));
    }
    if bytes.windows(11).any(|window| window == b"libpython3.") {
        return Some("Python (componentize-py)".to_owned());
    }
    if find("language", "Rust").is_some() {
        return Some(with_version("Rust", "rustc", find("processed-by", "rustc")));
    }
    if let Some(version) = find("processed-by", "wit-bindgen-c") {
        return Some(with_version("C", "wit-bindgen-c", Some(version)));
    }
    None
}

impl Report {
    /// The report as `weft check` prints it, under the component's path.
    pub fn show(&self, path: &Path) -> String {
        let mut out = match &self.refused {
            None => format!("{}: weft serves it\n", path.display()),
            Some(reason) => format!("{}: weft refuses it: {reason}\n", path.display()),
        };
        if self.version.is_none() && self.imports.is_empty() {
            // Not a component at all, or an empty one: nothing more to say.
            return out;
        }
        let version = self.version.map_or_else(
            || "none (no weft:protocol/protocol export)".to_owned(),
            |version| format!("weft:protocol@{version}"),
        );
        out += &format!("  built for  {version}\n");
        if let Some(world) = self.world {
            let served = match world {
                "datagram-service" => "datagrams, on a udp: endpoint",
                _ => "connections, on tcp:, tcp6:, ssl: or unix:",
            };
            out += &format!("  world      {world}: {served}\n");
        }
        out += &format!("  size       {} KiB\n", self.size / 1024);
        out += &format!(
            "  loaded in  {:.1?} (compiled, or from the compile cache)\n",
            self.load_time
        );
        let language = self.language.as_deref().unwrap_or("not recognised");
        out += &format!("  language   {language}\n");
        for (i, (name, grant)) in self.imports.iter().enumerate() {
            let label = if i == 0 { "imports" } else { "" };
            out += &format!("  {label:<9}  {grant:<7}  {name}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_granted_denied_or_refused() {
        assert_eq!(grant("weft:protocol/transport@0.2.0"), Grant::Granted);
        assert_eq!(grant("wasi:clocks/monotonic-clock@0.2.6"), Grant::Granted);
        assert_eq!(grant("wasi:sockets/tcp@0.2.9"), Grant::Denied);
        assert_eq!(grant("wasi:cli/environment@0.2.6"), Grant::Denied);
        assert_eq!(grant("wasi:http/outgoing-handler@0.2.6"), Grant::Refused);
    }
}
