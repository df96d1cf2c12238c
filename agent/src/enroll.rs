//! Enrolment: `parc-agent enroll --server URL --token TOKEN` introduces the device to
//! the server over HTTPS and stores the credentials it gets back (device id, HMAC key,
//! broker login) in the state directory, mode 0600.
//!
//! The request carries device facts only — normalised serial, manufacturer, model, MACs
//! of physical interfaces, hostname, agent version — taken from the inventory. It must
//! never send a user name, and never print or log the token, the key or the broker
//! password.

use std::path::Path;
use std::time::Duration;

use parc_protocol::enroll::{ApiError, ENROLL_PATH, EnrollRequest, EnrollResponse};
use parc_protocol::{Inventory, normalize_serial};

use crate::state::{Enrollment, StateDir, StateError};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("--ca-file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("cannot reach the server: {0}")]
    Http(String),
    /// The server refused, with its stable code (`invalid_token`, `token_expired`…).
    #[error("the server refused the enrolment ({status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from the server ({status}): {detail}")]
    BadResponse { status: u16, detail: String },
    #[error("the server sent an unusable device key: {0}")]
    BadKey(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The enrolment request for this device, from its inventory.
pub fn request_from_inventory(inv: &Inventory, token: &str, agent_version: &str) -> EnrollRequest {
    let mut macs: Vec<String> = inv
        .network_interfaces
        .iter()
        // Virtual interfaces (bridges, VPNs, containers) have MACs that change or are
        // shared: only the hardware's identify the device.
        .filter(|n| matches!(n.link.as_deref(), Some("wired" | "wireless")))
        .filter_map(|n| n.mac.as_deref())
        .map(str::to_ascii_lowercase)
        .filter(|m| m != "00:00:00:00:00:00")
        .collect();
    macs.sort();
    macs.dedup();
    EnrollRequest {
        token: token.to_string(),
        serial: inv
            .identity
            .system_serial
            .as_deref()
            .and_then(normalize_serial),
        manufacturer: inv.identity.system_manufacturer.clone(),
        product_name: inv.identity.product_name.clone(),
        macs,
        hostname: inv.os.hostname.clone(),
        agent_version: agent_version.to_string(),
    }
}

/// Posts `req` to `{server}{ENROLL_PATH}` and stores the answer in `state`.
pub async fn enroll(
    server: &str,
    req: &EnrollRequest,
    ca_file: Option<&Path>,
    state: &StateDir,
) -> Result<Enrollment, EnrollError> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent(format!("parc-agent/{}", req.agent_version));
    if let Some(path) = ca_file {
        let ca_err = |message: String| EnrollError::CaFile {
            path: path.display().to_string(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_err("no certificate in the file".into()));
        }
        // A private CA is pinned: the public roots are not trusted for enrolment.
        builder = builder.tls_certs_only(certs);
    }
    let client = builder
        .build()
        .map_err(|e| EnrollError::Http(e.to_string()))?;
    let url = format!("{}{}", server.trim_end_matches('/'), ENROLL_PATH);
    let resp = client
        .post(&url)
        .json(req)
        .send()
        .await
        .map_err(|e| EnrollError::Http(format!("{url}: {e}")))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| EnrollError::Http(e.to_string()))?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ApiError>(&body) {
            Ok(api) => EnrollError::Refused {
                status: status.as_u16(),
                code: api.error.code,
                message: api.error.message,
            },
            Err(_) => EnrollError::BadResponse {
                status: status.as_u16(),
                detail: String::from_utf8_lossy(&body).chars().take(200).collect(),
            },
        });
    }
    let ok: EnrollResponse =
        serde_json::from_slice(&body).map_err(|e| EnrollError::BadResponse {
            status: status.as_u16(),
            detail: e.to_string(),
        })?;
    let enrollment = Enrollment {
        device_id: ok.device_id,
        device_key: ok.device_key,
        mqtt_username: ok.mqtt_username,
        mqtt_password: ok.mqtt_password,
        server_url: server.to_string(),
    };
    enrollment.key().map_err(EnrollError::BadKey)?;
    state.save_enrollment(&enrollment)?;
    if ok.reenrolled {
        tracing::info!(device = %enrollment.device_id, "re-enrolled: the previous key is revoked");
    }
    Ok(enrollment)
}
