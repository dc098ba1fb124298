//! Resource arithmetic: scalars in Mesos's 3-decimal fixed point, ranges and sets.
//!
//! Mesos stores scalar values as doubles but compares and adds them after rounding to three
//! decimal digits (`include/mesos/values.hpp`); we store them as integer thousandths, so
//! `0.1 + 0.2 == 0.3` exactly and accounting never drifts. The four well-known scalars
//! (`cpus`, `mem`, `disk`, `gpus`) live in a fixed array because the allocator touches them on
//! every decision; other names go in ordered maps.
//!
//! Invariant: a `Resources` value never holds a negative, NaN or infinite amount, ranges are
//! sorted, merged and non-overlapping, and zero amounts are dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Names of the scalars kept in the fixed array, in slot order.
pub const KNOWN_SCALARS: [&str; 4] = ["cpus", "mem", "disk", "gpus"];

/// Largest scalar accepted (in whole units); keeps thousandths far from `i64` overflow.
pub const SCALAR_MAX: f64 = 1e12;

/// Why a resource value was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResourceError {
    #[error("resource '{name}': value must be a finite number, got {value}")]
    NotFinite { name: String, value: f64 },
    #[error("resource '{name}': value must not be negative, got {value}")]
    Negative { name: String, value: f64 },
    #[error("resource '{name}': value {value} is too large")]
    TooLarge { name: String, value: f64 },
    #[error("resource '{name}': range [{begin}-{end}] has begin greater than end")]
    BadRange { name: String, begin: u64, end: u64 },
    #[error("resource '{name}': ranges or set items overlap")]
    Overlap { name: String },
    #[error("resource name must not be empty")]
    EmptyName,
    #[error("resource '{name}' is used with two different types")]
    MixedTypes { name: String },
}

/// Converts a scalar to thousandths, rounding to the nearest like Mesos does.
pub fn scalar_to_millis(name: &str, value: f64) -> Result<i64, ResourceError> {
    if !value.is_finite() {
        return Err(ResourceError::NotFinite {
            name: name.to_string(),
            value,
        });
    }
    if value < 0.0 {
        return Err(ResourceError::Negative {
            name: name.to_string(),
            value,
        });
    }
    if value > SCALAR_MAX {
        return Err(ResourceError::TooLarge {
            name: name.to_string(),
            value,
        });
    }
    // In range by the checks above, so the cast cannot saturate.
    Ok((value * 1000.0).round() as i64)
}

/// Converts thousandths back to a double for the wire.
pub fn millis_to_scalar(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

/// A set of inclusive integer ranges, kept sorted and merged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Builds ranges from possibly unsorted, adjacent or overlapping pieces.
    pub fn from_pieces(pieces: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut v: Vec<(u64, u64)> = pieces.into_iter().collect();
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (b, e) in v {
            match out.last_mut() {
                Some(last) if b <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => out.push((b, e)),
            }
        }
        Ranges(out)
    }

    /// The merged ranges, in order.
    pub fn pieces(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// True when no value is in the set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of integers covered.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(b, e)| e - b + 1).sum()
    }

    /// Union.
    pub fn union(&self, other: &Ranges) -> Ranges {
        Ranges::from_pieces(self.0.iter().chain(other.0.iter()).copied())
    }

    /// Whether every value of `other` is in `self`.
    pub fn contains(&self, other: &Ranges) -> bool {
        other
            .0
            .iter()
            .all(|(b, e)| self.0.iter().any(|(sb, se)| sb <= b && e <= se))
    }

    /// Values of `self` that are not in `other`.
    pub fn difference(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::new();
        for &(mut b, e) in &self.0 {
            let mut done = false;
            for &(ob, oe) in &other.0 {
                if oe < b || ob > e {
                    continue;
                }
                if ob > b {
                    out.push((b, ob - 1));
                }
                if oe >= e {
                    done = true;
                    break;
                }
                b = oe + 1;
            }
            if !done {
                out.push((b, e));
            }
        }
        Ranges(out)
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (b, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{b}-{e}")?;
        }
        f.write_str("]")
    }
}

/// A bundle of resources: scalars (thousandths), ranges and sets, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    known: [i64; 4],
    scalars: BTreeMap<String, i64>,
    ranges: BTreeMap<String, Ranges>,
    sets: BTreeMap<String, BTreeSet<String>>,
}

fn known_slot(name: &str) -> Option<usize> {
    KNOWN_SCALARS.iter().position(|k| *k == name)
}

impl Resources {
    /// No resources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a scalar amount given in thousandths (must be non-negative).
    pub fn add_scalar_millis(&mut self, name: &str, millis: i64) {
        debug_assert!(millis >= 0);
        if millis == 0 {
            return;
        }
        match known_slot(name) {
            Some(i) => self.known[i] = self.known[i].saturating_add(millis),
            None => {
                let v = self.scalars.entry(name.to_string()).or_insert(0);
                *v = v.saturating_add(millis);
            }
        }
    }

