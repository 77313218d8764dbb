//! Timers (`reactor.call-later`), the start and stop hooks, configuration
//! through `wasi:config`, and a component built against the 0.1.0 WIT.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use weft_tests::{Host, connect, line, read_to_end, send_line, spec, within};

/// The milliseconds a `fired NAME after MS` line reports.
fn after(fired: &str) -> u64 {
    fired.rsplit(' ').next().unwrap().parse().unwrap()
}

async fn timers_fire_in_due_order_between_connection_events(guest: &str) {
    let host = Host::start(&[guest]).await;
    let mut client = connect(host.addr(guest)).await;
    let asked = Instant::now();
    for (ms, name) in [(120, "c"), (40, "a"), (80, "b"), (40, "a2")] {
        send_line(&mut client, &format!("later {ms} {name}")).await;
    }
    send_line(&mut client, "right away").await;
    assert_eq!(line(&mut client).await, "right away");
    let mut fired = Vec::new();
    for _ in 0..4 {
        fired.push(line(&mut client).await);
    }
    let names: Vec<&str> = fired.iter().map(|f| f.split(' ').nth(1).unwrap()).collect();
    assert_eq!(names, ["a", "a2", "b", "c"], "{fired:?}");
    for (fired, due) in fired.iter().zip([40, 40, 80, 120]) {
        assert!(after(fired) >= due, "{fired} fired before {due} ms");
        println!("timer due after {due} ms fired after {} ms", after(fired));
    }
    assert!(asked.elapsed() >= Duration::from_millis(120));
    host.stop().await;
}

async fn cancelled_calls_never_fire_and_reset_and_delay_move_them(guest: &str) {
    let host = Host::start(&[guest]).await;
    let mut client = connect(host.addr(guest)).await;
    for command in [
        "later 50 cancelled",
        "later 50 reset",
        "later 50 delayed",
        "later 150 marker",
        "cancel cancelled",
        "reset reset 100",
        "delay delayed 20",
        "active cancelled",
        "active delayed",
    ] {
        send_line(&mut client, command).await;
    }
    assert_eq!(line(&mut client).await, "active cancelled false");
    assert_eq!(line(&mut client).await, "active delayed true");
    let order: Vec<String> = vec![
        line(&mut client).await,
        line(&mut client).await,
        line(&mut client).await,
    ];
    let names: Vec<&str> = order.iter().map(|f| f.split(' ').nth(1).unwrap()).collect();
    assert_eq!(names, ["delayed", "reset", "marker"], "{order:?}");
    assert!(after(&order[0]) >= 70, "{order:?}");
    assert!(after(&order[1]) >= 100, "{order:?}");
    send_line(&mut client, "active reset").await;
    assert_eq!(line(&mut client).await, "active reset false");
    host.stop().await;
}

