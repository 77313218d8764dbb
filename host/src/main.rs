//! The `weft` binary: parse the command line (or a `--config` file), load
//! and bind every service, serve (and `--admin`) until SIGINT or SIGTERM
//! (which drains first), reloading on SIGHUP, then close connections and
//! exit 0; or, as
//! `weft check` and `weft cache`, inspect components and the cache; or,
//! as `weft new`, write a guest project.

mod cli;
mod config_file;
mod new;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser as _};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::EnvFilter;
use weft::{Server, Shutdown};

use crate::cli::Command;
use crate::config_file::ConfigFile;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let done = match cli.command {
        None => serve(cli.serve, None),
        Some(Command::Serve(serve_args)) => serve(serve_args.options, Some(serve_args.services)),
        Some(Command::Check(check_args)) => check(check_args),
        Some(Command::Cache(cache_args)) => cache(cache_args),
        Some(Command::New(new_args)) => new_project(new_args),
        Some(Command::Completions { shell }) => {
            let mut command = cli::Cli::command();
            clap_complete::generate(shell, &mut command, "weft", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Man) => clap_mangen::Man::new(cli::Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
    };
    done.unwrap_or_else(|error| {
        eprintln!("weft: {error:#}");
        ExitCode::FAILURE
    })
}

/// Log to stderr, as `format` (or the config file) asks.
fn init_logging(format: Option<cli::LogFormat>, file: Option<&ConfigFile>) {
    let json = match format {
        Some(format) => format == cli::LogFormat::Json,
        None => file.and_then(|f| f.json_logs).unwrap_or(false),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// The compile cache `flags` and the config file at `config`, if any, ask
/// for: the flags' over the file's.
fn chosen_cache(flags: &cli::CacheFlags, file: Option<&ConfigFile>) -> Option<weft::CompileCache> {
    match file {
        Some(file) => flags.cache(file.cache_dir.clone(), file.cache_max_size),
        None => flags.cache(None, None),
    }
}

/// `weft new`.
fn new_project(args: cli::New) -> anyhow::Result<ExitCode> {
    let dir = new::new(&args.project())?;
    println!(
        "wrote {}: its README.md says how to build and serve it",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `weft` and `weft serve`: serve until SIGINT or SIGTERM.
fn serve(options: cli::ServeOptions, services: Option<Vec<String>>) -> anyhow::Result<ExitCode> {
    // Read first: the file may set how to log.
    let file = options
        .config
        .as_deref()
        .map(ConfigFile::read)
        .transpose()?;
    init_logging(options.log_format, file.as_ref());
    let cache = chosen_cache(&options.cache, file.as_ref());
    // Services run on workers' threads; this one only waits for signals.
    let reactor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the reactor")?;
    let served = reactor.block_on(serve_until_stopped(options, services, file, cache));
    // A reload still compiling when the signal came runs on a blocking
    // thread: exit without waiting for it.
    reactor.shutdown_background();
    served.map(|()| ExitCode::SUCCESS)
}

/// Serve until SIGINT or SIGTERM, with the compile cache `cache`.
async fn serve_until_stopped(
    options: cli::ServeOptions,
    given: Option<Vec<String>>,
    file: Option<ConfigFile>,
    cache: Option<weft::CompileCache>,
) -> anyhow::Result<()> {
    let config = options.config.clone();
    let settings = file.as_ref().map(ConfigFile::process_settings);
    let (grace, drain, delay, admin, services) = match file {
        Some(file) => {
            options.check_config_alone(given.as_deref().unwrap_or_default())?;
            (
                options.shutdown_grace.or(file.shutdown_grace),
                options.drain_timeout.or(file.drain_timeout),
                options.drain_delay.or(file.drain_delay),
                options.admin.clone().or(file.admin),
                file.services,
            )
        }
        None => (
            options.shutdown_grace,
            options.drain_timeout,
            options.drain_delay,
            options.admin.clone(),
            options.services(given.as_deref())?,
        ),
    };
    let timeouts = weft::Timeouts {
        grace: grace.unwrap_or(weft::limits::SHUTDOWN_GRACE),
        drain: drain.unwrap_or(weft::limits::DRAIN_TIMEOUT),
    };
    let drain_delay = delay.unwrap_or(weft::limits::DRAIN_DELAY);
    raise_file_limit(
        services
            .iter()
            .map(|s| s.limits.max_connections * s.limits.workers)
            .sum(),
    );
    let server = Server::bind(services.clone(), cache).await?;
    if let Some(admin) = admin {
        let listener = weft::admin::bind(&admin)?;
        let addr = listener.local_addr()?;
        tokio::spawn(weft::admin::serve(listener, server.metrics()));
        tracing::info!(
            endpoint = %admin,
            "admin endpoint: /metrics, /healthz and /readyz on {addr}"
        );
    }
    // Every handler is in place before anything is served, so a signal
    // can never find the default action (an abrupt exit) still installed.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let readiness = server.metrics().readiness().clone();
    let signals = async move {
        let how = loop {
            tokio::select! {
                _ = interrupt.recv() => break Shutdown::Now,
                _ = terminate.recv() => break Shutdown::Drain,
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    let specs = reread(config.as_deref(), settings.as_ref(), &services);
                    if reload.try_send(specs).is_err() {
                        tracing::warn!("a reload is already waiting; this SIGHUP joins it");
                    }
                }
            }
        };
        readiness.stopping();
        exit_on_another_signal(interrupt, terminate);
        if how == Shutdown::Drain && !drain_delay.is_zero() {
            // Balancers see /readyz fail while weft still accepts.
            tracing::info!(
                "SIGTERM: /readyz answers 503; accepting for {drain_delay:?} more, \
                 so that load balancers stop sending first"
            );
            tokio::time::sleep(drain_delay).await;
        }
        how
    };
    server.serve(signals, Some(reloads), timeouts).await;
    Ok(())
}

/// After the signal that began the shutdown, another SIGINT or SIGTERM
/// exits at once, closing nothing: for an operator who cannot wait.
fn exit_on_another_signal(mut interrupt: Signal, mut terminate: Signal) {
    tokio::spawn(async move {
        let (name, number) = tokio::select! {
            _ = interrupt.recv() => ("SIGINT", libc::SIGINT),
            _ = terminate.recv() => ("SIGTERM", libc::SIGTERM),
        };
        tracing::warn!("{name} while shutting down: exiting at once");
        // As a shell reports a process a signal ended.
        std::process::exit(128 + number);
    });
}

/// What a reload makes of the services: the config file read again, or,
/// without one, the services of the command line (whose component files
/// are read again). Settings of the whole process take effect at restart.
fn reread(
    config: Option<&std::path::Path>,
    settings: Option<&config_file::ProcessSettings>,
    given: &[weft::ServiceSpec],
) -> anyhow::Result<Vec<weft::ServiceSpec>> {
    let Some(path) = config else {
        return Ok(given.to_vec());
    };
    let file = ConfigFile::read(path)?;
    if settings != Some(&file.process_settings()) {
        tracing::warn!(
            "{}: settings of the whole process changed (cache, log format, admin endpoint, \
             grace or drain timeout); they take effect when weft restarts",
            path.display()
        );
    }
    Ok(file.services)
}

/// `weft check`: print what each component is; succeed only if `serve`
/// would accept them all.
fn check(args: cli::Check) -> anyhow::Result<ExitCode> {
    let file = args.config.as_deref().map(ConfigFile::read).transpose()?;
    init_logging(None, file.as_ref());
    let limits = args.limits()?;
    let loader = weft::Loader::new(
        std::slice::from_ref(&limits),
        chosen_cache(&args.cache, file.as_ref()),
    )?;
    let mut all_served = true;
    for path in &args.components {
        match weft::check::check(&loader, path, &limits) {
            Ok(report) => {
                all_served &= report.refused.is_none();
                print!("{}", report.show(path));
            }
            Err(error) => {
                all_served = false;
                println!("{}: weft refuses it: {error:#}", path.display());
            }
        }
    }
    Ok(if all_served {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `weft cache prune|clear`.
fn cache(args: cli::Cache) -> anyhow::Result<ExitCode> {
    let file = args.config.as_deref().map(ConfigFile::read).transpose()?;
    let Some(cache) = chosen_cache(&args.cache, file.as_ref()) else {
        anyhow::bail!("there is no compile cache to prune (--no-cache, or no home directory)");
    };
    let pruned = match args.action {
        cli::CacheAction::Prune => cache.prune(),
        cli::CacheAction::Clear => cache.clear(),
    }?;
    println!(
        "{}: removed {} entries ({} MiB); {} left ({} MiB)",
        cache.dir().display(),
        pruned.removed,
        pruned.freed >> 20,
        pruned.kept,
        pruned.size >> 20
    );
    Ok(ExitCode::SUCCESS)
}

/// What `RUST_LOG` asks for. A bare level (`debug`) applies to weft and
/// its guests only: other crates (wasmtime's compiler, say) stay at `info`
/// unless named, so that `RUST_LOG=debug` shows connections, not codegen.
fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    let directives = match rust_log.map(str::trim) {
        None | Some("") => "info".to_owned(),
        Some(level @ ("trace" | "debug")) => format!("info,weft={level},guest={level}"),
        Some(other) => other.to_owned(),
    };
    EnvFilter::try_new(&directives).unwrap_or_else(|error| {
        eprintln!("weft: RUST_LOG={directives} is not a log filter ({error}); logging at info");
        EnvFilter::new("info")
    })
}

/// Files weft keeps open beside its connections: listeners, outbound
/// connections, the compile cache, its own binary and libraries.
const FILES_BESIDE_CONNECTIONS: u64 = 1024;

/// Raise the open-file limit so that it holds the `connections` the
/// services allow (every connection is a file descriptor), as nginx's
/// `worker_rlimit_nofile` and Go's runtime do. Warn only if it is still
/// short.
fn raise_file_limit(connections: usize) {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } != 0 {
        return;
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(current.rlim_max);
    let needed = connections as u64;
    let mut limit = current;
    for (soft, hard) in file_limits_to_try((current.rlim_cur, current.rlim_max), needed, nr_open) {
        let wanted = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            limit = wanted;
            break;
        }
    }
    if limit.rlim_cur < needed {
        tracing::warn!(
            "the open-file limit is {} (hard limit {}), below the {needed} connections the \
             services allow; raise it (ulimit -n, LimitNOFILE= in a systemd unit) or lower \
             max-connections",
            limit.rlim_cur,
            limit.rlim_max
        );
    }
}

/// The (soft, hard) open-file limits to try, best first, from `current`,
/// for `needed` connections, within the kernel's `nr_open`: the hard limit
/// raised to hold them (which needs CAP_SYS_RESOURCE), then the soft limit
/// at the hard one (which anyone may). Never lowers either.
fn file_limits_to_try(current: (u64, u64), needed: u64, nr_open: u64) -> Vec<(u64, u64)> {
    let (soft, hard) = current;
    let wanted = needed.saturating_add(FILES_BESIDE_CONNECTIONS).min(nr_open);
    let mut tries = Vec::new();
    if wanted > hard {
        tries.push((wanted, wanted));
    }
    if hard > soft {
        tries.push((hard, hard));
    }
    tries
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn a_bare_level_applies_to_weft_and_guests_only() {
        let shown = |rust_log| log_filter(rust_log).to_string();
        for directive in ["weft=debug", "guest=debug", "info"] {
            assert!(
                shown(Some("debug")).contains(directive),
                "{}",
                shown(Some("debug"))
            );
        }
        assert_eq!(shown(None), "info");
        assert_eq!(shown(Some("warn")), "warn");
        assert_eq!(shown(Some("wasmtime=debug")), "wasmtime=debug");
    }

    #[test]
    fn the_file_limit_is_raised_to_hold_the_connections_as_far_as_allowed() {
        use super::{FILES_BESIDE_CONNECTIONS as BESIDE, file_limits_to_try as tries};
        // Short of the connections: the hard limit first, then the soft.
        assert_eq!(
            tries((1024, 20_000), 30_000, 1 << 20),
            [(30_000 + BESIDE, 30_000 + BESIDE), (20_000, 20_000)]
        );
        // Never past the kernel's own cap.
        assert_eq!(tries((20_000, 20_000), 30_000, 25_000), [(25_000, 25_000)]);
        // Enough already: only the soft limit, up to the hard one.
        assert_eq!(
            tries((1024, 1 << 20), 30_000, 1 << 20),
            [(1 << 20, 1 << 20)]
        );
        assert_eq!(tries((1 << 20, 1 << 20), 30_000, 1 << 20), []);
    }
}
