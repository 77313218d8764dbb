//! The echo guest of `echo-v0-2-1`, built against the frozen
//! `wit/v0.2.3/` as a deployed 0.2.3 module was: the host must keep
//! serving it unchanged (0.2.4 only added publish/subscribe).

wit_bindgen::generate!({
    path: "../../../wit/v0.2.3",
    world: "weft:protocol/service",
    generate_all,
});

const VERSION: &str = "v0.2.3";

include!("../../echo-v0-2-1/src/echo.rs");
