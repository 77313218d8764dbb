//! Starting and stopping the servers under test, each pinned to the server
//! core: the native references (this binary, re-run), weft with the
//! bundled guests, and the Twisted reference programs.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::native::BACKLOG;

/// weft's connection limit in the benchmark: the connections workload
/// opens 10,000 and then one more, which the default limit would make wait.
const IDLE_CONNECTIONS_LIMIT: usize = 20_000;

/// weft's datagram rate limit in the benchmark (datagrams a second).
const UDP_RATE_LIMIT: u32 = 10_000_000;

/// Which implementation serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Native,
    Weft,
    /// weft serving the Python ports of the guests.
    WeftPython,
    Twisted,
}

/// Which program it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    Echo,
    Http,
    Chat,
    /// A port forwarder in front of an echo server on this port.
    Proxy {
        backend: u16,
    },
    /// Twisted's UDP echo example, on `udp:`.
    UdpEcho,
}

impl App {
    fn name(self) -> &'static str {
        match self {
            App::Echo => "echo",
            App::Http => "http",
            App::Chat => "chat",
            App::Proxy { .. } => "proxy",
            App::UdpEcho => "udp-echo",
        }
    }
}

/// Where the programs under test are.
pub struct Paths {
    pub target: PathBuf,
    pub reference: PathBuf,
    pub python: Option<PathBuf>,
}

impl Paths {
    pub fn find() -> anyhow::Result<Paths> {
        let exe = std::env::current_exe()?;
        let target = exe
            .ancestors()
            .nth(2)
            .context("weft-bench runs from target/release")?
            .to_path_buf();
        let python = std::env::var_os("WEFT_TWISTED_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("twisted-venv/bin/python"));
        Ok(Paths {
            reference: Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference"),
            python: python.exists().then_some(python),
            target,
        })
    }

    /// weft's compile cache for warm runs: the one the tests fill
    /// (`target/weft-test-cache`), so that each component, a Python one
    /// above all, compiles once per checkout rather than once per run.
    pub fn compile_cache(&self) -> PathBuf {
        self.target.join("weft-test-cache")
    }

    fn component(&self, kind: Kind, app: App) -> PathBuf {
        let file = match app {
            App::Echo => "echo",
            App::Http if kind == Kind::WeftPython => "counter",
            App::Http => "http_counter",
            App::Chat => "chat",
            App::Proxy { .. } => "portforward",
            App::UdpEcho => "udp_echo",
        };
        let suffix = if kind == Kind::WeftPython { "_py" } else { "" };
        self.target
            .join("wasm32-wasip2/release")
            .join(format!("{file}{suffix}.wasm"))
    }
}

/// A running server process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Whether it serves UDP, and so is probed with a datagram.
    udp: bool,
    /// The command line, for the report.
    pub command: String,
    /// Whether the load's clients connect to it; not a server behind a
    /// balancer, which the clients reach through the balancer.
    pub entry: bool,
}

impl Server {
    /// Start `kind` serving `app`, pinned to `cpu`; `cache` is weft's compile
    /// cache directory. Returns once it accepts connections.
    pub fn start(
        kind: Kind,
        app: App,
        paths: &Paths,
        cpu: Option<usize>,
        cache: &Path,
    ) -> anyhow::Result<Server> {
        let port = free_port()?;
        let command = Self::command(kind, app, paths, port, cache, None)?;
        Self::spawn(command, port, cpu, app == App::UdpEcho)
    }

    /// Start `kind` serving `app` on every core with `workers` workers:
    /// weft's `workers=N`, native tokio's worker threads.
    pub fn start_workers(
        kind: Kind,
        app: App,
        paths: &Paths,
        workers: usize,
        cache: &Path,
    ) -> anyhow::Result<Server> {
        let port = free_port()?;
        let command = Self::command(kind, app, paths, port, cache, Some(workers))?;
        Self::spawn(command, port, None, app == App::UdpEcho)
    }

