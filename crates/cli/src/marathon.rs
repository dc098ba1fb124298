//! `mantle app`, `mantle deployment` and the Marathon side of `mantle task`: calls to the
//! service scheduler's Marathon REST API, and waiting for deployments with progress lines.

use crate::http::{app_path, encode_segment, Api, Reply};
use crate::progress::{self, Outcome};
use crate::{s, table};
use anyhow::Context;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// How long to wait between polls of a deployment, and for `task log --follow`.
pub const POLL: Duration = Duration::from_millis(500);

/// A client of the service scheduler's Marathon API.
pub struct Marathon {
    api: Api,
}

/// What a command that starts a deployment does after the server accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Show progress on `progress` until the deployment ends.
    Progress,
    /// Print the deployment id and return.
    Detach,
}

/// Reads an app definition: the file must exist and hold a JSON object.
pub fn read_app_file(path: &Path) -> anyhow::Result<Value> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
            .context("cannot read the app definition from stdin")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read app definition {}", path.display()))?
    };
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    if !v.is_object() {
        anyhow::bail!(
            "{} must hold a JSON object (an app definition), not {}",
            path.display(),
            kind(&v)
        );
    }
    Ok(v)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn pretty(v: &Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)?)
}

fn force_q(force: bool) -> &'static str {
    if force {
        "?force=true"
    } else {
        ""
    }
}

/// The canonical form of an app id as the server shows it: `prod/web/` -> `/prod/web`.
pub fn canonical_id(id: &str) -> String {
    let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segs.join("/"))
}

/// Whether a task id is one the service scheduler gave (`prod_web.instance-<uuid>._app.1`).
pub fn is_marathon_task_id(id: &str) -> bool {
    id.contains(".instance-") || id.contains(".marathon-")
}

impl Marathon {
    pub fn new(url: &str) -> anyhow::Result<Marathon> {
        Ok(Marathon {
            api: Api::new(
                url,
                "the service scheduler",
                "--marathon URL or the MANTLE_MARATHON environment variable",
            )?,
        })
    }

    async fn app_json(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let r = self.api.get(&format!("/v2/apps{}", app_path(id))).await?;
        if r.status == 404 {
            return Ok(None);
        }
        Ok(Some(r.into_ok()?["app"].clone()))
    }

    async fn deployments(&self) -> anyhow::Result<Value> {
        self.api.get("/v2/deployments").await?.into_ok()
    }

    /// `app add FILE`.
    pub async fn add(
        &self,
        file: &Path,
        wait: Wait,
        progress: &mut dyn Write,
    ) -> anyhow::Result<String> {
        let def = read_app_file(file)?;
        let r = self.api.call("POST", "/v2/apps", Some(&def)).await?;
        let deployment = r
            .deployment_id
            .clone()
            .or_else(|| r.body["deployments"][0]["id"].as_str().map(str::to_string));
        let body = r.into_ok()?;
        let app_id = s(&body["id"]);
        let version = body["version"].as_str().map(str::to_string);
        let Some(deployment) = deployment else {
            return Ok(format!("created {app_id}"));
        };
        self.follow(&deployment, &app_id, version.as_deref(), wait, progress)
            .await
    }

    /// Handles the answer of a call that started a deployment (`{"deploymentId", "version"}`).
    async fn started(
        &self,
        r: Reply,
        app_id: &str,
        wait: Wait,
        progress: &mut dyn Write,
    ) -> anyhow::Result<String> {
        let header = r.deployment_id.clone();
        let body = r.into_ok()?;
        let Some(id) = body["deploymentId"].as_str().map(str::to_string).or(header) else {
            anyhow::bail!("the service scheduler answered without a deployment id: {body}");
        };
        self.follow(&id, app_id, body["version"].as_str(), wait, progress)
            .await
    }

    async fn follow(
        &self,
        id: &str,
        app_id: &str,
        version: Option<&str>,
        wait: Wait,
        progress: &mut dyn Write,
    ) -> anyhow::Result<String> {
        match wait {
            Wait::Detach => Ok(id.to_string()),
            Wait::Progress => self.watch_known(id, app_id, version, progress).await,
        }
    }

