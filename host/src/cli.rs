//! The `weft` command line: `weft` serves the bundled guests,
//! `weft serve COMPONENT@ENDPOINT[,LIMIT=VALUE...]...` serves the given
//! components; limit flags set every service's defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use weft::{CompileCache, Endpoint, Limits, ServiceSpec, limits};

/// The bundled guests and where `weft` alone serves them: the ports of the
/// Twisted reference programs, on loopback only.
const BUNDLED: [(&str, &str); 3] = [
    ("echo.wasm", "tcp:1234:interface=127.0.0.1"),
    ("http_counter.wasm", "tcp:8080:interface=127.0.0.1"),
    ("chat.wasm", "tcp:1025:interface=127.0.0.1"),
];

/// Every endpoint type, for `weft serve --help`.
const ENDPOINTS_HELP: &str = "Endpoints (Twisted's server endpoint strings):
  tcp:PORT, tcp:port=PORT:interface=ADDR:backlog=N   TCP on IPv4 (interface: all by default)
  tcp6:PORT:interface=\\:\\:1                          TCP on IPv6 (colons escaped, as in Twisted)
  ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem       TLS, terminated by weft (also interface, backlog, extraCertChain)
  unix:PATH:mode=660:lockfile=1                      a Unix socket (also backlog)
  udp:PORT:interface=ADDR                            UDP, for a datagram guest";

#[derive(Parser, Debug)]
#[command(
    name = "weft",
    version,
    about = "Serve protocol handlers compiled to WebAssembly components, each in its own sandbox.",
    after_help = "Examples:\n  weft                                  serve the bundled echo, HTTP counter and chat guests\n  weft serve echo.wasm@tcp:1234         serve echo.wasm on port 1234, all interfaces\n  weft serve chat.wasm@tcp:port=1025:interface=127.0.0.1 http_counter.wasm@tcp:8080\n  weft --config weft.toml               serve what a config file describes\n\nLogging: RUST_LOG=debug weft ... shows weft's and guests' debug lines; other crates stay at info unless named (RUST_LOG=wasmtime=debug). Default: info.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// With no command: serve the bundled guests, or a config file's services.
    #[command(flatten)]
    pub serve: ServeOptions,
}

/// What `weft` does.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve each COMPONENT on its ENDPOINT, all in this process.
    #[command(after_help = ENDPOINTS_HELP)]
    Serve(Serve),
    /// Load each COMPONENT as `serve` would, without listening, and say
    /// what it is: the world and WIT version it is built for, what it
    /// imports and what weft makes of each, its size, how long it took to
    /// load and the language runtime inside. Exits 0 only if `serve` would
    /// accept every one.
    Check(Check),
    /// Prune or clear the compile cache.
    Cache(Cache),
    /// Write a new guest project: a minimal echo server in NAME/, with a
    /// README saying how to build and serve it. Example: weft new myecho
    /// --lang python
    New(New),
    /// Print a completion script for a shell. Example: weft completions
    /// bash > ~/.local/share/bash-completion/completions/weft
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print weft's man page (roff). Example: weft man > weft.1
    Man,
}

/// `weft serve`: the services, and how to serve them.
#[derive(clap::Args, Debug)]
pub struct Serve {
    /// A component path and a Twisted server endpoint (below), joined by
    /// the last `@`, then optional per-service settings: limits, with the
    /// flag names below; `connect=HOST:PORT` (repeatable; `*` for any
    /// port, CIDR ranges for addresses) allows outbound connections, none
    /// are allowed otherwise; `config.KEY=VALUE` sets what the guest reads
    /// through wasi:config. Example: echo.wasm@tcp:1234
    /// Example: chat.wasm@tcp:1025,memory=16MiB,deadline=50ms
    /// Example: proxy.wasm@tcp:8000,connect=127.0.0.1:9000,config.backend=127.0.0.1:9000
    #[arg(
        value_name = "COMPONENT@ENDPOINT[,LIMIT=VALUE...]",
        required_unless_present = "config"
    )]
    pub services: Vec<String>,

    #[command(flatten)]
    pub options: ServeOptions,
}

