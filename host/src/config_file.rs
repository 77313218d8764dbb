//! `weft --config weft.toml`: every service, its limits, outbound policy
//! and settings, and the process-wide settings, in one TOML file that
//! means what the command line means. Every mistake is reported, with its
//! line, before anything is compiled or listens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weft::{Endpoint, Limits, ServiceSpec, limits};

/// A configuration file, read and checked.
#[derive(Debug)]
pub struct ConfigFile {
    /// The services, in the order the file gives them.
    pub services: Vec<ServiceSpec>,
    /// `cache-dir`, as `--cache-dir`.
    pub cache_dir: Option<PathBuf>,
    /// `cache-max-size`, as `--cache-max-size`.
    pub cache_max_size: Option<u64>,
    /// `shutdown-grace`, as `--shutdown-grace`.
    pub shutdown_grace: Option<Duration>,
    /// `drain-timeout`, as `--drain-timeout`.
    pub drain_timeout: Option<Duration>,
    /// `drain-delay`, as `--drain-delay`.
    pub drain_delay: Option<Duration>,
    /// `admin`, as `--admin`.
    pub admin: Option<Endpoint>,
    /// `log-format`, as `--log-format`: `text` or `json`.
    pub json_logs: Option<bool>,
}

/// The keys a file may have at its top level, and in each `[[service]]`.
/// Others are reported, every one, by [`unknown_keys`]; serde ignores
/// them, so that the other mistakes are reported too.
const FILE_KEYS: &[&str] = &[
    "cache-dir",
    "cache-max-size",
    "shutdown-grace",
    "drain-timeout",
    "drain-delay",
    "admin",
    "log-format",
    "defaults",
    "service",
];
const SERVICE_KEYS: &[&str] = &[
    "name",
    "component",
    "endpoint",
    "limits",
    "connect",
    "proxy-from",
    "config",
    "kv",
    "kv-buckets",
    "kv-shared",
    "pubsub",
    "pubsub-shared",
];

/// The file as written.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    cache_dir: Option<PathBuf>,
    cache_max_size: Option<Spanned<String>>,
    shutdown_grace: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<String>>,
    drain_delay: Option<Spanned<String>>,
    admin: Option<Spanned<String>>,
    log_format: Option<Spanned<String>>,
    /// Limits for every service, as the limit flags set them.
    #[serde(default)]
    defaults: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default, rename = "service")]
    services: Vec<Service>,
}

/// One `[[service]]`.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Service {
    name: Option<Spanned<String>>,
    component: PathBuf,
    endpoint: Spanned<String>,
    #[serde(default)]
    limits: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    connect: Vec<Spanned<String>>,
    /// Who may send a `haproxy:` endpoint's PROXY header.
    #[serde(default)]
    proxy_from: Vec<Spanned<String>>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// The backend of its key-value buckets: embedded, off or a Redis URL.
    kv: Option<Spanned<String>>,
    /// Buckets with a backend of their own.
    #[serde(default)]
    kv_buckets: BTreeMap<String, Spanned<String>>,
    /// Buckets shared with other services.
    #[serde(default)]
    kv_shared: Vec<Spanned<String>>,
    /// The backend of its topics: embedded, off or a Redis URL.
    pubsub: Option<Spanned<String>>,
    /// Topics shared with other services.
    #[serde(default)]
    pubsub_shared: Vec<Spanned<String>>,
}

/// The settings of a file that apply to the whole process, read at start
/// only, as a reload compares them.
#[derive(Debug, PartialEq, Eq)]
pub struct ProcessSettings {
    cache_dir: Option<PathBuf>,
    cache_max_size: Option<u64>,
    shutdown_grace: Option<Duration>,
    drain_timeout: Option<Duration>,
    drain_delay: Option<Duration>,
    admin: Option<Endpoint>,
    json_logs: Option<bool>,
}

impl ConfigFile {
    /// Its settings for the whole process.
    pub fn process_settings(&self) -> ProcessSettings {
        ProcessSettings {
            cache_dir: self.cache_dir.clone(),
            cache_max_size: self.cache_max_size,
            shutdown_grace: self.shutdown_grace,
            drain_timeout: self.drain_timeout,
            drain_delay: self.drain_delay,
            admin: self.admin.clone(),
            json_logs: self.json_logs,
        }
    }

