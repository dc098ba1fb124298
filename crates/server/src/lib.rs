//! The daemons' I/O shells: HTTP (axum), event streams, processes and the clock around the
//! pure cores. One module per daemon: `master`, `agent`, `executor` (the built-in executor),
//! `local` (a whole cluster of processes on one machine), and `bench` (a scheduler that
//! measures launch latency against such a cluster; `bench_updates`, status update throughput); `ui` is the web UI the master serves.
//!
//! Invariant: cores are only touched from one actor task per daemon; HTTP handlers talk to it
//! over channels, so no core state sits behind a lock.

#![recursion_limit = "256"]

pub mod agent;
pub mod agent_checkpoint;
pub mod bench;
pub mod bench_updates;
pub mod cgroups;
pub mod clock;
pub mod cni;
pub mod dns;
pub mod docker;
pub mod executor;
pub mod fetcher;
pub mod health;
pub mod http;
pub mod local;
pub mod marathon;
pub mod marathon_store;
pub mod master;
pub mod master_store;
pub mod provisioner;
pub mod sandbox;
pub mod standby;
pub mod ui;
