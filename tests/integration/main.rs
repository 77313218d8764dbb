//! weft end to end: the real host, the real components built from
//! `guests/` and `tests/guests/`, real sockets on 127.0.0.1.

/// Run the test body `$test` (an async fn taking a guest's name) against
/// the same guest written in each language, one `#[test]` per language:
/// `echo::each_message_comes_back_before_the_next_is_sent::python`.
macro_rules! in_each_language {
    ($test:ident: $($language:ident => $guest:literal),+ $(,)?) => {
        mod $test {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $language() {
                    super::$test($guest).await;
                }
            )+
        }
    };
}

mod chat;
mod cli;
mod cluster;
mod commands;
mod differential;
mod docs;
mod drain;
mod echo;
mod hostile;
mod http_counter;
mod isolation;
mod keyvalue;
mod limits;
mod messaging;
mod ops;
mod outbound;
mod portforward;
mod process;
mod proxy;
mod python_build;
mod redis_counter;
mod templates;
mod timers;
mod tls;
mod transport;
mod twisted;
mod udp;
mod unix;
mod workers;
