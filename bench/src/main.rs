//! `weft-bench`: weft beside native tokio/hyper references and the Twisted
//! reference programs, on the same load generator, in one run. Servers are
//! pinned to one core and the load to the other; every answer is checked;
//! one table with the figures, the ratios and the targets is printed.
//!
//! `weft-bench [--short|--smoke] [--no-twisted]`; `--short` runs a few
//! seconds per workload, `--smoke` each workload once and briefly (what CI
//! runs to keep the benchmark working; its figures mean little). `weft-bench serve APP PORT` runs a native reference;
//! `weft-bench load APP ADDR SECONDS` loads a running server and
//! `weft-bench event [COMPONENT [EVENTS]]` measures the per-event cost
//! alone (for profiling, or for a guest in another language).

mod instances;
mod load;
mod native;
mod report;
mod servers;
mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use load::{Throughput, Timing};
use report::{Better, Row, median};
use servers::{App, Kind, Paths, Server};

/// The load each workload applies.
const ECHO_CONNECTIONS: usize = 50;
const HTTP_CONNECTIONS: usize = 50;
pub(crate) const CHAT_CLIENTS: usize = 50;
pub(crate) const CHAT_SENDERS: usize = 2;
const UDP_CLIENTS: usize = 50;

/// How long a server holding only idle connections is watched for the CPU
/// it uses anyway (timers, tickers, housekeeping).
const IDLE_CPU_SPAN: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("load") => load_only(&args[1..]),
        Some("event") => event_only(&args[1..]),
        Some("state") => state_only(&args[1..]),
        Some("instances") => instances_only(&args[1..]),
        _ => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weft-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `weft-bench state [PAIRS]`: only the state section, pinned as the full
/// run pins it, 5 s a run.
fn state_only(args: &[String]) -> anyhow::Result<()> {
    let pairs = match args.first() {
        Some(pairs) => pairs.parse().context("usage: weft-bench state [PAIRS]")?,
        None => 5,
    };
    let alone = Alone::set_up()?;
    let lines = state::measure(&state::Setup {
        paths: &alone.paths,
        server_cpu: alone.server_cpu,
        load_cpu: alone.load_cpu,
        cache: &alone.cache,
        reactor: &alone.reactor,
        timing: Timing {
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(5),
        },
        connections: HTTP_CONNECTIONS,
        pairs,
    });
    for line in lines? {
        println!("{line}");
    }
    Ok(())
}

/// `weft-bench instances [COUNT...]`: only what an instance per
/// connection costs each guest language, at each COUNT of connections
/// (100 and 1,000 by default), the server pinned as the full run pins it.
fn instances_only(args: &[String]) -> anyhow::Result<()> {
    let mut counts = args
        .iter()
        .map(|count| count.parse())
        .collect::<Result<Vec<usize>, _>>()
        .context("usage: weft-bench instances [COUNT...]")?;
    if counts.is_empty() {
        counts = vec![100, 1_000];
    }
    raise_file_limit();
    let alone = Alone::set_up()?;
    let lines = instances::measure(
        &alone.paths,
        alone.server_cpu,
        &alone.cache,
        &alone.reactor,
        &counts,
    );
    for line in lines? {
        println!("{line}");
    }
    Ok(())
}

/// What a run needs, whole or a section alone (`state`, `instances`):
/// this process pinned to the load generator's CPU and the servers' CPU
/// to start them on, a reactor and the compile cache.
struct Alone {
    paths: Paths,
    /// The CPUs this process may use.
    cpus: usize,
    server_cpu: Option<usize>,
    load_cpu: Option<usize>,
    reactor: tokio::runtime::Runtime,
    cache: PathBuf,
}

impl Alone {
    fn set_up() -> anyhow::Result<Alone> {
        let paths = Paths::find()?;
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let (server_cpu, load_cpu) = match cpus {
            1 => (None, None),
            _ => (Some(0), Some(1)),
        };
        if let Some(cpu) = load_cpu {
            servers::pin_to(cpu).context("pinning the load generator")?;
        }
        let reactor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let cache = paths.compile_cache();
        Ok(Alone {
            paths,
            cpus,
            server_cpu,
            load_cpu,
            reactor,
            cache,
        })
    }
}

const SERVE_USAGE: &str =
    "usage: weft-bench serve echo|http|chat|proxy|udp-echo PORT [BACKEND_PORT] [--threads N]";

