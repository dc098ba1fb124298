//! Conversions between wire `Resource`/`Attribute` lists and `model` types, with errors that
//! name the offending field.

use crate::mesos::{self, Attribute, Resource};
use mantle_model::{self as model, resources::millis_to_scalar, AttributeValue, Resources};

/// A wire value that failed validation; `field` is a path like `resources[2].scalar.value`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn err(field: String, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Validates and sums a wire resource list. `prefix` names the list in errors.
pub fn resources_from_wire(list: &[Resource], prefix: &str) -> Result<Resources, FieldError> {
    let mut out = Resources::new();
    let mut kinds: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for (i, r) in list.iter().enumerate() {
        let at = |f: &str| format!("{prefix}[{i}]{f}");
        if r.name.is_empty() {
            return Err(err(at(".name"), "resource name must not be empty"));
        }
        if let Some(role) = &r.role {
            if role != "*" {
                return Err(err(
                    at(".role"),
                    format!("reserved role '{role}' is not supported"),
                ));
            }
        }
        if !r
            .extra
            .get("reservations")
            .is_none_or(|v| v.as_array().is_some_and(|a| a.is_empty()))
        {
            return Err(err(at(".reservations"), "reservations are not supported"));
        }
        if let Some(prev) = kinds.insert(&r.name, &r.kind) {
            if prev != r.kind {
                return Err(err(
                    at(".type"),
                    format!("'{}' is given with two types", r.name),
                ));
            }
        }
        match r.kind.as_str() {
            "SCALAR" => {
                let s = r
                    .scalar
                    .as_ref()
                    .ok_or_else(|| err(at(".scalar"), "SCALAR resource needs 'scalar'"))?;
                out.add_scalar(&r.name, s.value)
                    .map_err(|e| err(at(".scalar.value"), e.to_string()))?;
            }
            "RANGES" => {
                let rs = r
                    .ranges
                    .as_ref()
                    .ok_or_else(|| err(at(".ranges"), "RANGES resource needs 'ranges'"))?;
                let mut pieces = Vec::with_capacity(rs.range.len());
                for (j, range) in rs.range.iter().enumerate() {
                    if range.begin > range.end {
                        return Err(err(
                            format!("{prefix}[{i}].ranges.range[{j}]"),
                            "begin is greater than end",
                        ));
                    }
                    pieces.push((range.begin, range.end));
                }
                let merged = model::Ranges::from_pieces(pieces.iter().copied());
                if merged.count() != pieces.iter().map(|(b, e)| e - b + 1).sum::<u64>() {
                    return Err(err(at(".ranges"), "ranges overlap"));
                }
                if out
                    .ranges(&r.name)
                    .is_some_and(|have| !have.difference(&merged).eq(have))
                {
                    return Err(err(at(".ranges"), "ranges overlap an earlier entry"));
                }
                out.add_ranges(&r.name, &merged);
            }
            "SET" => {
                let set = r
                    .set
                    .as_ref()
                    .ok_or_else(|| err(at(".set"), "SET resource needs 'set'"))?;
                out.add_set(&r.name, set.item.iter().cloned());
            }
            other => {
                return Err(err(
                    at(".type"),
                    format!("unknown resource type '{other}' (expected SCALAR, RANGES or SET)"),
                ))
            }
        }
    }
    Ok(out)
}

/// Renders resources as a wire list, tagging each with `role` in `allocation_info` when given.
pub fn resources_to_wire(resources: &Resources, role: Option<&str>) -> Vec<Resource> {
    let allocation_info = role.map(|r| mesos::AllocationInfo {
        role: Some(r.to_string()),
    });
    let base = |name: &str, kind: &str| Resource {
        name: name.to_string(),
        kind: kind.to_string(),
        scalar: None,
        ranges: None,
        set: None,
        role: None,
        allocation_info: allocation_info.clone(),
        extra: Default::default(),
    };
    let mut out = Vec::new();
    for (name, millis) in resources.scalars() {
        out.push(Resource {
            scalar: Some(mesos::Scalar {
                value: millis_to_scalar(millis),
            }),
            ..base(name, "SCALAR")
        });
    }
    for (name, ranges) in resources.all_ranges() {
        out.push(Resource {
            ranges: Some(mesos::Ranges {
                range: ranges
                    .pieces()
                    .iter()
                    .map(|(b, e)| mesos::Range { begin: *b, end: *e })
                    .collect(),
            }),
            ..base(name, "RANGES")
        });
    }
    for (name, items) in resources.all_sets() {
        out.push(Resource {
            set: Some(mesos::Set {
                item: items.iter().cloned().collect(),
            }),
            ..base(name, "SET")
        });
    }
    out
}

