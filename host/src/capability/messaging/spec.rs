//! What the operator says of a service's topics: the backend they live in
//! (`pubsub=`) and the names it shares with other services
//! (`pubsub-shared=`). The guest names topics; it never names a backend.

use crate::capability::keyvalue::spec::{Backend, check_name};

/// A service's topics as the operator set them up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessagingSpec {
    /// Where every topic of the service lives: `embedded` (the default),
    /// `redis://HOST:PORT/DB`, or `off`.
    pub backend: Backend,
    /// Topics the service shares with every other service that shares the
    /// same name; the others are its own.
    pub shared: Vec<String>,
}

impl MessagingSpec {
    /// Take one `pubsub` or `pubsub-shared` setting; `false` if `name` is
    /// neither.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, String> {
        match name {
            "pubsub" => {
                self.backend = value
                    .parse()
                    .map_err(|why: String| why.replacen("kv backend", "pubsub backend", 1))?
            }
            "pubsub-shared" => {
                check_topic(value).map_err(|why| format!("`pubsub-shared={value}`: {why}"))?;
                if !self.shared.iter().any(|shared| shared == value) {
                    self.shared.push(value.to_owned());
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether `topic` is shared between services.
    pub fn is_shared(&self, topic: &str) -> bool {
        self.shared.iter().any(|shared| shared == topic)
    }
}

/// Topic names are 1 to 64 letters, digits, `.`, `_` or `-`, as bucket
/// names are: they become part of Redis channel names.
pub fn check_topic(name: &str) -> Result<(), String> {
    check_name("topic", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_live_where_pubsub_says_and_shared_names_are_checked() {
        let mut spec = MessagingSpec::default();
        assert_eq!(spec.backend, Backend::Embedded);
        assert!(spec.set("pubsub", "redis://h:1/0").unwrap());
        assert!(matches!(spec.backend, Backend::Redis(_)));
        assert!(spec.set("pubsub-shared", "lobby").unwrap());
        assert!(spec.is_shared("lobby") && !spec.is_shared("room"));
        assert!(!spec.set("kv", "off").unwrap());
        let bad = spec.set("pubsub", "nats://h:1").unwrap_err();
        assert!(bad.starts_with("pubsub backend `nats://h:1`"), "{bad}");
        assert!(spec.set("pubsub-shared", "a b").is_err());
    }
}
