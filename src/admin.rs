//! The HTTP admin listener (`[admin] listen`): `/metrics`, `/healthz`, `/readyz`, `/cluster`,
//! `/config` and `POST /reload`.
//!
//! Small and bounded: HTTP/1 only, request heads up to `MAX_HEAD_BYTES`, bodies never read, at
//! most `MAX_CONNECTIONS` connections at once, each closed after `CONNECTION_TIMEOUT`. It reads
//! the proxy's state; it never touches a client session.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::cluster::state;
use crate::config::redact::redact;
use crate::metrics::scrape;
use crate::reload::{self, Reloader};
use crate::session::Shared;

/// Largest request head (request line plus headers) accepted; hyper's minimum.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Admin connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;
/// Time allowed for a request head to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one admin connection.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the admin endpoints on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    reloader: Option<Arc<Reloader>>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "admin listener ready");
    }
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            debug!(%peer, "admin connection refused: too many at once");
            continue;
        };
        let shared = shared.clone();
        let reloader = reloader.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| {
                let response = respond(&shared, reloader.as_deref(), &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                debug!(%peer, error = %e, "admin connection failed");
            }
        });
    }
    connections.shutdown().await;
}

/// The response to one request.
pub fn respond(
    shared: &Shared,
    reloader: Option<&Reloader>,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let method = request.method();
    match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let text = scrape::encode(&scrape::gather(shared));
            reply(StatusCode::OK, "text/plain; version=0.0.4", text)
        }
        (&Method::GET | &Method::HEAD, "/healthz") => {
            reply(StatusCode::OK, "text/plain", "ok\n".into())
        }
        (&Method::GET | &Method::HEAD, "/readyz") => match readiness(shared) {
            Ok(()) => json_reply(StatusCode::OK, &json!({"ready": true})),
            Err(reason) => json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"ready": false, "reason": reason}),
            ),
        },
        (&Method::GET | &Method::HEAD, "/cluster") => {
            json_reply(StatusCode::OK, &cluster_view(shared))
        }
        (&Method::GET | &Method::HEAD, "/config") => {
            let mut value = serde_json::to_value(&**shared.live.load()).unwrap_or(Value::Null);
            redact(&mut value);
            json_reply(StatusCode::OK, &value)
        }
        (&Method::POST, "/reload") => match reloader {
            None => json_reply(
                StatusCode::CONFLICT,
                &json!({"reloaded": false, "error": "no config file to reload (started without --config)"}),
            ),
            Some(reloader) => match reload::reload(shared, reloader) {
                Ok(report) => json_reply(
                    StatusCode::OK,
                    &json!({"reloaded": true, "applied": report.applied, "needs_restart": report.needs_restart}),
                ),
                Err(error) => json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"reloaded": false, "error": error}),
                ),
            },
        },
        (_, "/metrics" | "/healthz" | "/readyz" | "/cluster" | "/config" | "/reload") => {
            let mut response = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n".into(),
            );
            let allow = if path == "/reload" {
                "POST"
            } else {
                "GET, HEAD"
            };
            response
                .headers_mut()
                .insert("allow", HeaderValue::from_static(allow));
            response
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /healthz, /readyz, /cluster, /config, POST /reload\n".into(),
        ),
    }
}

/// Ready: not draining, and the cluster serves every slot (see [`state::check`]).
///
/// # Errors
/// Why not, for the 503 body.
pub fn readiness(shared: &Shared) -> Result<(), String> {
    if *shared.draining.borrow() {
        return Err("draining: slotproxy is shutting down".into());
    }
    state::check(&shared.topology.slot_map())
}

fn cluster_view(shared: &Shared) -> Value {
    let map = shared.topology.slot_map();
    let stats = shared.topology.stats();
    let (refreshes_ok, refreshes_failed) = stats.refreshes();
    let node = |node: &crate::backend::Node, role: &str| {
        let health = node.health().snapshot();
        let counts = node.stats();
        json!({
            "address": node.addr(),
            "role": role,
            "up": health.up,
            "lagging": health.lagging,
            "rtt_ms": health.rtt_us.map(|us| us as f64 / 1000.0),
            "requests": counts.requests,
            "in_flight": counts.in_flight,
            "connections": counts.open,
        })
    };
    let shards: Vec<Value> = map
        .shards()
        .iter()
        .zip(map.layout())
        .map(|(shard, layout)| {
            json!({
                "slots": layout.ranges,
                "primary": node(&shard.primary, "primary"),
                "replicas": shard.replicas.iter().map(|r| node(r, "replica")).collect::<Vec<_>>(),
            })
        })
        .collect();
    let cluster_state = state::check(&map);
    json!({
        "state": if cluster_state.is_ok() { "ok" } else { "fail" },
        "reason": cluster_state.err(),
        "generation": map.generation(),
        "age_seconds": stats.map_age().map(|age| age.as_secs_f64()),
        "covered_slots": map.covered_slots(),
        "refreshes": {"ok": refreshes_ok, "failed": refreshes_failed},
        "failovers": stats.failovers(),
        "seeds": shared.topology.seeds(),
        "shards": shards,
    })
}

fn json_reply(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_string_pretty(value).unwrap_or_default();
    body.push('\n');
    reply(status, "application/json", body)
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
