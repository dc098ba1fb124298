//! Mantle's domain vocabulary: identifiers, resources, task states and time.
//!
//! Everything here is pure data with no I/O. The cores (`allocator`, `master`, `agent`) speak in
//! these types; the `api` crate converts the Mesos wire JSON to and from them.

pub mod ids;
pub mod resources;
pub mod state;
pub mod time;

pub use ids::{validate_id, AgentId, ExecutorId, FrameworkId, IdError, OfferId, TaskId};
pub use resources::{Attribute, AttributeValue, ParseError, Ranges, ResourceError, Resources};
pub use state::TaskState;
pub use time::Now;
