//! The Redis-backed HTTP counter against a real `redis-server`: two weft
//! processes count together, and a Redis that goes away gives 503s, not
//! hangs, until it is back.

use std::net::SocketAddr;

use weft_tests::{RedisServer, WeftProcess, connect, guest, read_response};

async fn counter(name: &str, redis: &RedisServer) -> (WeftProcess, SocketAddr) {
    let service = format!(
        "{}@tcp:0:interface=127.0.0.1,connect=127.0.0.1:{port},config.redis=127.0.0.1:{port}",
        guest(name).display(),
        port = redis.port
    );
    let (weft, addrs) = WeftProcess::spawn(&["serve", &service], 1).await;
    (weft, addrs[0])
}

/// One GET on a new connection: the status line and the body.
async fn get(addr: SocketAddr) -> (String, String) {
    let mut stream = connect(addr).await;
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let response = String::from_utf8(read_response(&mut stream, false).await).unwrap();
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

async fn two_weft_processes_count_together_and_survive_a_redis_restart(guest: &str) {
    let mut redis = RedisServer::start().await;
    let (first, a) = counter(guest, &redis).await;
    let (second, b) = counter(guest, &redis).await;
    for n in 1..=20 {
        let (status, body) = get(if n % 2 == 0 { a } else { b }).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, format!("I am request #{n}\n"));
    }
    // Several requests on one keep-alive connection, pipelined, in order.
    let mut stream = connect(a).await;
    let pipelined = b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut stream, pipelined)
        .await
        .unwrap();
    for (n, head) in [(21, false), (22, false), (23, true), (24, false)] {
        let response = String::from_utf8(read_response(&mut stream, head).await).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.contains(&format!(
                "Content-Length: {}",
                format!("I am request #{n}\n").len()
            )),
            "{response}"
        );
        if !head {
            assert!(
                response.ends_with(&format!("I am request #{n}\n")),
                "{response}"
            );
        }
    }

    redis.stop().await;
    for addr in [a, b] {
        let (status, body) = get(addr).await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(body, "Redis is unavailable\n");
    }
    redis.restart().await;
    // A fresh, empty Redis: counting starts again, on both.
    let (status, body) = get(b).await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "I am request #1\n")
    );
    let (_, body) = get(a).await;
    assert_eq!(body, "I am request #2\n");
    for weft in [first, second] {
        weft.signal(libc::SIGINT);
        let (status, log) = weft.wait().await;
        assert!(status.success(), "{log}");
    }
}

in_each_language!(two_weft_processes_count_together_and_survive_a_redis_restart: rust => "redis-counter", python => "redis-counter-py");
