//! MQTT identity (client id, username) and topics of an IoT Hub device or module, and the parser
//! for what the hub publishes to it ([`Incoming::parse`]).
//!
//! Formats are from the Microsoft page "Communicate with an IoT hub using the MQTT protocol"
//! (`MicrosoftDocs/azure-docs` `articles/iot/iot-mqtt-connect-to-iot-hub.md`), checked against
//! `azure-sdk-for-c` `sdk/src/azure/iot/az_iot_hub_client{,_telemetry,_c2d,_twin,_methods}.c`,
//! `azure-iot-sdk-python` `iothub/pipeline/mqtt_topic_iothub.py` and
//! `iothub/pipeline/pipeline_stages_iothub_mqtt.py`, and `azure-iot-sdk-c`
//! `iothub_client/src/iothubtransport_mqtt_common.c`.
//!
//! Encoding: device and module ids and the host name go into topics, the client id and the
//! username as they are (Python SDK: "Device ID and Module ID are never encoded"); property-bag
//! keys and values, `$rid` and query parameters are URL-encoded (letters, digits and `-_.~`
//! kept, everything else `%XX`), so the system property `$.ct` is written `%24.ct` as both SDKs
//! do (`azure-sdk-for-c` `AZ_IOT_MESSAGE_PROPERTIES_CONTENT_TYPE "%24.ct"`; Python
//! `urlencode(..., quote_via=quote)`). The Microsoft page's examples leave the `$` bare
//! (`$.ct=application%2Fjson`); received topics are decoded before keys are compared, so either
//! spelling parses.

use std::time::SystemTime;

use wedge_core::Message;

use super::{truncate, url_decode, url_encode};

/// The `api-version` of the MQTT username. The Microsoft page asks for `2021-04-12`; the SDKs
/// lag behind it (`azure-sdk-for-c` and `azure-iot-sdk-c` send `2020-09-30`, the Python SDK
/// `2019-10-01`).
pub const API_VERSION: &str = "2021-04-12";

/// A `DeviceClientType` (user agent) for the username, in the SDKs' `name/version` shape
/// (`azsdk-c/…`, `iothubclient/…`, `azure-iot-device-iothub-py/…`).
pub const DEVICE_CLIENT_TYPE: &str = concat!("wedge/", env!("CARGO_PKG_VERSION"));

/// Filter for twin responses (GET results and reported-patch acknowledgements).
pub const TWIN_RESPONSE_FILTER: &str = "$iothub/twin/res/#";
/// Filter for desired-property patches.
pub const TWIN_DESIRED_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";
/// Filter for direct method requests.
pub const METHODS_FILTER: &str = "$iothub/methods/POST/#";

/// The longest topic MQTT 3.1.1 can carry: a UTF-8 string has a 16-bit length (§1.5.3).
pub const MAX_TOPIC_LEN: usize = 65_535;

const TWIN_RESPONSE_PREFIX: &str = "$iothub/twin/res/";
const TWIN_DESIRED_PREFIX: &str = "$iothub/twin/PATCH/properties/desired";
const METHOD_REQUEST_PREFIX: &str = "$iothub/methods/POST/";
const C2D_MARKER: &str = "/messages/devicebound";

/// Topics quoted in errors are cut to this many bytes.
const QUOTED_TOPIC_LEN: usize = 200;

/// A topic that could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// A topic of none of the shapes wedge subscribes to.
    #[error("topic `{0}` is not one the IoT Hub upstream subscribes to")]
    Unrecognised(String),
    /// A required query parameter is absent.
    #[error("topic `{topic}` has no `{parameter}`")]
    MissingParameter {
        /// The topic (cut to 200 bytes).
        topic: String,
        /// `$rid` or `$version`.
        parameter: &'static str,
    },
    /// A status or version that is not a number.
    #[error("topic `{topic}`: {field} `{value}` is not a number")]
    NotANumber {
        /// The topic (cut to 200 bytes).
        topic: String,
        /// `status` or `$version`.
        field: &'static str,
        /// What was there.
        value: String,
    },
    /// A part that does not percent-decode to UTF-8.
    #[error("topic `{0}` does not percent-decode to UTF-8")]
    BadEncoding(String),
    /// A topic longer than MQTT allows.
    #[error("topic would be {0} bytes, longer than MQTT's {MAX_TOPIC_LEN}")]
    TooLong(usize),
    /// An application property whose key starts with `$`, which IoT Hub reads as a system
    /// property.
    #[error(
        "application property `{0}` starts with `$`, which IoT Hub reserves for system properties"
    )]
    ReservedProperty(String),
}