/// How to serve: what `weft` alone and `weft serve` take.
#[derive(clap::Args, Debug)]
pub struct ServeOptions {
    /// Where `weft` alone finds the bundled guests
    /// [default: ../wasm32-wasip2/release next to the weft binary].
    /// Example: --guest-dir target/wasm32-wasip2/release
    #[arg(long, value_name = "DIR")]
    guest_dir: Option<PathBuf>,

    #[command(flatten)]
    pub cache: CacheFlags,

    /// How log lines are written to stderr: text for people, json (one
    /// object per line) for log shippers.
    /// Example: --log-format json
    /// [default: text]
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,

    /// Once weft stops accepting, how long open connections get: on
    /// SIGTERM to end on their own (the rest are then closed, with up to
    /// 1s more to flush), on SIGINT to flush their output once closed
    /// [default: 5s].
    /// Example: --shutdown-grace 30s
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub shutdown_grace: Option<Duration>,

    /// On SIGTERM, how long weft keeps accepting after /readyz turns 503,
    /// so that load balancers stop sending before it stops listening; 0
    /// stops at once [default: 5s].
    /// Example: --drain-delay 10s
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub drain_delay: Option<Duration>,

    /// After a reload (SIGHUP), how long connections on a replaced or
    /// removed version may run on before they are closed [default: 5m].
    /// Example: --drain-timeout 30s
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub drain_timeout: Option<Duration>,

    /// Serve /metrics (Prometheus text format), /healthz (liveness) and
    /// /readyz (readiness) on this endpoint [default: off]. Give it a loopback interface unless the
    /// metrics may be public.
    /// Example: --admin tcp:port=9090:interface=127.0.0.1
    #[arg(long, value_name = "ENDPOINT")]
    pub admin: Option<Endpoint>,

    /// Serve the services a TOML file describes, with their limits,
    /// outbound policy and settings (see docs/operations.md); instead of
    /// services on the command line and limit flags.
    /// Example: --config weft.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    limits: LimitFlags,
}

/// `weft check`: the components, and the limits to check them under.
#[derive(clap::Args, Debug)]
pub struct Check {
    /// A component file. Example: weft check target/wasm32-wasip2/release/echo.wasm
    #[arg(value_name = "COMPONENT", required = true)]
    pub components: Vec<PathBuf>,

    #[command(flatten)]
    pub cache: CacheFlags,

    /// Take the compile cache's settings from this config file.
    /// Example: --config weft.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    limits: LimitFlags,
}

/// `weft cache`: what to do to the cache, and which cache.
#[derive(clap::Args, Debug)]
pub struct Cache {
    /// What to do to the cache.
    #[arg(value_enum)]
    pub action: CacheAction,

    #[command(flatten)]
    pub cache: CacheFlags,

    /// Take the compile cache's settings from this config file.
    /// Example: --config weft.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `weft new`: the project to write.
#[derive(clap::Args, Debug)]
pub struct New {
    /// The project's name: lowercase letters, digits and `_`, starting
    /// with a letter.
    pub name: String,
    /// The language to write the guest in.
    #[arg(long, value_enum)]
    pub lang: crate::new::Language,
    /// Where to create NAME/ [default: the current folder].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The weft checkout whose SDK and build tools the project uses
    /// [default: the one weft was built from].
    #[arg(long, value_name = "DIR")]
    pub checkout: Option<PathBuf>,
    /// Copy the Rust SDK and its WIT into the project (NAME/weft/), so
    /// it builds without the checkout [Rust only].
    #[arg(long)]
    pub vendor: bool,
}

/// Where compiled components are cached.
#[derive(clap::Args, Debug)]
pub struct CacheFlags {
    /// Where compiled components are cached, so that restarts skip
    /// compiling [default: $XDG_CACHE_HOME/weft or ~/.cache/weft].
    /// Example: --cache-dir /var/cache/weft
    #[arg(long, value_name = "DIR", env = "WEFT_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// The most the compile cache may hold; past it the least recently
    /// used entries are evicted [default: 1GiB].
    /// Example: --cache-max-size 4GiB
    #[arg(long, value_name = "SIZE", value_parser = limits::parse_size, env = "WEFT_CACHE_MAX_SIZE")]
    cache_max_size: Option<usize>,

