//! The reported state, in the camelCase shape of Azure IoT Edge's edgeAgent.
//!
//! Absent (`None`) fields are left out of the JSON rather than written as `null`: in a twin's
//! reported section a `null` deletes the property, so IoT Hub holds no nulls, and leaving them
//! out is what lets [`ReportedDoc::patch_from`] reproduce the document exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::doc::desired::DocError;
use crate::doc::merge::patch_between;
use crate::truncate;

#[cfg(test)]
mod tests;

/// The longest `statusDescription` or `lastDesiredStatus.description` written, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 256;

/// What the device reports about its deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedDoc {
    /// The `$version` of the last desired section the device acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_desired_version: Option<u64>,
    /// How acting on it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_desired_status: Option<DesiredStatusReport>,
    /// Each module the device knows of, by name.
    #[serde(default)]
    pub modules: BTreeMap<String, ModuleReport>,
}

/// How acting on the last desired section went, edgeAgent style: HTTP-like codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredStatusReport {
    /// `200` when applied; `400` when the document was refused (see
    /// [`invalid`](Self::invalid)); other codes as the host sees fit.
    pub code: u16,
    /// Empty when applied, otherwise why not; written truncated to
    /// [`MAX_DESCRIPTION_LEN`] bytes.
    #[serde(default, serialize_with = "serialize_truncated")]
    pub description: String,
}

impl DesiredStatusReport {
    /// Applied: code 200, no description.
    pub fn ok() -> Self {
        Self {
            code: 200,
            description: String::new(),
        }
    }

    /// Refused: code 400, the error's one line as the description.
    pub fn invalid(error: &DocError) -> Self {
        Self {
            code: 400,
            description: error.to_string(),
        }
    }
}

/// What the device reports about one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleReport {
    /// Where the module is in its life.
    pub runtime_status: RuntimeStatus,
    /// The SHA-256 of the binary it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// How often it has been restarted.
    #[serde(default)]
    pub restart_count: u64,
    /// When it last started, RFC 3339 UTC like `2026-12-01T10:00:00.000Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_start_time_utc: Option<String>,
    /// When it last stopped, in the same format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit_time_utc: Option<String>,
    /// Why it is in that state, for a person; written truncated to
    /// [`MAX_DESCRIPTION_LEN`] bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_truncated_opt"
    )]
    pub status_description: Option<String>,
}

impl ModuleReport {
    /// A module in `runtime_status`, every other field empty.
    pub fn new(runtime_status: RuntimeStatus) -> Self {
        Self {
            runtime_status,
            sha256: None,
            restart_count: 0,
            last_start_time_utc: None,
            last_exit_time_utc: None,
            status_description: None,
        }
    }
}

/// Where a module is in its life, as edgeAgent names it: the runtime's own state of a module,
/// shown by `wedge status` and reported as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeStatus {
    /// An instance is up, or being started (`"running"`).
    Running,
    /// It failed (trapped, exceeded a limit, refused to start, exited with an error) or exited
    /// under `restart-policy = "always"`, and waits out a growing delay (`"backoff"`).
    Backoff,
    /// It failed and its restart policy does not restart it (`"failed"`).
    Failed,
    /// Not running by request: desired `stopped`, a clean exit its policy does not restart,
    /// removed, or the host shutting down (`"stopped"`).
    Stopped,
}

impl ReportedDoc {
    /// Reads a reported section back (say, from the twin at start-up). Unknown keys, such as
    /// IoT Hub's `$version` and `$metadata`, are ignored.
    pub fn from_value(value: &Value) -> Result<Self, DocError> {
        serde_path_to_error::deserialize(value)
            .map_err(|err| DocError::new(err.path().to_string(), err.inner().to_string()))
    }

    /// The document as JSON, without absent fields, descriptions truncated.
    pub fn to_value(&self) -> Value {
        // Cannot fail: every map has string keys and every value serializes.
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(serde_json::Map::new()))
    }

    /// The smallest JSON merge patch that turns `previous`'s JSON into this one's — a removed
    /// module or field becomes `null`, unchanged fields are left out — or `None` if nothing
    /// changed. What the host sends as a reported-properties update.
    pub fn patch_from(&self, previous: &ReportedDoc) -> Option<Value> {
        patch_between(&previous.to_value(), &self.to_value())
    }
}

fn serialize_truncated<S: Serializer>(value: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(truncate(value, MAX_DESCRIPTION_LEN))
}

fn serialize_truncated_opt<S: Serializer>(
    value: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serialize_truncated(value, serializer),
        None => serializer.serialize_none(),
    }
}
