//! One provisioning, as an I/O-free machine: what to publish, and what each answer means.
//!
//! The exchange ("Communicate with DPS using the MQTT protocol"; `azure-iot-sdk-python`
//! `provisioning/pipeline/mqtt_topic_provisioning.py`, `azure-sdk-for-c`
//! `az_iot_provisioning_client.c`):
//! 1. publish `$dps/registrations/PUT/iotdps-register/?$rid={rid}` with
//!    `{"registrationId": …, "payload": …}`;
//! 2. `$dps/registrations/res/202/?$rid={rid}&retry-after={s}`: `{"operationId": …,
//!    "status": "assigning"}`; wait `retry-after` seconds, then
//! 3. publish `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}`,
//!    again after each 202;
//! 4. `res/200` with `"status": "assigned"` and `registrationState.{assignedHub, deviceId,
//!    payload}`, or `"failed"`/`"disabled"` with `registrationState.{errorCode, errorMessage}`;
//!    429 and 5xx are retried after `retry-after`; any other status is an error whose body is
//!    `{"errorCode", "message", "trackingId"}`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Assignment, DpsError};

/// The filter answers come on.
pub const RESPONSE_FILTER: &str = "$dps/registrations/res/#";
/// How long to wait when an answer asks to retry without a `retry-after` (wedge's choice: a
/// few seconds, as DPS's examples poll).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(3);
/// The longest wait an answer can ask for; more is taken as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What an answer means for the device.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Not an answer to the request in flight: nothing to do.
    Ignore,
    /// Send [`Registration::next_request`] after this long.
    RetryAfter(Duration),
    /// Provisioned.
    Assigned(Assignment),
}

/// One registration in progress.
#[derive(Debug)]
pub struct Registration {
    registration_id: String,
    payload: Option<Value>,
    operation_id: Option<String>,
    /// The `$rid` of the request in flight.
    rid: Option<String>,
    next_rid: u64,
}

impl Registration {
    /// A registration of `registration_id` sending `payload` (custom data for allocation, the
    /// model id) with its register request.
    pub fn new(registration_id: impl Into<String>, payload: Option<Value>) -> Self {
        Registration {
            registration_id: registration_id.into(),
            payload,
            operation_id: None,
            rid: None,
            next_rid: 1,
        }
    }

    /// The next request: the register request until DPS has named the operation, then its
    /// status query. Each with a fresh `$rid`.
    pub fn next_request(&mut self) -> (String, Vec<u8>) {
        let rid = self.next_rid.to_string();
        self.next_rid += 1;
        self.rid = Some(rid.clone());
        match &self.operation_id {
            None => {
                let mut body = json!({ "registrationId": self.registration_id });
                if let Some(payload) = &self.payload {
                    body["payload"] = payload.clone();
                }
                (
                    format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}"),
                    body.to_string().into_bytes(),
                )
            }
            Some(operation) => (
                format!(
                    "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={}",
                    super::super::url_encode(operation)
                ),
                Vec::new(),
            ),
        }
    }

    /// An answer on `topic` (under [`RESPONSE_FILTER`]) with `payload`.
    ///
    /// # Errors
    /// DPS refused the request or could not assign the device ([`DpsError::Refused`],
    /// [`DpsError::Failed`]), or answered something that is not DPS's protocol.
    pub fn on_response(&mut self, topic: &str, payload: &[u8]) -> Result<Step, DpsError> {
        let Some(rest) = topic.strip_prefix("$dps/registrations/res/") else {
            return Ok(Step::Ignore);
        };
        let (status, query) = rest.split_once("/?").unwrap_or((rest, ""));
        let param = |key: &str| {
            query.split('&').find_map(|pair| {
                pair.split_once('=')
                    .filter(|(k, _)| *k == key)
                    .map(|(_, v)| v)
            })
        };
        if param("$rid").is_none() || param("$rid") != self.rid.as_deref() {
            return Ok(Step::Ignore);
        }
        let status: u16 = status
            .parse()
            .map_err(|_| DpsError::Protocol(format!("status {status:?} is not a number")))?;
        let retry_after = param("retry-after")
            .and_then(|s| s.parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
            .unwrap_or(DEFAULT_RETRY_AFTER);
        let body: Value = if payload.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(payload)
                .map_err(|e| DpsError::Protocol(format!("the answer is not JSON: {e}")))?
        };
        match status {
            200 | 202 => {}
            429 | 500..=599 => return Ok(Step::RetryAfter(retry_after)),
            _ => {
                return Err(DpsError::Refused {
                    status,
                    code: body["errorCode"].as_u64(),
                    message: text(&body["message"]),
                });
            }
        }
        if let Some(operation) = body["operationId"].as_str() {
            self.operation_id = Some(operation.to_owned());
        }
        if self.operation_id.is_none() {
            return Err(DpsError::Protocol("the answer has no operationId".into()));
        }
        let state = &body["registrationState"];
        match body["status"].as_str().unwrap_or("assigning") {
            "assigned" => {
                let field = |name: &str| {
                    state[name]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .ok_or_else(|| DpsError::Protocol(format!("the assignment has no {name}")))
                };
                Ok(Step::Assigned(Assignment {
                    hub: field("assignedHub")?,
                    device_id: field("deviceId")?,
                    payload: state.get("payload").filter(|p| !p.is_null()).cloned(),
                }))
            }
            "failed" | "disabled" => Err(DpsError::Failed {
                status: body["status"].as_str().unwrap_or_default().to_owned(),
                code: state["errorCode"].as_u64(),
                message: text(&state["errorMessage"]),
            }),
            // "assigning", "unassigned": not done yet.
            _ => Ok(Step::RetryAfter(retry_after)),
        }
    }
}