    /// Compile every component at startup; read and write no cache,
    /// whatever --cache-dir or WEFT_CACHE_DIR say.
    /// Example: --no-cache
    #[arg(long)]
    no_cache: bool,
}

/// What `weft cache` does.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheAction {
    /// Evict the least recently used entries until the cache is within
    /// --cache-max-size (weft cache prune --cache-max-size 256MiB).
    Prune,
    /// Remove every entry.
    Clear,
}

/// The forms `--log-format` takes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per record.
    Text,
    /// One JSON object per record.
    Json,
}

/// The limits every service gets unless its argument overrides them.
#[derive(clap::Args, Debug)]
#[command(next_help_heading = "Limits (per service: COMPONENT@ENDPOINT,NAME=VALUE)")]
struct LimitFlags {
    /// CPU time one call into a guest may use before it traps; a call may
    /// also last ten times this in wall-clock time [default: 100ms].
    /// Example: --deadline 250ms
    #[arg(long, value_name = "DURATION")]
    deadline: Option<String>,
    /// Linear memory one guest instance may grow to [default: 64MiB].
    /// Example: --memory 256MiB
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Wasm stack one call may use; deeper recursion traps [default: 512KiB].
    /// Example: --stack 1MiB
    #[arg(long, value_name = "SIZE")]
    stack: Option<String>,
    /// Handles (connections' transports, WASI streams) one instance may hold
    /// [default: 50000]. Example: --handles 20000
    #[arg(long, value_name = "N")]
    handles: Option<String>,
    /// Connections one service serves at once; more wait in the listen
    /// backlog [default: 10000]. Example: --max-connections 2000
    #[arg(long, value_name = "N")]
    max_connections: Option<String>,
    /// Close connections without traffic for this long [default: off].
    /// Example: --idle-timeout 5m
    #[arg(long, value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// Unsent output above which the host stops reading from that peer
    /// [default: 1MiB]. Example: --write-buffer 256KiB
    #[arg(long, value_name = "SIZE")]
    write_buffer: Option<String>,
    /// Unsent output at which the connection is aborted [default: 16MiB].
    /// Example: --write-limit 64MiB
    #[arg(long, value_name = "SIZE")]
    write_limit: Option<String>,
    /// Guest log lines per second per service; the rest are counted and
    /// dropped [default: 100]. Example: --log-rate 1000
    #[arg(long, value_name = "N")]
    log_rate: Option<String>,
    /// Traps within the restart window after which a service refuses
    /// connections for that window [default: 5]. Example: --max-restarts 10
    #[arg(long, value_name = "N")]
    max_restarts: Option<String>,
    /// See --max-restarts [default: 60s]. Example: --restart-window 5m
    #[arg(long, value_name = "DURATION")]
    restart_window: Option<String>,
    /// `shared`: one instance serves all connections (state is shared, as
    /// in a Twisted factory); `connection`: one instance per connection
    /// (nothing shared; a trap closes only that connection)
    /// [default: shared]. Example: --isolation connection
    #[arg(long, value_name = "MODE")]
    isolation: Option<String>,
    /// Worker threads per service, each with its own instance, listener
    /// and connections (nothing shared between them); `auto`: one per core
    /// [default: 1]. Example: --workers auto
    #[arg(long, value_name = "N")]
    workers: Option<String>,
    /// Calls one instance may have scheduled with `reactor.call-later`
    /// [default: 10000]. Example: --timers 100000
    #[arg(long, value_name = "N")]
    timers: Option<String>,
    /// Outbound connections one instance may have open or being made
    /// [default: 100]. Example: --max-outbound 1000
    #[arg(long, value_name = "N")]
    max_outbound: Option<String>,
    /// The longest an outbound connection may take to resolve and connect
    /// [default: 30s]. Example: --connect-timeout 5s
    #[arg(long, value_name = "DURATION")]
    connect_timeout: Option<String>,
    /// The longest a TLS handshake on an `ssl:` endpoint may take before
    /// the connection is closed [default: 10s]. Example:
    /// --handshake-timeout 5s
    #[arg(long, value_name = "DURATION")]
    handshake_timeout: Option<String>,
    /// The longest a `haproxy:` endpoint waits for a connection's PROXY
    /// header before closing it [default: 3s]. Example:
    /// --proxy-header-timeout 1s
    #[arg(long, value_name = "DURATION")]
    proxy_header_timeout: Option<String>,
    /// The longest datagram a `udp:` service receives or sends; longer
    /// ones are dropped [default: 8KiB]. Example: --max-datagram 1472
    #[arg(long, value_name = "SIZE")]
    max_datagram: Option<String>,
    /// Datagrams per second one instance of a `udp:` service receives,
    /// and sends; the rest are dropped and counted [default: 10000].
    /// Example: --datagram-rate 50000
    #[arg(long, value_name = "N")]
    datagram_rate: Option<String>,
    /// The largest value a guest may store with `wasi:keyvalue`
    /// [default: 1MiB]. Example: --kv-value-size 64KiB
    #[arg(long, value_name = "SIZE")]
    kv_value_size: Option<String>,
    /// Buckets of its own a service may make in the embedded key-value
    /// store [default: 16]. Example: --kv-buckets 100
    #[arg(long, value_name = "N")]
    kv_buckets: Option<String>,
    /// Keys one bucket of the embedded key-value store may hold
    /// [default: 100000]. Example: --kv-keys 1000000
    #[arg(long, value_name = "N")]
    kv_keys: Option<String>,
    /// Bytes (keys and values) one bucket of the embedded key-value store
    /// may hold [default: 64MiB]. Example: --kv-bytes 1GiB
    #[arg(long, value_name = "SIZE")]
    kv_bytes: Option<String>,
    /// Topics one instance may subscribe to at once [default: 100].
    /// Example: --subscriptions 1000
    #[arg(long, value_name = "N")]
    subscriptions: Option<String>,
    /// The largest message a guest may publish [default: 64KiB].
    /// Example: --message-size 1MiB
    #[arg(long, value_name = "SIZE")]
    message_size: Option<String>,
    /// Messages per second one worker of a service may publish
    /// [default: 10000]. Example: --publish-rate 100000
    #[arg(long, value_name = "N")]
    publish_rate: Option<String>,
    /// Messages that may wait for one subscribing instance; past it the
    /// oldest are dropped and counted [default: 1024]. Example:
    /// --pending-messages 10000
    #[arg(long, value_name = "N")]
    pending_messages: Option<String>,
}

