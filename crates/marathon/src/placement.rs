//! Placement: whether an instance of an app fits an offer, which host ports it gets, and in
//! which order offers are tried (bin-packing or spreading, chosen cluster-wide).
//!
//! Pure functions over an offer's free resources and the app's current instances, so they
//! are unit-tested and benchmarked without a cluster.

use crate::app::{AppDefinition, Constraint};
use mantle_model::{Ranges, Resources};
use std::collections::BTreeMap;

/// How offers are ordered when several fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Fill the fullest agents first, leaving big holes for big tasks.
    BinPack,
    /// Prefer agents running the fewest instances of the app.
    #[default]
    Spread,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "binpack" | "bin-pack" => Ok(Strategy::BinPack),
            "spread" => Ok(Strategy::Spread),
            other => Err(format!(
                "unknown placement strategy '{other}' (use binpack or spread)"
            )),
        }
    }
}

/// Where an existing instance runs, as far as constraints care.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed<'a> {
    pub hostname: &'a str,
    pub attributes: &'a BTreeMap<String, String>,
}

/// The part of an offer placement looks at.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub hostname: &'a str,
    pub attributes: &'a BTreeMap<String, String>,
    /// Still unclaimed resources of the offer.
    pub free: &'a Resources,
}

/// Why an offer was not used for an instance (Marathon's `/v2/queue` reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    InsufficientCpus,
    InsufficientMemory,
    InsufficientDisk,
    InsufficientGpus,
    InsufficientPorts,
    UnfulfilledConstraint,
}

impl Rejection {
    pub const ALL: [Rejection; 6] = [
        Rejection::InsufficientCpus,
        Rejection::InsufficientMemory,
        Rejection::InsufficientDisk,
        Rejection::InsufficientGpus,
        Rejection::InsufficientPorts,
        Rejection::UnfulfilledConstraint,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::InsufficientCpus => "InsufficientCpus",
            Rejection::InsufficientMemory => "InsufficientMemory",
            Rejection::InsufficientDisk => "InsufficientDisk",
            Rejection::InsufficientGpus => "InsufficientGpus",
            Rejection::InsufficientPorts => "InsufficientPorts",
            Rejection::UnfulfilledConstraint => "UnfulfilledConstraint",
        }
    }
}

/// What an instance takes from an offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub resources: Resources,
    pub ports: Vec<u32>,
}

fn millis(x: f64) -> i64 {
    (x * 1000.0).round() as i64
}

/// Where an app's instances run, counted by each field its constraints look at (and by
/// hostname), with its LIKE/UNLIKE patterns compiled once: built once per offer batch and
/// updated per launch, so a constraint check costs a map lookup instead of a scan.
#[derive(Debug, Clone)]
pub struct Placements {
    counts: BTreeMap<String, BTreeMap<String, usize>>,
    patterns: BTreeMap<String, Option<regex::Regex>>,
}

fn field_key(field: &str) -> &str {
    if field == "@hostname" {
        "hostname"
    } else {
        field
    }
}

impl Placements {
    pub fn new(app: &AppDefinition) -> Placements {
        let mut counts = BTreeMap::new();
        counts.insert("hostname".to_string(), BTreeMap::new());
        let mut patterns = BTreeMap::new();
        for c in &app.constraints {
            counts
                .entry(field_key(&c.field).to_string())
                .or_insert_with(BTreeMap::new);
            if matches!(c.operator.as_str(), "LIKE" | "UNLIKE") {
                if let Some(p) = &c.value {
                    patterns
                        .entry(p.clone())
                        .or_insert_with(|| regex::Regex::new(&format!("^(?:{p})$")).ok());
                }
            }
        }
        Placements { counts, patterns }
    }

    /// Records one more instance on a host with these attributes.
    pub fn add(&mut self, hostname: &str, attributes: &BTreeMap<String, String>) {
        for (field, values) in self.counts.iter_mut() {
            if let Some(v) = field_value(field, hostname, attributes) {
                *values.entry(v.to_string()).or_default() += 1;
            }
        }
    }

    /// Instances on the host.
    pub fn on_host(&self, hostname: &str) -> usize {
        self.count("hostname", hostname)
    }