fn serve(args: &[String]) -> anyhow::Result<()> {
    let (threads, args) = match args {
        [rest @ .., flag, n] if flag == "--threads" => (Some(n.parse()?), rest),
        _ => (None, args),
    };
    let (Some(app), Some(port)) = (args.first(), args.get(1)) else {
        anyhow::bail!(SERVE_USAGE);
    };
    let backend = args.get(2).map(|p| p.parse()).transpose()?;
    native::serve(app, port.parse()?, backend, threads)
}

const EVENT_USAGE: &str = "usage: weft-bench event [COMPONENT [EVENTS [PAYLOAD]]]
  The in-process cost of one data-received of PAYLOAD into COMPONENT (the
  Rust echo guest by default), its writes and the host taking them, over
  EVENTS events (500000), three times. PAYLOAD is text, with \\r and \\n for
  CR and LF (default: 64 bytes of x); e.g. 'GET / HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n'.";

/// `event [COMPONENT [EVENTS [PAYLOAD]]]`: the per-event cost of any
/// component, three times.
fn event_only(args: &[String]) -> anyhow::Result<()> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{EVENT_USAGE}");
        return Ok(());
    }
    let paths = Paths::find()?;
    let component = args.first().map_or_else(
        || paths.target.join("wasm32-wasip2/release/echo.wasm"),
        PathBuf::from,
    );
    let events = args
        .get(1)
        .map_or(Ok(500_000), |n| n.parse())
        .with_context(|| format!("EVENTS is a number\n{EVENT_USAGE}"))?;
    let payload = args.get(2).map_or_else(
        || vec![b'x'; 64],
        |text| text.replace("\\r", "\r").replace("\\n", "\n").into_bytes(),
    );
    let reactor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cache = warm_cache(&paths.compile_cache());
    for _ in 0..3 {
        let cost = reactor.block_on(weft::measure::event_cost(
            &component,
            cache.clone(),
            &payload,
            events,
        ))?;
        println!(
            "per event: {} ns ({} bytes in, {:.1} bytes written back)",
            cost.time.as_nanos(),
            payload.len(),
            cost.written
        );
    }
    Ok(())
}

/// The compile cache at `dir`, the one the bench's servers use, for what
/// it measures in process: as large as xtask lets the tests' grow.
fn warm_cache(dir: &Path) -> weft::CompileCache {
    weft::CompileCache::new(dir).with_max_size_from_env()
}

/// An echo's per-event cost, checked to be an echo's.
fn echo_event_cost(
    reactor: &tokio::runtime::Runtime,
    component: &Path,
    cache: &Path,
    events: u32,
) -> anyhow::Result<Duration> {
    let payload = [b'x'; 64];
    let cost = reactor.block_on(weft::measure::event_cost(
        component,
        warm_cache(cache),
        &payload,
        events,
    ))?;
    anyhow::ensure!(
        cost.written == payload.len() as f64,
        "{} wrote {} bytes per 64-byte event, not 64",
        component.display(),
        cost.written
    );
    Ok(cost.time)
}

const LOAD_USAGE: &str = "usage: weft-bench load echo|http|chat|udp HOST:PORT SECONDS
  Drive a running server with one of the benchmark's loads for SECONDS and
  print the rate and latencies: echo (50 connections, 64-byte messages
  that must come back), http (50 keep-alive connections, GET / answered by
  a counter), chat (50 clients, 2 sending lines all must hear) or udp (50
  UDP clients, 64-byte datagrams that must come back; one not back within
  200 ms is counted lost). HOST may be a name or an address. A server that
  does not answer within 10 s is an error, not a hang.";

fn load_only(args: &[String]) -> anyhow::Result<()> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{LOAD_USAGE}");
        return Ok(());
    }
    let (Some(app), Some(addr), Some(seconds), None) =
        (args.first(), args.get(1), args.get(2), args.get(3))
    else {
        anyhow::bail!("{LOAD_USAGE}");
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
        .with_context(|| format!("{addr} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let timing = Timing {
        warmup: Duration::ZERO,
        measure: Duration::from_secs_f64(
            seconds
                .parse()
                .with_context(|| format!("SECONDS is a number\n{LOAD_USAGE}"))?,
        ),
    };
    let load = match app.as_str() {
        "echo" => App::Echo,
        "http" => App::Http,
        "chat" => App::Chat,
        "udp" => App::UdpEcho,
        other => anyhow::bail!("no {other} load\n{LOAD_USAGE}"),
    };
    let reactor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let measured = reactor.block_on(apply_load(load, addr, timing))?;
    let lost = match load {
        App::UdpEcho => format!(", {} datagrams lost", measured.lost),
        _ => String::new(),
    };
    println!(
        "{app}: {:.0}/s, p50 {:?}, p99 {:?}{lost}",
        measured.rate(),
        measured.p50,
        measured.p99,
    );
    Ok(())
}

/// How long a run is, how many of each: full, `--short` or `--smoke`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Short,
    Smoke,
}