/// Renders agent attributes as wire `Attribute`s.
pub fn attributes_to_wire(attrs: &[model::Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .map(|a| {
            let mut w = Attribute {
                name: a.name.clone(),
                kind: String::new(),
                scalar: None,
                ranges: None,
                set: None,
                text: None,
            };
            match &a.value {
                AttributeValue::Text(t) => {
                    w.kind = "TEXT".into();
                    w.text = Some(mesos::Text { value: t.clone() });
                }
                AttributeValue::Scalar(v) => {
                    w.kind = "SCALAR".into();
                    w.scalar = Some(mesos::Scalar { value: *v });
                }
                AttributeValue::Ranges(r) => {
                    w.kind = "RANGES".into();
                    w.ranges = Some(mesos::Ranges {
                        range: r
                            .pieces()
                            .iter()
                            .map(|(b, e)| mesos::Range { begin: *b, end: *e })
                            .collect(),
                    });
                }
                AttributeValue::Set(items) => {
                    w.kind = "SET".into();
                    w.set = Some(mesos::Set {
                        item: items.clone(),
                    });
                }
            }
            w
        })
        .collect()
}

/// Parses wire attributes back to model attributes (agent registration).
pub fn attributes_from_wire(list: &[Attribute]) -> Result<Vec<model::Attribute>, FieldError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            let at = |f: &str| format!("attributes[{i}]{f}");
            let value = match a.kind.as_str() {
                "TEXT" => AttributeValue::Text(
                    a.text
                        .as_ref()
                        .ok_or_else(|| err(at(".text"), "missing"))?
                        .value
                        .clone(),
                ),
                "SCALAR" => AttributeValue::Scalar(
                    a.scalar
                        .as_ref()
                        .ok_or_else(|| err(at(".scalar"), "missing"))?
                        .value,
                ),
                "RANGES" => AttributeValue::Ranges(model::Ranges::from_pieces(
                    a.ranges
                        .as_ref()
                        .ok_or_else(|| err(at(".ranges"), "missing"))?
                        .range
                        .iter()
                        .map(|r| (r.begin, r.end)),
                )),
                "SET" => AttributeValue::Set(
                    a.set
                        .as_ref()
                        .ok_or_else(|| err(at(".set"), "missing"))?
                        .item
                        .clone(),
                ),
                other => {
                    return Err(err(
                        at(".type"),
                        format!("unknown attribute type '{other}'"),
                    ))
                }
            };
            Ok(model::Attribute {
                name: a.name.clone(),
                value,
            })
        })
        .collect()
}

/// Mesos's object form of resources used by the read-only endpoints (`/master/state`, the
/// agent's `/state`): scalars as numbers (cpus, disk, gpus, mem always present), ranges as
/// `[a-b, c-d]` strings, sets as `{a,b}` strings.
pub fn resources_json(r: &Resources) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for k in ["cpus", "disk", "gpus", "mem"] {
        m.insert(k.into(), serde_json::json!(r.scalar(k)));
    }
    for (n, v) in r.scalars() {
        m.insert(n.into(), serde_json::json!(millis_to_scalar(v)));
    }
    for (n, ranges) in r.all_ranges() {
        m.insert(n.into(), serde_json::json!(ranges.to_string()));
    }
    for (n, s) in r.all_sets() {
        let items: Vec<&str> = s.iter().map(String::as_str).collect();
        m.insert(
            n.into(),
            serde_json::json!(format!("{{{}}}", items.join(","))),
        );
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_round_trip_through_the_wire() {
        let r = Resources::parse("cpus:2.5;mem:512;ports:[31000-31005];disks:{a}").unwrap();
        let wire = resources_to_wire(&r, Some("*"));
        let json = serde_json::to_value(&wire).unwrap();
        assert_eq!(json[0]["name"], "cpus");
        assert_eq!(json[0]["type"], "SCALAR");
        assert_eq!(json[0]["scalar"]["value"], 2.5);
        assert_eq!(json[2]["ranges"]["range"][0]["begin"], 31000);
        assert_eq!(json[0]["allocation_info"]["role"], "*");
        assert_eq!(resources_from_wire(&wire, "resources").unwrap(), r);
    }

    #[test]
    fn bad_resources_name_the_field() {
        let json = serde_json::json!([
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": -5}}
        ]);
        let wire: Vec<Resource> = serde_json::from_value(json).unwrap();
        let e = resources_from_wire(&wire, "resources").unwrap_err();
        assert_eq!(e.field, "resources[1].scalar.value");
        let json = serde_json::json!([{"name": "ports", "type": "RANGES",
            "ranges": {"range": [{"begin": 5, "end": 9}, {"begin": 8, "end": 10}]}}]);
        let wire: Vec<Resource> = serde_json::from_value(json).unwrap();
        assert!(resources_from_wire(&wire, "r")
            .unwrap_err()
            .message
            .contains("overlap"));
    }
}
