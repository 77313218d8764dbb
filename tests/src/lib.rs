//! What weft's integration tests share: where the built guests and binary
//! are, the host served in-process on port 0, the `weft` binary as a child
//! process, Redis and HAProxy on free ports, and socket helpers that fail
//! after a timeout instead of hanging.

mod haproxy;
mod tls;

pub use haproxy::Haproxy;
pub use tls::{TestTls, Wire};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use weft::{CompileCache, Endpoint, Limits, Server, ServiceSpec};

/// How long any single wait in a test may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// How long weft may take to report its listeners: Cranelift compiles a
/// 10-30 MB JavaScript or Python component first, which on a loaded
/// 2-core machine can take longer than [`TIMEOUT`].
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// `target/`, found from this test binary (`target/release/deps/...`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    exe.ancestors()
        .nth(3)
        .expect("tests run from target/<profile>/deps")
        .to_path_buf()
}

/// The component built from the guest crate `name` (`http-counter` ->
/// `http_counter.wasm`).
pub fn guest(name: &str) -> PathBuf {
    let file = format!("{}.wasm", name.replace('-', "_"));
    let path = target_dir()
        .join("wasm32-wasip2")
        .join("release")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds the guests",
        path.display()
    );
    path
}

/// The compile cache the tests share, so each component compiles once.
pub fn test_cache_dir() -> PathBuf {
    target_dir().join("weft-test-cache")
}

/// The test cache, as large as `WEFT_CACHE_MAX_SIZE` says (xtask sets it
/// for the tests and the weft processes they start: one run's Python and
/// JavaScript guests alone take over the default 1 GiB, and what is
/// evicted is compiled again).
fn test_cache() -> CompileCache {
    CompileCache::new(test_cache_dir()).with_max_size_from_env()
}

