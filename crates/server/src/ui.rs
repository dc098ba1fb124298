//! The web UI, served by the master: static assets embedded in the binary (`crates/server/ui`,
//! hand-written HTML, CSS and JavaScript with no build step), and two narrow proxies that let
//! the browser reach everything from the master's origin:
//!
//! - `/marathon/v2/...` goes to the service scheduler given by `mantle master --marathon-url`
//!   (any of GET, POST, PUT, PATCH and DELETE, with the query, body, `Content-Type` and
//!   `Accept`; answers are streamed, so the `/v2/events` SSE stream passes through live);
//! - `/agent/{agent_id}/state`, `/agent/{agent_id}/files/browse` and
//!   `/agent/{agent_id}/files/read` go to an agent the master knows, at the IP address and
//!   port it registered with, passing on only the `path`, `offset` and `length` parameters.
//!
//! Neither is an open proxy: the scheduler's address is fixed at start-up and only paths
//! under `/v2/` without `.`/`..` segments are forwarded; an agent is looked up by ID in the
//! master's state and only those three endpoints are reachable.

use crate::http;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_CSS: &str = include_str!("../ui/app.css");
const APP_JS: &str = include_str!("../ui/app.js");

/// The page's security policy: every asset and request comes from the master itself.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Longest a proxied request other than the event stream may take.
const PROXY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the master needs to serve the UI.
#[derive(Clone)]
pub struct Ui {
    marathon: Option<String>,
    client: reqwest::Client,
}

impl Ui {
    /// The UI with the service scheduler at `marathon_url` (see [`parse_marathon_url`]), or
    /// without one, in which case `/marathon/...` answers 503.
    pub fn new(marathon_url: Option<String>) -> anyhow::Result<Ui> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Ui {
            marathon: marathon_url,
            client,
        })
    }
}

/// Checks `--marathon-url`: an `http://` URL with a host and no query or fragment. Returns it
/// without a trailing slash, ready to have `/v2/...` appended.
pub fn parse_marathon_url(text: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| anyhow::anyhow!("--marathon-url {text:?} is not a URL: {e}"))?;
    if url.scheme() != "http" {
        anyhow::bail!("--marathon-url {text:?}: only http:// URLs are supported");
    }
    if url.host_str().is_none_or(str::is_empty) {
        anyhow::bail!("--marathon-url {text:?} has no host");
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        anyhow::bail!("--marathon-url {text:?} must not have a query, fragment or user");
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// An embedded asset by its path under `/ui/`: content type and body.
fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "app.css" => Some(("text/css; charset=utf-8", APP_CSS)),
        "index.html" => Some(("text/html; charset=utf-8", INDEX_HTML)),
        _ => None,
    }
}

fn asset_response(content_type: &'static str, body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load, so a new binary's UI is picked up at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// `GET /`: the single page.
pub async fn index() -> Response {
    asset_response("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/{name}`: a stylesheet or script.
pub async fn ui_asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match asset(&name) {
        Some((ct, body)) => asset_response(ct, body),
        None => http::error(StatusCode::NOT_FOUND, format!("No such UI asset: {name}")),
    }
}

/// The path and query to request from the service scheduler for a request to the master's
/// `path` (which starts with `/marathon`), or why it is refused. Only `/v2/...` is
/// forwarded, and no segment may decode to `.`, `..` or anything holding a slash, backslash
/// or NUL, so a request cannot leave the scheduler's API.
pub fn marathon_target(path: &str, query: Option<&str>) -> Result<String, &'static str> {
    let Some(rest) = path.strip_prefix("/marathon/") else {
        return Err("only /marathon/v2/... is forwarded to the service scheduler");
    };
    if rest != "v2" && !rest.starts_with("v2/") {
        return Err("only /marathon/v2/... is forwarded to the service scheduler");
    }
    for seg in rest.split('/') {
        let Ok(decoded) = percent_encoding::percent_decode_str(seg).decode_utf8() else {
            return Err("path segments must be UTF-8");
        };
        if decoded == "." || decoded == ".." {
            return Err("'.' and '..' segments are not forwarded");
        }
        if decoded.contains(['/', '\\', '\0']) {
            return Err("encoded '/', '\\' or NUL in a path segment is not forwarded");
        }
    }
    let mut target = format!("/{rest}");
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        target.push('?');
        target.push_str(q);
    }
    Ok(target)
}

