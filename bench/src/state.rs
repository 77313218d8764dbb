//! State and messages kept by the host, against what they replace, in
//! pairs run back to back on fresh servers: the HTTP counter counting in
//! its instance vs `kv_counter` counting in the embedded store; the seed
//! chat's room in its instance vs `chat_room`'s topic, embedded, across
//! two processes on Redis, and through HAProxy to three; on Redis, `redis_counter` (RESP by hand over an
//! outbound connection) vs `kv_counter` with `kv=redis://`, beside
//! `redis-benchmark`'s INCR as the floor.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use crate::load::{self, Timing};
use crate::report::median;
use crate::servers::{Paths, Server, free_port};

/// Where Debian's packages put Redis and HAProxy.
const REDIS_SERVER: &str = "/usr/bin/redis-server";
const HAPROXY: &str = "/usr/sbin/haproxy";
const REDIS_BENCHMARK: &str = "/usr/bin/redis-benchmark";

/// Where and how the servers run.
pub struct Setup<'a> {
    pub paths: &'a Paths,
    pub server_cpu: Option<usize>,
    pub load_cpu: Option<usize>,
    pub cache: &'a Path,
    pub reactor: &'a tokio::runtime::Runtime,
    pub timing: Timing,
    pub connections: usize,
    pub pairs: usize,
}

