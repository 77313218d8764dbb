//! Write weft protocol handlers in Rust, in the shape of Twisted.
//!
//! A guest implements [`Protocol`] (or [`basic::LineReceiver`], or a
//! [`web::Resource`]), a [`Factory`] that builds one protocol per connection
//! and holds what connections share, and names the factory with [`export!`]:
//!
//! ```
//! use weft_guest::{Factory, Protocol, Transport};
//!
//! struct Echo { transport: Transport }
//!
//! impl Protocol for Echo {
//!     fn transport(&self) -> &Transport { &self.transport }
//!     fn data_received(&mut self, data: &[u8]) { self.transport.write(data) }
//! }
//!
//! #[derive(Default)]
//! struct EchoFactory;
//!
//! impl Factory for EchoFactory {
//!     type Protocol = Echo;
//!     fn build_protocol(&'static self, transport: Transport) -> Echo { Echo { transport } }
//! }
//!
//! weft_guest::export!(EchoFactory);
//! ```
//!
//! Layout: `protocol` (Protocol, Factory and the glue to the WIT exports),
//! `transport` (the host's connection handle), `producer` (the guest's
//! own producers of a connection's output), `reactor` (timers and
//! LoopingCall), `endpoints` (outbound connections), `config` (the
//! operator's settings), `keyvalue` (state the host keeps), `messaging`
//! (topics the host keeps), `policies` (TimeoutMixin), `basic` (LineReceiver),
//! `web` (Site and Resource over HTTP/1.1), `log`, `stdout` (a buffered
//! `println!`), and `testing` (an
//! in-memory transport for native unit tests). The WIT bindings live in
//! `bindings`.

#![deny(missing_docs)]

mod panic;
mod producer;
mod protocol;
mod transport;

pub mod basic;
pub mod config;
pub mod endpoints;
pub mod keyvalue;
pub mod log;
pub mod messaging;
pub mod policies;
pub mod reactor;
pub mod stdout;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod web;

pub use producer::PushProducer;
pub use protocol::{CALL_BUDGET, Factory, Protocol};
pub use transport::{Address, AddressFamily, CloseReason, SocketAddress, Transport};

/// Bindings generated from `wit/`, the only source of weft's WIT. Guests use
/// them through [`export!`] and the types above, not directly.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "weft:protocol/stateful-service",
        pub_export_macro: true,
        export_macro_name: "export_service",
        default_bindings_module: "weft_guest::bindings",
        generate_all,
    });

    /// The standard `wasi:keyvalue` (0.2.0-draft2, with compare-and-swap)
    /// a guest imports only if it uses [`crate::keyvalue`].
    pub mod keyvalue {
        wit_bindgen::generate!({
            path: "../wit/standard/keyvalue-0.2.0-draft2",
            world: "wasi:keyvalue/imports",
            default_bindings_module: "weft_guest::bindings::keyvalue",
            generate_all,
        });
    }
}

/// Items the [`export!`] macro expands to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::panic::report_panics_plainly;
    pub use crate::protocol::{FactoryCell, ProtocolHandle};
}

/// Export a [`Factory`] as this component's protocol handler.
///
/// `export!(MyFactory)` builds the factory with `Default`;
/// `export!(MyFactory = expression)` builds it from an expression, as in
/// `export!(Site<Counter> = Site::new(Counter::default()))`. The factory is
/// built once, when the first connection arrives, and lives as long as the
/// guest instance: it is the place for state that connections share.
#[macro_export]
macro_rules! export {
    ($factory:ty) => {
        $crate::export!($factory = <$factory as ::core::default::Default>::default());
    };
    ($factory:ty = $init:expr) => {
        #[doc(hidden)]
        struct __WeftFactoryCell;

        impl $crate::__private::FactoryCell for __WeftFactoryCell {
            type Factory = $factory;

            fn get() -> &'static $factory {
                ::std::thread_local! {
                    // Leaked on purpose: the factory lives as long as the instance.
                    // Made before any of the guest's code runs: panics are
                    // reported plainly from here on.
                    static FACTORY: &'static $factory = {
                        $crate::__private::report_panics_plainly();
                        ::std::boxed::Box::leak(::std::boxed::Box::new($init))
                    };
                }
                FACTORY.with(|factory| *factory)
            }
        }

        // Component exports exist only on wasm; a native build of a guest
        // (for its unit tests) must not define them, but still uses the
        // factory so that the compiler checks it like the wasm build does.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export_service!(__WeftFactoryCell with_types_in $crate::bindings);
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> &'static $factory = <__WeftFactoryCell as $crate::__private::FactoryCell>::get;
    };
}
