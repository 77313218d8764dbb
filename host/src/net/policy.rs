//! What a service may connect to: the operator's `connect=HOST:PORT` rules
//! (a name, an address or a CIDR range; a port or `*`), checked before a
//! name is resolved and again on every address it resolves to.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::net::cidr::Cidr;

/// One `connect=` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectRule {
    host: RuleHost,
    /// `None`: any port (`*`).
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum RuleHost {
    /// A host name, lower-cased; the addresses it resolves to are allowed.
    Name(String),
    /// An address range.
    Net(Cidr),
}

/// A service's rules; with none, nothing is reachable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<ConnectRule>,
}

impl Policy {
    pub fn new(rules: Vec<ConnectRule>) -> Self {
        Self { rules }
    }

    /// Whether connecting to `host` (a name or an address) on `port` could
    /// be allowed, before anything is resolved: a rule names that host, or
    /// ranges exist that a resolved address might fall in.
    pub fn may_try(&self, host: &str, port: u16) -> bool {
        let numeric: Option<IpAddr> = host.parse().ok();
        self.rules
            .iter()
            .filter(|rule| rule.port_matches(port))
            .any(|rule| match (&rule.host, numeric) {
                (RuleHost::Name(name), None) => name.eq_ignore_ascii_case(host),
                (RuleHost::Net(_), None) => true,
                (RuleHost::Net(_), Some(addr)) => rule.host.contains(addr),
                // Whether the name resolves to this address is checked later.
                (RuleHost::Name(_), Some(_)) => true,
            })
    }

    /// Whether `addr` is allowed without resolving anything: a range
    /// holds it (a named host's addresses are not looked up).
    pub fn allows_address(&self, addr: SocketAddr) -> bool {
        self.rules.iter().any(|rule| {
            rule.port_matches(addr.port())
                && matches!(rule.host, RuleHost::Net(_))
                && rule.host.contains(addr.ip())
        })
    }

    /// Whether `addr`, resolved from what the guest asked for, is allowed:
    /// a range holds it, or a named host resolves to it.
    pub async fn allows(&self, addr: SocketAddr) -> bool {
        for rule in self
            .rules
            .iter()
            .filter(|rule| rule.port_matches(addr.port()))
        {
            match &rule.host {
                RuleHost::Net(_) if rule.host.contains(addr.ip()) => return true,
                RuleHost::Net(_) => {}
                RuleHost::Name(name) => {
                    if let Ok(resolved) =
                        tokio::net::lookup_host((name.as_str(), addr.port())).await
                        && resolved.into_iter().any(|r| r.ip() == addr.ip())
                    {
                        return true;
                    }
                }
            }
        }
        false
    }
}

impl ConnectRule {
    fn port_matches(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }
}

impl RuleHost {
    fn contains(&self, addr: IpAddr) -> bool {
        matches!(self, RuleHost::Net(range) if range.contains(addr))
    }
}

impl FromStr for ConnectRule {
    type Err = String;

    /// `HOST:PORT`, `HOST:*`, `[V6]:PORT`, `10.0.0.0/8:*`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("connect={text}: {why}");
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT or HOST:* (IPv6 in brackets)"))?;
        let port = match port {
            "*" => None,
            port => Some(
                port.parse()
                    .map_err(|_| bad("the port is not a number from 0 to 65535 or *"))?,
            ),
        };
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(bracketed) => bracketed,
            None if host.contains(':') => return Err(bad("write an IPv6 address in brackets")),
            None => host,
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let host = if host.contains('/') {
            RuleHost::Net(host.parse().map_err(|why: String| bad(&why))?)
        } else {
            match host.parse::<IpAddr>() {
                Ok(addr) => RuleHost::Net(Cidr::single(addr)),
                Err(_) => RuleHost::Name(host.to_ascii_lowercase()),
            }
        };
        Ok(Self { host, port })
    }
}

impl fmt::Display for ConnectRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            RuleHost::Name(name) => write!(f, "{name}")?,
            RuleHost::Net(range) if range.is_ipv6() => write!(f, "[{range}]")?,
            RuleHost::Net(range) => write!(f, "{range}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => write!(f, ":*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &[&str]) -> Policy {
        Policy::new(rules.iter().map(|r| r.parse().unwrap()).collect())
    }

    #[test]
    fn rules_parse_and_print_back() {
        for text in [
            "redis.internal:6379",
            "127.0.0.1:*",
            "10.0.0.0/8:443",
            "[::1]:80",
            "[fd00::/8]:*",
        ] {
            let rule: ConnectRule = text.parse().unwrap();
            let printed = rule.to_string();
            assert_eq!(
                printed.parse::<ConnectRule>().unwrap(),
                rule,
                "{text} -> {printed}"
            );
        }
        for (text, why) in [
            ("example.com", "expected HOST:PORT"),
            ("example.com:http", "the port is not a number"),
            (":80", "no host"),
            ("::1:80", "in brackets"),
            ("10.0.0.0/33:80", "prefix length"),
            ("name/8:80", "numeric address"),
        ] {
            let error = text.parse::<ConnectRule>().unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn nothing_is_reachable_without_rules() {
        let none = Policy::default();
        assert!(!none.may_try("127.0.0.1", 80));
        assert!(!none.may_try("localhost", 80));
    }

    #[test]
    fn ranges_and_ports_are_checked_before_resolving() {
        let rules = policy(&["10.0.0.0/8:443", "127.0.0.1:*", "backend:6379"]);
        assert!(rules.may_try("10.1.2.3", 443));
        assert!(!rules.may_try("10.1.2.3", 80));
        assert!(!rules.may_try("11.0.0.1", 443));
        assert!(rules.may_try("127.0.0.1", 9));
        assert!(rules.may_try("BACKEND", 6379));
        // A name no rule names may still resolve into a range.
        assert!(rules.may_try("elsewhere", 443));
        assert!(!policy(&["backend:6379"]).may_try("elsewhere", 6379));
    }

    #[tokio::test]
    async fn resolved_addresses_must_be_allowed_too() {
        let rules = policy(&["127.0.0.0/8:*", "localhost:7000"]);
        assert!(rules.allows("127.0.0.9:80".parse().unwrap()).await);
        assert!(!rules.allows("192.0.2.1:80".parse().unwrap()).await);
        let by_name = policy(&["localhost:7000"]);
        assert!(by_name.allows("127.0.0.1:7000".parse().unwrap()).await);
        assert!(!by_name.allows("127.0.0.1:7001".parse().unwrap()).await);
        assert!(!by_name.allows("192.0.2.1:7000".parse().unwrap()).await);
    }
}
