//! Service discovery records with Mesos-DNS's naming, as pure functions: sanitising labels
//! (`labels`), following the master's operator event stream (`state`), generating the A,
//! AAAA and SRV record set (`records`) and answering a question from it (`query`).
//!
//! The shell (`mantle-server::dns`) owns the sockets: it subscribes to the master, feeds
//! events to `ClusterState::apply`, regenerates the `RecordSet` and swaps it in, and serves
//! DNS (hickory-server) and the Mesos-DNS HTTP API from the current set. Nothing here does
//! I/O, reads a clock or uses randomness; the same state always gives the same records.
//!
//! Behaviour follows Mesos-DNS `docs/docs/naming.md`, `docs/docs/http.md`,
//! `records/generator.go` and `records/labels/labels.go`; deviations are listed in the
//! module docs of `records` and `query`.

pub mod labels;
pub mod query;
pub mod records;
pub mod state;

pub use labels::LabelSpec;
pub use query::{answer, Answer, QType, RData, Rcode, Rr, Zone};
pub use records::{generate, Config, IpSource, RecordSet};
pub use state::{Applied, ClusterState};

#[cfg(test)]
mod tests;