    /// Read and check the file at `path`; a relative component path is
    /// taken from the file's own directory.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("cannot read {shown}: {error}"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &shown.to_string(), dir)
    }

    /// Check `text`, the contents of the file `shown`, collecting every
    /// mistake rather than stopping at the first.
    fn parse(text: &str, shown: &str, dir: &Path) -> anyhow::Result<Self> {
        let file: File = toml::from_str(text).map_err(|error| {
            let line = error.span().map_or(0, |span| line_of(text, span.start));
            anyhow::anyhow!("{shown}:{line}: {}", error.message())
        })?;
        let at = |span: std::ops::Range<usize>| format!("{shown}:{}", line_of(text, span.start));
        let mut errors = unknown_keys(text, &at);

        let mut defaults = Limits::default();
        set_limits(&mut defaults, &file.defaults, &at, &mut errors);
        let shutdown_grace = file.shutdown_grace.and_then(|grace| {
            limits::parse_duration(grace.get_ref())
                .map_err(|e| errors.push(format!("{}: shutdown-grace: {e}", at(grace.span()))))
                .ok()
        });
        let drain_timeout = file.drain_timeout.and_then(|drain| {
            limits::parse_duration(drain.get_ref())
                .map_err(|e| errors.push(format!("{}: drain-timeout: {e}", at(drain.span()))))
                .ok()
        });
        let drain_delay = file.drain_delay.and_then(|delay| {
            limits::parse_duration(delay.get_ref())
                .map_err(|e| errors.push(format!("{}: drain-delay: {e}", at(delay.span()))))
                .ok()
        });
        let admin = file.admin.and_then(|admin| {
            admin
                .get_ref()
                .parse::<Endpoint>()
                .map_err(|e| errors.push(format!("{}: admin: {e}", at(admin.span()))))
                .ok()
        });
        let cache_max_size = file.cache_max_size.and_then(|max| {
            limits::parse_size(max.get_ref())
                .map(|max| max as u64)
                .map_err(|e| errors.push(format!("{}: cache-max-size: {e}", at(max.span()))))
                .ok()
        });
        let json_logs = file
            .log_format
            .and_then(|format| match format.get_ref().as_str() {
                "text" => Some(false),
                "json" => Some(true),
                other => {
                    let line = at(format.span());
                    errors.push(format!(
                        "{line}: log-format: expected text or json, not {other}"
                    ));
                    None
                }
            });

        let mut services = Vec::new();
        let mut names: Vec<(String, String)> = Vec::new();
        for service in file.services {
            let name = service.name.map(|name| {
                let line = at(name.span());
                let name = name.into_inner();
                if let Some((_, first)) = names.iter().find(|(taken, _)| *taken == name) {
                    errors.push(format!("{line}: service name {name} is taken (at {first})"));
                }
                names.push((name.clone(), line));
                Arc::<str>::from(name)
            });
            let endpoint_at = at(service.endpoint.span());
            let endpoint: Endpoint = match service.endpoint.get_ref().parse() {
                Ok(endpoint) => endpoint,
                Err(error) => {
                    errors.push(format!("{endpoint_at}: {error}"));
                    continue;
                }
            };
            // Socket, key and certificate paths, like the component's, are
            // taken from the config file's folder.
            let endpoint = endpoint.relative_to(dir);
            let mut spec = ServiceSpec::new(dir.join(&service.component), endpoint);
            spec.limits = defaults.clone();
            set_limits(&mut spec.limits, &service.limits, &at, &mut errors);
            if let Err(error) = spec.limits.check() {
                errors.push(format!("{endpoint_at}: {error}"));
            }
            for rule in &service.connect {
                match rule.get_ref().parse() {
                    Ok(rule) => spec.connect.push(rule),
                    Err(error) => errors.push(format!("{}: {error}", at(rule.span()))),
                }
            }
            for range in &service.proxy_from {
                match range.get_ref().parse() {
                    Ok(range) => spec.proxy_from.push(range),
                    Err(error) => errors.push(format!(
                        "{}: proxy-from={}: {error}",
                        at(range.span()),
                        range.get_ref()
                    )),
                }
            }
            if let Err(error) = spec.check_proxy_from() {
                errors.push(format!("{endpoint_at}: {error}"));
            }
            spec.config = service.config.into_iter().collect();
            let kv = service
                .kv
                .into_iter()
                .map(|backend| ("kv".to_owned(), backend));
            let buckets = service
                .kv_buckets
                .into_iter()
                .map(|(bucket, backend)| (format!("kv.{bucket}"), backend));
            let shared = service
                .kv_shared
                .into_iter()
                .map(|bucket| ("kv-shared".to_owned(), bucket));
            for (name, value) in kv.chain(buckets).chain(shared) {
                if let Err(error) = spec.kv.set(&name, value.get_ref()) {
                    errors.push(format!("{}: {error}", at(value.span())));
                }
            }
            let pubsub = service
                .pubsub
                .into_iter()
                .map(|backend| ("pubsub", backend));
            let topics = service
                .pubsub_shared
                .into_iter()
                .map(|topic| ("pubsub-shared", topic));
            for (name, value) in pubsub.chain(topics) {
                if let Err(error) = spec.pubsub.set(name, value.get_ref()) {
                    errors.push(format!("{}: {error}", at(value.span())));
                }
            }
            spec.name = name;
            services.push(spec);
        }
        if services.is_empty() && errors.is_empty() {
            errors.push(format!("{shown}: no [[service]] to serve"));
        }
        if !errors.is_empty() {
            anyhow::bail!("{}", errors.join("\n"));
        }
        Ok(Self {
            services,
            cache_dir: file.cache_dir.map(|cache| dir.join(cache)),
            cache_max_size,
            shutdown_grace,
            drain_timeout,
            drain_delay,
            admin,
            json_logs,
        })
    }
}