    fn count(&self, field: &str, value: &str) -> usize {
        self.counts
            .get(field_key(field))
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn full_match(&self, pattern: &str, value: &str) -> bool {
        match self.patterns.get(pattern) {
            Some(compiled) => compiled.as_ref().is_some_and(|r| r.is_match(value)),
            None => full_match(pattern, value),
        }
    }
}

/// Whether one more instance of `app` fits `offer`, given where its instances already run.
pub fn fit(
    app: &AppDefinition,
    offer: &Candidate<'_>,
    placed: &[Placed<'_>],
) -> Result<Claim, Rejection> {
    let mut index = Placements::new(app);
    for p in placed {
        index.add(p.hostname, p.attributes);
    }
    fit_indexed(app, offer, &index)
}

/// [`fit`] against a prepared [`Placements`] index.
pub fn fit_indexed(
    app: &AppDefinition,
    offer: &Candidate<'_>,
    placed: &Placements,
) -> Result<Claim, Rejection> {
    let free = offer.free;
    let need = [
        ("cpus", millis(app.cpus), Rejection::InsufficientCpus),
        ("mem", millis(app.mem), Rejection::InsufficientMemory),
        ("disk", millis(app.disk), Rejection::InsufficientDisk),
        (
            "gpus",
            i64::from(app.gpus) * 1000,
            Rejection::InsufficientGpus,
        ),
    ];
    for (name, want, why) in need {
        if want > 0 && free.scalar_millis(name) < want {
            return Err(why);
        }
    }
    for c in &app.constraints {
        if !constraint_ok(c, offer, placed) {
            return Err(Rejection::UnfulfilledConstraint);
        }
    }
    let ports = choose_ports(app, free.ranges("ports")).ok_or(Rejection::InsufficientPorts)?;
    let mut resources = Resources::new();
    for (name, want, _) in need {
        if want > 0 {
            resources.add_scalar_millis(name, want);
        }
    }
    if !ports.is_empty() {
        let ranges = Ranges::from_pieces(ports.iter().map(|p| (u64::from(*p), u64::from(*p))));
        resources.add_ranges("ports", &ranges);
    }
    Ok(Claim { resources, ports })
}

/// Host ports for the app's port specs (`AppDefinition::port_specs`): fixed ones where the app
/// names them (`requirePorts`, a mapping's `hostPort`), otherwise the lowest free ones
/// (Marathon also picks ports from the offer for `port: 0`).
fn choose_ports(app: &AppDefinition, offered: Option<&Ranges>) -> Option<Vec<u32>> {
    let specs = app.port_specs();
    if specs.is_empty() {
        return Some(Vec::new());
    }
    let offered = offered?;
    let in_offer = |p: u32| {
        offered
            .pieces()
            .iter()
            .any(|(b, e)| *b <= u64::from(p) && u64::from(p) <= *e)
    };
    let fixed: Vec<u32> = specs.iter().filter_map(|s| s.host_port).collect();
    if !fixed.iter().all(|p| in_offer(*p)) {
        return None;
    }
    let mut free = offered
        .pieces()
        .iter()
        .flat_map(|(b, e)| *b..=*e)
        .filter_map(|p| u32::try_from(p).ok().filter(|p| !fixed.contains(p)));
    let mut out: Vec<u32> = Vec::with_capacity(specs.len());
    for spec in &specs {
        match spec.host_port {
            Some(p) => out.push(p),
            None => out.push(free.next()?),
        }
    }
    Some(out)
}

fn field_value<'a>(
    field: &str,
    hostname: &'a str,
    attrs: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    if field == "hostname" || field == "@hostname" {
        Some(hostname)
    } else {
        attrs.get(field).map(String::as_str)
    }
}

fn full_match(pattern: &str, value: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|r| r.is_match(value))
}

