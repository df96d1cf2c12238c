//! The decoding error: one variant per way a payload can be refused, each naming the
//! problem and, where there is one, the field path (`body.batteries[0].health_percent`).
//!
//! `reason()` gives a stable label for counters and the server's quarantine table; it
//! must never change for an existing variant, since dashboards and alerts key on it.

/// Why a topic or payload was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },

    #[error("topic {topic:?}: {problem}")]
    Topic { topic: String, problem: String },

    #[error("payload is not valid JSON: {0}")]
    Syntax(String),

    #[error("field `{path}`: {message}")]
    Schema { path: String, message: String },

    #[error(
        "schema version {found:?} is not supported: this build reads major version {supported}"
    )]
    UnsupportedVersion { found: String, supported: u32 },

    #[error(
        "device id mismatch: the topic names {topic_id:?} but the payload names {payload_id:?}"
    )]
    DeviceMismatch {
        topic_id: String,
        payload_id: String,
    },

    #[error("kind mismatch: the topic says {topic_kind:?} but the payload says {payload_kind:?}")]
    KindMismatch {
        topic_kind: String,
        payload_kind: String,
    },

    #[error("field `{path}`: {value} is outside {range}")]
    OutOfRange {
        path: String,
        value: String,
        range: &'static str,
    },

    #[error("field `{path}`: {value} is more than {max_hours} h in the future")]
    FutureTimestamp {
        path: String,
        value: String,
        max_hours: i64,
    },

    #[error("authentication failed: {0}")]
    BadSignature(&'static str),
}

impl DecodeError {
    /// Stable machine-readable reason, used as a metric label and quarantine reason.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Topic { .. } => "bad_topic",
            DecodeError::Syntax(_) => "invalid_json",
            DecodeError::Schema { .. } => "schema",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
            DecodeError::DeviceMismatch { .. } => "device_mismatch",
            DecodeError::KindMismatch { .. } => "kind_mismatch",
            DecodeError::OutOfRange { .. } => "out_of_range",
            DecodeError::FutureTimestamp { .. } => "future_timestamp",
            DecodeError::BadSignature(_) => "bad_signature",
        }
    }

    /// Every reason `reason()` can return, for pre-registering counters at zero.
    pub const REASONS: [&'static str; 10] = [
        "too_large",
        "bad_topic",
        "invalid_json",
        "schema",
        "unsupported_version",
        "device_mismatch",
        "kind_mismatch",
        "out_of_range",
        "future_timestamp",
        "bad_signature",
    ];

    pub(crate) fn from_json(
        err: serde_path_to_error::Error<serde_json::Error>,
        prefix: &str,
    ) -> Self {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                DecodeError::Syntax(inner.to_string())
            }
            _ => DecodeError::Schema {
                path: join_path(prefix, &path),
                message: strip_position(&inner.to_string()),
            },
        }
    }
}

pub(crate) fn join_path(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path == "." || path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{path}"),
    }
}

// serde_json appends " at line L column C"; the field path already locates the problem.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}