fn quoted(topic: &str) -> String {
    truncate(topic, QUOTED_TOPIC_LEN).to_owned()
}

/// Who connects: the hub host name (from `HostName`, also when connecting through a gateway),
/// the device and optionally the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `HostName`, e.g. `contoso.azure-devices.net`.
    pub host_name: String,
    /// The device id.
    pub device_id: String,
    /// The module id, for a module identity.
    pub module_id: Option<String>,
}

impl Identity {
    /// The MQTT client id: `{device}` or `{device}/{module}`.
    pub fn client_id(&self) -> String {
        match &self.module_id {
            Some(module) => format!("{}/{module}", self.device_id),
            None => self.device_id.clone(),
        }
    }

    /// The MQTT username: `{host}/{client id}/?api-version=2021-04-12`, then
    /// `&DeviceClientType={encoded}` when given (both SDKs send one, e.g. [`DEVICE_CLIENT_TYPE`]:
    /// `azure-sdk-for-c` `az_iot_hub_client_get_user_name`, Python `pipeline_stages_iothub_mqtt.py`).
    pub fn username(&self, device_client_type: Option<&str>) -> String {
        let mut username = format!(
            "{}/{}/?api-version={API_VERSION}",
            self.host_name,
            self.client_id()
        );
        if let Some(client_type) = device_client_type {
            username.push_str("&DeviceClientType=");
            username.push_str(&url_encode(client_type));
        }
        username
    }

    /// The SAS resource URI of this identity; see [`super::sas::resource_uri`].
    pub fn sas_resource_uri(&self) -> String {
        super::sas::resource_uri(&self.host_name, &self.device_id, self.module_id.as_deref())
    }

    /// `devices/{device}/messages/events/` or `devices/{device}/modules/{module}/messages/events/`.
    fn events_base(&self) -> String {
        match &self.module_id {
            Some(module) => format!(
                "devices/{}/modules/{module}/messages/events/",
                self.device_id
            ),
            None => format!("devices/{}/messages/events/", self.device_id),
        }
    }

    /// The topic to publish a device-to-cloud message on: the events topic followed by the
    /// URL-encoded property bag (`devices/d/messages/events/%24.ct=application%2Fjson&k=v`).
    ///
    /// # Errors
    /// [`TopicError::ReservedProperty`] for an application key starting with `$`;
    /// [`TopicError::TooLong`] past [`MAX_TOPIC_LEN`].
    pub fn telemetry_topic(&self, telemetry: &Telemetry<'_>) -> Result<String, TopicError> {
        let mut topic = self.events_base();
        topic.push_str(&telemetry.property_bag()?);
        if topic.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong(topic.len()));
        }
        Ok(topic)
    }

    /// Filter for cloud-to-device messages: `devices/{device}/messages/devicebound/#`. A device
    /// feature: the page lists no C2D topic for modules (they get edgeHub inputs instead).
    pub fn c2d_filter(&self) -> String {
        format!("devices/{}/messages/devicebound/#", self.device_id)
    }
}

/// The properties of one device-to-cloud message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Telemetry<'a> {
    /// Application properties, in order.
    pub application: &'a [(String, String)],
    /// `$.ct`, content type (`application/json`).
    pub content_type: Option<&'a str>,
    /// `$.ce`, content encoding (`utf-8`).
    pub content_encoding: Option<&'a str>,
    /// `$.mid`, message id.
    pub message_id: Option<&'a str>,
    /// `$.cid`, correlation id.
    pub correlation_id: Option<&'a str>,
    /// `$.ctime`, creation time: `iothub-creation-time-utc`, written as RFC 3339 UTC with
    /// milliseconds. The name is `azure-iot-sdk-c`'s `SYS_PROP_MESSAGE_CREATION_TIME_UTC "ctime"`
    /// and `azure-sdk-for-c`'s `AZ_IOT_MESSAGE_PROPERTIES_CREATION_TIME "%24.ctime"`.
    pub creation_time: Option<SystemTime>,
}

impl<'a> Telemetry<'a> {
    /// The properties of `message`: its application properties, content type and encoding.
    pub fn from_message(message: &'a Message) -> Self {
        Telemetry {
            application: &message.properties,
            content_type: message.content_type.as_deref(),
            content_encoding: message.content_encoding.as_deref(),
            ..Telemetry::default()
        }
    }

