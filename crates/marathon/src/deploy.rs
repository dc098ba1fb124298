//! Deployments: one per change (to one app, or to many at once through `/v2/groups` and
//! `PUT /v2/apps`), shown at `/v2/deployments` with Marathon's plan shape. Each affected app
//! is a [`Part`]; parts run in steps ordered by `dependencies`, and the core finishes a
//! deployment when every part has reached its target.

use crate::app::AppDefinition;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What a deployment does to one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// A new app: StartApplication, then ScaleApplication.
    Start,
    /// Only the instance count changed.
    Scale,
    /// The config changed (or a restart): a rolling replacement of every task.
    Restart,
    /// The app is being deleted.
    Stop,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Start => "StartApplication",
            Action::Scale => "ScaleApplication",
            Action::Restart => "RestartApplication",
            Action::Stop => "StopApplication",
        }
    }
}

/// One app's change within a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub app_id: String,
    pub action: Action,
    /// The app before the change (rollback target); `None` for a new app.
    pub original: Option<AppDefinition>,
    /// The app after the change; `None` when it is deleted.
    pub target: Option<AppDefinition>,
    /// The step (0-based) this part runs in: after every app it depends on.
    #[serde(default)]
    pub step: usize,
    /// The app reached its target.
    #[serde(default)]
    pub done: bool,
}

/// A running deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployment {
    pub id: String,
    pub version: String,
    pub parts: Vec<Part>,
}

/// Stored deployments: the current shape, or the single-app shape written before parts
/// existed, so a store written by an older Mantle still loads.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Parts {
        id: String,
        version: String,
        parts: Vec<Part>,
    },
    Single {
        id: String,
        version: String,
        app_id: String,
        action: Action,
        original: Option<AppDefinition>,
        target: Option<AppDefinition>,
    },
}

impl<'de> Deserialize<'de> for Deployment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Stored::deserialize(d)? {
            Stored::Parts { id, version, parts } => Deployment { id, version, parts },
            Stored::Single {
                id,
                version,
                app_id,
                action,
                original,
                target,
            } => Deployment {
                id,
                version,
                parts: vec![Part {
                    app_id,
                    action,
                    original,
                    target,
                    step: 0,
                    done: false,
                }],
            },
        })
    }
}

impl Deployment {
    /// The step in progress (0-based): the lowest step with an unfinished part.
    pub fn current_step(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| !p.done)
            .map(|p| p.step)
            .min()
            .unwrap_or_else(|| self.parts.iter().map(|p| p.step).max().unwrap_or(0))
    }

    /// Whether `app_id` waits for an earlier step of this deployment.
    pub fn holds(&self, app_id: &str) -> bool {
        let current = self.current_step();
        self.parts
            .iter()
            .any(|p| p.app_id == app_id && p.step > current)
    }

    pub fn affects(&self, app_id: &str) -> bool {
        self.parts.iter().any(|p| p.app_id == app_id)
    }

    pub fn app_ids(&self) -> Vec<String> {
        self.parts.iter().map(|p| p.app_id.clone()).collect()
    }

    /// Marathon's steps: new apps are started (with no instances) first, all together;
    /// then each dependency level scales, restarts or stops its apps.
    fn steps(&self) -> Vec<Vec<(Action, &str)>> {
        let mut steps = Vec::new();
        let starts: Vec<(Action, &str)> = self
            .parts
            .iter()
            .filter(|p| p.action == Action::Start)
            .map(|p| (Action::Start, p.app_id.as_str()))
            .collect();
        if !starts.is_empty() {
            steps.push(starts);
        }
        let mut levels: BTreeMap<usize, Vec<(Action, &str)>> = BTreeMap::new();
        for p in &self.parts {
            let action = match p.action {
                Action::Start => Action::Scale,
                a => a,
            };
            levels
                .entry(p.step)
                .or_default()
                .push((action, p.app_id.as_str()));
        }
        steps.extend(levels.into_values());
        steps
    }

    /// The 1-based index into [`Deployment::steps`] of the step in progress.
    fn current_index(&self) -> usize {
        let current = self.current_step();
        let has_start = self.parts.iter().any(|p| p.action == Action::Start);
        let levels: std::collections::BTreeSet<usize> = self.parts.iter().map(|p| p.step).collect();
        let level_index = levels.iter().position(|l| *l == current).unwrap_or(0);
        usize::from(has_start) + level_index + 1
    }

    /// The actions of the step in progress.
    pub fn actions_json(&self) -> Value {
        let steps = self.steps();
        let current = steps
            .get(self.current_index().saturating_sub(1))
            .cloned()
            .unwrap_or_default();
        Value::Array(
            current
                .iter()
                .map(|(a, app)| json!({"action": a.name(), "app": app}))
                .collect(),
        )
    }

    /// Marathon's deployment JSON.
    pub fn to_json(&self) -> Value {
        let steps = self.steps();
        let total = steps.len();
        let current = self.current_index().clamp(1, total.max(1));
        let current_actions: Vec<Value> = steps
            .get(current - 1)
            .map(|s| {
                s.iter()
                    .map(|(a, app)| json!({"action": a.name(), "app": app, "readinessCheckResults": []}))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "id": self.id,
            "version": self.version,
            "affectedApps": self.app_ids(),
            "affectedPods": [],
            "steps": steps.iter().map(|s| json!({
                "actions": s.iter().map(|(a, app)| json!({"action": a.name(), "app": app})).collect::<Vec<_>>()
            })).collect::<Vec<_>>(),
            "currentActions": current_actions,
            "currentStep": current,
            "totalSteps": total,
        })
    }
}

/// Orders the parts of a change by their apps' `dependencies`: a part runs one step after
/// the latest part it depends on (a dependency names an app, or a group and so every app
/// under it). Stops run in the first step. Returns the cycle's apps when there is one.
pub fn order(parts: &mut [Part]) -> Result<(), Vec<String>> {
    let deps: Vec<Vec<usize>> = parts
        .iter()
        .map(|p| {
            let Some(t) = &p.target else {
                return Vec::new();
            };
            parts
                .iter()
                .enumerate()
                .filter(|(_, q)| q.target.is_some() && q.app_id != p.app_id)
                .filter(|(_, q)| {
                    t.dependencies.iter().any(|d| {
                        q.app_id == *d
                            || (q.app_id.starts_with(d.as_str())
                                && q.app_id[d.len()..].starts_with('/'))
                            || d == "/"
                    })
                })
                .map(|(j, _)| j)
                .collect()
        })
        .collect();
    // Longest-path levels by repeated relaxation; more rounds than parts means a cycle.
    let n = parts.len();
    let mut level = vec![0usize; n];
    for _round in 0..=n {
        let mut changed = false;
        for i in 0..n {
            let want = deps[i].iter().map(|&j| level[j] + 1).max().unwrap_or(0);
            if want > level[i] {
                level[i] = want;
                changed = true;
            }
        }
        if !changed {
            for (p, l) in parts.iter_mut().zip(level) {
                p.step = l;
            }
            return Ok(());
        }
        if level.iter().any(|&l| l > n) {
            break;
        }
    }
    Err(parts
        .iter()
        .zip(&level)
        .filter(|(_, l)| **l >= n)
        .map(|(p, _)| p.app_id.clone())
        .collect())
}
