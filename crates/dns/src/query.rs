//! Answering one question from a record set, as Mesos-DNS's `HandleMesos` does, plus the
//! HTTP API's lookups (`/v1/hosts`, `/v1/services`).
//!
//! Differences from Mesos-DNS, chosen for plain resolvers: an unknown name inside the domain
//! is NXDOMAIN for every type (Mesos-DNS answers NOERROR for a missing SRV name); SOA and NS
//! are answered at the domain apex only; `ANY` is REFUSED (RFC 8482 allows refusing it, and
//! it is the usual amplification vector), and so are types other than A, AAAA, SRV, SOA, NS.
//! Answers are in name order here; the shell shuffles them for rudimentary load balancing.

use crate::records::{Config, RecordSet};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The record types the server answers inside its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    A,
    Aaaa,
    Srv,
    Soa,
    Ns,
    Any,
    Other(u16),
}

/// The response code of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    Refused,
}

/// Record data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: i32,
        retry: i32,
        expire: i32,
        minimum: u32,
    },
    Ns(String),
}

/// One resource record; `name` is fully qualified and lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

/// The sections of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: Rcode,
    pub answers: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
}

/// Where a name lies relative to the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Inside,
    Outside,
}

/// `name` lower-cased with exactly one trailing dot.
pub fn normalise(name: &str) -> String {
    let mut n = name.trim_end_matches('.').to_ascii_lowercase();
    n.push('.');
    n
}

/// Whether `name` (normalised) is the domain or below it.
pub fn zone_of(config: &Config, name: &str) -> Zone {
    let apex = config.apex();
    if name == apex || name.ends_with(&format!(".{apex}")) {
        Zone::Inside
    } else {
        Zone::Outside
    }
}

fn soa(config: &Config, serial: u32) -> Rr {
    Rr {
        name: config.apex(),
        ttl: config.ttl,
        data: RData::Soa {
            mname: config.mname(),
            rname: config.rname(),
            serial,
            refresh: 60,
            retry: 600,
            expire: 86400,
            minimum: config.ttl,
        },
    }
}

/// Answers a question for a name inside the domain. `serial` is the SOA serial (the
/// record set's generation).
pub fn answer(rs: &RecordSet, config: &Config, name: &str, qtype: QType, serial: u32) -> Answer {
    let name = normalise(name);
    let ttl = config.ttl;
    let mut out = Answer {
        rcode: Rcode::NoError,
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
    };
    let apex = name == config.apex();
    match qtype {
        QType::Any | QType::Other(_) => {
            out.rcode = Rcode::Refused;
            return out;
        }
        QType::A => {
            for ip in rs.a.get(&name).into_iter().flatten() {
                out.answers.push(Rr {
                    name: name.clone(),
                    ttl,
                    data: RData::A(*ip),
                });
            }
        }
        QType::Aaaa => {
            for ip in rs.aaaa.get(&name).into_iter().flatten() {
                out.answers.push(Rr {
                    name: name.clone(),
                    ttl,
                    data: RData::Aaaa(*ip),
                });
            }
        }
        QType::Srv => {
            let mut glued = std::collections::BTreeSet::new();
            for t in rs.srv.get(&name).into_iter().flatten() {
                out.answers.push(Rr {
                    name: name.clone(),
                    ttl,
                    data: RData::Srv {
                        priority: 0,
                        weight: 1,
                        port: t.port,
                        target: t.host.clone(),
                    },
                });
                if glued.insert(t.host.clone()) {
                    if let Some(ip) = rs.a.get(&t.host).and_then(|s| s.iter().next()) {
                        out.additional.push(Rr {
                            name: t.host.clone(),
                            ttl,
                            data: RData::A(*ip),
                        });
                    }
                    if let Some(ip) = rs.aaaa.get(&t.host).and_then(|s| s.iter().next()) {
                        out.additional.push(Rr {
                            name: t.host.clone(),
                            ttl,
                            data: RData::Aaaa(*ip),
                        });
                    }
                }
            }
        }
        QType::Soa if apex => out.answers.push(soa(config, serial)),
        QType::Ns if apex => {
            out.answers.push(Rr {
                name: name.clone(),
                ttl,
                data: RData::Ns(config.mname()),
            });
            if let Some(ip) = rs.a.get(&config.mname()).and_then(|s| s.iter().next()) {
                out.additional.push(Rr {
                    name: config.mname(),
                    ttl,
                    data: RData::A(*ip),
                });
            }
        }
        QType::Soa | QType::Ns => {}
    }
    if out.answers.is_empty() {
        if !apex && !rs.has_name(&name) {
            out.rcode = Rcode::NxDomain;
        }
        out.authority.push(soa(config, serial));
    }
    out
}

/// `/v1/hosts/{host}`: the A and AAAA records of a name, or one empty entry.
pub fn hosts_json(rs: &RecordSet, host: &str) -> Value {
    let name = normalise(host);
    let mut out: Vec<Value> = Vec::new();
    for ip in rs.a.get(&name).into_iter().flatten() {
        out.push(json!({"host": name, "ip": ip.to_string()}));
    }
    for ip in rs.aaaa.get(&name).into_iter().flatten() {
        out.push(json!({"host": name, "ip": ip.to_string()}));
    }
    if out.is_empty() {
        out.push(json!({"host": "", "ip": ""}));
    }
    Value::Array(out)
}

/// `/v1/services/{service}`: each SRV target with its address, or one empty entry.
pub fn services_json(rs: &RecordSet, service: &str) -> Value {
    let name = normalise(service);
    let mut out: Vec<Value> = Vec::new();
    for t in rs.srv.get(&name).into_iter().flatten() {
        let port = t.port.to_string();
        if let Some(ip) = rs.a.get(&t.host).and_then(|s| s.iter().next()) {
            out.push(
                json!({"service": service, "host": t.host, "ip": ip.to_string(), "port": port}),
            );
        }
        if let Some(ip) = rs.aaaa.get(&t.host).and_then(|s| s.iter().next()) {
            out.push(
                json!({"service": service, "host": t.host, "ip": ip.to_string(), "port": port}),
            );
        }
    }
    if out.is_empty() {
        out.push(json!({"service": "", "host": "", "ip": "", "port": ""}));
    }
    Value::Array(out)
}
