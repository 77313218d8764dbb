//! Twisted's server endpoint strings (`tcp:1234`,
//! `tcp:port=1025:interface=127.0.0.1`, `tcp6:80:backlog=10`,
//! `ssl:443:privateKey=key.pem:certKey=cert.pem`, `unix:/run/weft.sock`),
//! parsed with Twisted's tokenizer and defaults, any of them behind
//! Twisted's `haproxy:` prefix (a PROXY protocol header first), and
//! weft's `udp:9999` for datagram services.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use crate::net::tls::TlsFiles;

/// Twisted's default listen backlog.
pub const DEFAULT_BACKLOG: u32 = 50;

/// Twisted's default permissions for a Unix socket file: anyone may
/// connect.
pub const DEFAULT_UNIX_MODE: u32 = 0o666;

/// Where a service listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The socket to listen on.
    pub address: ListenAddress,
    /// The listen queue length.
    pub backlog: u32,
    /// `haproxy:`: each connection starts with a PROXY protocol header
    /// naming the client, from a balancer in the service's `proxy-from`.
    pub proxy: bool,
}

/// The socket an endpoint listens on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddress {
    /// TCP on an interface and port (port 0 picks a free port); for
    /// `ssl:`, with the key and certificates its connections' TLS uses.
    Tcp {
        /// The interface and port.
        addr: SocketAddr,
        /// For `ssl:`, the key and certificates.
        tls: Option<TlsFiles>,
    },
    /// A Unix socket (`unix:`).
    Unix(UnixSocket),
    /// UDP on an interface and port (`udp:`), for a datagram service.
    Udp(SocketAddr),
}

/// A `unix:` endpoint's socket file and how it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixSocket {
    /// The socket file.
    pub path: PathBuf,
    /// Its permissions (Twisted's `mode`, in octal).
    pub mode: u32,
    /// Whether weft holds `PATH.lock` while it listens, as Twisted's
    /// `lockfile=1` (the default) does, naming its process.
    pub lockfile: bool,
}

/// An endpoint string that cannot be served, with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad endpoint `{text}`: {reason}")]
pub struct EndpointError {
    text: String,
    reason: String,
}

impl Endpoint {
    /// TCP on `interface` (an IP address) and `port`, with Twisted's backlog.
    pub fn tcp(addr: SocketAddr) -> Self {
        Self {
            address: ListenAddress::Tcp { addr, tls: None },
            backlog: DEFAULT_BACKLOG,
            proxy: false,
        }
    }