impl LimitFlags {
    /// Whether any limit flag was given.
    fn any_given(&self) -> bool {
        self.limits_given().next().is_some()
    }

    fn limits_given(&self) -> impl Iterator<Item = (&'static str, &String)> {
        self.flags()
            .into_iter()
            .filter_map(|(name, value)| Some((name, value.as_ref()?)))
    }

    fn flags(&self) -> [(&'static str, &Option<String>); 28] {
        [
            ("deadline", &self.deadline),
            ("memory", &self.memory),
            ("stack", &self.stack),
            ("handles", &self.handles),
            ("max-connections", &self.max_connections),
            ("idle-timeout", &self.idle_timeout),
            ("write-buffer", &self.write_buffer),
            ("write-limit", &self.write_limit),
            ("log-rate", &self.log_rate),
            ("max-restarts", &self.max_restarts),
            ("restart-window", &self.restart_window),
            ("isolation", &self.isolation),
            ("workers", &self.workers),
            ("timers", &self.timers),
            ("max-outbound", &self.max_outbound),
            ("connect-timeout", &self.connect_timeout),
            ("handshake-timeout", &self.handshake_timeout),
            ("proxy-header-timeout", &self.proxy_header_timeout),
            ("max-datagram", &self.max_datagram),
            ("datagram-rate", &self.datagram_rate),
            ("kv-value-size", &self.kv_value_size),
            ("kv-buckets", &self.kv_buckets),
            ("kv-keys", &self.kv_keys),
            ("kv-bytes", &self.kv_bytes),
            ("subscriptions", &self.subscriptions),
            ("message-size", &self.message_size),
            ("publish-rate", &self.publish_rate),
            ("pending-messages", &self.pending_messages),
        ]
    }

    /// The defaults with the flags given applied.
    fn limits(&self) -> anyhow::Result<Limits> {
        let mut limits = Limits::default();
        for (name, value) in self.limits_given() {
            limits
                .set(name, value)
                .map_err(|e| anyhow::anyhow!("--{e}"))?;
        }
        Ok(limits)
    }
}

impl CacheFlags {
    /// The compile cache to use, unless disabled: `--cache-dir`, else
    /// `file_dir` (a config file's), else the default; likewise its cap.
    pub fn cache(&self, file_dir: Option<PathBuf>, file_max: Option<u64>) -> Option<CompileCache> {
        if self.no_cache {
            return None;
        }
        let cache = self
            .cache_dir
            .clone()
            .or(file_dir)
            .or_else(CompileCache::default_dir)
            .map(CompileCache::new)?;
        Some(
            match self.cache_max_size.map(|max| max as u64).or(file_max) {
                Some(max) => cache.with_max_size(max),
                None => cache,
            },
        )
    }
}

impl New {
    /// The project to write, in what language, where, and with which
    /// checkout.
    pub fn project(self) -> crate::new::NewProject {
        crate::new::NewProject {
            name: self.name,
            language: self.lang,
            parent: self.dir.unwrap_or_else(|| PathBuf::from(".")),
            checkout: self.checkout.unwrap_or_else(crate::new::built_from),
            vendor: self.vendor,
        }
    }
}

impl Check {
    /// The limits the flags set, checked together.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        let limits = self.limits.limits()?;
        limits.check().map_err(anyhow::Error::msg)?;
        Ok(limits)
    }
}

