//! The master daemon: the v1 scheduler API, the agent protocol endpoints and the read
//! endpoints over HTTP, driving one `mantle_master::Master` from a single actor task; it also
//! serves the web UI and its proxies (`crate::ui`).

use crate::clock::Clock;
use crate::http::{self, EventStream};
use crate::master_store::Registry;
use crate::ui::{self, AgentEndpoint, Ui};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use mantle_api::internal::{AgentEnvelope, RegisterAgent};
use mantle_api::operator::{
    Call as OperatorCall, CallType as OperatorCallType, Event as OperatorEvent,
    Response as OperatorResponse,
};
use mantle_api::scheduler::{Call, CallType};
use mantle_master::{CallError, Config, ConnId, Master, OperatorTracker, Output, Subscription};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

type Reply<T> = oneshot::Sender<T>;
type Reader = Box<dyn FnOnce(&Master) -> serde_json::Value + Send>;

enum Cmd {
    Subscribe {
        call: Call,
        reply: Reply<Result<(Subscription, EventStream), CallError>>,
    },
    Call {
        stream_id: Option<String>,
        call: Call,
        reply: Reply<Result<(), CallError>>,
    },
    FrameworkGone {
        conn: ConnId,
    },
    AgentRegister {
        reg: RegisterAgent,
        reply: Reply<Result<(String, EventStream), CallError>>,
    },
    AgentMessage {
        envelope: AgentEnvelope,
        reply: Reply<Result<(), CallError>>,
    },
    /// Several messages of one agent, in order (what its sender had queued).
    AgentMessages {
        envelopes: Vec<AgentEnvelope>,
        reply: Reply<Result<(), CallError>>,
    },
    AgentGone {
        conn: ConnId,
    },
    Read {
        f: Reader,
        reply: Reply<serde_json::Value>,
    },
    OperatorSubscribe {
        reply: Reply<EventStream>,
    },
    OperatorGone {
        conn: ConnId,
    },
}

#[derive(Clone)]
struct AppState {
    tx: mpsc::UnboundedSender<Cmd>,
    leader: String,
    /// For proxying sandbox reads to agents.
    client: reqwest::Client,
    ui: Ui,
}

/// Options of `mantle master`.
#[derive(Debug, Clone)]
pub struct MasterOptions {
    pub listen: SocketAddr,
    pub config: Config,
}

fn call_error(e: CallError) -> Response {
    match e {
        CallError::BadRequest(m) => http::error(StatusCode::BAD_REQUEST, m),
        CallError::Forbidden(m) => http::error(StatusCode::FORBIDDEN, m),
    }
}

