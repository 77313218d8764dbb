//! The control guest's publish/subscribe commands: `sub TOPIC [SPIN-MS]`
//! (what the topic brings is written to this connection, each message
//! after spinning SPIN-MS, to fall behind on purpose), `unsub TOPIC`,
//! `pub TOPIC TEXT`, and `flood TOPIC N` (publish `0` to `N-1`, answering
//! how many were published and the first refusal).

use std::time::{Duration, Instant};

use weft_guest::Transport;
use weft_guest::basic::SendLine;
use weft_guest::messaging::{self, Subscriber};

/// Writes what one subscription brings to the connection that made it.
struct Reporter {
    transport: Transport,
    topic: String,
    spin: Duration,
}

impl Subscriber for Reporter {
    fn message_received(&mut self, message: &[u8]) {
        let began = Instant::now();
        while began.elapsed() < self.spin {}
        let line = [format!("msg {} ", self.topic).as_bytes(), message].concat();
        self.transport.send_line(&line);
    }

    fn messages_dropped(&mut self, count: u64) {
        let line = format!("dropped {} {count}", self.topic);
        self.transport.send_line(line.as_bytes());
    }

    fn subscription_interrupted(&mut self) {
        let line = format!("interrupted {}", self.topic);
        self.transport.send_line(line.as_bytes());
    }

    fn subscription_resumed(&mut self) {
        let line = format!("resumed {}", self.topic);
        self.transport.send_line(line.as_bytes());
    }
}

/// Run one command; its answer.
pub fn command(transport: &Transport, command: &str) -> String {
    let words: Vec<&str> = command.splitn(3, ' ').collect();
    let answer = match words.as_slice() {
        ["sub", topic, rest @ ..] => {
            let spin = rest.first().and_then(|ms| ms.parse().ok()).unwrap_or(0);
            let reporter = Reporter {
                transport: transport.clone(),
                topic: topic.to_string(),
                spin: Duration::from_millis(spin),
            };
            messaging::subscribe(topic, reporter).map(|()| "subscribed".to_owned())
        }
        ["unsub", topic] => {
            messaging::unsubscribe(topic);
            Ok("unsubscribed".to_owned())
        }
        ["pub", topic, text] => {
            messaging::publish(topic, text.as_bytes()).map(|()| "published".to_owned())
        }
        ["flood", topic, count] => {
            let count: u64 = count.parse().unwrap_or(0);
            let mut refused = None;
            let mut published = 0;
            for n in 0..count {
                match messaging::publish(topic, n.to_string().as_bytes()) {
                    Ok(()) => published += 1,
                    Err(error) => {
                        refused.get_or_insert(error);
                    }
                }
            }
            Ok(match refused {
                None => format!("published {published}"),
                Some(error) => format!("published {published}, refused: {}", error.name()),
            })
        }
        _ => Ok(format!("unknown {command}")),
    };
    answer.unwrap_or_else(|error| format!("error: {}", error.name()))
}