impl Mode {
    /// How many rounds of the echo, HTTP, chat and UDP echo workloads
    /// run, each kind once a round on a fresh server: the table gives the
    /// median and the spread, and each ratio the median of the rounds'.
    fn runs(self) -> usize {
        match self {
            Mode::Full => 5,
            Mode::Short => 3,
            Mode::Smoke => 1,
        }
    }

    fn timing(self) -> Timing {
        let (warmup, measure) = match self {
            Mode::Full => (Duration::from_secs(1), Duration::from_secs(5)),
            Mode::Short => (Duration::from_millis(300), Duration::from_secs(1)),
            Mode::Smoke => (Duration::from_millis(200), Duration::from_millis(500)),
        };
        Timing { warmup, measure }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Short => "short",
            Mode::Smoke => "smoke",
        }
    }
}

/// The figures of one implementation.
#[derive(Default)]
struct Figures {
    /// Each run of the echo, HTTP, chat and UDP echo workloads.
    echo: Vec<Throughput>,
    http: Vec<Throughput>,
    chat: Vec<Throughput>,
    udp: Vec<Throughput>,
    proxy: Vec<Throughput>,
    /// How late 10 ms timers fired beside the echo load: p50, p99.
    timers_late: Option<(Duration, Duration)>,
    /// Server CPU used per second of each run of echo, HTTP, chat, the
    /// port forwarder and UDP echo, as a share of a core.
    cpu: [Vec<f64>; 5],
    /// Echo and HTTP rates on every core, with one worker and with two:
    /// `scaling[app][workers - 1]`, each run.
    scaling: [[Vec<f64>; 2]; 2],
    idle_bytes_per_connection: Option<f64>,
    /// The server's share of a core while it holds only idle connections.
    idle_cpu: Option<f64>,
    startup_cold: Option<Duration>,
    startup_warm: Option<Duration>,
    commands: Vec<String>,
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let mode = match (
        args.iter().any(|a| a == "--short"),
        args.iter().any(|a| a == "--smoke"),
    ) {
        (false, false) => Mode::Full,
        (true, false) => Mode::Short,
        (false, true) => Mode::Smoke,
        (true, true) => anyhow::bail!("--short or --smoke, not both"),
    };
    let short = mode != Mode::Full;
    let with_twisted = !args.iter().any(|a| a == "--no-twisted");
    if let Some(unknown) = args
        .iter()
        .find(|a| !["--short", "--smoke", "--no-twisted"].contains(&a.as_str()))
    {
        anyhow::bail!(
            "unknown argument {unknown}: usage: weft-bench [--short|--smoke] [--no-twisted]"
        );
    }
    raise_file_limit();
    let Alone {
        paths,
        cpus,
        server_cpu,
        load_cpu,
        reactor,
        cache,
    } = Alone::set_up()?;
    let timing = mode.timing();
    let idle_connections = if short { 1_000 } else { 10_000 };
    // Emptied before each cold start, so apart from the shared one.
    let cold_cache =
        std::env::temp_dir().join(format!("weft-bench-cold-cache-{}", std::process::id()));

