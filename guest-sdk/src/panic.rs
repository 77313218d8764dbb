//! A guest's panic, told as an operator can use it: its message and where,
//! on one line, without Rust's hint to set `RUST_BACKTRACE`, which no one
//! can set for a guest (the host's trap line carries the guest backtrace).

/// Report panics this way from now on; the SDK calls it before the guest's
/// own code first runs (shared with the datagram SDK by path).
pub fn report_panics_plainly() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| std::panic::set_hook(Box::new(report)));
    }
}

#[cfg(target_arch = "wasm32")]
fn report(panic: &std::panic::PanicHookInfo<'_>) {
    // What the call printed comes first, as it happened first.
    crate::stdout::flush();
    let message = panic
        .payload_as_str()
        .unwrap_or("a panic without a message");
    match panic.location() {
        Some(location) => eprintln!("panicked at {location}: {message}"),
        None => eprintln!("panicked: {message}"),
    }
}