/// Runs the master on an already bound listener until `shutdown` resolves, with its registry
/// in `work_dir` (`registry.redb`, created if missing: a master with an empty registry starts
/// empty, one with records recovers from them); `ui` holds what the web UI's proxies need
/// (the service scheduler's URL). Returns an error if the registry cannot be read or a write
/// to it fails (the master stops rather than act on state it could not make durable).
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    work_dir: &std::path::Path,
    ui: Ui,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let clock = Clock::new();
    let (tx, rx) = mpsc::unbounded_channel();
    let leader = format!("{}:{}", config.hostname, config.port);
    let path = work_dir.join("registry.redb");
    let registry = Registry::open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open the registry {}: {e}", path.display()))?;
    let snapshot = registry.load()?;
    info!(
        agents = snapshot.agents.len(),
        frameworks = snapshot.frameworks.len(),
        tasks = snapshot.tasks.len(),
        "registry loaded"
    );
    let master = Master::recover(config, clock.now(), snapshot);
    info!(master_id = master.id(), addr = %leader, "master started");
    let actor = tokio::spawn(actor(master, registry, clock, rx, tx.clone()));
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()?;
    let state = AppState {
        tx,
        leader,
        client,
        ui,
    };
    let app = router(state);
    // Event streams never end on their own, so shutdown does not wait for connections: the
    // listener closes and the process exits.
    tokio::select! {
        r = axum::serve(http::nodelay(listener), app) => r?,
        r = actor => {
            r??;
        }
        _ = shutdown => info!("master stopping"),
    }
    Ok(())
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/scheduler", any(scheduler))
        .route("/master/api/v1/scheduler", any(scheduler))
        .route("/api/v1", any(operator))
        .route("/master/api/v1", any(operator))
        .route("/api/internal/agent/register", any(agent_register))
        .route("/api/internal/agent/message", any(agent_message))
        .route("/api/internal/agent/messages", any(agent_messages))
        .route("/version", get(version))
        .route("/files/browse", get(|s, q| files_proxy(s, q, "browse")))
        .route(
            "/files/browse.json",
            get(|s, q| files_proxy(s, q, "browse")),
        )
        .route("/files/read", get(|s, q| files_proxy(s, q, "read")))
        .route("/files/read.json", get(|s, q| files_proxy(s, q, "read")))
        .route("/files/download", get(|s, q| files_proxy(s, q, "download")))
        .route(
            "/files/download.json",
            get(|s, q| files_proxy(s, q, "download")),
        )
        .route("/health", get(health))
        .route("/master/health", get(health))
        .route("/state", get(state_endpoint))
        .route("/state.json", get(state_endpoint))
        .route("/master/state", get(state_endpoint))
        .route("/master/state.json", get(state_endpoint))
        .route("/master/frameworks", get(frameworks))
        .route("/frameworks", get(frameworks))
        .route("/master/slaves", get(slaves))
        .route("/slaves", get(slaves))
        .route("/master/tasks", get(tasks))
        .route("/tasks", get(tasks))
        .route("/master/redirect", get(redirect))
        .route("/redirect", get(redirect))
        .route("/", get(ui::index))
        .route("/ui/{name}", get(ui::ui_asset))
        .route("/marathon", any(marathon_proxy))
        .route("/marathon/", any(marathon_proxy))
        .route("/marathon/{*rest}", any(marathon_proxy))
        .route("/agent/{agent_id}/state", get(agent_state))
        .route("/agent/{agent_id}/files/browse", get(agent_files_browse))
        .route("/agent/{agent_id}/files/read", get(agent_files_read))
        .fallback(http::not_found)
        .layer(DefaultBodyLimit::max(http::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(|r, n| {
            crate::http::refuse_oversized(crate::http::MAX_BODY_BYTES, r, n)
        }))
        .with_state(state)
}

/// A reply held back until the step's registry writes are durable.
type Deferred = Box<dyn FnOnce() + Send>;

/// Most commands handled in one step (one registry commit).
const MAX_BATCH: usize = 256;