    let mut kinds = vec![Kind::Native, Kind::Weft];
    if with_twisted && paths.python.is_some() {
        kinds.push(Kind::Twisted);
    }
    let place = Place {
        paths: &paths,
        cpu: server_cpu,
        cache: &cache,
        reactor: &reactor,
        timing,
        runs: mode.runs(),
    };
    // The Python guests run beside Twisted in each round, the figures
    // Python users compare.
    kinds.push(Kind::WeftPython);
    let mut figures: Vec<(Kind, Figures)> = kinds
        .iter()
        .map(|kind| (*kind, Figures::default()))
        .collect();
    eprintln!("weft-bench: measuring echo, HTTP, chat and UDP echo, each kind in turn");
    measure_interleaved(
        &[
            App::Echo,
            App::Http,
            App::Chat,
            App::UdpEcho,
            App::Proxy { backend: 0 },
        ],
        &mut figures,
        &place,
        load_cpu,
    )?;
    for (kind, f) in &mut figures {
        let kind = *kind;
        eprintln!("weft-bench: measuring {kind:?}'s memory and start");
        if kind != Kind::WeftPython {
            f.startup_cold = Some(startup(
                kind,
                &paths,
                server_cpu,
                &cold_cache,
                &reactor,
                true,
            )?);
            f.startup_warm = Some(startup(kind, &paths, server_cpu, &cache, &reactor, false)?);
        }
        if kind == Kind::Weft {
            f.timers_late = Some(timers_under_load(
                &paths, server_cpu, &cache, &reactor, timing,
            )?);
        }
        let idle =
            idle_connections_cost(kind, &paths, server_cpu, &cache, idle_connections, &reactor)?;
        f.idle_bytes_per_connection = Some(idle.bytes_per_connection);
        f.idle_cpu = Some(idle.cpu);
    }

    // Every core: the servers and the load generator (on as many threads)
    // are free to use all of them, one worker against two.
    if cpus >= 2 {
        servers::pin_to_any(&(0..cpus).collect::<Vec<_>>()).context("unpinning")?;
        let everywhere = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus)
            .enable_all()
            .build()?;
        let place = Place {
            reactor: &everywhere,
            cpu: None,
            ..place
        };
        eprintln!("weft-bench: measuring native and weft on every core, in turn");
        measure_scaling(&mut figures, &place)?;
    }
    // State kept by the host, against the counters it replaces.
    if let Some(cpu) = load_cpu {
        servers::pin_to(cpu).context("pinning the load generator")?;
    }
    eprintln!("weft-bench: measuring state kept by the host");
    let state = state::measure(&state::Setup {
        paths: &paths,
        server_cpu,
        load_cpu,
        cache: &cache,
        reactor: &reactor,
        timing,
        connections: HTTP_CONNECTIONS,
        pairs: match mode {
            Mode::Full => 5,
            Mode::Short => 2,
            Mode::Smoke => 1,
        },
    })?;
    eprintln!("weft-bench: measuring an instance per connection, for each guest language");
    let instance_counts: &[usize] = match mode {
        Mode::Full => &[100, 1_000],
        Mode::Short => &[100],
        Mode::Smoke => &[5],
    };
    let instances = instances::measure(&paths, server_cpu, &cache, &reactor, instance_counts)?;
    let _ = std::fs::remove_dir_all(&cold_cache);

    let events = if short { 20_000 } else { 500_000 };
    let release = paths.target.join("wasm32-wasip2/release");
    let per_event = echo_event_cost(&reactor, &release.join("echo.wasm"), &cache, events)?;
    let per_python_event =
        echo_event_cost(&reactor, &release.join("echo_py.wasm"), &cache, events / 5)?;

    let header = header(
        mode,
        timing,
        idle_connections,
        server_cpu,
        load_cpu,
        &figures,
    );
    println!(
        "{}",
        report::render(&header, &rows(&figures, per_event, per_python_event))
    );
    println!(
        "\nState kept by the host (HTTP load, {HTTP_CONNECTIONS} connections; pairs run back to back, the ratio is each pair's, median and range):"
    );
    for line in state {
        println!("  {line}");
    }
    println!(
        "\nAn instance per connection (isolation=connection), the echo guests; private memory is what each connection alone holds, RSS also counts the shared memory image's pages it reads:"
    );
    for line in instances {
        println!("  {line}");
    }
    Ok(())
}

/// Where and how the servers under test run.
#[derive(Clone, Copy)]
struct Place<'a> {
    paths: &'a Paths,
    cpu: Option<usize>,
    cache: &'a Path,
    reactor: &'a tokio::runtime::Runtime,
    timing: Timing,
    /// Runs of each workload.
    runs: usize,
}