    /// The encoded property bag: system properties (`$.mid`, `$.cid`, `$.ct`, `$.ce`, `$.ctime`)
    /// then application properties, `key=value` joined by `&`, keys and values URL-encoded.
    /// Empty when there is nothing to send.
    ///
    /// # Errors
    /// [`TopicError::ReservedProperty`] for an application key starting with `$`.
    pub fn property_bag(&self) -> Result<String, TopicError> {
        let creation_time = self
            .creation_time
            .map(|time| humantime::format_rfc3339_millis(time).to_string());
        let system = [
            ("$.mid", self.message_id),
            ("$.cid", self.correlation_id),
            ("$.ct", self.content_type),
            ("$.ce", self.content_encoding),
            ("$.ctime", creation_time.as_deref()),
        ];
        let mut pairs: Vec<(&str, &str)> = system
            .iter()
            .filter_map(|(key, value)| value.map(|value| (*key, value)))
            .collect();
        for (key, value) in self.application {
            if key.starts_with('$') {
                return Err(TopicError::ReservedProperty(key.clone()));
            }
            pairs.push((key, value));
        }
        Ok(pairs
            .iter()
            .map(|(key, value)| format!("{}={}", url_encode(key), url_encode(value)))
            .collect::<Vec<_>>()
            .join("&"))
    }
}

/// Topic to request the twin document: `$iothub/twin/GET/?$rid={rid}`; publish an empty payload.
pub fn twin_get_topic(rid: &str) -> String {
    format!("$iothub/twin/GET/?$rid={}", url_encode(rid))
}

/// Topic to patch reported properties: `$iothub/twin/PATCH/properties/reported/?$rid={rid}`;
/// the payload is the JSON merge patch.
pub fn twin_reported_topic(rid: &str) -> String {
    format!(
        "$iothub/twin/PATCH/properties/reported/?$rid={}",
        url_encode(rid)
    )
}

/// Topic to answer a direct method: `$iothub/methods/res/{status}/?$rid={rid}`; the payload is
/// JSON or empty.
pub fn method_response_topic(status: i32, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={}", url_encode(rid))
}

/// Decoded `key=value&…` pairs. A key with no `=` has no value (`None`); `key=` has an empty
/// one (the C2D table of the Microsoft page).
pub type PropertyBag = Vec<(String, Option<String>)>;

/// Parses a URL-encoded property bag (the part of a topic after `/` or `?`). Empty segments are
/// skipped.
///
/// # Errors
/// `None` when a key or value does not decode to UTF-8.
pub fn parse_property_bag(bag: &str) -> Option<PropertyBag> {
    bag.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => Some((url_decode(key)?, Some(url_decode(value)?))),
            None => Some((url_decode(pair)?, None)),
        })
        .collect()
}

fn find<'b>(bag: &'b PropertyBag, key: &str) -> Option<&'b str> {
    bag.iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
}

/// Something IoT Hub published to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// `$iothub/twin/res/{status}/?$rid={rid}[&$version={version}]`: the answer to a GET (200,
    /// body = twin document) or to a reported patch (204, `$version` = new reported version), or
    /// an error (429, 5xx, 4xx).
    TwinResponse {
        /// The status code.
        status: u16,
        /// The request id of the request answered.
        rid: String,
        /// `$version`, present on reported-patch acknowledgements.
        version: Option<u64>,
    },
    /// `$iothub/twin/PATCH/properties/desired/?$version={version}`: a desired-properties patch.
    DesiredPatch {
        /// The desired version after this patch.
        version: u64,
    },
    /// `$iothub/methods/POST/{name}/?$rid={rid}`: a direct method call.
    MethodRequest {
        /// The method name.
        name: String,
        /// The request id to answer with ([`method_response_topic`]).
        rid: String,
    },
    /// `devices/{device}/messages/devicebound/[{property bag}]`: a cloud-to-device message.
    C2d {
        /// The device it was sent to.
        device_id: String,
        /// Its decoded properties, system ones (`$.mid`, `$.to`, …) included.
        properties: PropertyBag,
    },
}

