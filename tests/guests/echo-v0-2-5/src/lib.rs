//! The echo guest of `echo-v0-2-1`, built against the frozen
//! `wit/v0.2.5/` as a deployed 0.2.5 module was: the host must keep
//! serving it unchanged (0.2.6 only added the transport's `splice-to`).

wit_bindgen::generate!({
    path: "../../../wit/v0.2.5",
    world: "weft:protocol/service",
    generate_all,
});

const VERSION: &str = "v0.2.5";

include!("../../echo-v0-2-1/src/echo.rs");

// 0.2.5's `service` world exports `producers`; this echo watches nothing.
impl exports::weft::protocol::producers::Guest for Component {
    fn pause_producing(_token: u64) {}
    fn resume_producing(_token: u64) {}
}
