//! The `weft` binary: parse the command line, load and bind every service,
//! serve until SIGINT or SIGTERM, then close connections and exit 0.

mod cli;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use weft::Server;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Services run on workers' threads; this one only waits for signals.
    let reactor = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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
    let cache = cli.cache();
    let services = cli.services()?;
    raise_file_limit(
        services
            .iter()
            .map(|s| s.limits.max_connections * s.limits.workers)
            .sum(),
    );
    let server = Server::bind(services, cache).await?;
    // Both handlers are in place before anything is served, so a signal
    // can never find the default action (an abrupt exit) still installed.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    server
        .run(async {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
        .await;
    Ok(())
}

/// Raise the open-file limit to its hard maximum, as servers do: every
/// connection is a file descriptor. Warn if it still cannot hold `needed`.
fn raise_file_limit(needed: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    if (limit.rlim_cur as usize) < needed {
        tracing::warn!(
            "the open-file limit is {}, below the {needed} connections the services allow",
            limit.rlim_cur
        );
    }
}
