//! Marathon path ids (`/prod/web`): parsing, normalising and the label rules.

use regex::Regex;
use std::sync::OnceLock;

/// The pattern every path segment must match (Marathon's `PathId` validation).
pub const ID_PATTERN: &str = r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$";

fn segment_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^(?:(?:[a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*(?:[a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$")
            .unwrap_or_else(|_| unreachable!("static regex"))
    })
}

/// Turns a user-given id into an absolute path (`web` -> `/web`, `/a//b/` -> `/a/b`),
/// resolving `.` and `..` against `base` the way Marathon does for relative ids.
pub fn canonical(raw: &str, base: &str) -> String {
    let mut parts: Vec<&str> = if raw.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|s| !s.is_empty()).collect()
    };
    for seg in raw.split('/').filter(|s| !s.is_empty()) {
        match seg {
            "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether every segment of an absolute path is valid; `/` (the root) is not a valid app id.
pub fn is_valid_app_id(path: &str) -> bool {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    !segs.is_empty() && segs.iter().all(|s| segment_regex().is_match(s))
}

/// The task-id prefix Marathon derives from an app id: `/prod/web` -> `prod_web`.
pub fn safe_id(path: &str) -> String {
    path.trim_start_matches('/').replace('/', "_")
}

/// The Mesos task name Marathon gives an app's tasks: the path reversed and dot-joined,
/// `/prod/web` -> `web.prod`, which Mesos-DNS turns into `web-prod.marathon.mesos`.
pub fn task_name(path: &str) -> String {
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segs.reverse();
    segs.join(".")
}

/// The app id a task id belongs to (`prod_web.<uuid>` -> `/prod/web`).
pub fn app_of_task(task_id: &str) -> Option<String> {
    let prefix = match task_id
        .find(".instance-")
        .or_else(|| task_id.find(".marathon-"))
    {
        Some(i) => &task_id[..i],
        None => task_id.rsplit_once('.')?.0,
    };
    Some(format!("/{}", prefix.replace('_', "/")))
}

/// Parent group of a path (`/prod/web` -> `/prod`, `/web` -> `/`).
pub fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((p, _)) => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_normalise_and_validate() {
        assert_eq!(canonical("web", "/"), "/web");
        assert_eq!(canonical("//prod//web/", "/"), "/prod/web");
        assert_eq!(canonical("../b", "/a/x"), "/a/b");
        assert!(is_valid_app_id("/prod/web-1"));
        assert!(!is_valid_app_id("/Prod"));
        assert!(!is_valid_app_id("/web-"));
        assert!(!is_valid_app_id("/"));
        assert!(!is_valid_app_id("/a_b"));
        assert_eq!(task_name("/prod/web"), "web.prod");
        assert_eq!(safe_id("/prod/web"), "prod_web");
        assert_eq!(
            app_of_task("prod_web.0c2f1b3e-1111-2222-3333-444455556666").as_deref(),
            Some("/prod/web")
        );
        assert_eq!(
            app_of_task("a.b_web.instance-0c2f1b3e-1111-2222-3333-444455556666._app.1").as_deref(),
            Some("/a.b/web")
        );
        assert_eq!(parent("/prod/web"), "/prod");
        assert_eq!(parent("/web"), "/");
    }
}