/// Whether `id` may name an agent in `/agent/{id}/...`: Mesos's ID rules (no `/`, `\`, `.`,
/// `..`, whitespace or control characters).
pub fn valid_agent_id(id: &str) -> bool {
    mantle_model::validate_id(id).is_ok()
}

/// `/marathon/...`: forwards the request to the service scheduler and streams its answer.
pub async fn marathon_proxy(
    ui: &Ui,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if !matches!(
        method,
        Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        let mut r = http::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not forwarded to the service scheduler"),
        );
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
        );
        return r;
    }
    let target = match marathon_target(uri.path(), uri.query()) {
        Ok(t) => t,
        Err(why) => return http::error(StatusCode::NOT_FOUND, why),
    };
    let Some(base) = &ui.marathon else {
        return http::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "This master has no service scheduler to forward /marathon/ requests to: start it \
             with --marathon-url http://HOST:PORT (mantle local does so)",
        );
    };
    let streaming = uri.path().trim_end_matches('/').ends_with("/v2/events");
    let mut req = ui.client.request(method, format!("{base}{target}"));
    for name in [header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name, v.clone());
        }
    }
    if !streaming {
        req = req.timeout(PROXY_TIMEOUT);
    }
    let resp = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return http::error(
                StatusCode::BAD_GATEWAY,
                format!("The service scheduler at {base} did not answer: {e}"),
            )
        }
    };
    let status = resp.status();
    let mut out = Response::new(Body::empty());
    *out.status_mut() = status;
    copy_headers(
        resp.headers(),
        out.headers_mut(),
        &[
            header::CONTENT_TYPE,
            header::CACHE_CONTROL,
            HeaderName::from_static("marathon-deployment-id"),
        ],
    );
    if let Some(loc) = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
    {
        if loc.starts_with('/') {
            if let Ok(v) = HeaderValue::from_str(&format!("/marathon{loc}")) {
                out.headers_mut().insert(header::LOCATION, v);
            }
        }
    }
    if streaming {
        // Nothing in between may hold SSE records back.
        out.headers_mut()
            .insert("X-Accel-Buffering", HeaderValue::from_static("no"));
    }
    *out.body_mut() = Body::from_stream(resp.bytes_stream());
    out
}

fn copy_headers(from: &reqwest::header::HeaderMap, to: &mut HeaderMap, names: &[HeaderName]) {
    for name in names {
        if let Some(v) = from.get(name.as_str()) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                to.insert(name.clone(), v);
            }
        }
    }
}

/// The agent endpoints reachable through `/agent/{agent_id}/...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEndpoint {
    State,
    FilesBrowse,
    FilesRead,
}

impl AgentEndpoint {
    fn path(self) -> &'static str {
        match self {
            AgentEndpoint::State => "/state",
            AgentEndpoint::FilesBrowse => "/files/browse",
            AgentEndpoint::FilesRead => "/files/read",
        }
    }

    /// The query parameters passed on to the agent.
    fn params(self) -> &'static [&'static str] {
        match self {
            AgentEndpoint::State => &[],
            AgentEndpoint::FilesBrowse => &["path"],
            AgentEndpoint::FilesRead => &["path", "offset", "length"],
        }
    }
}