    /// The interface and port, for a TCP (or `ssl:`) endpoint.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match &self.address {
            ListenAddress::Tcp { addr, .. } => Some(*addr),
            ListenAddress::Unix(_) | ListenAddress::Udp(_) => None,
        }
    }

    /// The key and certificates, for an `ssl:` endpoint.
    pub fn tls(&self) -> Option<&TlsFiles> {
        match &self.address {
            ListenAddress::Tcp { tls, .. } => tls.as_ref(),
            ListenAddress::Unix(_) | ListenAddress::Udp(_) => None,
        }
    }

    /// Whether it serves datagrams (`udp:`) rather than connections.
    pub fn is_datagram(&self) -> bool {
        matches!(self.address, ListenAddress::Udp(_))
    }

    /// The same endpoint with relative file paths (a socket, a key, a
    /// certificate) taken from `dir`.
    pub fn relative_to(mut self, dir: &std::path::Path) -> Self {
        match &mut self.address {
            ListenAddress::Tcp { tls, .. } => {
                *tls = tls.as_ref().map(|files| files.relative_to(dir));
            }
            ListenAddress::Unix(socket) => socket.path = dir.join(&socket.path),
            ListenAddress::Udp(_) => {}
        }
        self
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Self, EndpointError> {
        let error = |reason: String| EndpointError {
            text: text.to_owned(),
            reason,
        };
        // Twisted's HAProxyServerParser: `haproxy:` wraps any endpoint.
        let prefix = text.get(..8).filter(|p| p.eq_ignore_ascii_case("haproxy:"));
        if prefix.is_some() {
            let mut inner: Self = text[8..]
                .parse()
                .map_err(|e: EndpointError| error(e.reason))?;
            if inner.is_datagram() || inner.proxy {
                return Err(error(
                    "`haproxy:` wraps one stream endpoint (`tcp`, `tcp6`, `ssl` or `unix`)".into(),
                ));
            }
            inner.proxy = true;
            return Ok(inner);
        }
        let (positional, keywords) = split(text);
        let (kind, arguments) = positional
            .split_first()
            .ok_or_else(|| error("empty".into()))?;
        // Twisted's parameter order: tcp(port, interface, backlog),
        // tcp6(port, backlog, interface), ssl(port, privateKey, certKey,
        // sslmethod, interface, backlog, extraCertChain, dhParameters) and
        // unix(address, mode, backlog, lockfile); weft's udp(port,
        // interface) follows listenUDP's.
        let kind = kind.to_ascii_lowercase();
        let (names, default_interface): (&[&str], IpAddr) = match kind.as_str() {
            "tcp" => (
                &["port", "interface", "backlog"],
                Ipv4Addr::UNSPECIFIED.into(),
            ),
            "tcp6" => (
                &["port", "backlog", "interface"],
                Ipv6Addr::UNSPECIFIED.into(),
            ),
            "ssl" => (
                &[
                    "port",
                    "privateKey",
                    "certKey",
                    "sslmethod",
                    "interface",
                    "backlog",
                    "extraCertChain",
                    "dhParameters",
                ],
                Ipv4Addr::UNSPECIFIED.into(),
            ),
            "unix" => (
                &["address", "mode", "backlog", "lockfile"],
                Ipv4Addr::UNSPECIFIED.into(),
            ),
            "udp" => (&["port", "interface"], Ipv4Addr::UNSPECIFIED.into()),
            other => {
                return Err(error(format!(
                    "unknown endpoint type `{other}`: weft serves `tcp`, `tcp6`, `ssl`, `unix` and `udp`"
                )));
            }
        };
        let values = parameters(&kind, names, arguments, keywords).map_err(error)?;
        let value = |name: &str| value(&values, name);
        let backlog =
            match value("backlog") {
                None => DEFAULT_BACKLOG,
                Some(backlog) => backlog.parse().ok().filter(|b| *b > 0).ok_or_else(|| {
                    error(format!("backlog `{backlog}` is not a positive number"))
                })?,
            };
        if kind == "unix" {
            let socket = unix_socket(&values).map_err(error)?;
            return Ok(Self {
                address: ListenAddress::Unix(socket),
                backlog,
                proxy: false,
            });
        }

        let port_text = value("port").ok_or_else(|| error("missing the port".into()))?;
        let port: u16 = port_text.parse().map_err(|_| {
            error(format!(
                "port `{port_text}` is not a number from 0 to 65535"
            ))
        })?;
        let interface = match value("interface") {
            None | Some("") => default_interface,
            Some(interface) => interface.parse().map_err(|_| {
                error(format!(
                    "interface `{interface}` is not an IP address (write IPv6 colons as `\\:`)"
                ))
            })?,
        };
        let addr = SocketAddr::new(interface, port);
        if kind == "udp" {
            return Ok(Self {
                address: ListenAddress::Udp(addr),
                backlog,
                proxy: false,
            });
        }
        let tls = (kind == "ssl")
            .then(|| tls_files(&values))
            .transpose()
            .map_err(error)?;
        Ok(Self {
            address: ListenAddress::Tcp { addr, tls },
            backlog,
            proxy: false,
        })
    }
}