/// Serve each of `apps` (echo, HTTP, chat, UDP echo, the port forwarder)
/// with each kind of
/// `figures`, in rounds: each round runs every kind once, one after
/// another, each on a fresh server, so that each run sits beside its
/// neighbours' and a ratio compares runs seconds apart, not minutes on a
/// machine whose speed drifts from minute to minute. Records each run's
/// throughput and the server's share of a core, and the first command.
fn measure_interleaved(
    apps: &[App],
    figures: &mut [(Kind, Figures)],
    place: &Place,
    load_cpu: Option<usize>,
) -> anyhow::Result<()> {
    let timing = place.timing;
    for &app in apps {
        for run in 0..place.runs {
            for (kind, figures) in figures.iter_mut() {
                let kind = *kind;
                // The port forwarder forwards to a native echo server on
                // the load generator's core, so the server's core is the
                // proxy's; weft's Python guests are not measured there.
                let backend = match app {
                    App::Proxy { .. } if kind == Kind::WeftPython => continue,
                    App::Proxy { .. } => Some(Server::start(
                        Kind::Native,
                        App::Echo,
                        place.paths,
                        load_cpu,
                        place.cache,
                    )?),
                    _ => None,
                };
                let app = match &backend {
                    Some(backend) => App::Proxy {
                        backend: backend.addr.port(),
                    },
                    None => app,
                };
                let server = Server::start(kind, app, place.paths, place.cpu, place.cache)?;
                if run == 0 {
                    figures.commands.push(server.command.clone());
                }
                let cpu_before = server.cpu_time();
                let measured = place.reactor.block_on(apply_load(app, server.addr, timing));
                let busy = server.cpu_time() - cpu_before;
                server.stop();
                if let Some(backend) = backend {
                    backend.stop();
                }
                let measured = measured.with_context(|| format!("{kind:?} {app:?}"))?;
                let cpu = busy.as_secs_f64() / (timing.warmup + timing.measure).as_secs_f64();
                let (index, runs) = match app {
                    App::Echo => (0, &mut figures.echo),
                    App::Http => (1, &mut figures.http),
                    App::Chat => (2, &mut figures.chat),
                    App::UdpEcho => (4, &mut figures.udp),
                    App::Proxy { .. } => (3, &mut figures.proxy),
                };
                figures.cpu[index].push(cpu);
                runs.push(measured);
            }
        }
    }
    Ok(())
}

/// Echo and HTTP served by native and weft with one worker, then two
/// (native: tokio worker threads), nothing pinned: `place.runs` rounds of
/// each, native then weft, as `measure_interleaved` runs them.
fn measure_scaling(figures: &mut [(Kind, Figures)], place: &Place) -> anyhow::Result<()> {
    for (index, app) in [App::Echo, App::Http].into_iter().enumerate() {
        for workers in 1..=2 {
            for run in 0..place.runs {
                for (kind, figures) in figures
                    .iter_mut()
                    .filter(|(kind, _)| matches!(kind, Kind::Native | Kind::Weft))
                {
                    let kind = *kind;
                    let server =
                        Server::start_workers(kind, app, place.paths, workers, place.cache)?;
                    if run == 0 {
                        figures.commands.push(server.command.clone());
                    }
                    let measured =
                        place
                            .reactor
                            .block_on(apply_load(app, server.addr, place.timing));
                    server.stop();
                    let measured =
                        measured.with_context(|| format!("{kind:?} {app:?}, {workers} workers"))?;
                    figures.scaling[index][workers - 1].push(measured.rate());
                }
            }
        }
    }
    Ok(())
}

/// The benchmark's load for `app` (echo, HTTP, chat, UDP echo, the port
/// forwarder) on `addr`.
async fn apply_load(app: App, addr: SocketAddr, timing: Timing) -> anyhow::Result<Throughput> {
    match app {
        App::Echo => load::echo(addr, ECHO_CONNECTIONS, timing).await,
        App::Http => load::http(addr, HTTP_CONNECTIONS, timing).await,
        App::Chat => load::chat(&[addr], CHAT_CLIENTS, CHAT_SENDERS, timing).await,
        App::UdpEcho => load::udp_echo(addr, UDP_CLIENTS, timing).await,
        // The echo load, through the forwarder.
        App::Proxy { .. } => load::echo(addr, ECHO_CONNECTIONS, timing).await,
    }
}

/// Timers under load: weft serving echo (under the echo load) and the
/// reactor test guest, whose 10 ms timers a client asks for one after
/// another; how late each fired, as that client saw it.
fn timers_under_load(
    paths: &Paths,
    cpu: Option<usize>,
    cache: &Path,
    reactor: &tokio::runtime::Runtime,
    timing: Timing,
) -> anyhow::Result<(Duration, Duration)> {
    let (server, timers) = Server::start_weft_with_timers(paths, cpu, cache)?;
    let measured = reactor.block_on(async {
        let until = Instant::now() + timing.warmup + timing.measure;
        let load = load::echo(server.addr, ECHO_CONNECTIONS, timing);
        let (load, late) = tokio::join!(load, load::timer_lateness(timers, until));
        load?;
        late
    });
    server.stop();
    let mut late = measured.context("weft timers under load")?;
    anyhow::ensure!(!late.is_empty(), "no timer fired");
    late.sort();
    let at = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    Ok((at(0.5), at(0.99)))
}

