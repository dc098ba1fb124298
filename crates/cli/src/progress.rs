//! Deployment progress, decided purely from what the service scheduler shows: the app (with
//! its embedded tasks, or `None` once it is gone) and `/v2/deployments`.

use serde_json::Value;

/// How a watched deployment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The app reached the deployment's target.
    Finished,
    /// The app no longer exists (the end of a removal).
    Removed,
    /// The deployment is gone but the app is at another version: it was cancelled (and
    /// rolled back) or overridden by a newer change. `by` names running deployments of the app.
    Superseded { version: String, by: Vec<String> },
}

/// One observation: the line to show and, once the deployment is over, how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub line: String,
    pub outcome: Option<Outcome>,
}

/// Instances of the app's current config that are running (and healthy, when the app has
/// health checks), instances of older configs still alive, and whether health is counted.
pub fn counts(app: &Value) -> (usize, usize, bool) {
    let has_checks = app["healthChecks"]
        .as_array()
        .is_some_and(|h| !h.is_empty());
    let cfg = app["versionInfo"]["lastConfigChangeAt"]
        .as_str()
        .or_else(|| app["version"].as_str())
        .unwrap_or("");
    let mut ready = 0;
    let mut old = 0;
    for t in app["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        // Versions are ISO-8601 timestamps of one format, so text order is time order: a task
        // launched from a version at or after the last config change runs the current config.
        let current = t["version"].as_str().unwrap_or("") >= cfg;
        if !current {
            old += 1;
            continue;
        }
        let running = t["state"] == "TASK_RUNNING";
        let healthy = !has_checks
            || t["healthCheckResults"]
                .as_array()
                .is_some_and(|r| !r.is_empty() && r.iter().all(|h| h["alive"] == true));
        if running && healthy {
            ready += 1;
        }
    }
    (ready, old, has_checks)
}

/// The state line of an app: `/prod/web: 3/5 healthy` (`running` without health checks),
/// with `, 2 old` while instances of an older config remain.
pub fn app_line(app_id: &str, app: &Value) -> String {
    let (ready, old, checks) = counts(app);
    let target = app["instances"].as_u64().unwrap_or(0);
    let word = if checks { "healthy" } else { "running" };
    let mut line = format!("{app_id}: {ready}/{target} {word}");
    if old > 0 {
        line.push_str(&format!(", {old} old"));
    }
    if ready as u64 > target {
        line.push_str(&format!(", {} to stop", ready as u64 - target));
    }
    line
}