/// An `ssl:` endpoint's files, with Twisted's defaults: the key in
/// `server.pem`, the certificate in the key's file.
fn tls_files(values: &[(&str, String)]) -> Result<TlsFiles, String> {
    // rustls negotiates TLS 1.3 or 1.2 and ECDHE key exchange only.
    for (name, why) in [
        (
            "sslmethod",
            "weft speaks TLS 1.2 and 1.3, chosen by the handshake",
        ),
        (
            "dhParameters",
            "weft's TLS uses elliptic-curve key exchange only",
        ),
    ] {
        if value(values, name).is_some() {
            return Err(format!("`{name}` is not supported: {why}"));
        }
    }
    let private_key = PathBuf::from(value(values, "privateKey").unwrap_or("server.pem"));
    let certificate = value(values, "certKey").map_or_else(|| private_key.clone(), PathBuf::from);
    Ok(TlsFiles {
        private_key,
        certificate,
        extra_chain: value(values, "extraCertChain").map(PathBuf::from),
    })
}

/// A `unix:` endpoint's socket, with Twisted's defaults: mode 666, a lock
/// file.
fn unix_socket(values: &[(&str, String)]) -> Result<UnixSocket, String> {
    let path = match value(values, "address") {
        None | Some("") => return Err("missing the socket's path".into()),
        Some(path) => PathBuf::from(path),
    };
    let mode = match value(values, "mode") {
        None => DEFAULT_UNIX_MODE,
        Some(mode) => u32::from_str_radix(mode, 8)
            .ok()
            .filter(|mode| *mode <= 0o777)
            .ok_or_else(|| {
                format!("mode `{mode}` is not file permissions in octal, such as 660")
            })?,
    };
    let lockfile = match value(values, "lockfile") {
        None => true,
        Some(flag) => {
            flag.parse::<i64>()
                .map_err(|_| format!("lockfile `{flag}` is not 0 or 1"))?
                != 0
        }
    };
    Ok(UnixSocket {
        path,
        mode,
        lockfile,
    })
}

/// `text` as one endpoint parameter value: `:` and `\` escaped.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace(':', "\\:")
}

impl fmt::Display for Endpoint {
    /// The canonical form, which parses back to the same endpoint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = |path: &PathBuf| escape(&path.display().to_string());
        if self.proxy {
            f.write_str("haproxy:")?;
        }
        match &self.address {
            ListenAddress::Tcp { addr, tls } => {
                let kind = match (tls, addr.is_ipv4()) {
                    (Some(_), _) => "ssl",
                    (None, true) => "tcp",
                    (None, false) => "tcp6",
                };
                let interface = escape(&addr.ip().to_string());
                write!(f, "{kind}:port={}:interface={interface}", addr.port())?;
                if let Some(tls) = tls {
                    write!(
                        f,
                        ":privateKey={}:certKey={}",
                        path(&tls.private_key),
                        path(&tls.certificate)
                    )?;
                    if let Some(chain) = &tls.extra_chain {
                        write!(f, ":extraCertChain={}", path(chain))?;
                    }
                }
            }
            ListenAddress::Unix(socket) => write!(
                f,
                "unix:address={}:mode={:o}:lockfile={}",
                path(&socket.path),
                socket.mode,
                u8::from(socket.lockfile)
            )?,
            ListenAddress::Udp(addr) => write!(
                f,
                "udp:port={}:interface={}",
                addr.port(),
                escape(&addr.ip().to_string())
            )?,
        }
        if self.backlog != DEFAULT_BACKLOG {
            write!(f, ":backlog={}", self.backlog)?;
        }
        Ok(())
    }
}

