//! Integration tests against real processes: a master and agents started from the `mantle`
//! binary on 127.0.0.x, driven by a scheduler written here and by pymesos.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::print_stdout,
    unreachable_pub
)]

mod bench;
mod cli;
mod cni;
mod containers;
mod dns;
mod docker;
mod faults;
mod fetcher;
mod files;
mod harness;
mod images;
mod local;
mod marathon;
mod marathon_faults;
mod pymesos;
mod recovery;
mod scheduler;
mod webui;