/// A message from DPS, cut to one short line (it is shown as is).
fn text(value: &Value) -> String {
    let text = value.as_str().unwrap_or("(no message)");
    super::super::truncate(text, 256).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    #[test]
    fn register_wait_poll_assigned() {
        let mut registration = Registration::new("dev-1", Some(json!({"modelId": "dtmi:x;1"})));
        let (topic, payload) = registration.next_request();
        assert_eq!(topic, "$dps/registrations/PUT/iotdps-register/?$rid=1");
        let request: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            request,
            json!({"registrationId": "dev-1", "payload": {"modelId": "dtmi:x;1"}})
        );
        let accepted = body(json!({"operationId": "4.abc.1", "status": "assigning"}));
        // An answer to another request (another device on the same broker) is not ours.
        assert_eq!(
            registration.on_response(
                "$dps/registrations/res/202/?$rid=9&retry-after=1",
                &accepted
            ),
            Ok(Step::Ignore)
        );
        assert_eq!(
            registration.on_response(
                "$dps/registrations/res/202/?$rid=1&retry-after=1",
                &accepted
            ),
            Ok(Step::RetryAfter(Duration::from_secs(1)))
        );
        let (topic, payload) = registration.next_request();
        assert_eq!(
            topic,
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.abc.1"
        );
        assert!(payload.is_empty());
        // Still assigning, no retry-after: the default.
        assert_eq!(
            registration.on_response("$dps/registrations/res/202/?$rid=2", &accepted),
            Ok(Step::RetryAfter(DEFAULT_RETRY_AFTER))
        );
        registration.next_request();
        let assigned = body(json!({
            "operationId": "4.abc.1", "status": "assigned",
            "registrationState": {"assignedHub": "hub.example", "deviceId": "dev-1",
                                  "status": "assigned", "payload": {"site": 7}}
        }));
        assert_eq!(
            registration.on_response("$dps/registrations/res/200/?$rid=3", &assigned),
            Ok(Step::Assigned(Assignment {
                hub: "hub.example".into(),
                device_id: "dev-1".into(),
                payload: Some(json!({"site": 7})),
            }))
        );
    }

    #[test]
    fn throttling_and_server_errors_are_retried_the_same_request() {
        let mut registration = Registration::new("dev-1", None);
        let (first, _) = registration.next_request();
        assert_eq!(
            registration.on_response("$dps/registrations/res/429/?$rid=1&retry-after=5", b""),
            Ok(Step::RetryAfter(Duration::from_secs(5)))
        );
        let (again, _) = registration.next_request();
        assert!(first.contains("iotdps-register") && again.contains("iotdps-register"));
        assert_eq!(
            registration.on_response("$dps/registrations/res/503/?$rid=2&retry-after=86400", b""),
            Ok(Step::RetryAfter(MAX_RETRY_AFTER))
        );
    }

    #[test]
    fn refusals_and_failures_carry_the_dps_code_and_message() {
        let mut registration = Registration::new("dev-1", None);
        registration.next_request();
        let refused =
            body(json!({"errorCode": 401002, "message": "unauthorized", "trackingId": "t"}));
        let error = registration
            .on_response("$dps/registrations/res/401/?$rid=1", &refused)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "DPS refused the request with 401: unauthorized (error code 401002)"
        );

        let mut registration = Registration::new("dev-1", None);
        registration.next_request();
        let failed = body(json!({
            "operationId": "op", "status": "failed",
            "registrationState": {"errorCode": 400207, "errorMessage": "Custom allocation failed"}
        }));
        let error = registration
            .on_response("$dps/registrations/res/200/?$rid=1", &failed)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "DPS could not assign the device (failed): Custom allocation failed (error code 400207)"
        );

        let mut registration = Registration::new("dev-1", None);
        registration.next_request();
        assert!(matches!(
            registration.on_response("$dps/registrations/res/200/?$rid=1", b"not json"),
            Err(DpsError::Protocol(_))
        ));
    }
}
