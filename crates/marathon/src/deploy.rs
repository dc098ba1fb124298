//! Deployments: one per change to an app, shown at `/v2/deployments` with Marathon's plan
//! shape, finished by the core when the app reaches its target.

use crate::app::AppDefinition;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What a deployment does to its app.
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

/// A running deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub version: String,
    pub app_id: String,
    pub action: Action,
    /// The app before the change (rollback target); `None` for a new app.
    pub original: Option<AppDefinition>,
    /// The app after the change; `None` when it is deleted.
    pub target: Option<AppDefinition>,
}

impl Deployment {
    fn steps(&self) -> Vec<Vec<Action>> {
        match self.action {
            Action::Start => vec![vec![Action::Start], vec![Action::Scale]],
            a => vec![vec![a]],
        }
    }

    /// The actions of the step in progress (`readinessCheckResults` included, as Marathon).
    pub fn actions_json(&self) -> Value {
        let last = self.steps().pop().unwrap_or_default();
        Value::Array(
            last.iter()
                .map(|a| json!({"action": a.name(), "app": self.app_id}))
                .collect(),
        )
    }

    /// Marathon's deployment JSON; `current_step` is 1-based.
    pub fn to_json(&self, current_step: usize) -> Value {
        let steps = self.steps();
        let total = steps.len();
        let current = current_step.clamp(1, total.max(1));
        let current_actions: Vec<Value> = steps
            .get(current - 1)
            .map(|s| {
                s.iter()
                    .map(|a| json!({"action": a.name(), "app": self.app_id, "readinessCheckResults": []}))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "id": self.id,
            "version": self.version,
            "affectedApps": [self.app_id],
            "affectedPods": [],
            "steps": steps.iter().map(|s| json!({
                "actions": s.iter().map(|a| json!({"action": a.name(), "app": self.app_id})).collect::<Vec<_>>()
            })).collect::<Vec<_>>(),
            "currentActions": current_actions,
            "currentStep": current,
            "totalSteps": total,
        })
    }
}
