//! Identifier newtypes (frameworks, agents, offers, tasks, executors) and Mesos's ID rules.
//!
//! On the wire Mesos writes every ID as an object `{"value": "..."}` (protobuf JSON of
//! `FrameworkID`, `TaskID`, ...); the serde impls here produce exactly that form.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Longest ID Mesos accepts: `NAME_MAX` bytes, since IDs become path components in sandboxes.
pub const ID_MAX_BYTES: usize = 255;

/// Why an ID was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("ID must not be empty")]
    Empty,
    #[error("ID must be at most {ID_MAX_BYTES} bytes")]
    TooLong,
    #[error("'.' and '..' are not valid IDs")]
    Dots,
    #[error(
        "ID contains an invalid character {0:?} (no '/', '\\\\', whitespace or control characters)"
    )]
    InvalidChar(char),
}

/// Checks an ID against the rules of Mesos's `common::validation::validateID`: not empty, at most
/// 255 bytes, not `.` or `..`, and no path separators, whitespace or control characters.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > ID_MAX_BYTES {
        return Err(IdError::TooLong);
    }
    if id == "." || id == ".." {
        return Err(IdError::Dots);
    }
    if let Some(c) = id
        .chars()
        .find(|c| *c == '/' || *c == '\\' || c.is_whitespace() || c.is_control())
    {
        return Err(IdError::InvalidChar(c));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a string without checking it (IDs from trusted sources).
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            /// The raw string value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                #[derive(Serialize)]
                struct Wire<'a> {
                    value: &'a str,
                }
                Wire { value: &self.0 }.serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                struct Wire {
                    value: String,
                }
                Wire::deserialize(d).map(|w| Self(w.value))
            }
        }
    };
}

id_type!(
    /// A framework (scheduler) ID, assigned by the master on first SUBSCRIBE.
    FrameworkId
);
id_type!(
    /// An agent ID, assigned by the master when the agent first registers.
    AgentId
);
id_type!(
    /// An offer ID, unique for the master's lifetime.
    OfferId
);
id_type!(
    /// A task ID, chosen by the framework; unique among the framework's live tasks.
    TaskId
);
id_type!(
    /// An executor ID, chosen by the framework (or equal to the task ID for command tasks).
    ExecutorId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_mesos_rules() {
        assert!(validate_id("web.1234-abc_x").is_ok());
        assert_eq!(validate_id(""), Err(IdError::Empty));
        assert_eq!(validate_id(".."), Err(IdError::Dots));
        assert_eq!(validate_id("a/b"), Err(IdError::InvalidChar('/')));
        assert_eq!(validate_id("a b"), Err(IdError::InvalidChar(' ')));
        assert_eq!(validate_id("a\u{1}"), Err(IdError::InvalidChar('\u{1}')));
        assert_eq!(validate_id(&"x".repeat(256)), Err(IdError::TooLong));
    }

    #[test]
    fn ids_serialize_as_value_objects() {
        let id = TaskId::new("t1");
        let text = serde_json::to_string(&id).unwrap();
        assert_eq!(text, r#"{"value":"t1"}"#);
        let back: TaskId = serde_json::from_str(&text).unwrap();
        assert_eq!(back, id);
    }
}