/// Decides what to show for deployment `id` of `app_id`. `version` is the version the
/// deployment deploys, when known; `app` is the app's JSON (`None` after a 404);
/// `deployments` is the `/v2/deployments` array.
pub fn progress(
    id: &str,
    version: Option<&str>,
    app_id: &str,
    app: Option<&Value>,
    deployments: &Value,
) -> Progress {
    let list = deployments.as_array().map(Vec::as_slice).unwrap_or(&[]);
    let this = list.iter().find(|d| d["id"] == id);
    let stopping = this.is_some_and(|d| {
        d["currentActions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["action"] == "StopApplication"))
    });
    match (this, app) {
        (Some(_), None) => Progress {
            line: format!("deploying {app_id}: waiting for the app"),
            outcome: None,
        },
        (Some(_), Some(app)) if stopping => {
            let left = app["tasks"].as_array().map_or(0, Vec::len);
            Progress {
                line: format!("removing {app_id}: {left} tasks left"),
                outcome: None,
            }
        }
        (Some(_), Some(app)) => Progress {
            line: format!("deploying {}", app_line(app_id, app)),
            outcome: None,
        },
        (None, None) => Progress {
            line: format!("removed {app_id}"),
            outcome: Some(Outcome::Removed),
        },
        (None, Some(app)) => {
            let now = app["version"].as_str().unwrap_or("");
            if version.is_some_and(|v| v != now) {
                let by: Vec<String> = list
                    .iter()
                    .filter(|d| {
                        d["affectedApps"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|x| x == app_id))
                    })
                    .filter_map(|d| d["id"].as_str().map(str::to_string))
                    .collect();
                let mut line = format!(
                    "deployment {id} did not finish: {app_id} is now at version {now} (the deployment was cancelled or overridden)"
                );
                if !by.is_empty() {
                    line.push_str(&format!("; running now: {}", by.join(", ")));
                }
                Progress {
                    line,
                    outcome: Some(Outcome::Superseded {
                        version: now.to_string(),
                        by,
                    }),
                }
            } else {
                Progress {
                    line: format!("deployed {}", app_line(app_id, app)),
                    outcome: Some(Outcome::Finished),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(version: &str, state: &str, alive: Option<bool>) -> Value {
        let results = match alive {
            Some(a) => json!([{"alive": a}]),
            None => json!([]),
        };
        json!({"id": "t", "version": version, "state": state, "healthCheckResults": results})
    }

    fn app(tasks: Vec<Value>) -> Value {
        json!({"id": "/prod/web", "instances": 5, "version": "2024-01-01T00:00:05.000Z",
               "versionInfo": {"lastConfigChangeAt": "2024-01-01T00:00:03.000Z"},
               "healthChecks": [{"protocol": "HTTP"}], "tasks": tasks})
    }

    #[test]
    fn counts_healthy_instances_of_the_current_config() {
        let a = app(vec![
            task("2024-01-01T00:00:01.000Z", "TASK_RUNNING", Some(true)),
            task("2024-01-01T00:00:03.000Z", "TASK_RUNNING", Some(true)),
            task("2024-01-01T00:00:05.000Z", "TASK_RUNNING", Some(true)),
            task("2024-01-01T00:00:05.000Z", "TASK_RUNNING", None),
            task("2024-01-01T00:00:05.000Z", "TASK_STAGING", None),
        ]);
        let deps = json!([{"id": "d1", "affectedApps": ["/prod/web"], "currentActions": [{"action": "RestartApplication"}]}]);
        let p = progress("d1", None, "/prod/web", Some(&a), &deps);
        assert_eq!(p.line, "deploying /prod/web: 2/5 healthy, 1 old");
        assert_eq!(p.outcome, None);
    }

    #[test]
    fn apps_without_health_checks_count_running_instances() {
        let mut a = app(vec![task("2024-01-01T00:00:05.000Z", "TASK_RUNNING", None)]);
        a["healthChecks"] = json!([]);
        assert_eq!(app_line("/prod/web", &a), "/prod/web: 1/5 running");
        a["instances"] = json!(0);
        assert_eq!(
            app_line("/prod/web", &a),
            "/prod/web: 1/0 running, 1 to stop"
        );
    }

    #[test]
    fn a_finished_deployment_leaves_the_app_at_its_version() {
        let a = app(vec![]);
        let p = progress(
            "d1",
            Some("2024-01-01T00:00:05.000Z"),
            "/prod/web",
            Some(&a),
            &json!([]),
        );
        assert_eq!(p.outcome, Some(Outcome::Finished));
        assert_eq!(p.line, "deployed /prod/web: 0/5 healthy");
    }

    #[test]
    fn a_cancelled_deployment_is_superseded_by_its_rollback() {
        let a = app(vec![]);
        let deps = json!([{"id": "d2", "affectedApps": ["/prod/web"], "currentActions": [{"action": "ScaleApplication"}]}]);
        let p = progress(
            "d1",
            Some("2024-01-01T00:00:04.000Z"),
            "/prod/web",
            Some(&a),
            &deps,
        );
        assert_eq!(
            p.outcome,
            Some(Outcome::Superseded {
                version: "2024-01-01T00:00:05.000Z".into(),
                by: vec!["d2".into()]
            })
        );
        assert!(p.line.contains("cancelled or overridden"), "{}", p.line);
    }

    #[test]
    fn removals_count_down_and_end_when_the_app_is_gone() {
        let a = app(vec![task("x", "TASK_KILLING", None)]);
        let deps = json!([{"id": "d3", "currentActions": [{"action": "StopApplication"}]}]);
        let p = progress("d3", None, "/prod/web", Some(&a), &deps);
        assert_eq!(p.line, "removing /prod/web: 1 tasks left");
        let p = progress("d3", None, "/prod/web", None, &json!([]));
        assert_eq!(p.outcome, Some(Outcome::Removed));
    }
}
