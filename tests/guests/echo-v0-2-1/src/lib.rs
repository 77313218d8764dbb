//! An echo guest built, as a deployed 0.2.1 module was, against the frozen
//! `wit/v0.2.1/` and nothing else: the host must keep serving it unchanged
//! (later 0.2.x versions only added types and functions, so the current bindings serve
//! it). It writes back what it receives with `write-checked`, new in
//! 0.2.1, and logs each connection's end.

wit_bindgen::generate!({
    path: "../../../wit/v0.2.1",
    world: "weft:protocol/service",
    generate_all,
});

const VERSION: &str = "v0.2.1";

include!("echo.rs");