fn constraint_ok(c: &Constraint, offer: &Candidate<'_>, placed: &Placements) -> bool {
    let here = field_value(&c.field, offer.hostname, offer.attributes);
    let count_of = |v: &str| placed.count(&c.field, v);
    match c.operator.as_str() {
        "UNIQUE" => here.is_some_and(|v| count_of(v) == 0),
        "CLUSTER" | "IS" => match (&c.value, here) {
            (Some(want), Some(v)) => want == v,
            _ => false,
        },
        "LIKE" => match (&c.value, here) {
            (Some(p), Some(v)) => placed.full_match(p, v),
            _ => false,
        },
        "UNLIKE" => match (&c.value, here) {
            (Some(p), Some(v)) => !placed.full_match(p, v),
            (_, None) => true,
            _ => false,
        },
        "MAX_PER" => {
            let max: usize = c.value.as_deref().and_then(|v| v.parse().ok()).unwrap_or(1);
            here.is_some_and(|v| count_of(v) < max)
        }
        "GROUP_BY" => {
            let Some(v) = here else { return false };
            // Spread evenly: this value may not run more than the least loaded value seen.
            let empty = BTreeMap::new();
            let counts = placed.counts.get(field_key(&c.field)).unwrap_or(&empty);
            let groups: usize = c.value.as_deref().and_then(|g| g.parse().ok()).unwrap_or(0);
            let mine = counts.get(v).copied().unwrap_or(0);
            if mine == 0 {
                return true;
            }
            if groups > counts.len() {
                // Values not seen yet must be filled first.
                return false;
            }
            counts.values().all(|c| mine <= *c)
        }
        _ => false,
    }
}

/// Orders offer indices for an app by strategy: `load[i]` is how many of the app's instances
/// run on offer i's agent, `free_cpus[i]` its free cpus (millis). Ties keep offer order.
pub fn order(strategy: Strategy, load: &[usize], free_cpus: &[i64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..load.len().min(free_cpus.len())).collect();
    idx.sort_by_key(|i| key(strategy, load, free_cpus, *i));
    idx
}

/// The sort key of offer `i` (offer order breaks ties).
fn key(strategy: Strategy, load: &[usize], free_cpus: &[i64], i: usize) -> (usize, i64, usize) {
    let l = load.get(i).copied().unwrap_or(usize::MAX);
    let c = free_cpus.get(i).copied().unwrap_or(0);
    match strategy {
        Strategy::Spread => (l, -c, i),
        Strategy::BinPack => (0, c, i),
    }
}

