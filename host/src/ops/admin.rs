//! The admin endpoint (`--admin`): `/metrics` in the Prometheus text format,
//! `/healthz` (liveness) and `/readyz` (readiness, for load balancers),
//! over HTTP/1.1 (hyper), on the main thread's reactor, so a scrape or a
//! health check never waits behind a busy worker.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::{Metrics, Ready, State};
use crate::net::endpoint::Endpoint;
use crate::net::listener::{Listener, listen};

/// Admin connections served at once; more wait to be accepted.
const MAX_ADMIN_CONNECTIONS: usize = 16;

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause before accepting again after `accept` failed (out of file
/// descriptors, say), so that a lasting failure does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Bind the admin endpoint, before anything is served, so that a port in
/// use fails the start.
pub fn bind(endpoint: &Endpoint) -> anyhow::Result<std::net::TcpListener> {
    if endpoint.tls().is_some() || endpoint.tcp_addr().is_none() {
        anyhow::bail!(
            "the admin endpoint `{endpoint}` serves plain HTTP over TCP: give it a `tcp:` \
             endpoint on a loopback or private interface"
        );
    }
    let bound = listen(endpoint, 1).context("the admin endpoint")?;
    match bound.listeners.into_iter().next() {
        Some(Listener::Tcp(listener)) => Ok(listener),
        _ => anyhow::bail!("the admin endpoint was not bound to TCP"),
    }
}

/// Serve `/metrics`, `/healthz` and `/readyz` from `listener` for as long
/// as the calling reactor runs.
pub async fn serve(listener: std::net::TcpListener, metrics: Arc<Metrics>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!("cannot serve the admin endpoint: {error}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return; // The semaphore is never closed.
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!("admin endpoint: accept failed: {error}");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let answer = hyper::service::service_fn(move |request| {
                let response = respond(&request, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), answer)
                .await;
            if let Err(error) = served {
                tracing::debug!("admin connection: {error}");
            }
            drop(permit);
        });
    }
}

fn respond(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.encode());
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                ),
            );
            response
        }
        "/healthz" => healthz(&metrics.states()),
        "/readyz" => readyz(metrics.readiness().state()),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: the admin endpoint serves /metrics, /healthz and /readyz\n".into(),
        ),
    }
}

/// 200 while every service serves or is backing off after a trap; 503
/// naming the services that failed. The body lists every service's state.
fn healthz(states: &[(String, State)]) -> Response<Full<Bytes>> {
    let failed: Vec<&str> = states
        .iter()
        .filter(|(_, state)| *state == State::Failed)
        .map(|(name, _)| name.as_str())
        .collect();
    let mut body = if failed.is_empty() {
        "ok\n".to_owned()
    } else {
        format!("failed: {}\n", failed.join(", "))
    };
    for (name, state) in states {
        let _ = writeln!(body, "{name} {}", state.label());
    }
    let status = if failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, body)
}

/// 200 only while the process accepts new connections: 503 while its
/// workers start, and from the first SIGINT or SIGTERM on. Liveness is
/// `/healthz`'s: a process that is not ready need not be restarted.
fn readyz(ready: Ready) -> Response<Full<Bytes>> {
    match ready {
        Ready::Accepting => text(StatusCode::OK, "ready\n".into()),
        Ready::Starting => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n".into()),
        Ready::Stopping => text(StatusCode::SERVICE_UNAVAILABLE, "stopping\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