impl ServeOptions {
    /// With `--config`, what the command line may not add: services and
    /// limit flags belong in the file.
    pub fn check_config_alone(&self, services: &[String]) -> anyhow::Result<()> {
        if !services.is_empty() {
            anyhow::bail!("services go in the --config file or on the command line, not both");
        }
        if self.limits.any_given() {
            anyhow::bail!(
                "limit flags do not combine with --config: set them in the file's [defaults]"
            );
        }
        Ok(())
    }

    /// The services to run: those given (`weft serve`), or, with none (`weft`
    /// alone), the bundled three.
    pub fn services(&self, given: Option<&[String]>) -> anyhow::Result<Vec<ServiceSpec>> {
        let defaults = self.limits.limits()?;
        if let Some(services) = given {
            return services
                .iter()
                .map(|text| parse_service(text, &defaults).map_err(anyhow::Error::msg))
                .collect();
        }
        let dir = match &self.guest_dir {
            Some(dir) => dir.clone(),
            None => default_guest_dir()?,
        };
        if let Some((missing, _)) = BUNDLED.iter().find(|(file, _)| !dir.join(file).is_file()) {
            anyhow::bail!(
                "no bundled guests to serve: {} is not there. weft alone serves the \
                 guests built by `cargo xtask build`, from ../wasm32-wasip2/release next \
                 to its binary; point it at them with --guest-dir DIR, or name the \
                 components to serve: weft serve echo.wasm@tcp:1234",
                dir.join(missing).display()
            );
        }
        tracing::info!(
            "no services given: serving the bundled guests from {}",
            dir.display()
        );
        BUNDLED
            .iter()
            .map(|(file, endpoint)| {
                parse_service(
                    &format!("{}@{endpoint}", dir.join(file).display()),
                    &defaults,
                )
            })
            .map(|spec| spec.map_err(anyhow::Error::msg))
            .collect()
    }
}

/// `target/wasm32-wasip2/release` when weft runs from `target/<profile>/`.
fn default_guest_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    Ok(target.join("wasm32-wasip2").join("release"))
}

