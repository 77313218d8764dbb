//! State kept by the host, against what it replaces, in pairs run back to
//! back on fresh servers: the HTTP counter counting in its instance vs
//! `kv_counter` counting in the embedded store; on Redis, `redis_counter`
//! (RESP by hand over an outbound connection) vs `kv_counter` with
//! `kv=redis://`, beside `redis-benchmark`'s INCR as the floor.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use crate::load::{self, Timing};
use crate::report::median;
use crate::servers::{Paths, Server, free_port};

/// Where Debian's packages put Redis.
const REDIS_SERVER: &str = "/usr/bin/redis-server";
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

/// Each pair's rates, the reference first.
struct Pairs(Vec<(f64, f64)>);

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
        format!(
            "{measured} {:.0} req/s vs {reference} {:.0} req/s: {:.2}x (pairs {}, {:.2}-{:.2})",
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
    let mut lines = Vec::new();
    let embedded = pairs(
        setup,
        |port| weft(setup, &component("http_counter"), port, ""),
        |port| weft(setup, &component("kv_counter"), port, ""),
    )?;
    lines.push(embedded.line("http_counter", "kv_counter (embedded)"));

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
        |port| weft(setup, &component("redis_counter"), port, &redis_counter),
        |port| weft(setup, &component("kv_counter"), port, &kv_redis),
    );
    // A shared instance waits for each reply in turn; one instance per
    // connection waits for each connection's own.
    let kv_redis_isolated = format!("{kv_redis},isolation=connection");
    let isolated = pairs(
        setup,
        |port| weft(setup, &component("redis_counter"), port, &redis_counter),
        |port| weft(setup, &component("kv_counter"), port, &kv_redis_isolated),
    );
    let floor = redis_benchmark(redis_port, setup.connections);
    redis.stop();
    lines.push(on_redis?.line("redis_counter", "kv_counter (Redis)"));
    lines.push(isolated?.line("redis_counter", "kv_counter (Redis, isolation=connection)"));
    lines.push(format!(
        "redis-benchmark INCR, {} connections: {:.0} req/s (the floor under both)",
        setup.connections, floor?
    ));
    Ok(lines)
}

/// `setup.pairs` pairs of runs, the reference's server then the measured
/// one's, each fresh, under the HTTP load.
fn pairs(
    setup: &Setup,
    reference: impl Fn(u16) -> anyhow::Result<Server>,
    measured: impl Fn(u16) -> anyhow::Result<Server>,
) -> anyhow::Result<Pairs> {
    let mut pairs = Vec::new();
    for _ in 0..setup.pairs {
        let a = rate(setup, &reference)?;
        let b = rate(setup, &measured)?;
        pairs.push((a, b));
    }
    Ok(Pairs(pairs))
}

fn rate(setup: &Setup, start: &impl Fn(u16) -> anyhow::Result<Server>) -> anyhow::Result<f64> {
    let server = start(free_port()?)?;
    let command = server.command.clone();
    let measured = setup
        .reactor
        .block_on(load::http(server.addr, setup.connections, setup.timing));
    server.stop();
    Ok(measured.with_context(|| command)?.rate())
}

/// weft serving `component` on `port` with `settings` after the endpoint.
fn weft(setup: &Setup, component: &Path, port: u16, settings: &str) -> anyhow::Result<Server> {
    let mut command = Command::new(setup.paths.target.join("release/weft"));
    command
        .arg("serve")
        .arg("--cache-dir")
        .arg(setup.cache)
        .arg(format!(
            "{}@tcp:{port}:interface=127.0.0.1{settings}",
            component.display()
        ));
    command.env("RUST_LOG", "warn");
    Server::run(command, port, setup.server_cpu)
}

/// `redis-benchmark`'s INCR rate with `connections` clients.
fn redis_benchmark(port: u16, connections: usize) -> anyhow::Result<f64> {
    let output = Command::new(REDIS_BENCHMARK)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-c",
            &connections.to_string(),
            "-n",
            "100000",
            "-t",
            "incr",
            "--csv",
        ])
        .output()
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "test","rps",...; then "INCR","123456.79",...
    text.lines()
        .find(|line| line.starts_with("\"INCR\""))
        .and_then(|line| line.split(',').nth(1))
        .and_then(|rps| rps.trim_matches('"').parse().ok())
        .with_context(|| format!("no INCR rate in redis-benchmark's output: {text}"))
}