/// The agent's address from the master's `/master/slaves` view: the agent with this ID, at
/// its registered hostname (which must be an IP literal; Mantle agents use their `--ip`) and
/// port.
pub fn agent_address(slaves: &serde_json::Value, agent_id: &str) -> Option<SocketAddr> {
    let agent = slaves["slaves"]
        .as_array()?
        .iter()
        .find(|a| a["id"].as_str() == Some(agent_id))?;
    let ip: IpAddr = agent["hostname"].as_str()?.parse().ok()?;
    let port = u16::try_from(agent["port"].as_u64()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Forwards a GET to one of the agent's read endpoints, passing on only its parameters.
pub async fn agent_proxy(
    ui: &Ui,
    addr: SocketAddr,
    endpoint: AgentEndpoint,
    query: &BTreeMap<String, String>,
) -> Response {
    let params: Vec<(&str, &str)> = endpoint
        .params()
        .iter()
        .filter_map(|k| query.get(*k).map(|v| (*k, v.as_str())))
        .collect();
    let mut url = format!("http://{addr}{}", endpoint.path());
    if !params.is_empty() {
        match serde_urlencoded::to_string(&params) {
            Ok(q) => {
                url.push('?');
                url.push_str(&q);
            }
            Err(e) => return http::error(StatusCode::BAD_REQUEST, format!("bad query: {e}")),
        }
    }
    let resp = match ui.client.get(&url).timeout(PROXY_TIMEOUT).send().await {
        Ok(r) => r,
        Err(e) => {
            return http::error(
                StatusCode::BAD_GATEWAY,
                format!("The agent at {addr} did not answer: {e}"),
            )
        }
    };
    let status = resp.status();
    let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
    match resp.bytes().await {
        Ok(bytes) => {
            let mut out = Response::new(Body::from(bytes));
            *out.status_mut() = status;
            if let Some(ct) = ct.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
                out.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            out
        }
        Err(e) => http::error(
            StatusCode::BAD_GATEWAY,
            format!("The agent at {addr} broke off its answer: {e}"),
        ),
    }
}

/// 404 for an agent ID the master does not know (or that cannot be one).
pub fn unknown_agent(id: &str) -> Response {
    http::error(
        StatusCode::NOT_FOUND,
        format!("No agent with ID {id:?} is known to this master"),
    )
}

/// 400 for a request to the master whose agent ID breaks the ID rules.
pub fn invalid_agent(id: &str) -> Response {
    http::error(
        StatusCode::BAD_REQUEST,
        format!("{id:?} is not a valid agent ID"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marathon_paths_stay_under_v2() {
        assert_eq!(
            marathon_target("/marathon/v2/apps", None),
            Ok("/v2/apps".into())
        );
        assert_eq!(
            marathon_target("/marathon/v2/apps/prod/web", Some("embed=apps.tasks")),
            Ok("/v2/apps/prod/web?embed=apps.tasks".into())
        );
        assert_eq!(marathon_target("/marathon/v2", Some("")), Ok("/v2".into()));
        assert_eq!(
            marathon_target("/marathon/v2/apps/%20x", None),
            Ok("/v2/apps/%20x".into())
        );
        for bad in [
            "/marathon",
            "/marathon/",
            "/marathon/ping",
            "/marathon/v2x/apps",
            "/marathon/../master/state",
            "/marathon/v2/../../master/state",
            "/marathon/v2/apps/..",
            "/marathon/v2/./apps",
            "/marathon/v2/%2e%2e/x",
            "/marathon/v2/%2E./x",
            "/marathon/v2/apps/a%2Fb",
            "/marathon/v2/apps/a%5cb",
            "/marathon/v2/apps/a%00b",
            "/marathon/v2/apps/%ff",
            "/marathonv2/apps",
            "/master/state",
        ] {
            assert!(marathon_target(bad, None).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn agent_ids_follow_the_id_rules() {
        assert!(valid_agent_id("4c3b-S0"));
        for bad in ["", ".", "..", "a/b", "a\\b", "a b", "a\0b", "a\nb"] {
            assert!(!valid_agent_id(bad), "{bad:?} must be refused");
        }
    }

    #[test]
    fn agent_address_needs_a_known_id_and_an_ip_literal() {
        let slaves = serde_json::json!({"slaves": [
            {"id": "m-S0", "hostname": "127.0.0.2", "port": 5051},
            {"id": "m-S1", "hostname": "evil.example", "port": 5051},
            {"id": "m-S2", "hostname": "127.0.0.4", "port": 70000},
        ]});
        assert_eq!(
            agent_address(&slaves, "m-S0"),
            Some("127.0.0.2:5051".parse().expect("an address"))
        );
        assert_eq!(agent_address(&slaves, "m-S1"), None);
        assert_eq!(agent_address(&slaves, "m-S2"), None);
        assert_eq!(agent_address(&slaves, "m-S9"), None);
    }

    #[test]
    fn marathon_url_must_be_plain_http() {
        assert_eq!(
            parse_marathon_url("http://127.0.0.1:8080/").ok(),
            Some("http://127.0.0.1:8080".into())
        );
        assert!(parse_marathon_url("127.0.0.1:8080").is_err());
        assert!(parse_marathon_url("https://127.0.0.1:8080").is_err());
        assert!(parse_marathon_url("http://127.0.0.1:8080/?a=b").is_err());
        assert!(parse_marathon_url("file:///etc/passwd").is_err());
    }

    #[test]
    fn assets_have_their_content_types() {
        assert_eq!(
            asset("app.js").map(|a| a.0),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            asset("app.css").map(|a| a.0),
            Some("text/css; charset=utf-8")
        );
        assert!(asset("../master.rs").is_none());
        assert!(INDEX_HTML.contains("/ui/app.js"));
    }
}
