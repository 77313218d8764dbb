//! The `weft` command line: `weft` serves the bundled guests,
//! `weft serve COMPONENT@ENDPOINT...` serves the given components.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use weft::{Endpoint, Limits, ServiceSpec};

/// The bundled guests and where `weft` alone serves them: the ports of the
/// Twisted reference programs, on loopback only.
const BUNDLED: [(&str, &str); 3] = [
    ("echo.wasm", "tcp:1234:interface=127.0.0.1"),
    ("http_counter.wasm", "tcp:8080:interface=127.0.0.1"),
    ("chat.wasm", "tcp:1025:interface=127.0.0.1"),
];

#[derive(Parser, Debug)]
#[command(
    name = "weft",
    version,
    about = "Serve protocol handlers compiled to WebAssembly components, each in its own sandbox.",
    after_help = "Examples:\n  weft                                  serve the bundled echo, HTTP counter and chat guests\n  weft serve echo.wasm@tcp:1234         serve echo.wasm on port 1234, all interfaces\n  weft serve chat.wasm@tcp:port=1025:interface=127.0.0.1 http_counter.wasm@tcp:8080\n\nLogging: RUST_LOG=debug weft ... (default: info)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Where `weft` alone finds the bundled guests
    /// [default: ../wasm32-wasip2/release next to the weft binary].
    /// Example: --guest-dir target/wasm32-wasip2/release
    #[arg(long, value_name = "DIR", global = true)]
    guest_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve each COMPONENT on its ENDPOINT, all in this process.
    Serve {
        /// A component path and a Twisted server endpoint, joined by the
        /// last `@`. Endpoints: tcp:PORT, tcp:port=PORT:interface=ADDR,
        /// tcp:PORT:backlog=N, tcp6:PORT (interface defaults to all, as in
        /// Twisted). Example: echo.wasm@tcp:1234
        #[arg(value_name = "COMPONENT@ENDPOINT", required = true)]
        services: Vec<String>,
    },
}

impl Cli {
    /// The services to run: the ones given, or the bundled three.
    pub fn services(self) -> anyhow::Result<Vec<ServiceSpec>> {
        match self.command {
            Some(Command::Serve { services }) => services
                .iter()
                .map(|text| parse_service(text).map_err(anyhow::Error::msg))
                .collect(),
            None => {
                let dir = match self.guest_dir {
                    Some(dir) => dir,
                    None => default_guest_dir()?,
                };
                tracing::info!(
                    "no services given: serving the bundled guests from {}",
                    dir.display()
                );
                BUNDLED
                    .iter()
                    .map(|(file, endpoint)| {
                        parse_service(&format!("{}@{endpoint}", dir.join(file).display()))
                    })
                    .map(|spec| spec.map_err(anyhow::Error::msg))
                    .collect()
            }
        }
    }
}

/// `target/wasm32-wasip2/release` when weft runs from `target/<profile>/`.
fn default_guest_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    Ok(target.join("wasm32-wasip2").join("release"))
}

/// `COMPONENT@ENDPOINT`, split at the last `@`.
fn parse_service(text: &str) -> Result<ServiceSpec, String> {
    let (component, endpoint) = text.rsplit_once('@').ok_or_else(|| {
        format!("`{text}` is not COMPONENT@ENDPOINT (for example echo.wasm@tcp:1234)")
    })?;
    if component.is_empty() {
        return Err(format!("`{text}` names no component before the `@`"));
    }
    let endpoint: Endpoint = endpoint.parse().map_err(|e| format!("{e}"))?;
    Ok(ServiceSpec {
        component: component.into(),
        endpoint,
        limits: Limits::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_split_at_the_last_at() {
        let spec = parse_service("dir@v2/echo.wasm@tcp:port=1234:interface=127.0.0.1").unwrap();
        assert_eq!(spec.component, PathBuf::from("dir@v2/echo.wasm"));
        assert_eq!(spec.endpoint.addr, "127.0.0.1:1234".parse().unwrap());
    }

    #[test]
    fn bad_services_say_why() {
        assert!(
            parse_service("echo.wasm")
                .unwrap_err()
                .contains("is not COMPONENT@ENDPOINT")
        );
        assert!(
            parse_service("@tcp:1")
                .unwrap_err()
                .contains("names no component")
        );
        assert!(
            parse_service("e.wasm@tcpx:1")
                .unwrap_err()
                .contains("unknown endpoint type `tcpx`")
        );
    }

    #[test]
    fn the_bundled_defaults_parse() {
        for (file, endpoint) in BUNDLED {
            let spec = parse_service(&format!("{file}@{endpoint}")).unwrap();
            assert!(spec.endpoint.addr.ip().is_loopback());
        }
    }
}
