//! The weft worlds a guest may be built for: what a component must export
//! (and in which WIT versions weft serves it), the imports weft grants, and
//! the linker that grants them, one capability at a time.

use anyhow::Context as _;
use wasmtime::component::{HasData, Linker};
use wasmtime_wasi_config::WasiConfig;

use crate::capability::reactor::ReactorView;
use crate::capability::timers::TimersView;
use crate::capability::{config, datagram, keyvalue, log, messaging, reactor, transport, wasi};
use crate::guest::state::GuestState;
use crate::sandbox::outline::Outline;
use crate::wit;

/// The interface every weft guest of the `service` world exports, in the
/// current WIT version.
pub const PROTOCOL_EXPORT: &str = "weft:protocol/protocol@0.2.6";

/// The interface a guest of the `datagram-service` world exports, new in
/// 0.2.3.
pub const DATAGRAM_EXPORT: &str = "weft:protocol/datagram-handler@0.2.6";

/// The datagram handler in every served version.
pub const DATAGRAM_EXPORTS: [&str; 4] = [
    DATAGRAM_EXPORT,
    "weft:protocol/datagram-handler@0.2.5",
    "weft:protocol/datagram-handler@0.2.4",
    "weft:protocol/datagram-handler@0.2.3",
];

/// The interface a `stateful-service` guest exports to receive the
/// messages of the topics it subscribes to, new in 0.2.4.
pub const SUBSCRIBER_EXPORT: &str = "weft:protocol/subscriber@0.2.6";

/// The protocol interface in the earlier versions, which are still served:
/// 0.2.5 to 0.2.0 by the current bindings (each later 0.2.x only added
/// types, functions and the exports the host looks up apart, and wasmtime
/// matches 0.2.x names by semver), 0.1.0 by its own.
pub const EARLIER_PROTOCOL_EXPORTS: [&str; 7] = [
    "weft:protocol/protocol@0.2.5",
    "weft:protocol/protocol@0.2.4",
    "weft:protocol/protocol@0.2.3",
    "weft:protocol/protocol@0.2.2",
    "weft:protocol/protocol@0.2.1",
    "weft:protocol/protocol@0.2.0",
    "weft:protocol/protocol@0.1.0",
];

/// Exports served by the current bindings.
const CURRENT_PROTOCOL_EXPORTS: [&str; 7] = [
    PROTOCOL_EXPORT,
    "weft:protocol/protocol@0.2.5",
    "weft:protocol/protocol@0.2.4",
    "weft:protocol/protocol@0.2.3",
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
        "wasi:keyvalue",
        &["store", "atomics", "batch"],
        "0.2.0-draft",
    ),
    (
        "wasi:keyvalue",
        &["store", "atomics", "batch"],
        "0.2.0-draft2",
    ),
    (
        "weft:protocol",
        &[
            "types",
            "transport",
            "log",
            "reactor",
            "datagram-transport",
            "messaging",
        ],
        "0.2",
    ),
    ("weft:protocol", &["types", "transport", "log"], "0.1"),
];

/// Everything a guest of any served WIT version or world may import: WASI
/// (granting nothing), `wasi:config`, `wasi:keyvalue`, and weft's
/// interfaces, current and 0.1.0, each capability on its part of the store.
pub fn link(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    wasi::add_to_linker(linker)?;
    config::add_to_linker(linker, |state| WasiConfig::from(&*state.config))?;
    wit::weft::protocol::types::add_to_linker::<_, Types>(linker, |_| Types)?;
    transport::add_to_linker(linker, |state| &mut state.table)?;
    log::add_to_linker(linker, |state| &mut state.log)?;
    reactor::add_to_linker(linker, |state| ReactorView {
        timers: TimersView {
            state: &mut state.timers,
            table: &mut state.table,
        },
        outbound: &mut state.outbound,
    })?;
    datagram::add_to_linker(linker, |state| &mut state.datagram)?;
    keyvalue::add_to_linker(linker, |state| &mut state.keyvalue)?;
    messaging::add_to_linker(linker, |state| &mut state.messaging)
}

/// The `types` interface, which has types and no functions, so no state.
struct Types;

impl HasData for Types {
    type Data<'a> = Types;
}

impl wit::weft::protocol::types::Host for Types {}

/// Refuse what can be refused before compiling: an import weft does not
/// grant, or no weft export in a version this host serves; else what the
/// component serves.
pub fn check(outline: &Outline, shown: &str) -> anyhow::Result<Exported> {
    check_imports(outline).with_context(|| format!("{shown} cannot be served"))?;
    check_exports(outline).with_context(|| format!("{shown} is not a weft service"))
}

/// Refuse a component that imports an interface weft does not grant.
fn check_imports(outline: &Outline) -> anyhow::Result<()> {
    match outline.imports.iter().find(|name| !granted(name)) {
        Some(refused) => anyhow::bail!("{}", not_provided(refused)),
        None => Ok(()),
    }
}

/// Refuse a component that does not export the weft protocol interface
/// (or the datagram handler) in a version this host serves; what it
/// serves.
fn check_exports(outline: &Outline) -> anyhow::Result<Exported> {
    let exports = &outline.exports;
    let exports_one_of = |names: &[&str]| exports.iter().any(|name| names.contains(&name.as_str()));
    if exports_one_of(&CURRENT_PROTOCOL_EXPORTS) {
        return Ok(Exported::Service);
    }
    if exports_one_of(&EARLIER_PROTOCOL_EXPORTS) {
        return Ok(Exported::ServiceV1);
    }
    if exports_one_of(&DATAGRAM_EXPORTS) {
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

/// Why a component importing `name` is refused, here or by the linker.
pub fn not_provided(name: &str) -> String {
    format!(
        "it imports `{name}`, which weft does not provide (a guest may import \
         weft:protocol and the WASI runtime interfaces listed in wit/weft.wit)"
    )
}

/// Whether weft grants the interface imported as `name`
/// (`wasi:io/poll@0.2.6`).
pub fn granted(name: &str) -> bool {
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