    /// Polls until deployment `id` of `app_id` is over, writing a line to `progress` whenever
    /// the picture changes; the final line is returned (for stdout), or an error if the
    /// deployment was cancelled or overridden.
    async fn watch_known(
        &self,
        id: &str,
        app_id: &str,
        version: Option<&str>,
        out: &mut dyn Write,
    ) -> anyhow::Result<String> {
        let mut last = String::new();
        loop {
            let deployments = self.deployments().await?;
            let app = self.app_json(app_id).await?;
            let p = progress::progress(id, version, app_id, app.as_ref(), &deployments);
            match p.outcome {
                None => {
                    if p.line != last {
                        // Progress is best effort: a closed stderr must not stop the wait.
                        let _ = writeln!(out, "{}", p.line);
                        let _ = out.flush();
                        last = p.line;
                    }
                }
                Some(Outcome::Finished) | Some(Outcome::Removed) => {
                    return Ok(format!("deployment {id} finished: {}", p.line));
                }
                Some(Outcome::Superseded { .. }) => anyhow::bail!("{}", p.line),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `deployment watch ID`.
    pub async fn watch(&self, id: &str, progress: &mut dyn Write) -> anyhow::Result<String> {
        let deployments = self.deployments().await?;
        let Some(d) = deployments
            .as_array()
            .and_then(|l| l.iter().find(|d| d["id"] == id))
        else {
            anyhow::bail!(
                "deployment {id} is not running: it finished, was cancelled, or never existed (see mantle deployment list)"
            );
        };
        let Some(app_id) = d["affectedApps"][0].as_str().map(str::to_string) else {
            anyhow::bail!("deployment {id} affects no app: {d}");
        };
        let version = d["version"].as_str().map(str::to_string);
        self.watch_known(id, &app_id, version.as_deref(), progress)
            .await
    }

    /// `app list`.
    pub async fn list_apps(&self, json: bool) -> anyhow::Result<String> {
        let v = self.api.get("/v2/apps?embed=apps.tasks").await?.into_ok()?;
        let apps = v["apps"].as_array().cloned().unwrap_or_default();
        if json {
            return pretty(&Value::Array(apps));
        }
        let rows: Vec<Vec<String>> = apps
            .iter()
            .map(|a| {
                let id = s(&a["id"]);
                let (ready, _, checks) = progress::counts(a);
                let deploying = a["deployments"].as_array().is_some_and(|d| !d.is_empty());
                vec![
                    id,
                    format!("{}/{}", s(&a["tasksRunning"]), s(&a["instances"])),
                    if checks {
                        format!("{}", a["tasksHealthy"].as_u64().unwrap_or(ready as u64))
                    } else {
                        "-".into()
                    },
                    s(&a["cpus"]),
                    s(&a["mem"]),
                    if deploying { "yes" } else { "no" }.into(),
                    s(&a["cmd"]),
                ]
            })
            .collect();
        Ok(table(
            &[
                "ID",
                "RUNNING",
                "HEALTHY",
                "CPUS",
                "MEM",
                "DEPLOYING",
                "CMD",
            ],
            &rows,
        ))
    }

    /// `app show ID`.
    pub async fn show(&self, id: &str, json: bool) -> anyhow::Result<String> {
        let app = self
            .api
            .get(&format!("/v2/apps{}", app_path(id)))
            .await?
            .into_ok()?["app"]
            .clone();
        if json {
            return pretty(&app);
        }
        let app_id = s(&app["id"]);
        let deployments: Vec<String> = app["deployments"]
            .as_array()
            .map(|l| l.iter().map(|d| s(&d["id"])).collect())
            .unwrap_or_default();
        let mut out = vec![
            format!("id:          {app_id}"),
            format!("version:     {}", s(&app["version"])),
            format!("cmd:         {}", s(&app["cmd"])),
            format!(
                "resources:   cpus {} mem {} disk {}",
                s(&app["cpus"]),
                s(&app["mem"]),
                s(&app["disk"])
            ),
            format!("instances:   {}", progress::app_line(&app_id, &app)),
            format!(
                "deployments: {}",
                if deployments.is_empty() {
                    "none".to_string()
                } else {
                    deployments.join(", ")
                }
            ),
        ];
        out.push(String::new());
        out.push(tasks_table(
            app["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]),
        ));
        Ok(out.join("\n"))
    }

    /// `app update ID FILE`.
    pub async fn update(
        &self,
        id: &str,
        file: &Path,
        force: bool,
        wait: Wait,
        progress: &mut dyn Write,
    ) -> anyhow::Result<String> {
        let def = read_app_file(file)?;
        self.put(id, &def, force, wait, progress).await
    }

    async fn put(
        &self,
        id: &str,
        body: &Value,
        force: bool,
        wait: Wait,
        progress: &mut dyn Write,
    ) -> anyhow::Result<String> {
        let r = self
            .api
            .call(
                "PUT",
                &format!("/v2/apps{}{}", app_path(id), force_q(force)),
                Some(body),
            )
            .await?;
        self.started(r, &canonical_id(id), wait, progress).await
    }

    /// `app scale ID N`.
    pub async fn scale(
        &self,
        id: &str,
        instances: u32,
        force: bool,
        wait: Wait,
        progress: &mut dyn Write,
    ) -> anyhow::Result<String> {
        // PUT creates unknown apps; scaling one is a mistake, not a create.
        if self.app_json(id).await?.is_none() {
            anyhow::bail!("not found: App '{}' does not exist", canonical_id(id));
        }
        self.put(
            id,
            &json!({ "instances": instances }),
            force,
            wait,
            progress,
        )
        .await
    }

    /// `app rollback ID VERSION`: the server restores that version's definition.
    pub async fn rollback(
        &self,
        id: &str,
        version: &str,
        force: bool,
        wait: Wait,
        progress: &mut dyn Write,
    ) -> anyhow::Result<String> {
        // A rollback never creates an app: PUT would create one from `{"version": ..}`.
        if self.app_json(id).await?.is_none() {
            anyhow::bail!("not found: App '{}' does not exist", canonical_id(id));
        }
        self.put(id, &json!({ "version": version }), force, wait, progress)
            .await
    }

    /// `app restart ID`.
    pub async fn restart(
        &self,
        id: &str,
        force: bool,
        wait: Wait,
        progress: &mut dyn Write,
    ) -> anyhow::Result<String> {
        let r = self
            .api
            .call(
                "POST",
                &format!("/v2/apps{}/restart{}", app_path(id), force_q(force)),
                None,
            )
            .await?;
        self.started(r, &canonical_id(id), wait, progress).await
    }

    /// `app remove ID`.
    pub async fn remove(
        &self,
        id: &str,
        force: bool,
        wait: Wait,
        progress: &mut dyn Write,
    ) -> anyhow::Result<String> {
        // The server's DELETE defaults to force=true; the CLI forces only when asked.
        let r = self
            .api
            .call(
                "DELETE",
                &format!("/v2/apps{}?force={force}", app_path(id)),
                None,
            )
            .await?;
        self.started(r, &canonical_id(id), wait, progress).await
    }

    /// `app versions ID`, newest first.
    pub async fn versions(&self, id: &str, json: bool) -> anyhow::Result<String> {
        let v = self
            .api
            .get(&format!("/v2/apps{}/versions", app_path(id)))
            .await?
            .into_ok()?;
        if json {
            return pretty(&v["versions"]);
        }
        let list: Vec<String> = v["versions"]
            .as_array()
            .map(|l| l.iter().map(s).collect())
            .unwrap_or_default();
        Ok(list.join("\n"))
    }

    /// `deployment list`.
    pub async fn list_deployments(&self, json: bool) -> anyhow::Result<String> {
        let v = self.deployments().await?;
        if json {
            return pretty(&v);
        }
        let rows: Vec<Vec<String>> = v
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|d| {
                let join = |key: &str, field: Option<&str>| -> String {
                    d[key]
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .map(|x| s(field.map_or(x, |f| &x[f])))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default()
                };
                vec![
                    s(&d["id"]),
                    join("affectedApps", None),
                    join("currentActions", Some("action")),
                    format!("{}/{}", s(&d["currentStep"]), s(&d["totalSteps"])),
                    s(&d["version"]),
                ]
            })
            .collect();
        Ok(table(&["ID", "APPS", "ACTIONS", "STEP", "VERSION"], &rows))
    }

    /// `deployment cancel ID`: the server rolls back with a new deployment, which is
    /// watched like any other; with `force` the deployment just stops where it is.
    pub async fn cancel(
        &self,
        id: &str,
        force: bool,
        wait: Wait,
        progress: &mut dyn Write,
    ) -> anyhow::Result<String> {
        let deployments = self.deployments().await?;
        let app_id = deployments
            .as_array()
            .and_then(|l| l.iter().find(|d| d["id"] == id))
            .and_then(|d| d["affectedApps"][0].as_str())
            .map(str::to_string);
        let r = self
            .api
            .call(
                "DELETE",
                &format!("/v2/deployments/{}{}", encode_segment(id), force_q(force)),
                None,
            )
            .await?;
        if r.status == 404 {
            anyhow::bail!(
                "deployment {id} is not running: it finished, was cancelled, or never existed (see mantle deployment list)"
            );
        }
        if r.status == 202 || force {
            r.into_ok()?;
            return Ok(format!("cancelled deployment {id} without rollback"));
        }
        let Some(app_id) = app_id else {
            r.into_ok()?;
            return Ok(format!("cancelled deployment {id}"));
        };
        let rollback = self.started(r, &app_id, wait, progress).await?;
        Ok(match wait {
            Wait::Detach => rollback,
            Wait::Progress => format!("cancelled deployment {id}; rolled back: {rollback}"),
        })
    }

    /// `task list --app ID`.
    pub async fn list_tasks(&self, app: &str, json: bool) -> anyhow::Result<String> {
        let v = self
            .api
            .get(&format!("/v2/apps{}/tasks", app_path(app)))
            .await?
            .into_ok()?;
        let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
        if json {
            return pretty(&Value::Array(tasks));
        }
        Ok(tasks_table(&tasks))
    }

    /// `task kill ID`: the task is replaced, or with `scale` the app shrinks by one.
    pub async fn kill_task(
        &self,
        id: &str,
        scale: bool,
        wipe: bool,
        wait: Wait,
        progress: &mut dyn Write,
    ) -> anyhow::Result<String> {
        let r = self
            .api
            .call(
                "POST",
                &format!("/v2/tasks/delete?scale={scale}&wipe={wipe}"),
                Some(&json!({ "ids": [id] })),
            )
            .await?;
        if !scale {
            let body = r.into_ok()?;
            let killed = body["tasks"].as_array().map_or(0, Vec::len);
            if killed == 0 {
                anyhow::bail!(
                    "not found: task {id} is not a live task of the service scheduler (see mantle task list --app ID)"
                );
            }
            return Ok(format!("killed {id}"));
        }
        if r.ok() && r.body["deploymentId"].is_null() {
            anyhow::bail!(
                "not found: task {id} is not a live task of the service scheduler (see mantle task list --app ID)"
            );
        }
        let app_id = app_of_task(id).unwrap_or_default();
        self.started(r, &app_id, wait, progress).await
    }
}

/// The app id of a Marathon task id (`prod_web.instance-...` -> `/prod/web`); app ids never
/// contain `_`, so the mapping is unambiguous.
pub fn app_of_task(task_id: &str) -> Option<String> {
    let end = task_id
        .find(".instance-")
        .or_else(|| task_id.find(".marathon-"))?;
    Some(format!("/{}", task_id[..end].replace('_', "/")))
}

fn tasks_table(tasks: &[Value]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let health = match t["healthCheckResults"].as_array() {
                Some(r) if !r.is_empty() => {
                    if r.iter().all(|h| h["alive"] == true) {
                        "healthy"
                    } else {
                        "unhealthy"
                    }
                }
                _ => "-",
            };
            let ports: Vec<String> = t["ports"]
                .as_array()
                .map(|p| p.iter().map(s).collect())
                .unwrap_or_default();
            vec![
                s(&t["id"]),
                s(&t["host"]),
                ports.join(","),
                s(&t["state"]),
                health.into(),
                s(&t["version"]),
            ]
        })
        .collect();
    table(
        &["ID", "HOST", "PORTS", "STATE", "HEALTH", "VERSION"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_map_to_apps() {
        assert_eq!(
            app_of_task("prod_web.instance-1234._app.1").as_deref(),
            Some("/prod/web")
        );
        assert_eq!(app_of_task("web.marathon-1").as_deref(), Some("/web"));
        assert_eq!(app_of_task("plain-task"), None);
        assert!(is_marathon_task_id("prod_web.instance-1._app.1"));
        assert!(!is_marathon_task_id("t1"));
    }

    #[test]
    fn app_files_must_be_json_objects() {
        let dir = std::env::temp_dir().join(format!("mantle-cli-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let bad = dir.join("bad.json");
        let _ = std::fs::write(&bad, "{\"id\": ");
        let e = read_app_file(&bad).err().map(|e| format!("{e:#}"));
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("is not valid JSON")),
            "{e:?}"
        );
        let arr = dir.join("arr.json");
        let _ = std::fs::write(&arr, "[]");
        let e = read_app_file(&arr).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("not an array")),
            "{e:?}"
        );
        let e = read_app_file(&dir.join("missing.json"))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.starts_with("cannot read app definition")),
            "{e:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
