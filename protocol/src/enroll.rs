//! HTTP wire types of enrolment (`POST /api/v1/enroll`) and of API errors.
//!
//! Enrolment carries device facts only (normalised serial, model, MACs, hostname):
//! never a user name. The response holds the device's secrets; it must never be
//! logged.

use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::topic::DeviceId;

/// Path of the enrolment endpoint, relative to the server's base URL.
pub const ENROLL_PATH: &str = "/api/v1/enroll";

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// Enrolment token issued for a member authority or a school.
    pub token: String,
    /// Serial normalised with [`crate::normalize_serial`]; absent when the firmware has
    /// none, in which case `macs` identify the device.
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub product_name: Option<String>,
    /// MAC addresses of physical interfaces, lowercase `aa:bb:cc:dd:ee:ff`.
    #[serde(default)]
    pub macs: Vec<String>,
    pub hostname: Option<String>,
    pub agent_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// Same id as before when the same hardware enrols again.
    pub device_id: DeviceId,
    /// Base64 of the 32-byte key frames are signed with (see [`crate::DeviceKey`]).
    pub device_key: String,
    /// Broker credentials for brokers that check them (user name = device id).
    pub mqtt_username: String,
    pub mqtt_password: String,
    /// True when this hardware was already enrolled (its previous key is revoked).
    pub reenrolled: bool,
}

/// Body of every API error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: ApiErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiErrorDetail {
    /// Stable machine-readable code: "invalid_token", "token_expired", "bad_request"…
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}
