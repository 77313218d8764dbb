//! What a connection's own instance (`isolation=connection`) costs each
//! guest language's echo: the memory it alone holds, what `ps` would show,
//! and the time from connecting to the first echo back.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::load;
use crate::servers::{Paths, Server, free_port};

/// The echo guests measured, by language.
const GUESTS: [(&str, &str); 4] = [
    ("Rust", "echo.wasm"),
    ("C", "echo_c.wasm"),
    ("JavaScript", "echo_js.wasm"),
    ("Python", "echo_py.wasm"),
];

/// What `count` connections, each with its instance, cost one guest.
struct Cost {
    /// Memory no other mapping shares (smaps' Private_Clean +
    /// Private_Dirty), grown per connection: what each really costs.
    private: f64,
    /// VmRSS grown per connection, which counts the pages of the
    /// component's copy-on-write memory image once per instance that
    /// reads them, though the kernel holds them once.
    rss: f64,
    /// Connect to first echo back, the median and the 90th percentile.
    first_byte: (Duration, Duration),
}

/// One line per guest and count: private memory and RSS per connection,
/// and the time to the first byte.
pub fn measure(
    paths: &Paths,
    cpu: Option<usize>,
    cache: &Path,
    reactor: &tokio::runtime::Runtime,
    counts: &[usize],
) -> anyhow::Result<Vec<String>> {
    let release = paths.target.join("wasm32-wasip2/release");
    let mut lines = Vec::new();
    for (language, file) in GUESTS {
        for &count in counts {
            let cost = cost(paths, &release.join(file), count, cpu, cache, reactor)
                .with_context(|| format!("{language} guest, {count} isolated connections"))?;
            lines.push(format!(
                "{language:<10} {count:>5} connections: {:>9} private, {:>9} RSS per connection; first byte {:>6.2} ms (p90 {:.2} ms)",
                kib(cost.private),
                kib(cost.rss),
                cost.first_byte.0.as_secs_f64() * 1e3,
                cost.first_byte.1.as_secs_f64() * 1e3,
            ));
        }
    }
    Ok(lines)
}

fn kib(bytes: f64) -> String {
    format!("{:.0} KiB", bytes / 1024.0)
}

fn cost(
    paths: &Paths,
    component: &Path,
    count: usize,
    cpu: Option<usize>,
    cache: &Path,
    reactor: &tokio::runtime::Runtime,
) -> anyhow::Result<Cost> {
    let port = free_port()?;
    let mut command = Command::new(paths.target.join("release/weft"));
    command
        .arg("serve")
        .arg("--cache-dir")
        .arg(cache)
        .arg(format!(
            "{}@tcp:{port}:interface=127.0.0.1:backlog=1024,isolation=connection,max-connections={}",
            component.display(),
            count + 16
        ))
        .env("RUST_LOG", "warn");
    let server = Server::run(command, port, cpu)?;
    let measured = reactor.block_on(async {
        tokio::time::timeout(Duration::from_secs(300), async {
            // One instance first, so that what every instance shares (the
            // compiled code's pages, the engine) is counted before.
            let mut first = tokio::net::TcpStream::connect(server.addr).await?;
            load::round_trip(&mut first).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let before = memory(server.pid())?;
            let mut open = Vec::with_capacity(count);
            let mut times = Vec::with_capacity(count);
            for _ in 0..count {
                let started = Instant::now();
                let mut stream = tokio::net::TcpStream::connect(server.addr).await?;
                load::round_trip(&mut stream).await?;
                times.push(started.elapsed());
                open.push(stream);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let after = memory(server.pid())?;
            // Every instance still answers.
            for stream in &mut open {
                load::round_trip(stream).await?;
            }
            times.sort();
            let per = |grown: u64| grown as f64 / count as f64;
            anyhow::Ok(Cost {
                private: per(after.private.saturating_sub(before.private)),
                rss: per(after.rss.saturating_sub(before.rss)),
                first_byte: (times[count / 2], times[count * 9 / 10]),
            })
        })
        .await
        .context("timed out")?
    });
    server.stop();
    measured
}

/// A process's resident memory, in bytes.
struct Memory {
    private: u64,
    rss: u64,
}

fn memory(pid: u32) -> anyhow::Result<Memory> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .context("reading smaps_rollup")?;
    let field = |name: &str| -> u64 {
        rollup
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok(Memory {
        private: field("Private_Clean:") + field("Private_Dirty:"),
        rss: field("Rss:"),
    })
}