async fn a_looping_call_ticks_until_it_stops_itself(guest: &str) {
    let host = Host::start(&[guest]).await;
    let mut client = connect(host.addr(guest)).await;
    let started = Instant::now();
    send_line(&mut client, "loop 20 5").await;
    for tick in 1..=5 {
        assert_eq!(line(&mut client).await, format!("tick {tick}"));
    }
    assert_eq!(line(&mut client).await, "looped");
    assert!(started.elapsed() >= Duration::from_millis(100));
    // Stopped: nothing more arrives before the echo.
    tokio::time::sleep(Duration::from_millis(60)).await;
    send_line(&mut client, "done").await;
    assert_eq!(line(&mut client).await, "done");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timers_limit_refuses_the_call_past_it_and_the_guest_carries_on() {
    let mut spec = spec("reactor");
    spec.limits.timers = 100;
    let host = Host::start_specs(vec![spec]).await;
    let mut client = connect(host.addr("reactor")).await;
    send_line(&mut client, "flood 1000").await;
    assert_eq!(line(&mut client).await, "scheduled 100 of 1000");
    send_line(&mut client, "later 0 more").await;
    assert_eq!(line(&mut client).await, "refused limit");
    send_line(&mut client, "still here").await;
    assert_eq!(line(&mut client).await, "still here");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_in_a_timer_retires_the_instance_and_its_other_timers_never_fire() {
    // The orphan would connect here if it fired.
    let witness = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut spec = spec("reactor");
    spec.connect = vec!["127.0.0.1:*".parse().unwrap()];
    let host = Host::start_specs(vec![spec]).await;
    let mut doomed = connect(host.addr("reactor")).await;
    let orphan = format!(
        "connect-later 200 tcp:127.0.0.1:{}",
        witness.local_addr().unwrap().port()
    );
    send_line(&mut doomed, &orphan).await;
    send_line(&mut doomed, "panic-later 20").await;
    // The panic retires the instance and closes its connections.
    read_to_end(&mut doomed).await;
    let reached = tokio::time::timeout(Duration::from_millis(500), witness.accept()).await;
    assert!(reached.is_err(), "a timer of the retired instance fired");
    let mut fresh = connect(host.addr("reactor")).await;
    send_line(&mut fresh, "later 10 fresh").await;
    assert!(line(&mut fresh).await.starts_with("fired fresh"));
    host.stop().await;
}

async fn start_runs_before_the_first_connection_and_stop_on_shutdown(guest: &str) {
    let host = Host::start(&[guest]).await;
    let mut client = connect(host.addr(guest)).await;
    send_line(&mut client, "started").await;
    assert_eq!(line(&mut client).await, "started 1");
    host.stop().await;
    assert_eq!(line(&mut client).await, "stopping");
    assert!(read_to_end(&mut client).await.is_empty());
}

async fn config_reads_the_services_settings_and_none_for_the_rest(guest: &str) {
    let mut spec = spec(guest);
    spec.config = vec![("backend".into(), "127.0.0.1:9000".into())];
    let host = Host::start_specs(vec![spec]).await;
    let mut client = connect(host.addr(guest)).await;
    send_line(&mut client, "config backend").await;
    assert_eq!(line(&mut client).await, "config backend 127.0.0.1:9000");
    send_line(&mut client, "config missing").await;
    assert_eq!(line(&mut client).await, "config missing unset");
    host.stop().await;
}

/// An echo built against an earlier, frozen WIT version is served as it
/// was: lines come back, and a half-close is answered with a close.
async fn an_earlier_wit_version_is_still_served(guest: &str) {
    let host = Host::start(&[guest]).await;
    let mut clients = Vec::new();
    for n in 0..3 {
        let mut client = connect(host.addr(guest)).await;
        send_line(&mut client, &format!("hello {n}")).await;
        clients.push(client);
    }
    for (n, client) in clients.iter_mut().enumerate() {
        assert_eq!(line(client).await, format!("hello {n}"));
    }
    let mut client = clients.pop().unwrap();
    within(tokio::io::AsyncWriteExt::shutdown(&mut client))
        .await
        .unwrap();
    assert!(read_to_end(&mut client).await.is_empty());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_built_against_wit_0_1_0_is_still_served() {
    an_earlier_wit_version_is_still_served("echo-v0-1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_built_against_wit_0_2_0_is_still_served() {
    an_earlier_wit_version_is_still_served("echo-v0-2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_built_against_wit_0_2_1_is_still_served() {
    an_earlier_wit_version_is_still_served("echo-v0-2-1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_built_against_wit_0_2_2_is_still_served() {
    an_earlier_wit_version_is_still_served("echo-v0-2-2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_built_against_wit_0_2_3_is_still_served() {
    an_earlier_wit_version_is_still_served("echo-v0-2-3").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_built_against_wit_0_2_4_is_still_served() {
    an_earlier_wit_version_is_still_served("echo-v0-2-4").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_built_against_wit_0_2_5_is_still_served() {
    an_earlier_wit_version_is_still_served("echo-v0-2-5").await;
}

in_each_language!(timers_fire_in_due_order_between_connection_events: rust => "reactor", python => "reactor-py");
in_each_language!(cancelled_calls_never_fire_and_reset_and_delay_move_them: rust => "reactor", python => "reactor-py");
in_each_language!(a_looping_call_ticks_until_it_stops_itself: rust => "reactor", python => "reactor-py");
in_each_language!(start_runs_before_the_first_connection_and_stop_on_shutdown: rust => "reactor", python => "reactor-py");
in_each_language!(config_reads_the_services_settings_and_none_for_the_rest: rust => "reactor", python => "reactor-py");