/// The release `weft` binary.
pub fn weft_binary() -> PathBuf {
    let path = target_dir().join("release").join("weft");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test`",
        path.display()
    );
    path
}

/// Held by tests that load the machine (many connections, floods, RSS
/// and latency measurements), so that they do not run at the same time.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    HEAVY
        .get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

/// Raise this process's open-file limit to its hard maximum, for tests
/// that open thousands of sockets.
pub fn raise_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

/// The default limits, but the memory cap the README gives JavaScript
/// guests (`-js`): StarlingMonkey's heap outgrows the default under load.
pub fn limits_for(guest: &str) -> Limits {
    let mut limits = Limits::default();
    if guest.ends_with("-js") {
        limits.memory = 256 << 20;
    }
    limits
}

/// The guest `name` on 127.0.0.1:0 with the limits an operator would give
/// it, no outbound connections allowed and no configuration.
pub fn spec(name: &str) -> ServiceSpec {
    let mut spec = ServiceSpec::new(
        guest(name),
        Endpoint::tcp("127.0.0.1:0".parse().expect("a socket address")),
    );
    spec.limits = limits_for(name);
    spec
}

/// The weft host running in this process, each service on 127.0.0.1:0.
pub struct Host {
    addrs: Vec<(String, SocketAddr)>,
    metrics: std::sync::Arc<weft::Metrics>,
    stop: Option<oneshot::Sender<()>>,
    running: Option<JoinHandle<()>>,
}

impl Host {
    /// Serve the named guests with the limits an operator would give them.
    pub async fn start(guests: &[&str]) -> Host {
        Self::start_with(guests.iter().map(|g| (*g, limits_for(g))).collect()).await
    }

    /// Serve the named guests, each with its limits.
    pub async fn start_with(guests: Vec<(&str, Limits)>) -> Host {
        let specs = guests
            .into_iter()
            .map(|(name, limits)| {
                let mut spec = spec(name);
                spec.limits = limits;
                spec
            })
            .collect();
        Self::start_specs(specs).await
    }

    /// Serve these services (see [`spec`]).
    pub async fn start_specs(specs: Vec<ServiceSpec>) -> Host {
        // One test at a time loads components, so that a component missing
        // from the cache (a Python guest takes seconds) is compiled once,
        // not by every test that starts at the same moment.
        static LOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let loading = LOADING.lock().await;
        let cache = test_cache();
        let server = Server::bind(specs, Some(cache))
            .await
            .expect("the host binds");
        drop(loading);
        let addrs = server
            .addresses()
            .into_iter()
            .map(|(name, addr)| (name.to_string(), addr))
            .collect();
        let metrics = server.metrics();
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Host {
            addrs,
            metrics,
            stop: Some(stop),
            running: Some(running),
        }
    }

    /// Where the service of guest `name` listens (`http-counter` is
    /// served as `http_counter`, the component's file stem).
    pub fn addr(&self, name: &str) -> SocketAddr {
        let stem = name.replace('-', "_");
        self.addrs
            .iter()
            .find(|(n, _)| *n == stem)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("no service {name} in {:?}", self.addrs))
    }

    /// The value of the series `name` (with its labels, as `/metrics`
    /// shows it), or 0 if it is not shown.
    pub fn series(&self, name: &str) -> f64 {
        self.metrics
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map_or(0.0, |value| value.parse().expect("a number"))
    }

    /// Shut down and wait until every connection has been closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            within(running).await.expect("the server task ends cleanly");
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A free port on 127.0.0.1, for a program that cannot be told port 0
/// (Redis, HAProxy, a Twisted reference): bound, read, and let go (so
/// another process could take it first; none does in practice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Await `future`, failing the test after [`TIMEOUT`].
pub async fn within<F: std::future::IntoFuture>(future: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {TIMEOUT:?}"))
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    within(TcpStream::connect(addr)).await.expect("connects")
}

/// Read until the peer closes.
pub async fn read_to_end(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut bytes = Vec::new();
    within(stream.read_to_end(&mut bytes))
        .await
        .expect("reads to the end");
    bytes
}

/// Whether the peer closed (cleanly or with a reset) without sending a
/// byte: what a refused connection looks like.
pub async fn closed_without_reply(stream: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut bytes = Vec::new();
    match within(stream.read_to_end(&mut bytes)).await {
        Ok(_) => bytes.is_empty(),
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset && bytes.is_empty(),
    }
}

/// Read exactly `n` bytes.
pub async fn read_exact(stream: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    within(stream.read_exact(&mut bytes))
        .await
        .expect("reads the bytes expected");
    bytes
}

/// Read until what was read ends with `suffix`. Reads byte by byte, so
/// whatever follows stays unread for the next call.
pub async fn read_until(stream: &mut (impl AsyncRead + Unpin), suffix: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    while !bytes.ends_with(suffix) {
        match within(stream.read_u8()).await {
            Ok(byte) => bytes.push(byte),
            Err(error) => panic!(
                "{error} before {:?}; got {:?}",
                String::from_utf8_lossy(suffix),
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    bytes
}

/// Read one HTTP response: the head, then a `Content-Length` body unless
/// `head_only`. Pipelined responses after it stay unread.
pub async fn read_response(stream: &mut (impl AsyncRead + Unpin), head_only: bool) -> Vec<u8> {
    let mut response = read_until(stream, b"\r\n\r\n").await;
    let head = String::from_utf8_lossy(&response).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse().expect("a numeric Content-Length"));
    if !head_only {
        response.extend(read_exact(stream, length).await);
    }
    response
}

/// An HTTP exchange as text, with the `Server` and `Date` values, which
/// differ from Twisted's by design, replaced by `S` and `D`.
pub fn normalise(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .map(|line| match line {
            l if l.starts_with("Server: ") => "Server: S",
            l if l.starts_with("Date: ") => "Date: D",
            l => l,
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Send `request` and read until the peer closes.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr).await;
    stream.write_all(request).await.expect("writes");
    read_to_end(&mut stream).await
}

/// A `weft` process and what it has printed to stderr.
pub struct WeftProcess {
    child: Child,
    stderr: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl WeftProcess {
    /// Start `weft ARGS` and wait until it reports `services` listeners;
    /// returns it with the TCP addresses, in the order they were reported
    /// (Unix sockets are counted, not returned).
    pub async fn spawn(args: &[&str], services: usize) -> (WeftProcess, Vec<SocketAddr>) {
        Self::spawn_logging(args, services, "info").await
    }

    /// [`WeftProcess::spawn`] with the log filter `RUST_LOG=filter`.
    pub async fn spawn_logging(
        args: &[&str],
        services: usize,
        filter: &str,
    ) -> (WeftProcess, Vec<SocketAddr>) {
        Self::spawn_with(args, services, |command| {
            command.env("RUST_LOG", filter);
        })
        .await
    }

    /// [`WeftProcess::spawn`], with `configure` given the command first.
    pub async fn spawn_with(
        args: &[&str],
        services: usize,
        configure: impl FnOnce(&mut Command),
    ) -> (WeftProcess, Vec<SocketAddr>) {
        let mut command = Command::new(weft_binary());
        command
            .args(args)
            .env("RUST_LOG", "info")
            .env("WEFT_CACHE_DIR", test_cache_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        configure(&mut command);
        let mut child = command.spawn().expect("weft starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let (send, stderr) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = send.send(line);
            }
        });
        let mut process = WeftProcess {
            child,
            stderr,
            seen: Vec::new(),
        };
        let mut addrs = Vec::new();
        let mut served = 0;
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        while addrs.len() + served < services {
            let line = process
                .line_before(deadline)
                .await
                .unwrap_or_else(|_| {
                    panic!("weft did not report its listeners within {STARTUP_TIMEOUT:?}")
                })
                .expect("weft reports its listeners before exiting");
            if let Some(addr) = line.split("serving on ").nth(1) {
                let addr = addr.split_whitespace().next().unwrap_or_default();
                // A Unix socket's path is not an address: its test knows it.
                match addr.parse() {
                    Ok(addr) => addrs.push(addr),
                    Err(_) if addr.starts_with('/') => served += 1,
                    Err(_) => panic!("an address in {line:?}"),
                }
            }
        }
        (process, addrs)
    }

    /// The next stderr line, or `None` once weft has exited.
    pub async fn next_line(&mut self) -> Option<String> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        self.line_before(deadline)
            .await
            .unwrap_or_else(|_| panic!("timed out after {TIMEOUT:?}"))
    }

    /// Wait for a stderr line containing `needle`.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match self.line_before(deadline).await {
                Ok(Some(line)) if line.contains(needle) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!(
                    "weft exited without printing {needle:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
                Err(_) => panic!(
                    "weft did not print {needle:?} within {TIMEOUT:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The next stderr line (kept in `seen`), `None` once weft has exited,
    /// or an error if `deadline` passes first.
    async fn line_before(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<Option<String>, tokio::time::error::Elapsed> {
        let line = tokio::time::timeout_at(deadline, self.stderr.recv()).await?;
        if let Some(line) = &line {
            self.seen.push(line.clone());
        }
        Ok(line)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("weft is running")
    }

    /// How many file descriptors the process has open.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("weft's /proc fd")
            .count()
    }

    /// A `/proc/PID/status` figure in KiB: `VmRSS` (now) or `VmHWM` (peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("weft's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// CPU time the process has used, user and system, from `/proc/PID/stat`
    /// (in clock ticks, so to the nearest 10 ms).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("weft's /proc stat");
        // Fields after the command name, which ends at the last ')': the
        // state is field 3, utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 1..]
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Duration::from_secs_f64(ticks as f64 / per_second as f64)
    }

    /// Times the process's threads have given up the CPU so far, waiting
    /// or preempted: each wakeup of an idle thread counts one.
    pub fn context_switches(&self) -> u64 {
        let tasks =
            std::fs::read_dir(format!("/proc/{}/task", self.pid())).expect("weft's threads");
        tasks
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
            .flat_map(|status| {
                status
                    .lines()
                    .filter_map(|line| {
                        let (field, value) = line.split_once(':')?;
                        field
                            .ends_with("ctxt_switches")
                            .then(|| value.trim().parse::<u64>().ok())?
                    })
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    /// Every stderr line seen so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Every stderr line weft has printed so far, the ones not yet read by
    /// `next_line` or `wait_for` included.
    pub fn printed(&mut self) -> &[String] {
        while let Ok(line) = self.stderr.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// How many times a guest's memory has grown so far, as logged at
    /// debug level (`weft::sandbox::store=debug` in the filter).
    pub fn memory_growths(&mut self) -> usize {
        self.printed()
            .iter()
            .filter(|line| line.contains("guest memory grows"))
            .count()
    }

    /// Send `signal` (SIGINT, SIGTERM) to the process.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid();
        // SAFETY: kill(2) with a pid we own; no memory is involved.
        let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal}) failed");
    }

    /// Wait for exit; returns the status and everything printed to stderr.
    pub async fn wait(mut self) -> (ExitStatus, String) {
        let status = within(self.child.wait()).await.expect("weft exits");
        while self.next_line().await.is_some() {}
        (status, self.seen.join("\n"))
    }
}

/// Run `weft ARGS` to completion; returns its status and stderr.
pub async fn run_weft(args: &[&str]) -> (ExitStatus, String) {
    let output = within(
        Command::new(weft_binary())
            .env("WEFT_CACHE_DIR", test_cache_dir())
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("weft runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Deterministic pseudo-random bytes (xorshift), different per `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A path in a fresh temporary directory for this test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir.join(name)
}