async fn actor(
    mut master: Master,
    registry: Registry,
    clock: Clock,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    tx: mpsc::UnboundedSender<Cmd>,
) -> anyhow::Result<()> {
    let mut frameworks: BTreeMap<ConnId, mpsc::Sender<Bytes>> = BTreeMap::new();
    let mut agents: BTreeMap<ConnId, mpsc::Sender<Bytes>> = BTreeMap::new();
    let mut operators: BTreeMap<ConnId, mpsc::Sender<Bytes>> = BTreeMap::new();
    let mut tracker = OperatorTracker::new();
    let heartbeat = std::time::Duration::from_secs_f64(master.operator_heartbeat_secs());
    let mut next_operator_heartbeat = tokio::time::Instant::now() + heartbeat;
    let mut next_conn: ConnId = 1;
    let mut deferred: Vec<Deferred> = Vec::new();
    loop {
        let mut deadline = clock.instant(master.next_deadline());
        if !operators.is_empty() {
            deadline = deadline.min(next_operator_heartbeat.into_std());
        }
        let mut operator_subscribes: Vec<Reply<EventStream>> = Vec::new();
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return Ok(()) };
                // Take what else is waiting too: the whole batch is one step for the registry
                // (one commit), and nothing it justifies goes out before that commit.
                let mut batch = vec![cmd];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(c) => batch.push(c),
                        Err(_) => break,
                    }
                }
                for cmd in batch {
                let now = clock.now();
                match cmd {
                    Cmd::Subscribe { call, reply } => {
                        let conn = next_conn;
                        next_conn += 1;
                        let Some(subscribe) = call.subscribe else {
                            let _ = reply.send(Err(CallError::BadRequest("Expecting 'subscribe' to be present".into())));
                            continue;
                        };
                        match master.subscribe(now, conn, call.framework_id, subscribe) {
                            Ok(sub) => {
                                let (stx, srx) = mpsc::channel(http::STREAM_BUFFER);
                                frameworks.insert(conn, stx);
                                let gone = tx.clone();
                                let stream = EventStream::new(srx, move || { let _ = gone.send(Cmd::FrameworkGone { conn }); });
                                deferred.push(Box::new(move || { let _ = reply.send(Ok((sub, stream))); }));
                            }
                            Err(e) => { let _ = reply.send(Err(e)); }
                        }
                    }
                    Cmd::Call { stream_id, call, reply } => {
                        debug!(kind = ?call.kind, "scheduler call");
                        let r = master.call(now, stream_id.as_deref(), call);
                        deferred.push(Box::new(move || { let _ = reply.send(r); }));
                    }
                    Cmd::FrameworkGone { conn } => {
                        frameworks.remove(&conn);
                        master.framework_disconnected(now, conn);
                    }
                    Cmd::AgentRegister { reg, reply } => {
                        let conn = next_conn;
                        next_conn += 1;
                        match master.agent_register(now, conn, reg) {
                            Ok((_, stream_id)) => {
                                let (stx, srx) = mpsc::channel(http::STREAM_BUFFER);
                                agents.insert(conn, stx);
                                let gone = tx.clone();
                                let stream = EventStream::new(srx, move || { let _ = gone.send(Cmd::AgentGone { conn }); });
                                deferred.push(Box::new(move || { let _ = reply.send(Ok((stream_id, stream))); }));
                            }
                            Err(e) => { let _ = reply.send(Err(e)); }
                        }
                    }
                    Cmd::AgentMessage { envelope, reply } => {
                        let r = master.agent_message(now, envelope);
                        deferred.push(Box::new(move || { let _ = reply.send(r); }));
                    }
                    Cmd::AgentMessages { envelopes, reply } => {
                        let mut r = Ok(());
                        for envelope in envelopes {
                            if let Err(e) = master.agent_message(now, envelope) {
                                if r.is_ok() {
                                    r = Err(e);
                                }
                            }
                        }
                        deferred.push(Box::new(move || { let _ = reply.send(r); }));
                    }
                    Cmd::AgentGone { conn } => {
                        agents.remove(&conn);
                        master.agent_disconnected(now, conn);
                    }
                    Cmd::Read { f, reply } => {
                        // Answered with the rest of the batch, once what it shows is durable.
                        let v = f(&master);
                        deferred.push(Box::new(move || { let _ = reply.send(v); }));
                    }
                    // Answered after the step's commit, with the state it shows.
                    Cmd::OperatorSubscribe { reply } => operator_subscribes.push(reply),
                    Cmd::OperatorGone { conn } => {
                        operators.remove(&conn);
                    }
                }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        let now = clock.now();
        if now.mono >= master.next_deadline() {
            master.tick(now);
        }
        let outputs = master.take_outputs();
        // The step's registry writes come first; they must be durable before anything they
        // justify is sent or acknowledged.
        let writes: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Persist(w) => Some(w.clone()),
                _ => None,
            })
            .collect();
        if let Err(e) = registry.apply(&writes) {
            tracing::error!(error = %e, "registry write failed; stopping the master");
            return Err(e.into());
        }
        for reply in deferred.drain(..) {
            reply();
        }
        // Operators hear of the step once it is durable, like everyone else.
        if !operators.is_empty() {
            let events = tracker.changes(&master);
            broadcast(&mut operators, &events);
            if tokio::time::Instant::now() >= next_operator_heartbeat {
                next_operator_heartbeat = tokio::time::Instant::now() + heartbeat;
                broadcast(&mut operators, &[OperatorEvent::heartbeat()]);
            }
        }
        for reply in operator_subscribes {
            // Existing subscribers are up to date (just above), so the new one's SUBSCRIBED
            // state and everyone's later events line up.
            let conn = next_conn;
            next_conn += 1;
            let (stx, srx) = mpsc::channel(http::STREAM_BUFFER);
            let first = OperatorEvent::subscribed(master.operator_state(), heartbeat.as_secs_f64());
            if stx.try_send(http::frame(&first)).is_ok() {
                operators.insert(conn, stx);
                if operators.len() == 1 {
                    next_operator_heartbeat = tokio::time::Instant::now() + heartbeat;
                }
            }
            let gone = tx.clone();
            let stream = EventStream::new(srx, move || {
                let _ = gone.send(Cmd::OperatorGone { conn });
            });
            let _ = reply.send(stream);
        }
        for out in outputs {
            match out {
                Output::Persist(_) => {}
                Output::ToFramework { conn, event } => {
                    deliver(&mut frameworks, conn, http::frame(&event))
                }
                Output::CloseFramework { conn } => {
                    frameworks.remove(&conn);
                }
                Output::ToAgent { conn, message } => {
                    deliver(&mut agents, conn, http::frame(&message))
                }
                Output::CloseAgent { conn } => {
                    agents.remove(&conn);
                }
            }
        }
    }
}