/// Each pair's rates, the reference first, and what they count.
struct Pairs(Vec<(f64, f64)>, &'static str);

/// What a pair's runs are loaded with.
#[derive(Clone, Copy)]
enum Workload {
    /// HTTP GETs, counted in requests.
    Http,
    /// The chat load, counted in lines delivered.
    Chat,
}

impl Pairs {
    fn line(&self, reference: &str, measured: &str) -> String {
        let ratios: Vec<f64> = self.0.iter().map(|(a, b)| b / a).collect();
        let (low, high) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
        let rates = |pick: fn(&(f64, f64)) -> f64| {
            let values: Vec<f64> = self.0.iter().map(pick).collect();
            median(&values).unwrap_or(0.0)
        };
        let unit = self.1;
        format!(
            "{measured} {:.0} {unit} vs {reference} {:.0} {unit}: {:.2}x (pairs {}, {:.2}-{:.2})",
            rates(|p| p.1),
            rates(|p| p.0),
            median(&ratios).unwrap_or(0.0),
            self.0.len(),
            low,
            high
        )
    }
}

/// The section of the report: a line per comparison.
pub fn measure(setup: &Setup) -> anyhow::Result<Vec<String>> {
    let release = setup.paths.target.join("wasm32-wasip2/release");
    let component = |name: &str| release.join(format!("{name}.wasm"));
    let one = |name: &str, settings: &str| -> anyhow::Result<Vec<Server>> {
        Ok(vec![weft(setup, &component(name), free_port()?, settings)?])
    };
    let mut lines = Vec::new();
    let embedded = pairs(
        setup,
        Workload::Http,
        || one("http_counter", ""),
        || one("kv_counter", ""),
    )?;
    lines.push(embedded.line("http_counter", "kv_counter (embedded)"));
    let room = pairs(
        setup,
        Workload::Chat,
        || one("chat", ""),
        || one("chat_room", ""),
    )?;
    lines.push(room.line("chat", "chat_room (embedded)"));

    if !Path::new(REDIS_SERVER).exists() {
        lines.push(format!(
            "Redis: not measured, {REDIS_SERVER} is not installed"
        ));
        return Ok(lines);
    }
    let redis_port = free_port()?;
    let mut redis = Command::new(REDIS_SERVER);
    redis
        .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string()])
        .args(["--save", "", "--appendonly", "no"]);
    let redis = Server::run(redis, redis_port, setup.load_cpu)?;
    let redis_counter =
        format!(",connect=127.0.0.1:{redis_port},config.redis=127.0.0.1:{redis_port}");
    let kv_redis = format!(",kv=redis://127.0.0.1:{redis_port}/0");
    let on_redis = pairs(
        setup,
        Workload::Http,
        || one("redis_counter", &redis_counter),
        || one("kv_counter", &kv_redis),
    );
    // A shared instance waits for each reply in turn; one instance per
    // connection waits for each connection's own.
    let kv_redis_isolated = format!("{kv_redis},isolation=connection");
    let isolated = pairs(
        setup,
        Workload::Http,
        || one("redis_counter", &redis_counter),
        || one("kv_counter", &kv_redis_isolated),
    );
    // The room across two processes, its clients split between them,
    // against the seed chat in one.
    let pubsub_redis = format!(",pubsub=redis://127.0.0.1:{redis_port}/0");
    let spanning = pairs(
        setup,
        Workload::Chat,
        || one("chat", ""),
        || {
            let first = one("chat_room", &pubsub_redis)?;
            let second = one("chat_room", &pubsub_redis)?;
            Ok(first.into_iter().chain(second).collect())
        },
    );
    // The room on three processes of two workers each, behind HAProxy
    // (the PROXY protocol, /readyz checks), against one process direct:
    // on this machine they all share the same two cores.
    let balanced = Path::new(HAPROXY).exists().then(|| {
        pairs(
            setup,
            Workload::Chat,
            || one("chat_room", ""),
            || behind_haproxy(setup, &component("chat_room"), &pubsub_redis),
        )
    });
    let floor = redis_benchmark(redis_port, setup.connections, &["-t", "incr"], "INCR");
    let publish_floor = redis_benchmark(
        redis_port,
        setup.connections,
        &["PUBLISH", "weft:topic:bench", "a line of the chat"],
        "PUBLISH",
    );
    redis.stop();
    lines.push(on_redis?.line("redis_counter", "kv_counter (Redis)"));
    lines.push(isolated?.line("redis_counter", "kv_counter (Redis, isolation=connection)"));
    lines.push(spanning?.line("chat (one process)", "chat_room (2 processes, Redis)"));
    match balanced {
        Some(balanced) => lines.push(balanced?.line(
            "chat_room (one process, direct)",
            "chat_room (HAProxy, 3 processes x 2 workers, Redis)",
        )),
        None => lines.push(format!("HAProxy: not measured, {HAPROXY} is not installed")),
    }
    lines.push(format!(
        "redis-benchmark INCR, {} connections: {:.0} req/s (the floor under the counters)",
        setup.connections, floor?
    ));
    lines.push(format!(
        "redis-benchmark PUBLISH, {} connections: {:.0} msgs/s (the floor under the room's \
         publishes; each line is one, delivered to 50 clients)",
        setup.connections, publish_floor?
    ));
    Ok(lines)
}

/// `setup.pairs` pairs of runs, the reference's servers then the measured
/// one's, each fresh, under `workload`.
fn pairs(
    setup: &Setup,
    workload: Workload,
    reference: impl Fn() -> anyhow::Result<Vec<Server>>,
    measured: impl Fn() -> anyhow::Result<Vec<Server>>,
) -> anyhow::Result<Pairs> {
    let mut pairs = Vec::new();
    for _ in 0..setup.pairs {
        let a = rate(setup, workload, &reference)?;
        let b = rate(setup, workload, &measured)?;
        pairs.push((a, b));
    }
    let unit = match workload {
        Workload::Http => "req/s",
        Workload::Chat => "deliveries/s",
    };
    Ok(Pairs(pairs, unit))
}

