//! The echo guest of `echo-v0-2-1`, built against the frozen
//! `wit/v0.2.4/` as a deployed 0.2.4 module was: the host must keep
//! serving it unchanged (0.2.5 only added flow control for the guest's
//! own producers).

wit_bindgen::generate!({
    path: "../../../wit/v0.2.4",
    world: "weft:protocol/service",
    generate_all,
});

const VERSION: &str = "v0.2.4";

include!("../../echo-v0-2-1/src/echo.rs");
