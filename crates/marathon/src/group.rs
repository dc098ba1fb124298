//! Groups: Marathon's tree of apps by path. Mantle keeps no group records of its own; a
//! group is the set of apps under its path. This module turns a group body (`POST
//! /v2/groups`, `PUT /v2/groups/{id}`) into the app definitions it describes, and renders the
//! tree back from the apps.

use crate::app::{self, AppDefinition, Violation};
use crate::path;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Whether `app_id` lies under the group `group_id` (every app lies under `/`).
pub fn contains(group_id: &str, app_id: &str) -> bool {
    group_id == "/" || (app_id.starts_with(group_id) && app_id[group_id.len()..].starts_with('/'))
}

/// What a group body says about the apps under it.
#[derive(Debug, Default)]
pub struct Flat {
    /// The apps the body defines, with absolute ids.
    pub apps: Vec<AppDefinition>,
    /// Groups (absolute ids) whose `apps` the body leaves out: their current apps stay.
    pub keep_apps_of: BTreeSet<String>,
    /// Groups whose `groups` the body leaves out: their current subgroups stay.
    pub keep_groups_of: BTreeSet<String>,
}

/// Flattens a group body whose id is `id` (absolute) into app definitions. Apps and
/// subgroups may use ids relative to their group; ids that leave the group are refused, the
/// way Marathon does. A group's `dependencies` are added to each app under it.
pub fn flatten(body: &Value, id: &str, version: &str) -> Result<Flat, Vec<Violation>> {
    let mut flat = Flat::default();
    let mut errs = Vec::new();
    walk(body, id, "", version, &[], &mut flat, &mut errs);
    let mut seen = BTreeSet::new();
    for (i, a) in flat.apps.iter().enumerate() {
        if !seen.insert(a.id.clone()) {
            errs.push(Violation {
                path: format!("/apps/{i}/id"),
                errors: vec![format!("app {} is defined more than once", a.id)],
            });
        }
    }
    if errs.is_empty() {
        Ok(flat)
    } else {
        Err(errs)
    }
}

fn walk(
    body: &Value,
    id: &str,
    at: &str,
    version: &str,
    inherited: &[String],
    flat: &mut Flat,
    errs: &mut Vec<Violation>,
) {
    let Some(obj) = body.as_object() else {
        errs.push(Violation {
            path: if at.is_empty() { "/".into() } else { at.into() },
            errors: vec!["error.expected.jsobject".into()],
        });
        return;
    };
    let mut deps: Vec<String> = inherited.to_vec();
    match obj.get("dependencies") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, d) in list.iter().enumerate() {
                match d.as_str() {
                    Some(d) => deps.push(path::canonical(d, &path::parent(id))),
                    None => errs.push(Violation {
                        path: format!("{at}/dependencies/{i}"),
                        errors: vec!["error.expected.jsstring".into()],
                    }),
                }
            }
        }
        Some(_) => errs.push(Violation {
            path: format!("{at}/dependencies"),
            errors: vec!["error.expected.jsarray".into()],
        }),
    }
    match obj.get("apps") {
        None | Some(Value::Null) => {
            flat.keep_apps_of.insert(id.to_string());
        }
        Some(Value::Array(apps)) => {
            for (i, a) in apps.iter().enumerate() {
                let here = format!("{at}/apps/{i}");
                match app::parse(a, id, version) {
                    Ok(mut def) => {
                        if path::parent(&def.id) != id {
                            errs.push(Violation {
                                path: format!("{here}/id"),
                                errors: vec![format!(
                                    "identifier {} is not child of {id}. Hint: use relative paths.",
                                    def.id
                                )],
                            });
                            continue;
                        }
                        for d in &deps {
                            if !def.dependencies.contains(d) {
                                def.dependencies.push(d.clone());
                            }
                        }
                        flat.apps.push(def);
                    }
                    Err(v) => errs.extend(v.into_iter().map(|mut v| {
                        v.path = format!("{here}{}", v.path);
                        v
                    })),
                }
            }
        }
        Some(_) => errs.push(Violation {
            path: format!("{at}/apps"),
            errors: vec!["error.expected.jsarray".into()],
        }),
    }
    match obj.get("groups") {
        None | Some(Value::Null) => {
            flat.keep_groups_of.insert(id.to_string());
        }
        Some(Value::Array(groups)) => {
            for (i, g) in groups.iter().enumerate() {
                let here = format!("{at}/groups/{i}");
                let Some(raw) = g.get("id").and_then(Value::as_str) else {
                    errs.push(Violation {
                        path: format!("{here}/id"),
                        errors: vec!["error.path.missing".into()],
                    });
                    continue;
                };
                let child = path::canonical(raw, id);
                if path::parent(&child) != id || !path::is_valid_app_id(&child) {
                    errs.push(Violation {
                        path: format!("{here}/id"),
                        errors: vec![format!(
                            "identifier {child} is not child of {id}. Hint: use relative paths."
                        )],
                    });
                    continue;
                }
                walk(g, &child, &here, version, &deps, flat, errs);
            }
        }
        Some(_) => errs.push(Violation {
            path: format!("{at}/groups"),
            errors: vec!["error.expected.jsarray".into()],
        }),
    }
}