/// Queues a record on a stream; a reader that has fallen `STREAM_BUFFER` records behind is
/// cut off (its stream ends and the core hears it disconnected) rather than growing memory.
fn deliver(conns: &mut BTreeMap<ConnId, mpsc::Sender<Bytes>>, conn: ConnId, bytes: Bytes) {
    if let Some(tx) = conns.get(&conn) {
        if tx.try_send(bytes).is_err() {
            warn!(conn, "event stream is full or closed; disconnecting it");
            conns.remove(&conn);
        }
    }
}

/// Sends operator events to every operator subscriber, cutting off any that fell behind.
fn broadcast(conns: &mut BTreeMap<ConnId, mpsc::Sender<Bytes>>, events: &[OperatorEvent]) {
    if conns.is_empty() {
        return;
    }
    for event in events {
        let bytes = http::frame(event);
        let ids: Vec<ConnId> = conns.keys().copied().collect();
        for conn in ids {
            deliver(conns, conn, bytes.clone());
        }
    }
}

async fn ask<T>(state: &AppState, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, Response> {
    let (reply, rx) = oneshot::channel();
    state
        .tx
        .send(make(reply))
        .map_err(|_| http::error(StatusCode::SERVICE_UNAVAILABLE, "Master is shutting down"))?;
    rx.await
        .map_err(|_| http::error(StatusCode::SERVICE_UNAVAILABLE, "Master is shutting down"))
}

async fn scheduler(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call: Call = match http::decode_call(&method, &headers, &body, "Call") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let stream_id = headers
        .get("Mesos-Stream-Id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if call.kind == CallType::Subscribe {
        if !http::accepts_json(&headers) {
            return http::not_acceptable();
        }
        if stream_id.is_some() {
            return http::error(
                StatusCode::BAD_REQUEST,
                "Subscribe calls should not include the 'Mesos-Stream-Id' header",
            );
        }
        return match ask(&state, |reply| Cmd::Subscribe { call, reply }).await {
            Ok(Ok((sub, stream))) => {
                http::stream_response(stream, &[("Mesos-Stream-Id", sub.stream_id)])
            }
            Ok(Err(e)) => call_error(e),
            Err(r) => r,
        };
    }
    match ask(&state, |reply| Cmd::Call {
        stream_id,
        call,
        reply,
    })
    .await
    {
        Ok(Ok(())) => http::accepted(),
        Ok(Err(e)) => call_error(e),
        Err(r) => r,
    }
}

/// The operator API (`POST /api/v1`): `SUBSCRIBE` answers a RecordIO stream of operator
/// events (SUBSCRIBED with the whole state first), `GET_STATE` the state as one JSON body.
async fn operator(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call: OperatorCall = match http::decode_call(&method, &headers, &body, "Call") {
        Ok(c) => c,
        Err(r) => return r,
    };
    match call.kind {
        OperatorCallType::Subscribe => {
            if !http::accepts_json(&headers) {
                return http::not_acceptable();
            }
            match ask(&state, |reply| Cmd::OperatorSubscribe { reply }).await {
                Ok(stream) => http::stream_response(stream, &[]),
                Err(r) => r,
            }
        }
        OperatorCallType::GetState => {
            read(&state, |m| {
                let response = OperatorResponse {
                    kind: OperatorCallType::GetState,
                    get_state: Some(m.operator_state()),
                };
                serde_json::to_value(response).unwrap_or(serde_json::Value::Null)
            })
            .await
        }
        OperatorCallType::Unknown => http::error(
            StatusCode::NOT_IMPLEMENTED,
            "Mantle's operator API answers only SUBSCRIBE and GET_STATE",
        ),
    }
}

async fn agent_register(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reg: RegisterAgent = match http::decode_call(&method, &headers, &body, "RegisterAgent") {
        Ok(r) => r,
        Err(r) => return r,
    };
    match ask(&state, |reply| Cmd::AgentRegister { reg, reply }).await {
        Ok(Ok((stream_id, stream))) => {
            http::stream_response(stream, &[("Mantle-Stream-Id", stream_id)])
        }
        Ok(Err(e)) => call_error(e),
        Err(r) => r,
    }
}

async fn agent_message(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let envelope: AgentEnvelope = match http::decode_call(&method, &headers, &body, "AgentEnvelope")
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    match ask(&state, |reply| Cmd::AgentMessage { envelope, reply }).await {
        Ok(Ok(())) => http::accepted(),
        Ok(Err(e)) => call_error(e),
        Err(r) => r,
    }
}

/// Several messages of one agent in one POST, handled in order in one step.
async fn agent_messages(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let envelopes: Vec<AgentEnvelope> =
        match http::decode_call(&method, &headers, &body, "a list of AgentEnvelope") {
            Ok(r) => r,
            Err(r) => return r,
        };
    match ask(&state, |reply| Cmd::AgentMessages { envelopes, reply }).await {
        Ok(Ok(())) => http::accepted(),
        Ok(Err(e)) => call_error(e),
        Err(r) => r,
    }
}

async fn read(
    state: &AppState,
    f: impl FnOnce(&Master) -> serde_json::Value + Send + 'static,
) -> Response {
    match ask(state, |reply| Cmd::Read {
        f: Box::new(f),
        reply,
    })
    .await
    {
        Ok(v) => http::json(&v),
        Err(r) => r,
    }
}

/// The agent ID in a sandbox path: the segment after `slaves` (`.../slaves/<id>/frameworks/...`).
pub fn sandbox_agent(path: &str) -> Option<&str> {
    let mut parts = path.split('/');
    parts.find(|p| *p == "slaves")?;
    let id = parts.next()?;
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && id != "."
        && id != "..";
    ok.then_some(id)
}

/// `/files/{browse,read,download}` on the master: the sandbox path names its agent, and the
/// request goes to that agent's own `/files` endpoint unchanged (the agent confines it to its
/// sandboxes); the answer streams back with its status and content headers.
async fn files_proxy(
    State(state): State<AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    op: &'static str,
) -> Response {
    let query = query.unwrap_or_default();
    let path: String = serde_urlencoded::from_str::<Vec<(String, String)>>(&query)
        .ok()
        .and_then(|q| q.into_iter().find(|(k, _)| k == "path").map(|(_, v)| v))
        .unwrap_or_default();
    if path.is_empty() {
        return http::error(
            StatusCode::BAD_REQUEST,
            "Expecting 'path=value' in query.\n",
        );
    }
    let Some(agent_id) = sandbox_agent(&path).map(str::to_string) else {
        return http::error(
            StatusCode::NOT_FOUND,
            format!("'{path}' is not in an agent's sandbox.\n"),
        );
    };
    let wanted = agent_id.clone();
    let addr = match ask(&state, |reply| Cmd::Read {
        f: Box::new(move |m: &Master| {
            let slaves = m.view().slaves();
            slaves["slaves"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["id"] == wanted.as_str()))
                .and_then(|s| s["pid"].as_str())
                .and_then(|pid| pid.split_once('@'))
                .map(|(_, addr)| serde_json::Value::String(addr.to_string()))
                .unwrap_or(serde_json::Value::Null)
        }),
        reply,
    })
    .await
    {
        Ok(serde_json::Value::String(a)) => a,
        Ok(_) => {
            return http::error(
                StatusCode::NOT_FOUND,
                format!("Agent '{agent_id}' is not registered.\n"),
            )
        }
        Err(r) => return r,
    };
    let url = format!("http://{addr}/files/{op}?{query}");
    let resp = match state.client.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            return http::error(
                StatusCode::BAD_GATEWAY,
                format!("Agent '{agent_id}' at {addr} did not answer: {e}\n"),
            )
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = axum::response::Response::builder().status(status);
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_DISPOSITION,
        header::CONTENT_LENGTH,
    ] {
        if let Some(v) = resp.headers().get(name.as_str()) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                out = out.header(name, v);
            }
        }
    }
    out.body(axum::body::Body::from_stream(resp.bytes_stream()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

async fn version() -> Response {
    http::json(&serde_json::json!({
        "version": mantle_master::MESOS_VERSION,
        "build_user": "mantle",
        "build_date": "",
        "build_time": 0.0,
        "mantle_version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn health() -> Response {
    StatusCode::OK.into_response()
}

async fn state_endpoint(State(state): State<AppState>) -> Response {
    read(&state, |m| m.view().state()).await
}

async fn frameworks(State(state): State<AppState>) -> Response {
    read(&state, |m| m.view().frameworks()).await
}

async fn slaves(State(state): State<AppState>) -> Response {
    read(&state, |m| m.view().slaves()).await
}

async fn tasks(State(state): State<AppState>) -> Response {
    read(&state, |m| m.view().tasks()).await
}

async fn redirect(State(state): State<AppState>) -> Response {
    let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("//{}", state.leader)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// `/marathon/...`: the web UI's way to the service scheduler (see `crate::ui`).
async fn marathon_proxy(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    ui::marathon_proxy(&state.ui, method, &uri, &headers, body).await
}

/// `/agent/{agent_id}/...`: one of an agent's read endpoints, for an agent this master knows.
async fn agent_endpoint(
    state: &AppState,
    agent_id: String,
    endpoint: AgentEndpoint,
    query: &BTreeMap<String, String>,
) -> Response {
    if !ui::valid_agent_id(&agent_id) {
        return ui::invalid_agent(&agent_id);
    }
    let id = agent_id.clone();
    let addr = match ask(state, |reply| Cmd::Read {
        f: Box::new(move |m: &Master| {
            let addr = ui::agent_address(&m.view().slaves(), &id);
            serde_json::json!(addr.map(|a| a.to_string()))
        }),
        reply,
    })
    .await
    {
        Ok(v) => v.as_str().and_then(|a| a.parse::<SocketAddr>().ok()),
        Err(r) => return r,
    };
    match addr {
        Some(addr) => ui::agent_proxy(&state.ui, addr, endpoint, query).await,
        None => ui::unknown_agent(&agent_id),
    }
}

async fn agent_state(State(state): State<AppState>, Path(agent_id): Path<String>) -> Response {
    agent_endpoint(&state, agent_id, AgentEndpoint::State, &BTreeMap::new()).await
}

async fn agent_files_browse(
    State(state): State<AppState>,
    Path(agent_id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    agent_endpoint(&state, agent_id, AgentEndpoint::FilesBrowse, &q).await
}

async fn agent_files_read(
    State(state): State<AppState>,
    Path(agent_id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    agent_endpoint(&state, agent_id, AgentEndpoint::FilesRead, &q).await
}