impl Incoming {
    /// Parses a received topic. Never panics, whatever the topic.
    ///
    /// # Errors
    /// A [`TopicError`] saying what is wrong with it.
    pub fn parse(topic: &str) -> Result<Incoming, TopicError> {
        let bad_encoding = || TopicError::BadEncoding(quoted(topic));
        let missing = |parameter| TopicError::MissingParameter {
            topic: quoted(topic),
            parameter,
        };
        let number = |field, value: &str| -> Result<u64, TopicError> {
            value.parse().map_err(|_| TopicError::NotANumber {
                topic: quoted(topic),
                field,
                value: truncate(value, 32).to_owned(),
            })
        };

        if let Some(rest) = topic.strip_prefix(TWIN_RESPONSE_PREFIX) {
            let (status, query) = rest.split_once('/').unwrap_or((rest, ""));
            let status = number("status", status)?;
            let status = u16::try_from(status).map_err(|_| TopicError::NotANumber {
                topic: quoted(topic),
                field: "status",
                value: status.to_string(),
            })?;
            let bag = parse_property_bag(query.strip_prefix('?').unwrap_or(query))
                .ok_or_else(bad_encoding)?;
            let rid = find(&bag, "$rid")
                .ok_or_else(|| missing("$rid"))?
                .to_owned();
            let version = find(&bag, "$version")
                .map(|v| number("$version", v))
                .transpose()?;
            return Ok(Incoming::TwinResponse {
                status,
                rid,
                version,
            });
        }

        if let Some(rest) = topic.strip_prefix(TWIN_DESIRED_PREFIX) {
            let rest = rest.strip_prefix('/').unwrap_or(rest);
            let Some(query) = rest.strip_prefix('?').or((rest.is_empty()).then_some("")) else {
                return Err(TopicError::Unrecognised(quoted(topic)));
            };
            let bag = parse_property_bag(query).ok_or_else(bad_encoding)?;
            let version = find(&bag, "$version").ok_or_else(|| missing("$version"))?;
            return Ok(Incoming::DesiredPatch {
                version: number("$version", version)?,
            });
        }

        if let Some(rest) = topic.strip_prefix(METHOD_REQUEST_PREFIX) {
            let (name, query) = rest.split_once("/?").ok_or_else(|| missing("$rid"))?;
            if name.is_empty() || name.contains('/') {
                return Err(TopicError::Unrecognised(quoted(topic)));
            }
            let name = url_decode(name).ok_or_else(bad_encoding)?;
            let bag = parse_property_bag(query).ok_or_else(bad_encoding)?;
            let rid = find(&bag, "$rid")
                .ok_or_else(|| missing("$rid"))?
                .to_owned();
            return Ok(Incoming::MethodRequest { name, rid });
        }

        if let Some(rest) = topic.strip_prefix("devices/")
            && let Some(at) = rest.find(C2D_MARKER)
        {
            let device_id = &rest[..at];
            let after = &rest[at + C2D_MARKER.len()..];
            let bag = if after.is_empty() {
                Some("")
            } else {
                after.strip_prefix('/')
            };
            if let Some(bag) = bag
                && !device_id.is_empty()
                && !device_id.contains('/')
            {
                // The page's C2D example writes the bag as `/?prop1&prop2=…`; a leading `?` is
                // never part of a key (it would be encoded), so drop it.
                let bag = bag.strip_prefix('?').unwrap_or(bag);
                let properties = parse_property_bag(bag).ok_or_else(bad_encoding)?;
                return Ok(Incoming::C2d {
                    device_id: device_id.to_owned(),
                    properties,
                });
            }
        }

        Err(TopicError::Unrecognised(quoted(topic)))
    }
}

/// A cloud-to-device message as the host handles it: `$.ct` and `$.ce` become the content type
/// and encoding, other system properties (`$…`) and the hub's `iothub-ack`/`iothub-operation`
/// are dropped (as `azure-iot-sdk-c` ignores them), a property without a value becomes `""`.
pub fn c2d_message(properties: &PropertyBag, body: Vec<u8>) -> Message {
    let mut message = Message {
        body,
        ..Message::default()
    };
    for (key, value) in properties {
        let value = value.clone().unwrap_or_default();
        match key.as_str() {
            "$.ct" => message.content_type = Some(value),
            "$.ce" => message.content_encoding = Some(value),
            "iothub-ack" | "iothub-operation" => {}
            k if k.starts_with('$') => {}
            _ => message.properties.push((key.clone(), value)),
        }
    }
    message
}

#[cfg(test)]
mod tests;
