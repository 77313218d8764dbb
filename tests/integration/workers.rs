//! `workers=N`: a service served by N workers, each with its own listener,
//! instance and connections. The kernel spreads connections among them,
//! nothing is shared between them, and a trap in one leaves the others
//! serving.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft::Limits;
use weft_tests::{Host, connect, read_to_end, within};

/// Connections opened one after another against the two workers.
const CONNECTIONS: usize = 40;

/// `ping`'s answer, `pong N`, gives how many connections the instance
/// that answered has built; `None` if the connection was closed instead.
async fn ping(stream: &mut TcpStream) -> Option<u64> {
    if stream.write_all(b"ping\r\n").await.is_err() {
        return None;
    }
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n") {
        match within(stream.read(&mut byte)).await {
            Ok(1) => answer.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8(answer).expect("an ASCII answer");
    let count = text.trim_end().strip_prefix("pong ").expect("a pong");
    Some(count.parse().expect("a count"))
}

/// The counts `1..=n` for each `n` in `sizes`, sorted: what the instances'
/// answers add up to when each instance built `n` of the connections.
fn counts_of_instances(sizes: &[u64]) -> Vec<u64> {
    let mut counts: Vec<u64> = sizes.iter().flat_map(|n| 1..=*n).collect();
    counts.sort_unstable();
    counts
}

/// How many connections each instance built, from the answers each
/// connection got when it was new: an instance's first connection is
/// told 1, so the 1s count instances and the instances' sizes follow.
fn sizes_from(mut counts: Vec<u64>) -> Vec<u64> {
    counts.sort_unstable();
    let instances = counts.iter().filter(|c| **c == 1).count();
    let mut sizes = vec![0u64; instances];
    for count in counts {
        // The instance whose size reaches `count` next: there is one,
        // or the counts are not a union of 1..=n runs (checked after).
        if let Some(size) = sizes.iter_mut().find(|size| **size + 1 == count) {
            *size = count;
        }
    }
    sizes
}

async fn two_workers() -> (Host, Vec<(TcpStream, u64)>) {
    let limits = Limits {
        workers: 2,
        ..Limits::default()
    };
    let host = Host::start_with(vec![("hostile", limits)]).await;
    let mut connections = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut stream = connect(host.addr("hostile")).await;
        let count = ping(&mut stream).await.expect("a new connection answers");
        connections.push((stream, count));
    }
    (host, connections)
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_spread_over_workers_that_share_nothing() {
    let (host, connections) = two_workers().await;
    let counts: Vec<u64> = connections.iter().map(|(_, count)| *count).collect();
    let sizes = sizes_from(counts.clone());
    assert_eq!(
        sizes.len(),
        2,
        "two instances answered, each counting from 1: {counts:?}"
    );
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    assert_eq!(
        counts_of_instances(&sizes),
        sorted,
        "each instance counted only its own connections: {counts:?}"
    );
    // Binomial(40, 1/2): fewer than 5 on a worker happens once in ten
    // million runs, and always if the kernel did not spread them.
    assert!(
        sizes.iter().all(|size| *size >= 5),
        "connections spread over both workers: {sizes:?}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_in_one_worker_leaves_the_other_serving() {
    let (host, mut connections) = two_workers().await;
    let (mut doomed, doomed_count) = connections.pop().expect("connections");
    doomed.write_all(b"panic\r\n").await.unwrap();
    assert_eq!(read_to_end(&mut doomed).await, b"", "the trap closes it");

    let mut closed = vec![doomed_count];
    let mut serving = Vec::new();
    let mut survivor = None;
    for (index, (stream, count)) in connections.iter_mut().enumerate() {
        match ping(stream).await {
            Some(now) => {
                serving.push((*count, now));
                survivor = Some(index);
            }
            None => closed.push(*count),
        }
    }
    // The trapping worker's connections are all closed, and only they:
    // the other worker's all answer from its untouched instance, which
    // has built exactly those connections.
    let sorted = |mut counts: Vec<u64>| {
        counts.sort_unstable();
        counts
    };
    let survivors = serving.len() as u64;
    assert!(survivors > 0, "the other worker's connections survive");
    assert_eq!(
        sorted(closed.clone()),
        counts_of_instances(&[closed.len() as u64]),
        "the closed connections are one instance's"
    );
    assert_eq!(
        sorted(serving.iter().map(|(count, _)| *count).collect()),
        counts_of_instances(&[survivors]),
        "the serving connections are the other instance's"
    );
    assert!(
        serving.iter().all(|(_, now)| *now == survivors),
        "the surviving instance has built nothing since: {serving:?}"
    );

    // New connections go to both workers: to a fresh instance on the one
    // that trapped (after its restart backoff), to the same instance on
    // the other, as a survivor's count tells after each.
    let (survivor, _) = &mut connections[survivor.expect("a survivor")];
    let (mut fresh_built, mut old_built) = (0, survivors);
    for _ in 0..20 {
        let mut fresh = connect(host.addr("hostile")).await;
        let answer = ping(&mut fresh).await.expect("a new connection answers");
        let old_now = ping(survivor).await.expect("the survivor answers");
        if old_now == old_built + 1 {
            assert_eq!(answer, old_now, "built by the surviving instance");
            old_built = old_now;
        } else {
            assert_eq!(old_now, old_built, "nothing else was built there");
            fresh_built += 1;
            assert_eq!(answer, fresh_built, "built by the fresh instance");
        }
    }
    assert!(
        fresh_built > 0 && old_built > survivors,
        "both workers took new connections: {fresh_built} the fresh instance, {} the surviving one",
        old_built - survivors
    );
    host.stop().await;
}
