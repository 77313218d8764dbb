//! A real HAProxy (Debian's, which `cargo xtask test` installs) in front of
//! weft processes: started on a config file from `tests/haproxy/` whose
//! `"${NAME}"` variables are set in its environment, and read back through
//! its stats socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use crate::{TIMEOUT, free_port, scratch, within};

/// Where Debian's haproxy package puts the balancer.
const HAPROXY: &str = "/usr/sbin/haproxy";

/// The variable naming the stats socket, which every config here must use
/// (`stats socket "${STATS_SOCKET}" mode 600 level admin`).
const STATS_SOCKET: &str = "STATS_SOCKET";

/// How often a status is polled while waiting for it.
const POLL: Duration = Duration::from_millis(20);

/// A running `haproxy -db`, killed when dropped.
pub struct Haproxy {
    child: Child,
    stats_socket: PathBuf,
    frontends: HashMap<String, SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Haproxy {
    /// Start HAProxy on `config` with each of `variables` set, each of
    /// `frontends` set to a free address on 127.0.0.1 (see
    /// [`Haproxy::frontend`]) and `STATS_SOCKET` to a socket in a fresh
    /// scratch directory; returns once the stats socket answers, by which
    /// time every frontend listens (HAProxy binds them all before it
    /// serves any).
    pub async fn start(
        config: &Path,
        variables: &[(String, String)],
        frontends: &[&str],
    ) -> Haproxy {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = scratch(&format!(
            "haproxy-{}",
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for HAProxy");
        let stats_socket = dir.join("stats.sock");
        let frontends: HashMap<String, SocketAddr> = frontends
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    SocketAddr::from(([127, 0, 0, 1], free_port())),
                )
            })
            .collect();
        let mut environment: HashMap<String, String> = variables
            .iter()
            .cloned()
            .chain(
                frontends
                    .iter()
                    .map(|(name, addr)| (name.clone(), addr.to_string())),
            )
            .collect();
        environment.insert(STATS_SOCKET.into(), stats_socket.display().to_string());
        let text = std::fs::read_to_string(config)
            .unwrap_or_else(|error| panic!("{}: {error}", config.display()));
        // HAProxy reads an unset variable as empty, which fails far from
        // the cause: name the missing one here instead.
        for name in placeholders(&text) {
            assert!(
                environment.contains_key(&name),
                "{} uses \"${{{name}}}\", which the test does not set",
                config.display()
            );
        }

        let mut child = Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(config)
            .envs(&environment)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("haproxy starts: run the tests with `cargo xtask test`, which installs it");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().expect("the log lock").push(line);
            }
        });
        let mut haproxy = Haproxy {
            child,
            stats_socket,
            frontends,
            log,
        };
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while haproxy.ask("show info").await.is_none() {
            if let Ok(Some(status)) = haproxy.child.try_wait() {
                panic!("haproxy exited ({status}):\n{}", haproxy.log().join("\n"));
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "haproxy's stats socket did not answer within {TIMEOUT:?}:\n{}",
                haproxy.log().join("\n")
            );
            tokio::time::sleep(POLL).await;
        }
        haproxy
    }

    /// The address the frontend variable `name` was given.
    pub fn frontend(&self, name: &str) -> SocketAddr {
        *self
            .frontends
            .get(name)
            .unwrap_or_else(|| panic!("no frontend {name} in {:?}", self.frontends))
    }

    /// Every row of `show stat`, by column name (`pxname`, `svname`,
    /// `status`, `scur`, `stot`, ...).
    pub async fn stats(&self) -> Vec<HashMap<String, String>> {
        let csv = within(self.ask("show stat"))
            .await
            .expect("haproxy's stats socket answers");
        let mut lines = csv.lines();
        let header = lines
            .next()
            .and_then(|line| line.strip_prefix("# "))
            .unwrap_or_else(|| panic!("a CSV header from show stat, got {csv:?}"));
        let columns: Vec<&str> = header.split(',').collect();
        lines
            .filter(|line| !line.is_empty())
            .map(|line| {
                columns
                    .iter()
                    .zip(line.split(','))
                    .map(|(column, value)| (column.to_string(), value.to_string()))
                    .collect()
            })
            .collect()
    }

    /// The status HAProxy shows for `server` of `proxy` (a `listen` or
    /// `backend` section): `UP`, `DOWN`, `MAINT`, or a transition such as
    /// `UP 1/2` (one failed check of the two that take it down).
    pub async fn server_status(&self, proxy: &str, server: &str) -> String {
        self.server_field(proxy, server, "status").await
    }

    /// One column of `show stat` for `server` of `proxy`.
    pub async fn server_field(&self, proxy: &str, server: &str, column: &str) -> String {
        let stats = self.stats().await;
        let row = stats
            .iter()
            .find(|row| row["pxname"] == proxy && row["svname"] == server)
            .unwrap_or_else(|| panic!("no server {proxy}/{server} in haproxy's stats"));
        row.get(column)
            .unwrap_or_else(|| panic!("no column {column} in haproxy's stats"))
            .clone()
    }

    /// Poll until `server` of `proxy` shows `status`.
    pub async fn wait_for_status(&self, proxy: &str, server: &str, status: &str) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let now = self.server_status(proxy, server).await;
            if now == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{proxy}/{server} is still {now}, not {status}, after {TIMEOUT:?}:\n{}",
                self.log().join("\n")
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// What HAProxy has printed so far: its warnings, and with `log stderr`
    /// its log (a server going down and why, each connection).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("the log lock").clone()
    }

    /// Send one command to the stats socket and read the answer, or `None`
    /// if the socket is not there yet.
    async fn ask(&self, command: &str) -> Option<String> {
        let mut socket = UnixStream::connect(&self.stats_socket).await.ok()?;
        socket
            .write_all(format!("{command}\n").as_bytes())
            .await
            .ok()?;
        let mut answer = String::new();
        socket.read_to_string(&mut answer).await.ok()?;
        Some(answer)
    }
}

/// The names of the `${NAME}` variables `config` uses outside comments.
fn placeholders(config: &str) -> Vec<String> {
    config
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split("${").skip(1))
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| name.to_owned())
        .collect()
}
