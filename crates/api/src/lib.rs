//! Wire types: the Mesos v1 JSON of the scheduler, executor and (in part) operator APIs, the
//! master<->agent protocol, RecordIO framing, and conversions to `model` types.
//!
//! Invariant: only this crate knows JSON field names. Field names, enum spellings and which
//! optional fields appear follow Mesos's protobuf JSON mapping (`include/mesos/v1/*.proto`):
//! snake_case names, enums as strings, IDs as `{"value": ...}`, `bytes` as base64.
//! Unknown fields in requests are ignored, as Mesos's JSON-to-protobuf parser does; fields we
//! pass through untouched (a task's `container`, `labels`, ...) are kept in `extra`.

pub mod convert;
pub mod executor;
pub mod internal;
pub mod mesos;
pub mod operator;
pub mod recordio;
pub mod scheduler;

pub use convert::{
    attributes_from_wire, attributes_to_wire, resources_from_wire, resources_json,
    resources_to_wire, FieldError,
};