/// `COMPONENT@ENDPOINT[,LIMIT=VALUE...]`, split at the last `@`; the
/// limits override `defaults` for this service, `connect=HOST:PORT` (any
/// number of times) allows a destination and `config.KEY=VALUE` sets a
/// setting.
fn parse_service(text: &str, defaults: &Limits) -> Result<ServiceSpec, String> {
    let (component, rest) = text.rsplit_once('@').ok_or_else(|| {
        format!("`{text}` is not COMPONENT@ENDPOINT (for example echo.wasm@tcp:1234)")
    })?;
    if component.is_empty() {
        return Err(format!("`{text}` names no component before the `@`"));
    }
    let mut parts = rest.split(',');
    let endpoint = parts.next().unwrap_or_default();
    let endpoint: Endpoint = endpoint.parse().map_err(|e| format!("{e}"))?;
    let mut spec = ServiceSpec::new(component, endpoint);
    spec.limits = defaults.clone();
    let in_text = |e: String| format!("{e} (in `{text}`)");
    let mut limits_set: Vec<&str> = Vec::new();
    for part in parts {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` in `{text}` is not LIMIT=VALUE"))?;
        if name == "connect" {
            spec.connect.push(value.parse().map_err(in_text)?);
        } else if name == "proxy-from" {
            let range = value
                .parse()
                .map_err(|why| in_text(format!("proxy-from={value}: {why}")))?;
            spec.proxy_from.push(range);
        } else if spec.kv.set(name, value).map_err(in_text)? {
            // A key-value setting, taken.
        } else if spec.pubsub.set(name, value).map_err(in_text)? {
            // A publish/subscribe setting, taken.
        } else if let Some(key) = name.strip_prefix("config.") {
            if key.is_empty() {
                return Err(in_text(format!("`{part}` names no key after `config.`")));
            }
            if spec.config.iter().any(|(k, _)| k == key) {
                return Err(in_text(format!("`{name}` given twice")));
            }
            spec.config.push((key.to_owned(), value.to_owned()));
        } else {
            // Which of two values was meant is not ours to guess.
            if limits_set.contains(&name) {
                return Err(in_text(format!("`{name}` given twice")));
            }
            spec.limits.set(name, value).map_err(in_text)?;
            limits_set.push(name);
        }
    }
    spec.limits.check().map_err(in_text)?;
    spec.check_proxy_from().map_err(in_text)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft::limits::Isolation;

    fn parse(text: &str) -> Result<ServiceSpec, String> {
        parse_service(text, &Limits::default())
    }

    /// The services `weft serve ...` (as `args`) would run.
    fn served(args: &[&str]) -> anyhow::Result<Vec<ServiceSpec>> {
        match Cli::try_parse_from(args)?.command {
            Some(Command::Serve(serve)) => serve.options.services(Some(&serve.services)),
            other => panic!("not weft serve: {other:?}"),
        }
    }

    #[test]
    fn services_split_at_the_last_at() {
        let spec = parse("dir@v2/echo.wasm@tcp:port=1234:interface=127.0.0.1").unwrap();
        assert_eq!(spec.component, PathBuf::from("dir@v2/echo.wasm"));
        assert_eq!(spec.endpoint.tcp_addr(), "127.0.0.1:1234".parse().ok());
        assert_eq!(spec.limits, Limits::default());
    }

    #[test]
    fn per_service_limits_override_the_defaults() {
        let mut defaults = Limits::default();
        defaults.set("memory", "32MiB").unwrap();
        let spec = parse_service(
            "chat.wasm@tcp:1025,deadline=50ms,isolation=connection,workers=2",
            &defaults,
        )
        .unwrap();
        assert_eq!(spec.limits.workers, 2);
        assert_eq!(spec.endpoint.tcp_addr().map(|a| a.port()), Some(1025));
        assert_eq!(spec.limits.memory, 32 << 20, "the flag's value stays");
        assert_eq!(spec.limits.deadline, std::time::Duration::from_millis(50));
        assert_eq!(spec.limits.isolation, Isolation::Connection);
    }

    #[test]
    fn bad_services_say_why() {
        let cases = [
            ("echo.wasm", "is not COMPONENT@ENDPOINT"),
            ("@tcp:1", "names no component"),
            ("e.wasm@tcpx:1", "unknown endpoint type `tcpx`"),
            (
                "e.wasm@tcp:1,fast",
                "`fast` in `e.wasm@tcp:1,fast` is not LIMIT=VALUE",
            ),
            ("e.wasm@tcp:1,memory=lots", "memory=lots: expected a size"),
            (
                "e.wasm@tcp:1,connect=nowhere",
                "connect=nowhere: expected HOST:PORT",
            ),
            ("e.wasm@tcp:1,config.=x", "names no key"),
            (
                "e.wasm@tcp:1,memory=8MiB,memory=16MiB",
                "`memory` given twice (in `e.wasm@tcp:1,memory=8MiB,memory=16MiB`)",
            ),
            (
                "e.wasm@tcp:1,config.a=1,config.a=2",
                "`config.a` given twice",
            ),
            (
                "e.wasm@tcp:1,write-limit=1MiB,write-buffer=2MiB",
                "write-limit (1MiB) must be at least write-buffer (2MiB)",
            ),
        ];
        for (text, reason) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn connect_rules_and_config_are_per_service() {
        let spec = parse(
            "proxy.wasm@tcp:8000,connect=127.0.0.1:9000,connect=10.0.0.0/8:*,config.backend=127.0.0.1:9000,config.mode=a=b,max-outbound=5",
        )
        .unwrap();
        let rules: Vec<String> = spec.connect.iter().map(ToString::to_string).collect();
        assert_eq!(rules, ["127.0.0.1:9000", "10.0.0.0/8:*"]);
        assert_eq!(
            spec.config,
            [
                ("backend".to_owned(), "127.0.0.1:9000".to_owned()),
                ("mode".to_owned(), "a=b".to_owned())
            ]
        );
        assert_eq!(spec.limits.max_outbound, 5);
    }

    #[test]
    fn the_bundled_defaults_parse() {
        for (file, endpoint) in BUNDLED {
            let spec = parse(&format!("{file}@{endpoint}")).unwrap();
            assert!(spec.endpoint.tcp_addr().unwrap().ip().is_loopback());
        }
    }

    #[test]
    fn flags_set_every_services_limits() {
        let args = [
            "weft",
            "serve",
            "--memory",
            "8MiB",
            "--isolation",
            "connection",
            "e.wasm@tcp:1",
        ];
        let services = served(&args).unwrap();
        assert_eq!(services[0].limits.memory, 8 << 20);
        assert_eq!(services[0].limits.isolation, Isolation::Connection);
        // Flags are checked together, in whatever order they were given.
        let args = [
            "weft",
            "serve",
            "--write-buffer",
            "32MiB",
            "--write-limit",
            "64MiB",
            "e.wasm@tcp:1",
        ];
        let services = served(&args).unwrap();
        assert_eq!(services[0].limits.write_buffer, 32 << 20);
        assert_eq!(services[0].limits.write_limit, 64 << 20);
        let args = ["weft", "serve", "--write-buffer", "32MiB", "e.wasm@tcp:1"];
        let error = served(&args).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("write-limit (16MiB, the default) must be at least write-buffer (32MiB)"),
            "{error}"
        );
        let args = ["weft", "serve", "--deadline", "soon", "e.wasm@tcp:1"];
        let error = served(&args).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("--deadline=soon: expected a duration")
        );
    }

    #[test]
    fn each_subcommand_takes_only_its_own_flags() {
        for args in [
            &["weft", "cache", "prune", "--deadline", "1ms"][..],
            &["weft", "cache", "prune", "--workers", "9"],
            &["weft", "cache", "clear", "--admin", "tcp:1"],
            &["weft", "new", "x", "--lang", "rust", "--memory", "8MiB"],
            &["weft", "check", "a.wasm", "--admin", "tcp:1"],
            &["weft", "check", "a.wasm", "--guest-dir", "."],
            &["weft", "completions", "bash", "--no-cache"],
            &["weft", "--memory", "8MiB", "serve", "a.wasm@tcp:1"],
        ] {
            let error = Cli::try_parse_from(args).expect_err(&args.join(" "));
            assert!(
                matches!(
                    error.kind(),
                    clap::error::ErrorKind::UnknownArgument
                        | clap::error::ErrorKind::ArgumentConflict
                ),
                "{}: {error}",
                args.join(" ")
            );
        }
        for args in [
            &["weft", "cache", "prune", "--cache-max-size", "1GiB"][..],
            &["weft", "check", "a.wasm", "--memory", "8MiB", "--no-cache"],
            &["weft", "--config", "weft.toml"],
            &["weft", "--memory", "8MiB"],
            &["weft", "serve", "--admin", "tcp:9090", "a.wasm@tcp:1"],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")));
        }
    }

    #[test]
    fn serve_help_names_every_endpoint_type() {
        let mut command = <Cli as clap::CommandFactory>::command();
        let serve = command.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        for endpoint in ["tcp:", "tcp6:", "ssl:", "unix:", "udp:"] {
            assert!(help.contains(endpoint), "{endpoint} in {help}");
        }
    }
}
