//! What can be told about a component before compiling it, which takes
//! seconds for a Python or JavaScript guest: whether it exports the weft
//! protocol in a version this host serves, and whether weft grants every
//! interface it imports. The linker checks imports again after compiling.

use anyhow::Context as _;
use wasmparser::{Parser, Payload};

/// The interface every weft guest of the `service` world exports, in the
/// current WIT version.
pub const PROTOCOL_EXPORT: &str = "weft:protocol/protocol@0.2.3";

/// The interface a guest of the `datagram-service` world exports, new in
/// 0.2.3.
pub const DATAGRAM_EXPORT: &str = "weft:protocol/datagram-handler@0.2.3";

/// The protocol interface in the earlier versions, which are still served:
/// 0.2.2 to 0.2.0 by the current bindings (each later 0.2.x only added
/// types and functions, and wasmtime matches 0.2.x names by semver),
/// 0.1.0 by its own.
pub const EARLIER_PROTOCOL_EXPORTS: [&str; 4] = [
    "weft:protocol/protocol@0.2.2",
    "weft:protocol/protocol@0.2.1",
    "weft:protocol/protocol@0.2.0",
    "weft:protocol/protocol@0.1.0",
];

/// Exports served by the current bindings.
const CURRENT_PROTOCOL_EXPORTS: [&str; 4] = [
    PROTOCOL_EXPORT,
    "weft:protocol/protocol@0.2.2",
    "weft:protocol/protocol@0.2.1",
    "weft:protocol/protocol@0.2.0",
];

/// What a component serves, and so which bindings call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exported {
    /// The `service` world, 0.2.0 or later: connections.
    Service,
    /// The `service` world of 0.1.0.
    ServiceV1,
    /// The `datagram-service` world: datagrams on a `udp:` endpoint.
    Datagram,
}

/// Interfaces weft grants, by semver track (`@0.2` matches any `0.2.x`, as
/// wasmtime's linker does); a pre-release version must match exactly.
const GRANTED: &[(&str, &[&str], &str)] = &[
    ("wasi:io", &["error", "poll", "streams"], "0.2"),
    ("wasi:clocks", &["wall-clock", "monotonic-clock"], "0.2"),
    (
        "wasi:random",
        &["random", "insecure", "insecure-seed"],
        "0.2",
    ),
    (
        "wasi:cli",
        &[
            "exit",
            "environment",
            "stdin",
            "stdout",
            "stderr",
            "terminal-input",
            "terminal-output",
            "terminal-stdin",
            "terminal-stdout",
            "terminal-stderr",
        ],
        "0.2",
    ),
    ("wasi:filesystem", &["types", "preopens"], "0.2"),
    (
        "wasi:sockets",
        &[
            "network",
            "instance-network",
            "tcp-create-socket",
            "tcp",
            "udp-create-socket",
            "udp",
            "ip-name-lookup",
        ],
        "0.2",
    ),
    ("wasi:config", &["store"], "0.2.0-rc.1"),
    (
        "weft:protocol",
        &["types", "transport", "log", "reactor", "datagram-transport"],
        "0.2",
    ),
    ("weft:protocol", &["types", "transport", "log"], "0.1"),
];

/// The top-level imports and exports of a component, read without
/// compiling it.
#[derive(Debug, Default)]
pub struct Outline {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl Outline {
    /// Read the names of `bytes`' own imports and exports, not those of
    /// the modules and components nested in it.
    pub fn read(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut outline = Outline::default();
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.context("it is not a valid WebAssembly component")? {
                Payload::Version { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(imports) if depth == 1 => {
                    for import in imports {
                        outline.imports.push(full_name(import?.name));
                    }
                }
                Payload::ComponentExportSection(exports) if depth == 1 => {
                    for export in exports {
                        outline.exports.push(full_name(export?.name));
                    }
                }
                _ => {}
            }
        }
        Ok(outline)
    }

    /// Refuse a component that imports an interface weft does not grant.
    pub fn check_imports(&self) -> anyhow::Result<()> {
        match self.imports.iter().find(|name| !granted(name)) {
            Some(refused) => anyhow::bail!("{}", not_provided(refused)),
            None => Ok(()),
        }
    }

    /// Refuse a component that does not export the weft protocol interface
    /// (or the datagram handler) in a version this host serves; what it
    /// serves.
    pub fn check_exports(&self) -> anyhow::Result<Exported> {
        let exports = &self.exports;
        let exports_one_of =
            |names: &[&str]| exports.iter().any(|name| names.contains(&name.as_str()));
        if exports_one_of(&CURRENT_PROTOCOL_EXPORTS) {
            return Ok(Exported::Service);
        }
        if exports_one_of(&EARLIER_PROTOCOL_EXPORTS) {
            return Ok(Exported::ServiceV1);
        }
        if exports_one_of(&[DATAGRAM_EXPORT]) {
            return Ok(Exported::Datagram);
        }
        match exports
            .iter()
            .find(|name| name.starts_with("weft:protocol/protocol@"))
        {
            Some(other) => anyhow::bail!(
                "it exports {other}, but this host serves {PROTOCOL_EXPORT} and {}; rebuild it against this weft's wit/",
                EARLIER_PROTOCOL_EXPORTS.join(", ")
            ),
            None => anyhow::bail!(
                "it does not export {PROTOCOL_EXPORT} (or {DATAGRAM_EXPORT}); build it against \
                 the `service` (or `datagram-service`) world in weft's wit/"
            ),
        }
    }
}

/// Why a component importing `name` is refused, here or by the linker.
pub(crate) fn not_provided(name: &str) -> String {
    format!(
        "it imports `{name}`, which weft does not provide (a guest may import \
         weft:protocol and the WASI runtime interfaces listed in wit/weft.wit)"
    )
}

/// An import's or export's name with its version, however it is encoded.
fn full_name(name: wasmparser::ComponentExternName<'_>) -> String {
    format!("{}{}", name.name, name.version_suffix.unwrap_or_default())
}

/// Whether weft grants the interface imported as `name`
/// (`wasi:io/poll@0.2.6`).
pub(crate) fn granted(name: &str) -> bool {
    let Some((path, version)) = name.split_once('@') else {
        return false;
    };
    let Some((package, interface)) = path.split_once('/') else {
        return false;
    };
    GRANTED.iter().any(|(granted_package, interfaces, track)| {
        *granted_package == package && interfaces.contains(&interface) && on_track(version, track)
    })
}

/// `0.2.6` is on track `0.2`; a pre-release such as `0.2.0-rc.1` only on
/// its own.
fn on_track(version: &str, track: &str) -> bool {
    if version.contains('-') || track.contains('-') {
        return version == track;
    }
    version == track
        || version
            .strip_prefix(track)
            .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_granted_by_interface_and_semver_track() {
        for name in [
            "wasi:io/poll@0.2.6",
            "wasi:io/poll@0.2.12",
            "wasi:sockets/tcp@0.2.9",
            "wasi:config/store@0.2.0-rc.1",
            "weft:protocol/reactor@0.2.0",
            "weft:protocol/log@0.1.0",
        ] {
            assert!(granted(name), "{name}");
        }
        for name in [
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:io/poll@0.3.0",
            "wasi:io/poll@0.20.0",
            "wasi:config/store@0.2.0-rc.2",
            "weft:protocol/reactor@0.1.0",
            "wasi:io/poll",
            "env",
        ] {
            assert!(!granted(name), "{name}");
        }
    }
}
