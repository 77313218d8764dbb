//! The host's bindings to weft's WIT worlds in `wit/`: the current
//! `service` world, the frozen 0.1.0 one it keeps serving, and the
//! `datagram-service` and `stateful-service` worlds. The only place the host generates bindings;
//! the capabilities implement their interfaces' `Host` traits.

use std::net::SocketAddr;

// The resources (`transport`, `delayed-call`) stay the generated types:
// each capability keeps its handles in the store's resource table under
// the rep wasmtime hands it, as Spin's factors do, so these bindings name
// no capability.
wasmtime::component::bindgen!({
    path: "../wit",
    world: "weft:protocol/service",
    imports: { default: trappable },
    exports: { default: async },
});

pub use self::weft::protocol::types::{
    Address, AddressFamily, CloseReason, ConnectError, SocketAddress,
};

// The `service` world's exports, each looked up on its own rather than
// through the world's `Service`: `producers` is new in 0.2.5, so a
// component built against an earlier 0.2.x lacks it and is served
// without it.
pub use self::exports::weft::protocol::events::{Guest as Events, GuestIndices as EventsIndices};
pub use self::exports::weft::protocol::producers::{
    Guest as Producers, GuestIndices as ProducersIndices,
};
pub use self::exports::weft::protocol::protocol::{
    Guest as Protocols, GuestIndices as ProtocolsIndices,
};

/// Bindings to `weft:protocol@0.1.0`, for components built before 0.2.0.
/// Its types and its transport resource are the current ones, which have
/// the same shape.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "weft:protocol/service",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "weft:protocol/types": crate::wit::weft::protocol::types,
            "weft:protocol/transport.transport": crate::wit::weft::protocol::transport::Transport,
        },
    });
}

/// Bindings to the `weft:protocol/datagram-service` world, whose shared
/// interfaces are the `service` world's.
pub mod datagram {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "weft:protocol/datagram-service",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "weft:protocol/types": crate::wit::weft::protocol::types,
            "weft:protocol/log": crate::wit::weft::protocol::log,
        },
    });
}

/// Bindings to the `weft:protocol/stateful-service` world (0.2.4): its
/// `messaging` import, and the `subscriber` export, which the host looks
/// up apart from the `service` world's so that components without it
/// are served as before.
pub mod stateful {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "weft:protocol/stateful-service",
        imports: {
            "weft:protocol/messaging": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "weft:protocol/types": crate::wit::weft::protocol::types,
            "weft:protocol/transport": crate::wit::weft::protocol::transport,
            "weft:protocol/log": crate::wit::weft::protocol::log,
            "weft:protocol/reactor": crate::wit::weft::protocol::reactor,
            "wasi:config/store": crate::wit::wasi::config::store,
            "wasi:keyvalue": crate::wit::keyvalue::wasi::keyvalue,
        },
    });
}

pub use self::stateful::exports::weft::protocol::subscriber::{
    Guest as Subscriber, GuestIndices as SubscriberIndices,
};
pub use self::stateful::weft::protocol::messaging::MessagingError;

impl From<SocketAddr> for Address {
    /// A TCP or UDP socket address as the WIT gives it.
    fn from(addr: SocketAddr) -> Self {
        Address {
            family: match addr {
                SocketAddr::V4(_) => AddressFamily::Ipv4,
                SocketAddr::V6(_) => AddressFamily::Ipv6,
            },
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

/// Bindings to the standard `wasi:keyvalue@0.2.0-draft` (`store`,
/// `atomics`, `batch`), as wasmtime-wasi-keyvalue, Spin and wasmCloud
/// serve it. Its calls may wait on a backend across the network, so they
/// are async.
pub mod keyvalue {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
    });
}

/// Bindings to `wasi:keyvalue@0.2.0-draft2` (signed increments, text
/// cursors, compare-and-swap), as Spin 3 serves it; its WIT is kept in
/// `wit/standard/`, outside weft's own package and its deps.
pub mod keyvalue2 {
    wasmtime::component::bindgen!({
        path: "../wit/standard/keyvalue-0.2.0-draft2",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
    });
}
