//! Write weft datagram handlers in Rust, in the shape of Twisted's
//! `DatagramProtocol`, served on `udp:` endpoints.
//!
//! A guest implements [`DatagramProtocol`] on a type that keeps its
//! [`Transport`] and names it with [`export!`]; the host builds it once per
//! instance and calls it for every datagram its socket receives:
//!
//! ```
//! use weft_guest_datagram::{Address, DatagramProtocol, Transport};
//!
//! #[derive(Default)]
//! struct Echo { transport: Transport }
//!
//! impl DatagramProtocol for Echo {
//!     fn datagram_received(&mut self, data: &[u8], addr: Address) {
//!         self.transport.write(data, &addr);
//!     }
//! }
//!
//! weft_guest_datagram::export!(Echo);
//! ```

#![deny(missing_docs)]

use std::fmt;

pub use bindings::weft::protocol::datagram_transport::SendError;
pub use bindings::weft::protocol::types::{Address, AddressFamily};

// The Rust SDK's, by path: one way to report a panic and to print for
// both worlds.
#[path = "../../src/panic.rs"]
mod panic;
#[path = "../../src/stdout.rs"]
pub mod stdout;

/// Bindings generated from `wit/`, the only source of weft's WIT. Guests use
/// them through [`export!`] and the types above, not directly.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "weft:protocol/datagram-service",
        pub_export_macro: true,
        export_macro_name: "export_datagram_service",
        default_bindings_module: "weft_guest_datagram::bindings",
        generate_all,
    });
}

/// A datagram handler (Twisted's `DatagramProtocol`): one per instance,
/// called one datagram at a time. Every method but `datagram_received` has
/// a default that does nothing.
pub trait DatagramProtocol: 'static {
    /// The instance has started, before its first datagram (Twisted's
    /// `startProtocol`).
    fn start_protocol(&mut self) {}

    /// A datagram arrived from `addr` (Twisted's `datagramReceived`).
    fn datagram_received(&mut self, data: &[u8], addr: Address);

    /// The host is stopping the service (Twisted's `stopProtocol`).
    fn stop_protocol(&mut self) {}
}

/// The service's UDP socket (Twisted's `transport` of a
/// `DatagramProtocol`): every instance has exactly one, so this handle
/// holds nothing and any number of them are the same.
#[derive(Clone, Copy, Debug, Default)]
pub struct Transport;

impl Transport {
    /// Send `data` as one datagram to `addr` (Twisted's
    /// `transport.write(data, addr)`). UDP promises no delivery, so a
    /// datagram the host does not send is dropped as the network might
    /// drop it (and counted in the host's metrics); [`Transport::send`]
    /// says why.
    pub fn write(&self, data: &[u8], addr: &Address) {
        let _ = self.send(data, addr);
    }

    /// [`Transport::write`], saying why a datagram was not sent: too
    /// large, an address that is not numeric, one the guest may not send
    /// to, the send rate, or a full socket buffer.
    pub fn send(&self, data: &[u8], addr: &Address) -> Result<(), SendError> {
        bindings::weft::protocol::datagram_transport::write(data, addr)
    }

    /// The address the socket is bound to (Twisted's `getHost`).
    pub fn get_host(&self) -> Address {
        bindings::weft::protocol::datagram_transport::get_host()
    }
}

/// An address as Twisted's `datagramReceived` gets it and prints it: the
/// tuple `('127.0.0.1', 9999)`.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "('{}', {})", self.host, self.port)
    }
}

/// Items the [`export!`] macro expands to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;

    pub use crate::panic::report_panics_plainly;

    use crate::DatagramProtocol;
    use crate::bindings::exports::weft::protocol::datagram_handler::Guest;
    use crate::bindings::weft::protocol::types::Address;

    /// Where the exported handler lives, once built.
    pub trait HandlerCell: 'static {
        /// The guest's handler type.
        type Handler: DatagramProtocol;

        /// The handler of this instance.
        fn get() -> &'static RefCell<Self::Handler>;
    }

    /// Borrow the handler for one call, then write out what it printed;
    /// the host makes one call at a time.
    fn with<C: HandlerCell>(call: impl FnOnce(&mut C::Handler)) {
        call(&mut C::get().borrow_mut());
        crate::stdout::flush();
    }

    impl<C: HandlerCell> Guest for C {
        fn start_protocol() {
            with::<C>(|handler| handler.start_protocol());
        }

        fn datagram_received(data: Vec<u8>, sender: Address) {
            with::<C>(|handler| handler.datagram_received(&data, sender));
        }

        fn stop_protocol() {
            with::<C>(|handler| handler.stop_protocol());
        }
    }
}

/// Export a [`DatagramProtocol`] as this component's datagram handler.
///
/// `export!(MyProtocol)` builds it with `Default`; `export!(MyProtocol =
/// expression)` builds it from an expression. It is built once, before
/// `start_protocol`, and lives as long as the instance.
#[macro_export]
macro_rules! export {
    ($handler:ty) => {
        $crate::export!($handler = <$handler as ::core::default::Default>::default());
    };
    ($handler:ty = $init:expr) => {
        #[doc(hidden)]
        struct __WeftHandlerCell;

        impl $crate::__private::HandlerCell for __WeftHandlerCell {
            type Handler = $handler;

            fn get() -> &'static ::std::cell::RefCell<$handler> {
                ::std::thread_local! {
                    // Leaked on purpose: the handler lives as long as the instance.
                    // Made before any of the guest's code runs: panics are
                    // reported plainly from here on.
                    static HANDLER: &'static ::std::cell::RefCell<$handler> = {
                        $crate::__private::report_panics_plainly();
                        ::std::boxed::Box::leak(::std::boxed::Box::new(::std::cell::RefCell::new($init)))
                    };
                }
                HANDLER.with(|handler| *handler)
            }
        }

        // Component exports exist only on wasm; a native build checks the
        // handler all the same.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export_datagram_service!(__WeftHandlerCell with_types_in $crate::bindings);
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> &'static ::std::cell::RefCell<$handler> =
            <__WeftHandlerCell as $crate::__private::HandlerCell>::get;
    };
}
