//! The pure core of Mantle's Marathon-compatible service scheduler.
//!
//! - [`app`]: the app definition, parsed and validated with Marathon's field names, defaults
//!   and per-field errors, rendered back with exactly the fields Marathon emits;
//! - [`placement`]: whether an instance fits an offer (resources, ports, constraints) and the
//!   order offers are tried in (bin-pack or spread);
//! - [`deploy`]: deployments, their parts ordered by dependencies, and their plan JSON;
//! - [`group`]: group bodies flattened into apps, and the group tree rendered from apps;
//! - [`core`]: the state machine over API commands, master events, health results and time,
//!   which returns effects (master calls, store writes, events) as data.
//!
//! Invariants the core keeps (and its tests check):
//! - during a rolling upgrade, ready instances never drop below
//!   `ceil(instances * minimumHealthCapacity)` because of the scheduler's own kills, and live
//!   instances never exceed `instances + floor(instances * maximumOverCapacity)` (plus one
//!   when both bounds are tight, so a deployment can move at all);
//! - every store write of a step comes before the calls it justifies;
//! - a rejected API command changes nothing and writes nothing.

pub mod app;
pub mod core;
pub mod deploy;
pub mod group;
pub mod path;
pub mod placement;
pub mod time;
