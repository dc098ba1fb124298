//! `mantle dns`: a Mesos-DNS-compatible DNS server (hickory-server, UDP and TCP) and HTTP
//! API (axum), whose records follow the master's operator event stream.
//!
//! Three tasks share one `Records` value: the master link subscribes to `POST /api/v1`
//! (`SUBSCRIBE`), applies each event to a `mantle_dns::ClusterState`, regenerates the record
//! set after each batch of received bytes and swaps it in behind an `Arc`; the DNS handler
//! and the HTTP handlers read the current set. When the master goes away the link retries
//! with backoff (100 ms doubling to 5 s) and the last records keep being served.
//!
//! Names inside the domain are answered from the records; names outside it are forwarded
//! to `--resolvers` over UDP (at most `MAX_FORWARDS` at once), or REFUSED when there are none,
//! so the server is never an open resolver. Malformed packets are answered FORMERR by
//! hickory-server when their header parses and dropped otherwise; `ANY` is REFUSED.

use crate::http;
use anyhow::Context;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use mantle_api::operator::Event;
use mantle_api::recordio::Decoder;
use mantle_dns::{Applied, ClusterState, Config, QType, RecordSet, Zone};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

/// Forwarded queries in flight at once; more are answered SERVFAIL rather than queued.
pub const MAX_FORWARDS: usize = 64;
/// How long a forwarded query waits for an upstream answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle TCP client is disconnected after this long.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// Without any record (events or heartbeats) for this long, the master link reconnects
/// (three missed 15 s heartbeats).
const STREAM_IDLE: Duration = Duration::from_secs(45);
/// Largest operator event accepted from the master.
const MAX_EVENT_BYTES: usize = 64 << 20;

/// Options of `mantle dns`.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// The master's base URL (`http://127.0.0.1:5050`).
    pub master: String,
    pub listen: SocketAddr,
    pub http_listen: Option<SocketAddr>,
    pub config: Config,
}

/// The current record set and its generation (the SOA serial).
pub struct Snapshot {
    pub records: RecordSet,
    pub serial: u32,
}

/// The record set shared by the master link (writer) and the servers (readers).
#[derive(Clone)]
pub struct Records {
    current: Arc<RwLock<Arc<Snapshot>>>,
}

impl Records {
    fn new() -> Self {
        Records {
            current: Arc::new(RwLock::new(Arc::new(Snapshot {
                records: RecordSet::default(),
                serial: 1,
            }))),
        }
    }

    /// The current snapshot (cheap: one `Arc` clone).
    pub fn get(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, records: RecordSet) {
        let serial = self.get().serial.wrapping_add(1).max(1);
        let next = Arc::new(Snapshot { records, serial });
        match self.current.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
    }
}

/// The leader's address from a master URL such as `http://127.0.0.1:5050`.
pub fn leader_from_url(url: &str) -> Option<SocketAddr> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.split('/').next()?.parse().ok()
}