    /// Adds a scalar amount, validating it.
    pub fn add_scalar(&mut self, name: &str, value: f64) -> Result<(), ResourceError> {
        if name.is_empty() {
            return Err(ResourceError::EmptyName);
        }
        let millis = scalar_to_millis(name, value)?;
        self.add_scalar_millis(name, millis);
        Ok(())
    }

    /// Adds ranges under `name`.
    pub fn add_ranges(&mut self, name: &str, ranges: &Ranges) {
        if ranges.is_empty() {
            return;
        }
        let entry = self.ranges.entry(name.to_string()).or_default();
        *entry = entry.union(ranges);
    }

    /// Adds set items under `name`.
    pub fn add_set<I: IntoIterator<Item = String>>(&mut self, name: &str, items: I) {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            return;
        }
        self.sets.entry(name.to_string()).or_default().extend(items);
    }

    /// The amount of scalar `name` in thousandths (0 when absent).
    pub fn scalar_millis(&self, name: &str) -> i64 {
        match known_slot(name) {
            Some(i) => self.known[i],
            None => self.scalars.get(name).copied().unwrap_or(0),
        }
    }

    /// The amount of scalar `name` as a double.
    pub fn scalar(&self, name: &str) -> f64 {
        millis_to_scalar(self.scalar_millis(name))
    }

    /// The well-known scalars `[cpus, mem, disk, gpus]` in thousandths.
    pub fn known_scalars(&self) -> [i64; 4] {
        self.known
    }

    /// Ranges under `name`, if any.
    pub fn ranges(&self, name: &str) -> Option<&Ranges> {
        self.ranges.get(name)
    }

    /// Every scalar as (name, thousandths), well-known ones first.
    pub fn scalars(&self) -> impl Iterator<Item = (&str, i64)> + '_ {
        KNOWN_SCALARS
            .iter()
            .zip(self.known.iter())
            .filter(|(_, v)| **v > 0)
            .map(|(n, v)| (*n, *v))
            .chain(self.scalars.iter().map(|(n, v)| (n.as_str(), *v)))
    }

    /// Every range resource.
    pub fn all_ranges(&self) -> impl Iterator<Item = (&str, &Ranges)> + '_ {
        self.ranges.iter().map(|(n, r)| (n.as_str(), r))
    }

    /// Every set resource.
    pub fn all_sets(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> + '_ {
        self.sets.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.known.iter().all(|v| *v == 0)
            && self.scalars.is_empty()
            && self.ranges.is_empty()
            && self.sets.is_empty()
    }

    /// Whether `other` fits inside `self`.
    pub fn contains(&self, other: &Resources) -> bool {
        self.known
            .iter()
            .zip(other.known.iter())
            .all(|(a, b)| a >= b)
            && other
                .scalars
                .iter()
                .all(|(n, v)| self.scalars.get(n).copied().unwrap_or(0) >= *v)
            && other
                .ranges
                .iter()
                .all(|(n, r)| self.ranges.get(n).is_some_and(|s| s.contains(r)))
            && other
                .sets
                .iter()
                .all(|(n, s)| self.sets.get(n).is_some_and(|mine| s.is_subset(mine)))
    }

    /// Adds everything in `other`.
    pub fn add(&mut self, other: &Resources) {
        for (a, b) in self.known.iter_mut().zip(other.known.iter()) {
            *a = a.saturating_add(*b);
        }
        for (n, v) in &other.scalars {
            self.add_scalar_millis(n, *v);
        }
        for (n, r) in &other.ranges {
            self.add_ranges(n, r);
        }
        for (n, s) in &other.sets {
            self.add_set(n, s.iter().cloned());
        }
    }

    /// Removes `other`, clamping at zero for whatever is not there. Callers that must not
    /// lose track check `contains` first; the clamp keeps the no-negative invariant regardless.
    pub fn subtract(&mut self, other: &Resources) {
        for (a, b) in self.known.iter_mut().zip(other.known.iter()) {
            *a = (*a - *b).max(0);
        }
        for (n, v) in &other.scalars {
            if let Some(mine) = self.scalars.get_mut(n) {
                *mine = (*mine - *v).max(0);
                if *mine == 0 {
                    self.scalars.remove(n);
                }
            }
        }
        for (n, r) in &other.ranges {
            if let Some(mine) = self.ranges.get_mut(n) {
                *mine = mine.difference(r);
                if mine.is_empty() {
                    self.ranges.remove(n);
                }
            }
        }
        for (n, s) in &other.sets {
            if let Some(mine) = self.sets.get_mut(n) {
                mine.retain(|i| !s.contains(i));
                if mine.is_empty() {
                    self.sets.remove(n);
                }
            }
        }
    }

    /// `self + other` as a new value.
    pub fn plus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.add(other);
        r
    }

    /// `self - other` as a new value (clamped at zero).
    pub fn minus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.subtract(other);
        r
    }

    /// Parses Mesos's text form, e.g. `cpus:4;mem:4096;ports:[31000-32000];disks:{a,b}`.
    /// A role suffix `name(*)` is accepted; reserved roles are not supported yet.
    pub fn parse(text: &str) -> Result<Resources, ParseError> {
        let mut out = Resources::new();
        let mut kinds: BTreeMap<String, u8> = BTreeMap::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once(':')
                .ok_or_else(|| ParseError(format!("'{part}' is not of the form name:value")))?;
            let name = name.trim();
            let name = match name.split_once('(') {
                Some((n, "*)")) => n,
                Some(_) => {
                    return Err(ParseError(format!(
                        "'{name}': only the default role '*' is supported"
                    )))
                }
                None => name,
            };
            if name.is_empty() {
                return Err(ParseError(format!("'{part}': resource name is empty")));
            }
            let value = value.trim();
            let kind = if value.starts_with('[') {
                let ranges =
                    parse_ranges(value).map_err(|e| ParseError(format!("'{name}': {e}")))?;
                out.add_ranges(name, &ranges);
                1
            } else if value.starts_with('{') {
                let items = parse_set(value).map_err(|e| ParseError(format!("'{name}': {e}")))?;
                out.add_set(name, items);
                2
            } else {
                let v: f64 = value
                    .parse()
                    .map_err(|_| ParseError(format!("'{name}': '{value}' is not a number")))?;
                out.add_scalar(name, v)
                    .map_err(|e| ParseError(e.to_string()))?;
                0
            };
            if let Some(prev) = kinds.insert(name.to_string(), kind) {
                if prev != kind {
                    return Err(ParseError(format!(
                        "'{name}' is used with two different types"
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// A text resource or attribute string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Parses `[a-b, c-d]`.
pub fn parse_ranges(value: &str) -> Result<Ranges, String> {
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| format!("'{value}' is not a range list like [31000-32000]"))?;
    let mut pieces = Vec::new();
    for piece in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (b, e) = piece
            .split_once('-')
            .ok_or_else(|| format!("'{piece}' is not a range like 1-2"))?;
        let b: u64 = b
            .trim()
            .parse()
            .map_err(|_| format!("'{piece}': bad number"))?;
        let e: u64 = e
            .trim()
            .parse()
            .map_err(|_| format!("'{piece}': bad number"))?;
        if b > e {
            return Err(format!("'{piece}': begin is greater than end"));
        }
        pieces.push((b, e));
    }
    Ok(Ranges::from_pieces(pieces))
}

fn parse_set(value: &str) -> Result<Vec<String>, String> {
    let inner = value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .ok_or_else(|| format!("'{value}' is not a set like {{a,b}}"))?;
    Ok(inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect())
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            if !std::mem::take(&mut first) {
                f.write_str(";")
            } else {
                Ok(())
            }
        };
        for (n, v) in self.scalars() {
            sep(f)?;
            write!(f, "{n}:{}", millis_to_scalar(v))?;
        }
        for (n, r) in &self.ranges {
            sep(f)?;
            write!(f, "{n}:{r}")?;
        }
        for (n, s) in &self.sets {
            sep(f)?;
            let items: Vec<&str> = s.iter().map(String::as_str).collect();
            write!(f, "{n}:{{{}}}", items.join(","))?;
        }
        Ok(())
    }
}

/// An agent attribute value (`--attributes 'rack:a;zone:z1'`).
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Text(String),
    Scalar(f64),
    Ranges(Ranges),
    Set(Vec<String>),
}

/// A named agent attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttributeValue,
}

impl Attribute {
    /// Parses Mesos's attribute text: numbers become scalars, `[..]` ranges, `{..}` sets, the
    /// rest text.
    pub fn parse_all(text: &str) -> Result<Vec<Attribute>, ParseError> {
        let mut out: Vec<Attribute> = Vec::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once(':').ok_or_else(|| {
                ParseError(format!("attribute '{part}' is not of the form name:value"))
            })?;
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() {
                return Err(ParseError(format!("attribute '{part}' has an empty name")));
            }
            if out.iter().any(|a| a.name == name) {
                return Err(ParseError(format!("attribute '{name}' is given twice")));
            }
            let value = if value.starts_with('[') {
                AttributeValue::Ranges(parse_ranges(value).map_err(ParseError)?)
            } else if value.starts_with('{') {
                AttributeValue::Set(parse_set(value).map_err(ParseError)?)
            } else if let Some(v) = value.parse::<f64>().ok().filter(|v| v.is_finite()) {
                AttributeValue::Scalar(v)
            } else {
                AttributeValue::Text(value.to_string())
            };
            out.push(Attribute {
                name: name.to_string(),
                value,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