/// Every key the file has that weft does not know, each with its line
/// and the keys expected there.
fn unknown_keys(text: &str, at: &dyn Fn(std::ops::Range<usize>) -> String) -> Vec<String> {
    use toml::de::{DeTable, DeValue};
    // Syntax errors are reported when the file is deserialized.
    let Ok(file) = DeTable::parse(text) else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    let mut check = |table: &DeTable, allowed: &[&str], place: &str| {
        for key in table.keys() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                errors.push(format!(
                    "{}: unknown key `{}`{place}; expected one of {}",
                    at(key.span()),
                    key.get_ref(),
                    allowed.join(", ")
                ));
            }
        }
    };
    check(file.get_ref(), FILE_KEYS, "");
    let services = file
        .get_ref()
        .iter()
        .find(|(key, _)| key.get_ref() == "service")
        .map(|(_, value)| value.get_ref());
    if let Some(DeValue::Array(services)) = services {
        for service in services {
            if let DeValue::Table(service) = service.get_ref() {
                check(service, SERVICE_KEYS, " in a [[service]]");
            }
        }
    }
    errors
}

/// Set each limit in `table` (`memory = "16MiB"`, `workers = 2`) on
/// `limits`, noting what is wrong with its line.
fn set_limits(
    limits: &mut Limits,
    table: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
    errors: &mut Vec<String>,
) {
    for (name, value) in table {
        let text = match value.get_ref() {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(number) => number.to_string(),
            other => {
                errors.push(format!(
                    "{}: {}: expected a string or a number, not {other}",
                    at(value.span()),
                    name.get_ref()
                ));
                continue;
            }
        };
        if let Err(error) = limits.set(name.get_ref(), &text) {
            errors.push(format!("{}: {error}", at(name.span())));
        }
    }
}