/// What idle connections cost a server.
struct IdleCost {
    /// RSS grown by the connections, per connection.
    bytes_per_connection: f64,
    /// The server's share of a core while nothing but them is open.
    cpu: f64,
}

/// What `count` idle connections cost: the server's RSS grown by them, and
/// the CPU it uses while they (and it) do nothing for [`IDLE_CPU_SPAN`].
fn idle_connections_cost(
    kind: Kind,
    paths: &Paths,
    cpu: Option<usize>,
    cache: &Path,
    count: usize,
    reactor: &tokio::runtime::Runtime,
) -> anyhow::Result<IdleCost> {
    let server = Server::start(kind, App::Echo, paths, cpu, cache)?;
    let before = server.rss();
    let limit = Duration::from_secs(120);
    let measured = reactor.block_on(async {
        tokio::time::timeout(limit, async {
            let mut idle = load::idle(server.addr, count).await?;
            // Let the server settle, then check it still answers.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let after = server.rss();
            let busy_before = server.cpu_time_exact();
            tokio::time::sleep(IDLE_CPU_SPAN).await;
            let busy = server.cpu_time_exact().saturating_sub(busy_before);
            let mut fresh = tokio::net::TcpStream::connect(server.addr).await?;
            load::round_trip(&mut fresh).await?;
            load::round_trip(&mut idle[count / 2]).await?;
            anyhow::Ok(IdleCost {
                bytes_per_connection: after.saturating_sub(before) as f64 / count as f64,
                cpu: busy.as_secs_f64() / IDLE_CPU_SPAN.as_secs_f64(),
            })
        })
        .await
    });
    server.stop();
    measured
        .context("timed out")
        .and_then(|measured| measured)
        .with_context(|| format!("{kind:?} idle connections"))
}