/// Renders the group `id` from the apps under it, with `render` for each app; `None` when
/// no app lies under it (except the root, which always exists).
pub fn tree<'a>(
    id: &str,
    apps: impl Iterator<Item = &'a AppDefinition> + Clone,
    version: &str,
    render: &dyn Fn(&AppDefinition) -> Value,
) -> Option<Value> {
    if id != "/" && !apps.clone().any(|a| contains(id, &a.id)) {
        return None;
    }
    let direct: Vec<Value> = apps
        .clone()
        .filter(|a| path::parent(&a.id) == id)
        .map(render)
        .collect();
    let children: BTreeSet<String> = apps
        .clone()
        .filter(|a| contains(id, &a.id) && path::parent(&a.id) != id)
        .filter_map(|a| {
            let rest = a.id.get(id.trim_end_matches('/').len() + 1..)?;
            let first = rest.split('/').next()?;
            Some(format!("{}/{first}", id.trim_end_matches('/')))
        })
        .collect();
    let groups: Vec<Value> = children
        .iter()
        .filter_map(|g| tree(g, apps.clone(), version, render))
        .collect();
    Some(json!({
        "id": id, "apps": direct, "groups": groups, "pods": [], "dependencies": [],
        "version": version,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_resolves_relative_ids_and_inherits_dependencies() {
        let body = json!({
            "id": "/prod",
            "apps": [{"id": "db", "cmd": "sleep 1"}],
            "groups": [{"id": "front", "dependencies": ["/prod/db"],
                        "apps": [{"id": "web", "cmd": "sleep 1"}, {"id": "/prod/front/api", "cmd": "x"}]}],
        });
        let flat = flatten(&body, "/prod", "2026-01-01T00:00:00.000Z").expect("valid");
        let ids: Vec<&str> = flat.apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["/prod/db", "/prod/front/web", "/prod/front/api"]);
        assert!(flat.apps[0].dependencies.is_empty());
        assert_eq!(flat.apps[1].dependencies, ["/prod/db"]);
        assert!(flat.keep_apps_of.is_empty());
    }

    #[test]
    fn flatten_names_each_bad_field() {
        let body = json!({
            "apps": [{"id": "/elsewhere/x", "cmd": "sleep 1"}, {"id": "ok", "cpus": -1, "cmd": "x"}],
            "groups": [{"apps": []}, "nope"],
        });
        let errs = flatten(&body, "/g", "v").expect_err("invalid");
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"/apps/0/id"), "{paths:?}");
        assert!(paths.contains(&"/apps/1/cpus"), "{paths:?}");
        assert!(paths.contains(&"/groups/0/id"), "{paths:?}");
        assert!(paths.contains(&"/groups/1/id"), "{paths:?}");
    }

    #[test]
    fn contains_matches_whole_segments() {
        assert!(contains("/", "/a"));
        assert!(contains("/prod", "/prod/web"));
        assert!(!contains("/prod", "/production/web"));
        assert!(!contains("/prod", "/prod"));
    }
}
