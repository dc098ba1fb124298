//! The workload: a client of the Marathon API, calling the scheduler core's API commands
//! (create, scale, change, restart, delete, kill) at random while the faults run, and the
//! intent each acknowledged call leaves, which must survive restarts (REFERENCE §3.4 "no
//! lost intent").

use crate::world::{now_of, World};
use serde_json::json;

/// What the client was told about an app.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Intent {
    /// Acknowledged with this many instances.
    Present(u32),
    /// A delete was acknowledged; the app goes once its instances are gone.
    Deleting,
    /// Deleted and seen gone: it must not come back.
    Gone,
}

impl World {
    pub(crate) fn workload(&mut self) {
        let now = now_of(self.now);
        let roll = self.rng.range(0, 99);
        let force = self.rng.chance(0.3);
        let Some(core) = self.marathon.core.as_ref() else {
            return;
        };
        let apps: Vec<String> = core.apps().map(|a| a.id.clone()).collect();
        let tasks: Vec<String> = core.instances().map(|i| i.task_id.clone()).collect();
        let pick = self.rng.index(apps.len());
        let app = apps.get(pick).cloned();
        let instances = self.rng.range(0, 4);
        let create = apps.len() < 4 && (roll < 25 || apps.is_empty());
        let body = if create {
            self.app_seq += 1;
            let id = if self.rng.chance(0.3) {
                format!("/grp/app{}", self.app_seq)
            } else {
                format!("/app{}", self.app_seq)
            };
            let fractions = [0.0, 0.5, 1.0];
            let mhc = fractions[self.rng.index(3)];
            let moc = fractions[self.rng.index(3)];
            let ports = if self.rng.chance(0.5) {
                json!([{"port": 0}])
            } else {
                json!([])
            };
            Some(json!({
                "id": id, "cmd": "sleep 100000", "instances": instances,
                "cpus": 0.1 * self.rng.range(1, 2) as f64, "mem": 32 * self.rng.range(1, 4),
                "portDefinitions": ports,
                "upgradeStrategy": {"minimumHealthCapacity": mhc, "maximumOverCapacity": moc},
            }))
        } else {
            None
        };
        let sleep = self.rng.range(1, 1_000_000);
        let task = tasks.get(self.rng.index(tasks.len())).cloned();
        let scale = self.rng.chance(0.5);
        let Some(core) = self.marathon.core.as_mut() else {
            return;
        };
        let (what, touched, result): (String, Vec<String>, Result<(), String>) = match (body, app) {
            (Some(body), _) => {
                let id = body["id"].as_str().unwrap_or_default().to_string();
                let r = core
                    .create_app(&body, now)
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}"));
                (format!("create {id} x{instances}"), vec![id], r)
            }
            (None, None) => return,
            (None, Some(id)) => match roll {
                0..=54 => {
                    let r =
                        core.update_app(&id, &json!({"instances": instances}), force, true, now);
                    (
                        format!("scale {id} to {instances}"),
                        vec![id],
                        r.map(|_| ()).map_err(|e| format!("{e:?}")),
                    )
                }
                55..=64 => {
                    let r = core.update_app(
                        &id,
                        &json!({"cmd": format!("sleep {sleep}")}),
                        force,
                        true,
                        now,
                    );
                    (
                        format!("change {id}"),
                        vec![id],
                        r.map(|_| ()).map_err(|e| format!("{e:?}")),
                    )
                }
                65..=71 => {
                    let r = core.restart_app(&id, force, now);
                    (
                        format!("restart {id}"),
                        vec![id],
                        r.map(|_| ()).map_err(|e| format!("{e:?}")),
                    )
                }
                72..=79 => {
                    let r = core.delete_app(&id, force, now);
                    (
                        format!("delete {id}"),
                        vec![id],
                        r.map(|_| ()).map_err(|e| format!("{e:?}")),
                    )
                }
                80..=89 => {
                    let Some(t) = task else { return };
                    let owner = core
                        .instance(&t)
                        .map(|i| i.app_id.clone())
                        .unwrap_or_default();
                    let r = core.kill_tasks(std::slice::from_ref(&t), scale, false, force, now);
                    let touched = if scale { vec![owner] } else { Vec::new() };
                    (
                        format!("kill {t} scale={scale}"),
                        touched,
                        r.map(|_| ()).map_err(|e| format!("{e:?}")),
                    )
                }
                _ => return,
            },
        };
        self.api_calls += 1;
        let deleting = what.starts_with("delete");
        let mut changes = Vec::new();
        if result.is_ok() {
            for id in touched {
                let intent = if deleting {
                    Intent::Deleting
                } else {
                    match core.app(&id) {
                        Some(a) => Intent::Present(a.instances),
                        None => continue,
                    }
                };
                changes.push((id, intent));
            }
        }
        let outcome = match &result {
            Ok(()) => "ok".to_string(),
            Err(e) => e.chars().take(60).collect(),
        };
        self.trace(format!("api: {what} force={force}: {outcome}"));
        for (id, intent) in changes {
            self.intent.insert(id, intent);
        }
    }
}