    /// The command line of `kind` serving `app` on `port`, with `workers`
    /// if given (Twisted has one thread whatever is asked).
    fn command(
        kind: Kind,
        app: App,
        paths: &Paths,
        port: u16,
        cache: &Path,
        workers: Option<usize>,
    ) -> anyhow::Result<Command> {
        Ok(match kind {
            Kind::Native => {
                let mut c = Command::new(std::env::current_exe()?);
                c.args(["serve", app.name(), &port.to_string()]);
                if let App::Proxy { backend } = app {
                    c.arg(backend.to_string());
                }
                if let Some(workers) = workers {
                    c.args(["--threads", &workers.to_string()]);
                }
                c
            }
            Kind::Weft | Kind::WeftPython => {
                let mut c = Command::new(paths.target.join("release/weft"));
                // The limit is each worker's: keep the process's total.
                let workers_given = workers.unwrap_or(1);
                let component = paths.component(kind, app);
                let mut service = match app {
                    // Datagrams per second: far above what the load
                    // reaches, rather than the default limit's 10,000.
                    App::UdpEcho => format!(
                        "{}@udp:{port}:interface=127.0.0.1,workers={workers_given},datagram-rate={UDP_RATE_LIMIT}",
                        component.display()
                    ),
                    _ => format!(
                        "{}@tcp:{port}:interface=127.0.0.1:backlog={BACKLOG},max-connections={},workers={workers_given}",
                        component.display(),
                        IDLE_CONNECTIONS_LIMIT / workers_given,
                    ),
                };
                if let App::Proxy { backend } = app {
                    service +=
                        &format!(",connect=127.0.0.1:{backend},config.backend=127.0.0.1:{backend}");
                }
                c.arg("serve").arg("--cache-dir").arg(cache).arg(service);
                c.env("RUST_LOG", "warn");
                c
            }
            Kind::Twisted => {
                let python = paths.python.as_ref().context("Twisted is not installed")?;
                let program = match app {
                    App::Echo => "echo.py",
                    App::Http => "counter.py",
                    App::Chat => "chat.py",
                    App::Proxy { .. } => "portforward.py",
                    App::UdpEcho => "udp_echo.py",
                };
                let mut c = Command::new(python);
                c.arg(paths.reference.join(program));
                match app {
                    // listenUDP(int(port), ...) on 127.0.0.1.
                    App::UdpEcho => c.arg(port.to_string()),
                    // The port is pasted into "tcp:%s:interface=127.0.0.1".
                    _ => c.arg(format!("{port}:backlog={BACKLOG}")),
                };
                if let App::Proxy { backend } = app {
                    c.arg(backend.to_string());
                }
                c
            }
        })
    }

    /// Run `command`, a TCP server on `port`, pinned to `cpu`; returns
    /// once it listens.
    pub fn run(command: Command, port: u16, cpu: Option<usize>) -> anyhow::Result<Server> {
        Self::spawn(command, port, cpu, false)
    }

    /// Run `command` pinned to `cpu`; returns once it listens on `port`
    /// (once it echoes a datagram there, for `udp`).
    fn spawn(
        mut command: Command,
        port: u16,
        cpu: Option<usize>,
        udp: bool,
    ) -> anyhow::Result<Server> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(cpu) = cpu {
            // SAFETY: only the async-signal-safe sched_setaffinity runs
            // between fork and exec.
            unsafe {
                command.pre_exec(move || pin_to(cpu));
            }
        }
        let shown = format!("{command:?}").replace('"', "");
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {shown}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = Server {
            child,
            addr,
            udp,
            command: shown,
            entry: true,
        };
        server.wait_until_listening(Duration::from_secs(60))?;
        Ok(server)
    }

    /// weft serving the Rust echo and the reactor test guest (timers on
    /// command) in one process; `addr` is the echo's, the second address
    /// the reactor guest's.
    pub fn start_weft_with_timers(
        paths: &Paths,
        cpu: Option<usize>,
        cache: &Path,
    ) -> anyhow::Result<(Server, SocketAddr)> {
        let (echo_port, timers_port) = (free_port()?, free_port()?);
        let release = paths.target.join("wasm32-wasip2/release");
        let mut command = Command::new(paths.target.join("release/weft"));
        command.arg("serve").arg("--cache-dir").arg(cache);
        for (file, port) in [("echo.wasm", echo_port), ("reactor.wasm", timers_port)] {
            command.arg(format!(
                "{}@tcp:{port}:interface=127.0.0.1:backlog={BACKLOG}",
                release.join(file).display()
            ));
        }
        command.env("RUST_LOG", "warn");
        let server = Self::spawn(command, echo_port, cpu, false)?;
        let timers = SocketAddr::from(([127, 0, 0, 1], timers_port));
        while std::net::TcpStream::connect(timers).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok((server, timers))
    }

    /// The spawn-to-listening wait, also used by the startup workload.
    fn wait_until_listening(&mut self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while !self.answers() {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("{} exited: {status}", self.command);
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "{} did not listen within {limit:?}",
                self.command
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Whether it accepts a connection, or echoes a datagram.
    fn answers(&self) -> bool {
        if !self.udp {
            return std::net::TcpStream::connect(self.addr).is_ok();
        }
        let probe = || -> std::io::Result<bool> {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            // While nothing is bound to the port, the kernel may give it
            // to the probe, which would then hear its own datagram.
            if socket.local_addr()? == self.addr {
                return Ok(false);
            }
            socket.connect(self.addr)?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            socket.send(b"probe")?;
            let mut back = [0u8; 16];
            Ok(socket.recv(&mut back)? == 5 && &back[..5] == b"probe")
        };
        probe().unwrap_or(false)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in bytes.
    pub fn rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    }

    /// CPU time used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th fields of the line.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields
            .get(11..13)
            .map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    /// The CPU time the server's live threads have used, to the
    /// nanosecond (`/proc/PID/task/*/schedstat`), where [`Self::cpu_time`]
    /// counts clock ticks of 10 ms.
    pub fn cpu_time_exact(&self) -> Duration {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid()));
        let nanos: u64 = tasks
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Duration::from_nanos(nanos)
    }

    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pin the calling thread (and what it execs) to `cpu`.
pub fn pin_to(cpu: usize) -> std::io::Result<()> {
    pin_to_any(&[cpu])
}

/// Let the calling thread (and what it spawns or execs) run on any of `cpus`.
pub fn pin_to_any(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: the set is a plain bitmask on the stack.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
