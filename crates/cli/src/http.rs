//! A small JSON-over-HTTP client for the daemons' APIs, with the error messages the CLI
//! prints: who could not be reached and how to point the CLI elsewhere, Marathon's 422
//! violations one per line, 404 and 409 with their messages.

use anyhow::Context;
use serde_json::Value;
use std::time::Duration;

/// One API endpoint (a base URL) and how the user chooses another one.
#[derive(Clone)]
pub(crate) struct Api {
    base: String,
    /// "the service scheduler", "the master", ...
    what: &'static str,
    /// How to point the CLI elsewhere: "--marathon URL or MANTLE_MARATHON".
    hint: &'static str,
    client: reqwest::Client,
}

/// A response whose body was read (JSON, or the raw text as a JSON string).
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub deployment_id: Option<String>,
    pub method: &'static str,
    pub url: String,
}

impl Reply {
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body of a 2xx answer, or the error the CLI prints for any other answer.
    pub(crate) fn into_ok(self) -> anyhow::Result<Value> {
        if self.ok() {
            Ok(self.body)
        } else {
            Err(anyhow::anyhow!(
                "{}",
                error_message(self.method, &self.url, self.status, &self.body)
            ))
        }
    }
}

impl Api {
    pub(crate) fn new(base: &str, what: &'static str, hint: &'static str) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            what,
            hint,
            client,
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.call("GET", path, None).await
    }

    /// Sends a request; any HTTP status is `Ok`, only transport failures are errors.
    pub(crate) async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let url = format!("{}{path}", self.base);
        let m = match method {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "DELETE" => reqwest::Method::DELETE,
            other => anyhow::bail!("unsupported method {other}"),
        };
        let mut req = self.client.request(m, &url);
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach {} at {}: {}\nIs it running? Point the CLI at it with {}.",
                self.what,
                self.base,
                root_cause(&e),
                self.hint
            )
        })?;
        let status = resp.status().as_u16();
        let deployment_id = resp
            .headers()
            .get("Marathon-Deployment-Id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp
            .text()
            .await
            .with_context(|| format!("{method} {url}: the answer was cut off"))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Reply {
            status,
            body,
            deployment_id,
            method,
            url,
        })
    }
}

/// The innermost error of a chain (reqwest's own message is just "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if cur.to_string().is_empty() {
        e.to_string()
    } else {
        cur.to_string()
    }
}

/// Percent-encodes one path segment (app ids are `[a-z0-9.-]`, but users type anything).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/prod/web`, `prod/web/` -> `/prod/web` as URL path segments, each percent-encoded.
pub(crate) fn app_path(id: &str) -> String {
    let segs: Vec<String> = id
        .split('/')
        .filter(|s| !s.is_empty())
        .map(encode_segment)
        .collect();
    format!("/{}", segs.join("/"))
}

/// The message printed for a non-2xx answer. Marathon's bodies are
/// `{"message": .., "details": [{"path": .., "errors": [..]}]}` (422) or `{"message": ..}`.
pub fn error_message(method: &str, url: &str, status: u16, body: &Value) -> String {
    let message = match body {
        Value::Object(_) => body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string()),
        Value::String(s) => s.trim().to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match status {
        422 => {
            let mut out = format!("the app definition is invalid: {message}");
            if let Some(details) = body["details"].as_array() {
                for d in details {
                    let path = d["path"].as_str().unwrap_or("/");
                    let errors: Vec<String> = match &d["errors"] {
                        Value::Array(list) => list
                            .iter()
                            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                            .collect(),
                        Value::String(s) => vec![s.clone()],
                        _ => vec![],
                    };
                    if errors.is_empty() {
                        out.push_str(&format!("\n  {path}: invalid"));
                    }
                    for e in errors {
                        out.push_str(&format!("\n  {path}: {e}"));
                    }
                }
            }
            out
        }
        404 if !message.is_empty() => format!("not found: {message}"),
        409 => {
            let ids: Vec<&str> = body["deployments"]
                .as_array()
                .map(|l| l.iter().filter_map(|d| d["id"].as_str()).collect())
                .unwrap_or_default();
            let mut out = if ids.is_empty() {
                format!("conflict: {message}")
            } else {
                format!(
                    "the app is locked by deployment {} ({message})",
                    ids.join(", ")
                )
            };
            out.push_str(
                "\nWait for it (mantle deployment watch ID), cancel it (mantle deployment cancel ID), \
                 or re-run with --force to override it.",
            );
            out
        }
        400 => {
            let details = match &body["details"] {
                Value::Null => String::new(),
                Value::String(s) => format!(": {s}"),
                other => format!(": {other}"),
            };
            format!("the request was refused (400 Bad Request): {message}{details}")
        }
        _ => format!("{method} {url} answered {status}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_are_listed_one_per_line() {
        let body = json!({"message": "Object is not valid", "details": [
            {"path": "/cpus", "errors": ["error.min", "must be positive"]},
            {"path": "/id", "errors": ["bad id"]}]});
        let m = error_message("POST", "http://x/v2/apps", 422, &body);
        assert_eq!(
            m,
            "the app definition is invalid: Object is not valid\n  /cpus: error.min\n  /cpus: must be positive\n  /id: bad id"
        );
    }

    #[test]
    fn conflicts_name_the_deployment_and_suggest_force() {
        let body = json!({"message": "App is locked", "deployments": [{"id": "d1"}]});
        let m = error_message("PUT", "u", 409, &body);
        assert!(m.starts_with("the app is locked by deployment d1"), "{m}");
        assert!(m.contains("--force"), "{m}");
    }

    #[test]
    fn not_found_and_other_statuses() {
        let m = error_message(
            "GET",
            "u",
            404,
            &json!({"message": "App '/x' does not exist"}),
        );
        assert_eq!(m, "not found: App '/x' does not exist");
        let m = error_message("GET", "http://h/p", 503, &json!("scheduler is stopping"));
        assert_eq!(m, "GET http://h/p answered 503: scheduler is stopping");
    }

    #[test]
    fn app_paths_are_normalised_and_encoded() {
        assert_eq!(app_path("prod/web/"), "/prod/web");
        assert_eq!(app_path("/a b?"), "/a%20b%3F");
    }
}
