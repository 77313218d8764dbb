//! Twisted's client endpoint strings, the destinations of
//! `reactor.connect`: `tcp:host=HOST:port=PORT`, `tcp:HOST:PORT`,
//! `tcp6:...`, each with an optional `timeout=SECONDS`.

use std::time::Duration;

use crate::net::endpoint::{parameters, split, value};

/// Where a guest asked to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEndpoint {
    /// A name or a numeric address, without brackets.
    pub host: String,
    pub port: u16,
    /// `tcp6`: IPv6 addresses only; `tcp`: IPv4 only, as in Twisted.
    pub ipv6: bool,
    /// The connect timeout the guest asked for, if any.
    pub timeout: Option<Duration>,
}

impl ClientEndpoint {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (positional, keywords) = split(text);
        let (kind, arguments) = positional.split_first().ok_or_else(|| "empty".to_owned())?;
        let ipv6 = match kind.to_ascii_lowercase().as_str() {
            "tcp" => false,
            "tcp6" => true,
            other => return Err(format!("unknown client endpoint type `{other}`")),
        };
        let values = parameters(kind, &["host", "port", "timeout"], arguments, keywords)?;
        let value = |name: &str| value(&values, name);
        let host = value("host")
            .filter(|h| !h.is_empty())
            .ok_or("missing the host")?;
        let port = value("port")
            .ok_or("missing the port")?
            .parse()
            .map_err(|_| "the port is not a number from 0 to 65535".to_owned())?;
        let timeout = match value("timeout") {
            None => None,
            Some(seconds) => Some(
                seconds
                    .parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .filter(|d| !d.is_zero())
                    .ok_or("the timeout is not a number of seconds")?,
            ),
        };
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            ipv6,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twisted_forms_parse() {
        let expected = ClientEndpoint {
            host: "example.com".into(),
            port: 6379,
            ipv6: false,
            timeout: None,
        };
        assert_eq!(
            ClientEndpoint::parse("tcp:host=example.com:port=6379"),
            Ok(expected.clone())
        );
        assert_eq!(
            ClientEndpoint::parse("tcp:example.com:6379"),
            Ok(expected.clone())
        );
        assert_eq!(
            ClientEndpoint::parse("TCP:example.com:port=6379"),
            Ok(expected)
        );
        let v6 = ClientEndpoint::parse("tcp6:\\:\\:1:80:timeout=2.5").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.ipv6), ("::1", 80, true));
        assert_eq!(v6.timeout, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn bad_endpoints_say_why() {
        for (text, reason) in [
            ("unix:/tmp/x", "unknown client endpoint type `unix`"),
            ("tcp:example.com", "missing the port"),
            ("tcp:port=80", "missing the host"),
            ("tcp:h:http", "not a number"),
            ("tcp:h:80:timeout=soon", "timeout"),
            ("tcp:h:80:bind=x", "unknown parameter `bind`"),
        ] {
            let error = ClientEndpoint::parse(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}
