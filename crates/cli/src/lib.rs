//! Client commands: `mantle agent list`, `mantle framework list` and `mantle task list`
//! read the master's state; `mantle app`, `mantle deployment` and `mantle task list --app`/
//! `kill` drive the service scheduler's Marathon API (`marathon`), with deployment progress
//! decided purely in `progress`; `mantle task log` reads a sandbox through the agent
//! (`tasklog`). Listings print tables or, with `--json`, JSON for scripts.

use anyhow::Context;
use serde_json::Value;

mod http;
pub mod marathon;
pub mod progress;
pub mod tasklog;

pub use http::error_message;

/// What to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Agents,
    Frameworks,
    Tasks,
}

async fn get(master: &str, path: &str) -> anyhow::Result<Value> {
    let base = master.trim_end_matches('/');
    let url = format!("{base}{path}");
    let resp = reqwest::get(&url).await.with_context(|| {
        format!("cannot reach the master at {base}; is it running? (set --master URL)")
    })?;
    if !resp.status().is_success() {
        anyhow::bail!("{url} answered {}", resp.status());
    }
    resp.json()
        .await
        .with_context(|| format!("{url} did not return JSON"))
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn res(v: &Value) -> String {
    format!(
        "cpus {} mem {} disk {}",
        s(&v["cpus"]),
        s(&v["mem"]),
        s(&v["disk"])
    )
}

/// Renders rows as an aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// Fetches and renders a listing; returns the text to print.
pub async fn list(master: &str, what: Listing, json: bool) -> anyhow::Result<String> {
    match what {
        Listing::Agents => {
            let v = get(master, "/master/slaves").await?;
            if json {
                return Ok(serde_json::to_string_pretty(&v["slaves"])?);
            }
            let rows: Vec<Vec<String>> = v["slaves"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|a| {
                    vec![
                        s(&a["id"]),
                        format!("{}:{}", s(&a["hostname"]), s(&a["port"])),
                        if a["active"].as_bool() == Some(true) {
                            "active".into()
                        } else {
                            "disconnected".into()
                        },
                        res(&a["resources"]),
                        res(&a["used_resources"]),
                    ]
                })
                .collect();
            Ok(table(&["ID", "ADDRESS", "STATUS", "TOTAL", "USED"], &rows))
        }
        Listing::Frameworks => {
            let v = get(master, "/master/frameworks").await?;
            if json {
                return Ok(serde_json::to_string_pretty(&v["frameworks"])?);
            }
            let rows: Vec<Vec<String>> = v["frameworks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    vec![
                        s(&f["id"]),
                        s(&f["name"]),
                        if f["connected"].as_bool() == Some(true) {
                            "connected".into()
                        } else {
                            "disconnected".into()
                        },
                        f["tasks"].as_array().map_or(0, |t| t.len()).to_string(),
                        res(&f["used_resources"]),
                    ]
                })
                .collect();
            Ok(table(&["ID", "NAME", "STATUS", "TASKS", "USED"], &rows))
        }
        Listing::Tasks => {
            let v = get(master, "/master/tasks").await?;
            if json {
                return Ok(serde_json::to_string_pretty(&v["tasks"])?);
            }
            let rows: Vec<Vec<String>> = v["tasks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    vec![
                        s(&t["id"]),
                        s(&t["name"]),
                        s(&t["state"]),
                        s(&t["framework_id"]),
                        s(&t["slave_id"]),
                        res(&t["resources"]),
                    ]
                })
                .collect();
            Ok(table(
                &["ID", "NAME", "STATE", "FRAMEWORK", "AGENT", "RESOURCES"],
                &rows,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["a".into(), "web".into()],
                vec!["long-id".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID       NAME\na        web\nlong-id  x");
    }
}