/// Moves offer `i` to its place in an [`order`] after its load or free cpus changed, so a
/// batch re-sorts in O(offers) per launch instead of O(offers log offers).
pub fn reposition(
    ord: &mut Vec<usize>,
    strategy: Strategy,
    load: &[usize],
    free_cpus: &[i64],
    i: usize,
) {
    if let Some(pos) = ord.iter().position(|x| *x == i) {
        ord.remove(pos);
    }
    let k = key(strategy, load, free_cpus, i);
    let at = ord.partition_point(|x| key(strategy, load, free_cpus, *x) < k);
    ord.insert(at, i);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::parse;
    use proptest::prelude::*;
    use serde_json::json;

    fn app(extra: serde_json::Value) -> AppDefinition {
        let mut v = json!({"id": "/web", "cmd": "sleep 1", "cpus": 1, "mem": 128});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                m.insert(k.clone(), x.clone());
            }
        }
        parse(&v, "/", "2020-01-01T00:00:00.000Z").expect("valid app")
    }

    fn res(t: &str) -> Resources {
        Resources::parse(t).expect("resources")
    }

    #[test]
    fn resources_and_ports_are_checked() {
        let a = app(json!({}));
        let attrs = BTreeMap::new();
        let small = res("cpus:0.5;mem:1024;ports:[31000-31001]");
        let c = Candidate {
            hostname: "h",
            attributes: &attrs,
            free: &small,
        };
        assert_eq!(fit(&a, &c, &[]), Err(Rejection::InsufficientCpus));
        let no_ports = res("cpus:2;mem:1024");
        let c = Candidate {
            hostname: "h",
            attributes: &attrs,
            free: &no_ports,
        };
        assert_eq!(fit(&a, &c, &[]), Err(Rejection::InsufficientPorts));
        let ok = res("cpus:2;mem:1024;ports:[31000-31001]");
        let c = Candidate {
            hostname: "h",
            attributes: &attrs,
            free: &ok,
        };
        let claim = fit(&a, &c, &[]).expect("fits");
        assert_eq!(claim.ports, vec![31000]);
        assert_eq!(claim.resources.scalar_millis("cpus"), 1000);
        let fixed = app(json!({"requirePorts": true, "portDefinitions": [{"port": 31001}]}));
        assert_eq!(fit(&fixed, &c, &[]).map(|c| c.ports), Ok(vec![31001]));
        let taken = app(json!({"requirePorts": true, "portDefinitions": [{"port": 8080}]}));
        assert_eq!(fit(&taken, &c, &[]), Err(Rejection::InsufficientPorts));
    }

    #[test]
    fn constraints() {
        let rack_a = BTreeMap::from([("rack".to_string(), "a".to_string())]);
        let rack_b = BTreeMap::from([("rack".to_string(), "b".to_string())]);
        let free = res("cpus:8;mem:8192;ports:[31000-32000]");
        let on_a = Candidate {
            hostname: "h1",
            attributes: &rack_a,
            free: &free,
        };
        let on_b = Candidate {
            hostname: "h2",
            attributes: &rack_b,
            free: &free,
        };
        let placed_h1 = [Placed {
            hostname: "h1",
            attributes: &rack_a,
        }];

        let unique = app(json!({"constraints": [["hostname", "UNIQUE"]]}));
        assert_eq!(
            fit(&unique, &on_a, &placed_h1),
            Err(Rejection::UnfulfilledConstraint)
        );
        assert!(fit(&unique, &on_b, &placed_h1).is_ok());

        let cluster = app(json!({"constraints": [["rack", "CLUSTER", "b"]]}));
        assert!(fit(&cluster, &on_a, &[]).is_err());
        assert!(fit(&cluster, &on_b, &[]).is_ok());

        let like = app(json!({"constraints": [["rack", "LIKE", "[ab]"]]}));
        assert!(fit(&like, &on_a, &[]).is_ok());
        let unlike = app(json!({"constraints": [["rack", "UNLIKE", "a"]]}));
        assert!(fit(&unlike, &on_a, &[]).is_err());
        assert!(fit(&unlike, &on_b, &[]).is_ok());

        let max_per = app(json!({"constraints": [["rack", "MAX_PER", "1"]]}));
        assert!(fit(&max_per, &on_a, &placed_h1).is_err());
        assert!(fit(&max_per, &on_b, &placed_h1).is_ok());

        let group = app(json!({"constraints": [["rack", "GROUP_BY", "2"]]}));
        assert!(
            fit(&group, &on_a, &placed_h1).is_err(),
            "rack b must be filled first"
        );
        assert!(fit(&group, &on_b, &placed_h1).is_ok());
    }

    #[test]
    fn strategies_order_offers() {
        assert_eq!(
            order(super::Strategy::Spread, &[2, 0, 1], &[1, 1, 1]),
            vec![1, 2, 0]
        );
        assert_eq!(
            order(super::Strategy::BinPack, &[0, 0, 0], &[3000, 1000, 2000]),
            vec![1, 2, 0]
        );
    }

    proptest! {
        // Whatever the offers, UNIQUE hostname never places two instances on one host and a
        // claim never exceeds what the offer has.
        #[test]
        fn unique_and_within_offer(hosts in proptest::collection::vec(0u8..4, 1..20), cpus in 1u32..8) {
            let a = app(json!({"constraints": [["hostname", "UNIQUE"]], "cpus": 0.5}));
            let attrs = BTreeMap::new();
            let names: Vec<String> = hosts.iter().map(|h| format!("h{h}")).collect();
            let mut placed_hosts: Vec<String> = Vec::new();
            for name in &names {
                let free = res(&format!("cpus:{cpus};mem:4096;ports:[31000-31010]"));
                let placed: Vec<Placed<'_>> = placed_hosts.iter().map(|h| Placed { hostname: h, attributes: &attrs }).collect();
                let c = Candidate { hostname: name, attributes: &attrs, free: &free };
                if let Ok(claim) = fit(&a, &c, &placed) {
                    prop_assert!(free.contains(&claim.resources));
                    prop_assert!(!placed_hosts.contains(name));
                    placed_hosts.push(name.clone());
                }
            }
        }
    }
}