/// Send `line` and a CRLF.
pub async fn send_line(stream: &mut (impl AsyncWrite + Unpin), line: &str) {
    within(stream.write_all(format!("{line}\r\n").as_bytes()))
        .await
        .expect("writes");
}

/// The next CRLF-terminated line, without its CRLF.
pub async fn line(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let bytes = read_until(stream, b"\r\n").await;
    String::from_utf8(bytes)
        .expect("a UTF-8 line")
        .trim_end_matches("\r\n")
        .to_owned()
}

/// A backend for proxies, on 127.0.0.1: each connection is greeted with
/// `hello from the backend\r\n`, then echoed; after echoing `close\r\n` the
/// backend closes, and at the client's end of input it finishes echoing
/// and shuts down its own write side (it is half-closeable).
pub async fn echo_backend() -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("has an address");
    let serving = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if stream
                    .write_all(b"hello from the backend\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut buffer = vec![0; 64 * 1024];
                let mut tail: Vec<u8> = Vec::new();
                loop {
                    let read = match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => read,
                    };
                    if stream.write_all(&buffer[..read]).await.is_err() {
                        return;
                    }
                    tail.extend_from_slice(&buffer[..read]);
                    tail.drain(..tail.len().saturating_sub(16));
                    if tail.ends_with(b"close\r\n") {
                        return;
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, serving)
}

/// A `redis-server` (Debian's, which `cargo xtask test` installs) on a free
/// loopback port, with nothing saved to disk; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let port = free_port();
        let mut server = RedisServer { child: None, port };
        server.restart().await;
        server
    }

    /// Start it (again) on the same port, empty.
    pub async fn restart(&mut self) {
        let child = Command::new("/usr/bin/redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "redis-server starts: run the tests with `cargo xtask test`, which installs it",
            );
        self.child = Some(child);
        within(async {
            while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Stop it and wait until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}