/// The rate of one run of `workload` on the servers `start` starts, its
/// clients spread over them.
fn rate(
    setup: &Setup,
    workload: Workload,
    start: &impl Fn() -> anyhow::Result<Vec<Server>>,
) -> anyhow::Result<f64> {
    let servers = start()?;
    let addrs: Vec<_> = servers
        .iter()
        .filter(|server| server.entry)
        .map(|server| server.addr)
        .collect();
    let command = servers
        .iter()
        .map(|server| server.command.as_str())
        .collect::<Vec<_>>()
        .join(" & ");
    let measured = setup.reactor.block_on(async {
        match workload {
            Workload::Http => load::http(addrs[0], setup.connections, setup.timing).await,
            Workload::Chat => {
                load::chat(
                    &addrs,
                    crate::CHAT_CLIENTS,
                    crate::CHAT_SENDERS,
                    setup.timing,
                )
                .await
            }
        }
    });
    for server in servers {
        server.stop();
    }
    Ok(measured.with_context(|| command)?.rate())
}

/// weft serving `component` on `port` with `settings` after the endpoint.
fn weft(setup: &Setup, component: &Path, port: u16, settings: &str) -> anyhow::Result<Server> {
    weft_on(
        setup,
        component,
        &format!("tcp:{port}"),
        port,
        settings,
        &[],
    )
}

/// weft serving `component` on `endpoint` (whose port is `port`, on
/// 127.0.0.1) with `settings` after it and `flags` before.
fn weft_on(
    setup: &Setup,
    component: &Path,
    endpoint: &str,
    port: u16,
    settings: &str,
    flags: &[String],
) -> anyhow::Result<Server> {
    let mut command = Command::new(setup.paths.target.join("release/weft"));
    command
        .arg("serve")
        .arg("--cache-dir")
        .arg(setup.cache)
        .args(flags)
        .arg(format!(
            "{}@{endpoint}:interface=127.0.0.1{settings}",
            component.display()
        ));
    command.env("RUST_LOG", "warn");
    Server::run(command, port, setup.server_cpu)
}

/// Three weft processes of two workers serving `component` on `haproxy:`
/// endpoints with `settings`, behind HAProxy (bench/haproxy.cfg), which
/// the load's clients connect to.
fn behind_haproxy(setup: &Setup, component: &Path, settings: &str) -> anyhow::Result<Vec<Server>> {
    let mut servers = Vec::new();
    let mut haproxy = Command::new(HAPROXY);
    for n in 1..=3 {
        let (port, admin) = (free_port()?, free_port()?);
        let flags = [
            "--admin".to_owned(),
            format!("tcp:{admin}:interface=127.0.0.1"),
        ];
        let endpoint = format!("haproxy:tcp:{port}");
        let mut weft = weft_on(
            setup,
            component,
            &endpoint,
            port,
            &format!("{settings},workers=2"),
            &flags,
        )?;
        weft.entry = false;
        servers.push(weft);
        haproxy.env(format!("WEFT{n}_CHAT"), format!("127.0.0.1:{port}"));
        haproxy.env(format!("WEFT{n}_ADMIN_PORT"), admin.to_string());
    }
    let frontend = free_port()?;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("haproxy.cfg");
    haproxy
        .env("CHAT_FRONTEND", format!("127.0.0.1:{frontend}"))
        .arg("-db")
        .arg("-f")
        .arg(config);
    servers.insert(0, Server::run(haproxy, frontend, setup.server_cpu)?);
    Ok(servers)
}

/// `redis-benchmark`'s rate with `connections` clients running `test`
/// (`-t incr`, or a command of its own), whose row is named `row`.
fn redis_benchmark(port: u16, connections: usize, test: &[&str], row: &str) -> anyhow::Result<f64> {
    let output = Command::new(REDIS_BENCHMARK)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &connections.to_string(), "-n", "100000", "--csv"])
        .args(test)
        .output()
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "test","rps",...; then "INCR","123456.79",... (a command of its
    // own is named in full: "PUBLISH weft:topic:bench ...").
    let quoted = format!("\"{row}");
    text.lines()
        .find(|line| line.starts_with(&quoted))
        .and_then(|line| line.split(',').nth(1))
        .and_then(|rps| rps.trim_matches('"').parse().ok())
        .with_context(|| format!("no {row} rate in redis-benchmark's output: {text}"))
}