/// The line, from 1, of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<ConfigFile> {
        ConfigFile::parse(text, "weft.toml", Path::new("/etc/weft"))
    }

    #[test]
    fn a_file_sets_what_the_command_line_sets() {
        let file = parse(
            r#"
shutdown-grace = "30s"
drain-timeout = "1m"
drain-delay = "0"
admin = "tcp:9090:interface=127.0.0.1"
log-format = "json"
cache-dir = "cache"
cache-max-size = "2GiB"

[defaults]
memory = "32MiB"

[[service]]
name = "front"
component = "echo.wasm"
endpoint = "tcp:1234:interface=127.0.0.1"
limits = { deadline = "50ms", workers = 2 }
connect = ["127.0.0.1:6379"]
config = { key = "hits" }
kv = "redis://127.0.0.1:6379/1"
kv-buckets = { cache = "embedded" }
kv-shared = ["users"]
pubsub = "redis://127.0.0.1:6379/2"
pubsub-shared = ["lobby"]

[[service]]
component = "/srv/chat.wasm"
endpoint = "tcp:1025"
"#,
        )
        .unwrap();
        assert_eq!(file.shutdown_grace, Some(Duration::from_secs(30)));
        assert_eq!(file.drain_timeout, Some(Duration::from_secs(60)));
        assert_eq!(file.drain_delay, Some(Duration::ZERO));
        assert_eq!(
            file.admin.map(|admin| admin.tcp_addr().unwrap().port()),
            Some(9090)
        );
        assert_eq!(file.json_logs, Some(true));
        assert_eq!(file.cache_dir, Some(PathBuf::from("/etc/weft/cache")));
        assert_eq!(file.cache_max_size, Some(2 << 30));
        let [front, chat] = &file.services[..] else {
            panic!("two services")
        };
        assert_eq!(front.name.as_deref(), Some("front"));
        assert_eq!(front.component, PathBuf::from("/etc/weft/echo.wasm"));
        assert_eq!(front.limits.memory, 32 << 20);
        assert_eq!(front.limits.deadline, Duration::from_millis(50));
        assert_eq!(front.limits.workers, 2);
        assert_eq!(front.kv.backend.to_string(), "redis://127.0.0.1:6379/1");
        assert_eq!(front.kv.backend_of("cache").to_string(), "embedded");
        assert!(front.kv.is_shared("users"));
        assert_eq!(front.pubsub.backend.to_string(), "redis://127.0.0.1:6379/2");
        assert!(front.pubsub.is_shared("lobby") && !front.pubsub.is_shared("users"));
        assert_eq!(front.connect.len(), 1);
        assert_eq!(front.config, [("key".to_owned(), "hits".to_owned())]);
        assert_eq!(chat.name, None);
        assert_eq!(chat.component, PathBuf::from("/srv/chat.wasm"));
        assert_eq!(chat.limits.memory, 32 << 20);
    }

    #[test]
    fn the_shipped_file_serves_the_three_bundled_guests() {
        let text = include_str!("../../weft.toml");
        let file = ConfigFile::parse(text, "weft.toml", Path::new("/repo")).unwrap();
        let served: Vec<(Option<&str>, String, u16)> = file
            .services
            .iter()
            .map(|s| {
                (
                    s.name.as_deref(),
                    s.component.display().to_string(),
                    s.endpoint.tcp_addr().unwrap().port(),
                )
            })
            .collect();
        assert_eq!(
            served,
            [
                (
                    Some("echo"),
                    "/repo/target/wasm32-wasip2/release/echo.wasm".to_owned(),
                    1234
                ),
                (
                    Some("counter"),
                    "/repo/target/wasm32-wasip2/release/http_counter.wasm".to_owned(),
                    8080
                ),
                (
                    Some("chat"),
                    "/repo/target/wasm32-wasip2/release/chat.wasm".to_owned(),
                    1025
                ),
            ]
        );
    }

    #[test]
    fn every_mistake_is_reported_with_its_line() {
        let error = parse(
            r#"[defaults]
memory = "5GiB"

[[service]]
name = "a"
component = "echo.wasm"
endpoint = "tcpx:1"

[[service]]
name = "a"
component = "echo.wasm"
endpoint = "tcp:2"
limits = { colour = "blue", deadline = true }
connect = ["nowhere"]
"#,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "weft.toml:2: memory=5GiB: expected at most 4GiB",
            "weft.toml:7: bad endpoint `tcpx:1`: unknown endpoint type `tcpx`",
            "weft.toml:13: unknown limit `colour`",
            "weft.toml:13: deadline: expected a string or a number, not true",
            "weft.toml:14: connect=nowhere: expected HOST:PORT",
            "weft.toml:10: service name a is taken (at weft.toml:5)",
        ] {
            assert!(error.contains(expected), "{expected:?} in:\n{error}");
        }
    }

    #[test]
    fn every_unknown_key_is_refused_with_its_line() {
        let error = parse(
            "admn = \"tcp:9\"\n[[service]]\ncomponent = \"e.wasm\"\nendpoint = \"tcp:1\"\n\
             memroy = \"1MiB\"\nlimits = { deadline = \"soon\" }\n",
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "weft.toml:1: unknown key `admn`; expected one of cache-dir, cache-max-size, ",
            "weft.toml:5: unknown key `memroy` in a [[service]]; expected one of name, \
             component, endpoint, limits, connect, proxy-from, config, kv, kv-buckets, kv-shared",
            "weft.toml:6: deadline=soon: expected a duration",
        ] {
            assert!(error.contains(expected), "{expected:?} in:\n{error}");
        }
        let error = parse("").unwrap_err().to_string();
        assert_eq!(error, "weft.toml: no [[service]] to serve");
    }
}