/// Runs the DNS server until `shutdown` resolves.
pub async fn run(
    o: DnsOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let udp = UdpSocket::bind(o.listen)
        .await
        .with_context(|| format!("cannot listen on udp {}", o.listen))?;
    let tcp = TcpListener::bind(o.listen)
        .await
        .with_context(|| format!("cannot listen on tcp {}", o.listen))?;
    let http_listener = match o.http_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?,
        ),
        None => None,
    };
    let config = Arc::new(o.config);
    let records = Records::new();
    tokio::spawn(master_link(
        o.master.clone(),
        config.clone(),
        records.clone(),
    ));
    let handler = Handler {
        records: records.clone(),
        config: config.clone(),
        forwards: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDS)),
        rotation: Arc::new(AtomicUsize::new(0)),
    };
    let mut server = ServerFuture::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_TIMEOUT);
    info!(dns = %o.listen, http = ?o.http_listen, domain = %config.domain, master = %o.master, "dns server started");
    let http = async move {
        match http_listener {
            Some(l) => axum::serve(crate::http::nodelay(l), router(records, config)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = server.block_until_done() => r.context("dns server failed")?,
        r = http => r.context("dns http api failed")?,
        _ = shutdown => info!("dns server stopping"),
    }
    Ok(())
}

/// Follows the master's operator event stream forever, reconnecting with backoff.
async fn master_link(master: String, config: Arc<Config>, records: Records) {
    let client = reqwest::Client::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        match follow(&client, &master, &config, &records).await {
            Ok(()) => {
                warn!(master = %master, "operator event stream ended; keeping the last records");
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                warn!(master = %master, error = %e, retry_in = ?backoff, "cannot follow the master; keeping the last records");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn follow(
    client: &reqwest::Client,
    master: &str,
    config: &Config,
    records: &Records,
) -> anyhow::Result<()> {
    let resp = client
        .post(format!("{master}/api/v1"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(r#"{"type":"SUBSCRIBE"}"#)
        .send()
        .await?;
    if !resp.status().is_success() {
        anyhow::bail!("SUBSCRIBE answered {}", resp.status());
    }
    let mut body = resp.bytes_stream();
    let mut decoder = Decoder::new(MAX_EVENT_BYTES);
    let mut state: Option<ClusterState> = None;
    loop {
        let chunk = match tokio::time::timeout(STREAM_IDLE, body.next()).await {
            Err(_) => anyhow::bail!("no event or heartbeat for {STREAM_IDLE:?}"),
            Ok(None) => return Ok(()),
            Ok(Some(chunk)) => chunk?,
        };
        decoder.feed(&chunk);
        let mut changed = false;
        while let Some(record) = decoder.next_record()? {
            let event: Event = match serde_json::from_slice(&record) {
                Ok(e) => e,
                Err(e) => {
                    warn!(error = %e, "undecodable operator event; skipped");
                    continue;
                }
            };
            match &mut state {
                Some(s) => changed |= s.apply(&event) == Applied::Changed,
                None => {
                    let Some(sub) = &event.subscribed else {
                        anyhow::bail!("the stream did not start with SUBSCRIBED");
                    };
                    state = Some(ClusterState::from_get_state(&sub.get_state));
                    info!("subscribed to the master's operator events");
                    changed = true;
                }
            }
        }
        if let (true, Some(s)) = (changed, &state) {
            let rs = mantle_dns::generate(s, config);
            debug!(
                records = rs.len(),
                tasks = s.tasks.len(),
                "records regenerated"
            );
            records.set(rs);
        }
    }
}

struct Handler {
    records: Records,
    config: Arc<Config>,
    forwards: Arc<tokio::sync::Semaphore>,
    rotation: Arc<AtomicUsize>,
}

fn qtype(t: RecordType) -> QType {
    match t {
        RecordType::A => QType::A,
        RecordType::AAAA => QType::Aaaa,
        RecordType::SRV => QType::Srv,
        RecordType::SOA => QType::Soa,
        RecordType::NS => QType::Ns,
        RecordType::ANY => QType::Any,
        other => QType::Other(u16::from(other)),
    }
}

fn rcode(r: mantle_dns::Rcode) -> ResponseCode {
    match r {
        mantle_dns::Rcode::NoError => ResponseCode::NoError,
        mantle_dns::Rcode::NxDomain => ResponseCode::NXDomain,
        mantle_dns::Rcode::Refused => ResponseCode::Refused,
    }
}

/// A pure record as a hickory record; `None` for a name hickory rejects (never expected,
/// as generated names are validated).
fn to_record(rr: &mantle_dns::Rr) -> Option<Record> {
    let name = Name::from_ascii(&rr.name).ok()?;
    let data = match &rr.data {
        mantle_dns::RData::A(ip) => RData::A(A(*ip)),
        mantle_dns::RData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        mantle_dns::RData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(
            *priority,
            *weight,
            *port,
            Name::from_ascii(target).ok()?,
        )),
        mantle_dns::RData::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => RData::SOA(SOA::new(
            Name::from_ascii(mname).ok()?,
            Name::from_ascii(rname).ok()?,
            *serial,
            *refresh,
            *retry,
            *expire,
            *minimum,
        )),
        mantle_dns::RData::Ns(n) => RData::NS(NS(Name::from_ascii(n).ok()?)),
    };
    Some(Record::from_rdata(name, rr.ttl, data))
}

impl Handler {
    async fn send<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        code: ResponseCode,
        sections: [&[Record]; 3],
    ) -> ResponseInfo {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(req_edns) = request.edns() {
            let mut edns = Edns::new();
            edns.set_max_payload(req_edns.max_payload().clamp(512, 1232));
            builder.edns(edns);
        }
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(code != ResponseCode::Refused);
        header.set_recursion_available(!self.config.resolvers.is_empty());
        header.set_response_code(code);
        let [answers, authority, additional] = sections;
        let msg = builder.build(
            header,
            answers.iter(),
            authority.iter(),
            std::iter::empty(),
            additional.iter(),
        );
        match response.send_response(msg).await {
            Ok(info) => info,
            Err(e) => {
                debug!(error = %e, "could not send a dns response");
                let mut h = Header::response_from_request(request.header());
                h.set_response_code(ResponseCode::ServFail);
                h.into()
            }
        }
    }

    async fn inside<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
        name: &str,
        t: RecordType,
    ) -> ResponseInfo {
        let snap = self.records.get();
        let a = mantle_dns::answer(&snap.records, &self.config, name, qtype(t), snap.serial);
        let mut answers: Vec<Record> = a.answers.iter().filter_map(to_record).collect();
        if answers.len() > 1 {
            // Round robin instead of Mesos-DNS's shuffle: same spreading, no RNG.
            let n = self.rotation.fetch_add(1, Ordering::Relaxed) % answers.len();
            answers.rotate_left(n);
        }
        let authority: Vec<Record> = a.authority.iter().filter_map(to_record).collect();
        let additional: Vec<Record> = a.additional.iter().filter_map(to_record).collect();
        self.send(
            request,
            response,
            rcode(a.rcode),
            [&answers, &authority, &additional],
        )
        .await
    }

    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
        query: Query,
    ) -> ResponseInfo {
        if self.config.resolvers.is_empty() {
            return self
                .send(request, response, ResponseCode::Refused, [&[], &[], &[]])
                .await;
        }
        let Ok(_permit) = self.forwards.clone().try_acquire_owned() else {
            debug!("too many forwarded queries in flight");
            return self
                .send(request, response, ResponseCode::ServFail, [&[], &[], &[]])
                .await;
        };
        for upstream in &self.config.resolvers {
            match forward_once(*upstream, query.clone(), request.recursion_desired()).await {
                Ok(reply) => {
                    return self
                        .send(
                            request,
                            response,
                            reply.response_code(),
                            [reply.answers(), reply.name_servers(), reply.additionals()],
                        )
                        .await;
                }
                Err(e) => debug!(upstream = %upstream, error = %e, "forwarding failed"),
            }
        }
        self.send(request, response, ResponseCode::ServFail, [&[], &[], &[]])
            .await
    }
}

/// Sends one question to an upstream resolver over UDP and waits for the matching answer.
async fn forward_once(
    upstream: SocketAddr,
    query: Query,
    recursion_desired: bool,
) -> anyhow::Result<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    let id: u16 = (uuid::Uuid::new_v4().as_u128() & 0xffff) as u16;
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(recursion_desired)
        .add_query(query.clone());
    socket.send(&msg.to_vec()?).await?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await??;
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if reply.id() == id && reply.queries().first() == Some(&query) {
            return Ok(reply);
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
            return self
                .send(request, response, ResponseCode::NotImp, [&[], &[], &[]])
                .await;
        }
        let queries = request.queries();
        let [q] = queries else {
            return self
                .send(request, response, ResponseCode::FormErr, [&[], &[], &[]])
                .await;
        };
        let name = mantle_dns::query::normalise(&q.name().to_string());
        let t = q.query_type();
        match mantle_dns::query::zone_of(&self.config, &name) {
            Zone::Inside => self.inside(request, response, &name, t).await,
            Zone::Outside if t == RecordType::ANY => {
                self.send(request, response, ResponseCode::Refused, [&[], &[], &[]])
                    .await
            }
            Zone::Outside => self.forward(request, response, q.original().clone()).await,
        }
    }
}

#[derive(Clone)]
struct Api {
    records: Records,
    config: Arc<Config>,
}

fn router(records: Records, config: Arc<Config>) -> Router {
    let api = Router::new()
        .route("/v1/version", get(version))
        .route("/v1/config", get(config_endpoint))
        .route("/v1/hosts/{host}", get(hosts))
        .route("/v1/services/{service}", get(services))
        .route("/v1/enumerate", get(enumerate));
    Router::new()
        .merge(api.clone())
        .nest("/mesos_dns", api)
        .route("/health", get(|| async { "ok" }))
        .fallback(http::not_found)
        .with_state(Api { records, config })
}

async fn version() -> Response {
    http::json(&serde_json::json!({
        "Service": "Mesos-DNS",
        "Version": "0.8.0",
        "URL": "https://github.com/mesosphere/mesos-dns",
        "MantleVersion": env!("CARGO_PKG_VERSION"),
    }))
}

async fn config_endpoint(State(api): State<Api>) -> Response {
    http::json(&api.config.to_json())
}

async fn hosts(State(api): State<Api>, Path(host): Path<String>) -> Response {
    http::json(&mantle_dns::query::hosts_json(
        &api.records.get().records,
        &host,
    ))
}

async fn services(State(api): State<Api>, Path(service): Path<String>) -> Response {
    http::json(&mantle_dns::query::services_json(
        &api.records.get().records,
        &service,
    ))
}

async fn enumerate(State(api): State<Api>) -> Response {
    http::json(&api.records.get().records.enumerate_json())
}
