//! What the operator says of a service's key-value buckets: the backend
//! each lives in (`kv=`, `kv.BUCKET=`) and the names it shares with other
//! services (`kv-shared=`). The guest names buckets; it never names a
//! backend.

use std::fmt;
use std::str::FromStr;

/// Where a bucket's keys live.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// In this process, shared by every worker, instance and version of
    /// the service; kept across traps and reloads, gone when weft stops.
    #[default]
    Embedded,
    /// On a Redis server, shared by every process that names it.
    Redis(RedisAddress),
    /// None: opening a bucket is refused with `access-denied`.
    Off,
}

/// A Redis server and database, from `redis://HOST:PORT[/DB]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RedisAddress {
    pub host: String,
    pub port: u16,
    pub db: i64,
}

impl fmt::Display for RedisAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Embedded => f.write_str("embedded"),
            Backend::Redis(address) => address.fmt(f),
            Backend::Off => f.write_str("off"),
        }
    }
}

impl FromStr for Backend {
    type Err = String;

    /// `embedded`, `off` or `redis://HOST:PORT[/DB]`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("kv backend `{text}`: {why}");
        match text {
            "embedded" => return Ok(Backend::Embedded),
            "off" => return Ok(Backend::Off),
            _ => {}
        }
        let rest = text
            .strip_prefix("redis://")
            .ok_or_else(|| bad("expected embedded, off or redis://HOST:PORT/DB"))?;
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT after redis://"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
        let db = match db {
            "" => 0,
            db => db
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| bad("the database is not a number"))?,
        };
        Ok(Backend::Redis(RedisAddress {
            host: host.to_owned(),
            port,
            db,
        }))
    }
}

/// A service's buckets as the operator set them up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValueSpec {
    /// The backend of every bucket not named in `buckets`.
    pub backend: Backend,
    /// Buckets with a backend of their own.
    pub buckets: Vec<(String, Backend)>,
    /// Buckets the service shares with every other service that shares
    /// the same name; the others are its own.
    pub shared: Vec<String>,
}

impl KeyValueSpec {
    /// Take one `kv`, `kv.BUCKET` or `kv-shared` setting; `false` if
    /// `name` is none of them.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, String> {
        if name == "kv" {
            self.backend = value.parse()?;
        } else if let Some(bucket) = name.strip_prefix("kv.") {
            check_bucket_name(bucket).map_err(|why| format!("`{name}`: {why}"))?;
            if self.buckets.iter().any(|(named, _)| named == bucket) {
                return Err(format!("`{name}` given twice"));
            }
            self.buckets.push((bucket.to_owned(), value.parse()?));
        } else if name == "kv-shared" {
            check_bucket_name(value).map_err(|why| format!("`kv-shared={value}`: {why}"))?;
            if !self.shared.iter().any(|shared| shared == value) {
                self.shared.push(value.to_owned());
            }
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// The backend of `bucket`.
    pub fn backend_of(&self, bucket: &str) -> &Backend {
        self.buckets
            .iter()
            .find(|(named, _)| named == bucket)
            .map_or(&self.backend, |(_, backend)| backend)
    }

    /// Whether `bucket` is shared between services.
    pub fn is_shared(&self, bucket: &str) -> bool {
        self.shared.iter().any(|shared| shared == bucket)
    }

    /// Every backend named, the default first.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        std::iter::once(&self.backend).chain(self.buckets.iter().map(|(_, backend)| backend))
    }
}

/// The longest bucket or topic name.
pub const MAX_NAME: usize = 64;

/// Bucket names are 1 to 64 letters, digits, `.`, `_` or `-`: they become
/// part of Redis keys and metric labels, so nothing that could be read
/// two ways.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    check_name("bucket", name)
}

/// A name of a `kind` the operator and guests give (a bucket's, a
/// topic's): 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(fits) {
        return Err(format!(
            "{kind} names are 1 to {MAX_NAME} letters, digits, `.`, `_` or `-`, not `{name}`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_from_their_urls() {
        assert_eq!("embedded".parse(), Ok(Backend::Embedded));
        assert_eq!("off".parse(), Ok(Backend::Off));
        let redis = |host: &str, port, db| {
            Ok(Backend::Redis(RedisAddress {
                host: host.into(),
                port,
                db,
            }))
        };
        assert_eq!(
            "redis://127.0.0.1:6379/2".parse(),
            redis("127.0.0.1", 6379, 2)
        );
        assert_eq!(
            "redis://localhost:7000".parse(),
            redis("localhost", 7000, 0)
        );
        assert_eq!("redis://[::1]:7000/".parse(), redis("::1", 7000, 0));
        for bad in [
            "redis://h",
            "redis://:1",
            "redis://h:0",
            "redis://h:1/x",
            "redis://u:p@h:1",
            "memcached://h:1",
        ] {
            assert!(bad.parse::<Backend>().is_err(), "{bad}");
        }
    }

    #[test]
    fn each_bucket_has_the_default_backend_unless_named() {
        let mut spec = KeyValueSpec::default();
        assert!(spec.set("kv", "redis://h:1/0").unwrap());
        assert!(spec.set("kv.cache", "embedded").unwrap());
        assert!(spec.set("kv-shared", "users").unwrap());
        assert!(!spec.set("connect", "h:1").unwrap());
        assert_eq!(spec.backend_of("cache"), &Backend::Embedded);
        assert!(matches!(spec.backend_of("other"), Backend::Redis(_)));
        assert!(spec.is_shared("users") && !spec.is_shared("cache"));
        assert!(spec.set("kv.cache", "off").is_err());
        assert!(spec.set("kv.a:b", "off").is_err());
        assert!(spec.set("kv-shared", "").is_err());
    }
}