/// An endpoint's parameters by name: the positional ones in the order of
/// `names` (Twisted's parameter order for `kind`), then the keywords.
pub(crate) fn parameters(
    kind: &str,
    names: &[&'static str],
    positional: &[String],
    keywords: Vec<(String, String)>,
) -> Result<Vec<(&'static str, String)>, String> {
    if positional.len() > names.len() {
        return Err(format!(
            "too many parameters: `{kind}` takes {}",
            names.join(", ")
        ));
    }
    let mut values: Vec<(&'static str, String)> = names
        .iter()
        .copied()
        .zip(positional.iter().cloned())
        .collect();
    for (key, given) in keywords {
        let Some(name) = names.iter().find(|n| **n == key) else {
            return Err(format!(
                "unknown parameter `{key}`: `{kind}` takes {}",
                names.join(", ")
            ));
        };
        if values.iter().any(|(n, _)| n == name) {
            return Err(format!("`{key}` given twice"));
        }
        values.push((name, given));
    }
    Ok(values)
}

/// The value of parameter `name`, if given.
pub(crate) fn value<'a>(values: &'a [(&str, String)], name: &str) -> Option<&'a str> {
    values
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// Twisted's `_tokenize` + `_parse`: split on `:`, a backslash escapes the
/// next character, `key=value` parameters are keywords (after `=`, further
/// `=` are literal), the rest positional.
pub(crate) fn split(text: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut positional = Vec::new();
    let mut keywords = Vec::new();
    let mut key: Option<String> = None;
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ':' => {
                let value = std::mem::take(&mut current);
                match key.take() {
                    Some(key) => keywords.push((key, value)),
                    None => positional.push(value),
                }
            }
            '=' if key.is_none() => key = Some(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    match key {
        Some(key) => keywords.push((key, current)),
        None => positional.push(current),
    }
    (positional, keywords)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Endpoint {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn twisted_defaults_apply() {
        assert_eq!(
            parse("tcp:1234"),
            Endpoint::tcp("0.0.0.0:1234".parse().unwrap())
        );
        assert_eq!(parse("tcp6:80").tcp_addr(), "[::]:80".parse().ok());
        assert_eq!(parse("tcp:0").tcp_addr().map(|a| a.port()), Some(0));
    }

    #[test]
    fn positional_and_keyword_forms_agree() {
        let expected = Endpoint {
            address: ListenAddress::Tcp {
                addr: "127.0.0.1:1025".parse().unwrap(),
                tls: None,
            },
            backlog: 7,
            proxy: false,
        };
        assert_eq!(
            parse("tcp:port=1025:interface=127.0.0.1:backlog=7"),
            expected
        );
        assert_eq!(parse("tcp:1025:127.0.0.1:7"), expected);
        assert_eq!(parse("tcp:1025:backlog=7:interface=127.0.0.1"), expected);
        assert_eq!(parse("TCP:1025:127.0.0.1:backlog=7"), expected);
        assert_eq!(
            parse("tcp6:1025:7:interface=\\:\\:1").tcp_addr(),
            "[::1]:1025".parse().ok()
        );
        assert_eq!(parse("tcp:1234:backlog=10").backlog, 10);
    }

    #[test]
    fn ssl_takes_twisted_parameters_and_defaults() {
        let files = |key: &str, cert: &str, chain: Option<&str>| TlsFiles {
            private_key: key.into(),
            certificate: cert.into(),
            extra_chain: chain.map(PathBuf::from),
        };
        let plain = parse("ssl:443");
        assert_eq!(plain.tcp_addr(), "0.0.0.0:443".parse().ok());
        assert_eq!(plain.tls(), Some(&files("server.pem", "server.pem", None)));
        let full = parse("ssl:8443:k.pem:c.pem:interface=127.0.0.1:extraCertChain=ca.pem");
        assert_eq!(full.tcp_addr(), "127.0.0.1:8443".parse().ok());
        assert_eq!(full.tls(), Some(&files("k.pem", "c.pem", Some("ca.pem"))));
        assert_eq!(
            parse("ssl:port=1:privateKey=/a\\:b/k.pem").tls(),
            Some(&files("/a:b/k.pem", "/a:b/k.pem", None))
        );
    }

    #[test]
    fn unix_takes_twisted_parameters_and_defaults() {
        let socket = |path: &str, mode, lockfile| {
            ListenAddress::Unix(UnixSocket {
                path: path.into(),
                mode,
                lockfile,
            })
        };
        let plain = parse("unix:/run/weft.sock");
        assert_eq!(plain.address, socket("/run/weft.sock", 0o666, true));
        assert_eq!(plain.backlog, DEFAULT_BACKLOG);
        assert_eq!(plain.tcp_addr(), None);
        let full = parse("unix:address=rel.sock:mode=660:lockfile=0:backlog=5");
        assert_eq!(full.address, socket("rel.sock", 0o660, false));
        assert_eq!(full.backlog, 5);
        assert_eq!(parse("unix:s:600:9:1").address, socket("s", 0o600, true));
    }

    #[test]
    fn udp_takes_a_port_and_an_interface() {
        let plain = parse("udp:9999");
        assert_eq!(
            plain.address,
            ListenAddress::Udp("0.0.0.0:9999".parse().unwrap())
        );
        assert!(plain.is_datagram());
        assert_eq!(plain.tcp_addr(), None);
        let local = parse("udp:port=0:interface=127.0.0.1");
        assert_eq!(
            local.address,
            ListenAddress::Udp("127.0.0.1:0".parse().unwrap())
        );
        assert!(!parse("tcp:9999").is_datagram());
    }

    #[test]
    fn haproxy_wraps_a_stream_endpoint() {
        let endpoint = parse("haproxy:tcp:8080:interface=127.0.0.1");
        assert!(endpoint.proxy);
        assert_eq!(endpoint.tcp_addr(), "127.0.0.1:8080".parse().ok());
        assert!(parse("haproxy:ssl:8443").tls().is_some());
        assert!(!parse("tcp:8080").proxy);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "tcp:1234",
            "tcp:port=1:interface=127.0.0.1:backlog=9",
            "tcp6:80:interface=\\:\\:1",
            "ssl:443:k.pem:certKey=/x\\:y/c.pem:extraCertChain=ca.pem:backlog=3",
            "unix:/tmp/a\\:b.sock:mode=600:lockfile=0:backlog=2",
            "udp:9999",
            "udp:53:interface=\\:\\:1",
            "haproxy:tcp:8080",
            "HAPROXY:ssl:8443:privateKey=k.pem",
            "haproxy:unix:/run/weft.sock",
        ] {
            let endpoint = parse(text);
            assert_eq!(parse(&endpoint.to_string()), endpoint, "{endpoint}");
        }
    }

    #[test]
    fn bad_endpoints_say_why() {
        let cases = [
            ("", "unknown endpoint type ``"),
            ("sctp:53", "unknown endpoint type `sctp`"),
            ("haproxy:udp:53", "`haproxy:` wraps one stream endpoint"),
            (
                "haproxy:haproxy:tcp:53",
                "`haproxy:` wraps one stream endpoint",
            ),
            ("haproxy:tcp:http", "port `http` is not a number"),
            ("udp:53:backlog=5", "unknown parameter `backlog`"),
            (
                "udp:53:localhost",
                "interface `localhost` is not an IP address",
            ),
            ("unix:", "missing the socket's path"),
            (
                "unix:/s:mode=999",
                "mode `999` is not file permissions in octal",
            ),
            ("unix:/s:lockfile=yes", "lockfile `yes` is not 0 or 1"),
            ("tcp", "missing the port"),
            ("tcp:http", "port `http` is not a number"),
            ("tcp:70000", "port `70000` is not a number"),
            (
                "tcp:80:localhost",
                "interface `localhost` is not an IP address",
            ),
            ("tcp:80:backlog=0", "backlog `0` is not a positive number"),
            ("tcp:80:nodelay=1", "unknown parameter `nodelay`"),
            ("tcp:80:port=81", "`port` given twice"),
            ("tcp:1:127.0.0.1:5:extra", "too many parameters"),
            (
                "ssl:443:sslmethod=TLSv1_2_METHOD",
                "`sslmethod` is not supported",
            ),
            (
                "ssl:443:dhParameters=dh.pem",
                "`dhParameters` is not supported",
            ),
        ];
        for (text, reason) in cases {
            let error = text.parse::<Endpoint>().unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
            assert!(
                error.starts_with(&format!("bad endpoint `{text}`")),
                "{error}"
            );
        }
    }
}