/// Process start to the first echo answered, the median of three starts;
/// `cold` empties weft's compile cache before each start.
fn startup(
    kind: Kind,
    paths: &Paths,
    cpu: Option<usize>,
    cache: &Path,
    reactor: &tokio::runtime::Runtime,
    cold: bool,
) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..3 {
        if cold {
            let _ = std::fs::remove_dir_all(cache);
        }
        let started = Instant::now();
        let server = Server::start(kind, App::Echo, paths, cpu, cache)?;
        let answered = reactor.block_on(async {
            let mut stream = tokio::net::TcpStream::connect(server.addr).await?;
            load::round_trip(&mut stream).await
        });
        let took = started.elapsed();
        server.stop();
        answered.with_context(|| format!("{kind:?} startup"))?;
        times.push(took);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn header(
    mode: Mode,
    timing: Timing,
    idle: usize,
    server_cpu: Option<usize>,
    load_cpu: Option<usize>,
    figures: &[(Kind, Figures)],
) -> Vec<String> {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // Counted before pinning narrowed this process to one CPU.
    let cores = libc_cpus();
    let pinning = match (server_cpu, load_cpu) {
        (Some(s), Some(l)) => format!("servers pinned to CPU {s}, load generator to CPU {l}"),
        _ => "one CPU: nothing pinned, figures are not per core".into(),
    };
    let mut lines = vec![
        format!(
            "weft-bench ({} mode): {cpu_model}, {cores} CPUs, Linux {}",
            mode.name(),
            kernel.trim()
        ),
        format!(
            "{pinning}; {:?} warm-up then {:?} measured per workload",
            timing.warmup, timing.measure
        ),
        format!(
            "load: echo {ECHO_CONNECTIONS} connections x 64 B closed loop; HTTP {HTTP_CONNECTIONS} keep-alive connections GET /; \
             chat {CHAT_CLIENTS} clients, {CHAT_SENDERS} senders closed loop; UDP echo {UDP_CLIENTS} clients x 64 B \
             closed loop; portforward: the echo load through the proxy to a native echo on the load core; \
             {idle} idle connections; every answer checked"
        ),
        format!(
            "echo, HTTP, chat and UDP echo: {} rounds, each running native, weft, Twisted and the Python guest in turn on \
             fresh servers; figures are the median run, w/nat and w/Tw the median of the rounds' ratios (rounds: their range); \
             spread% = (max - min) / median, native/weft. every core: server and load generator ({cores} threads) unpinned, workers=1 and \
             workers=2 (native: tokio worker threads)",
            mode.runs()
        ),
        "servers:".into(),
    ];
    for (_, f) in figures {
        lines.extend(f.commands.iter().map(|c| format!("  {c}")));
    }
    lines
}

fn rows(figures: &[(Kind, Figures)], per_event: Duration, per_python_event: Duration) -> Vec<Row> {
    let of = |kind: Kind, pick: &dyn Fn(&Figures) -> Option<f64>| {
        figures
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, f)| pick(f))
    };
    let all = |pick: &dyn Fn(&Figures) -> Option<f64>| {
        [
            of(Kind::Native, pick),
            of(Kind::Weft, pick),
            of(Kind::Twisted, pick),
        ]
    };
    let runs_of = |kind: Kind, pick: &dyn Fn(&Figures) -> Vec<f64>| {
        figures
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, f)| pick(f))
            .unwrap_or_default()
    };
    // A figure of the repeated workloads, for native, weft and Twisted
    // (`python`: for weft's Python guests and Twisted).
    let runs = |name: &str, better, pick: &dyn Fn(&Figures) -> Vec<f64>| {
        Row::of_runs(
            name,
            better,
            [
                runs_of(Kind::Native, pick),
                runs_of(Kind::Weft, pick),
                runs_of(Kind::Twisted, pick),
            ],
        )
    };
    let python = |name: &str, better, pick: &dyn Fn(&Figures) -> Vec<f64>| {
        Row::of_runs(
            name,
            better,
            [
                Vec::new(),
                runs_of(Kind::WeftPython, pick),
                runs_of(Kind::Twisted, pick),
            ],
        )
    };
    let python_memory = |name: &str, pick: &dyn Fn(&Figures) -> Option<f64>| {
        Row::new(
            name,
            Better::Lower,
            [
                None,
                of(Kind::WeftPython, pick),
                of(Kind::Twisted, &|f| f.idle_bytes_per_connection),
            ],
        )
    };
    let rate = |runs: &[Throughput]| runs.iter().map(Throughput::rate).collect::<Vec<_>>();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let p50 = move |runs: &[Throughput]| runs.iter().map(|t| micros(t.p50)).collect::<Vec<_>>();
    let p99 = move |runs: &[Throughput]| runs.iter().map(|t| micros(t.p99)).collect::<Vec<_>>();
    let millis = |d: Duration| d.as_secs_f64() * 1e3;
    // One worker against two on every core: each run's rate, and the
    // median two-worker rate over the median one-worker rate.
    let scaled =
        |app: usize, workers: usize| move |f: &Figures| f.scaling[app][workers - 1].clone();
    let scaling = |app: usize| {
        move |f: &Figures| Some(median(&f.scaling[app][1])? / median(&f.scaling[app][0])?)
    };
    vec![
        runs("echo msgs/s", Better::Higher, &|f| rate(&f.echo))
            .vs_native(0.90)
            .vs_twisted(3.0),
        runs("echo p50 latency (us)", Better::Lower, &|f| p50(&f.echo)),
        runs("echo p99 latency (us)", Better::Lower, &|f| p99(&f.echo)).vs_native(1.3),
        runs("echo server CPU (share of a core)", Better::Lower, &|f| {
            f.cpu[0].clone()
        }),
        runs("http req/s", Better::Higher, &|f| rate(&f.http))
            .vs_native(0.80)
            .vs_twisted(10.0),
        runs("http p50 latency (us)", Better::Lower, &|f| p50(&f.http)),
        runs("http p99 latency (us)", Better::Lower, &|f| p99(&f.http)).vs_native(1.3),
        runs("http server CPU (share of a core)", Better::Lower, &|f| {
            f.cpu[1].clone()
        }),
        runs("chat deliveries/s", Better::Higher, &|f| rate(&f.chat))
            .vs_native(1.0)
            .vs_twisted(3.0),
        runs("chat p50 round trip (us)", Better::Lower, &|f| p50(&f.chat)),
        runs("chat p99 round trip (us)", Better::Lower, &|f| p99(&f.chat)),
        runs("chat server CPU (share of a core)", Better::Lower, &|f| {
            f.cpu[2].clone()
        }),
        runs("udp echo datagrams/s", Better::Higher, &|f| rate(&f.udp)),
        runs("udp echo p99 latency (us)", Better::Lower, &|f| p99(&f.udp)),
        Row::new(
            "udp echo datagrams lost (all runs)",
            Better::Lower,
            all(&|f| (!f.udp.is_empty()).then(|| f.udp.iter().map(|t| t.lost as f64).sum())),
        ),
        runs(
            "udp echo server CPU (share of a core)",
            Better::Lower,
            &|f| f.cpu[4].clone(),
        ),
        runs(
            "portforward msgs/s (echo through it)",
            Better::Higher,
            &|f| rate(&f.proxy),
        )
        .vs_native(0.80)
        .vs_twisted(3.0),
        runs("portforward p50 latency (us)", Better::Lower, &|f| {
            p50(&f.proxy)
        }),
        runs("portforward p99 latency (us)", Better::Lower, &|f| {
            p99(&f.proxy)
        }),
        runs(
            "portforward server CPU (share of a core)",
            Better::Lower,
            &|f| f.cpu[3].clone(),
        ),
        Row::new(
            "10 ms timer fired late, p50 (us, beside echo load)",
            Better::Lower,
            all(&|f| Some(micros(f.timers_late?.0))),
        ),
        Row::new(
            "10 ms timer fired late, p99 (us, beside echo load)",
            Better::Lower,
            all(&|f| Some(micros(f.timers_late?.1))),
        ),
        Row::new(
            "idle RSS per connection (bytes)",
            Better::Lower,
            all(&|f| f.idle_bytes_per_connection),
        )
        .vs_native(1.2),
        Row::new(
            "idle server CPU, idle connections only (us a second)",
            Better::Lower,
            all(&|f| Some(f.idle_cpu? * 1e6)),
        ),
        Row::new(
            "startup to first echo, cold (ms)",
            Better::Lower,
            all(&|f| Some(millis(f.startup_cold?))),
        ),
        Row::new(
            "startup to first echo, warm (ms)",
            Better::Lower,
            all(&|f| Some(millis(f.startup_warm?))),
        )
        .absolute(50.0),
        Row::new(
            "per event: data-received 64 B + write (ns)",
            Better::Lower,
            [None, Some(per_event.as_secs_f64() * 1e9), None],
        )
        .absolute(300.0),
        runs(
            "every core: echo msgs/s, 1 worker",
            Better::Higher,
            &scaled(0, 1),
        ),
        runs(
            "every core: echo msgs/s, 2 workers",
            Better::Higher,
            &scaled(0, 2),
        ),
        Row::new(
            "every core: echo, 2 workers / 1",
            Better::Higher,
            all(&scaling(0)),
        ),
        runs(
            "every core: http req/s, 1 worker",
            Better::Higher,
            &scaled(1, 1),
        ),
        runs(
            "every core: http req/s, 2 workers",
            Better::Higher,
            &scaled(1, 2),
        ),
        Row::new(
            "every core: http, 2 workers / 1",
            Better::Higher,
            all(&scaling(1)),
        ),
        // The Python guests in the weft column, against Twisted.
        // Real Twisted runs in the guest: the goal is Twisted's own speed.
        python("Python guest: echo msgs/s", Better::Higher, &|f| {
            rate(&f.echo)
        })
        .vs_twisted(1.0),
        python("Python guest: http req/s", Better::Higher, &|f| {
            rate(&f.http)
        })
        .vs_twisted(1.0),
        python("Python guest: http p50 latency (us)", Better::Lower, &|f| {
            p50(&f.http)
        }),
        python("Python guest: chat deliveries/s", Better::Higher, &|f| {
            rate(&f.chat)
        })
        .vs_twisted(1.0),
        python("Python guest: udp echo datagrams/s", Better::Higher, &|f| {
            rate(&f.udp)
        })
        .vs_twisted(1.0),
        // Twisted's column is its idle connection.
        python_memory("Python guest: memory per idle connection (bytes)", &|f| {
            f.idle_bytes_per_connection
        }),
        Row::new(
            "Python guest: per event, 64 B echoed (ns)",
            Better::Lower,
            [None, Some(per_python_event.as_secs_f64() * 1e9), None],
        )
        .absolute(2000.0),
    ]
}

/// The CPUs online, whatever this process is pinned to.
fn libc_cpus() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(online).unwrap_or(1).max(1)
}

/// Raise the open-file limit to its maximum; servers started after inherit it.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
