//! The `weft` binary: parse the command line, load and bind every service,
//! serve until SIGINT or SIGTERM, then close connections and exit 0.

mod cli;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use weft::{Runtime, Server};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let reactor = match tokio::runtime::Runtime::new() {
        Ok(reactor) => reactor,
        Err(error) => {
            eprintln!("weft: cannot start the reactor: {error}");
            return ExitCode::FAILURE;
        }
    };
    match reactor.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weft: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: cli::Cli) -> anyhow::Result<()> {
    let services = cli.services()?;
    let runtime = Runtime::new()?;
    let server = Server::bind(runtime, services).await?;
    let mut terminate = signal(SignalKind::terminate())?;
    server
        .run(async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await;
    Ok(())
}
