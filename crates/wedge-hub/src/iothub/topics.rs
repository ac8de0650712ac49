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
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn device() -> Identity {
        Identity {
            host_name: "contoso.azure-devices.net".into(),
            device_id: "MyDevice01".into(),
            module_id: None,
        }
    }

    fn module() -> Identity {
        Identity {
            module_id: Some("filter".into()),
            ..device()
        }
    }

    #[test]
    fn identity() {
        assert_eq!(device().client_id(), "MyDevice01");
        assert_eq!(module().client_id(), "MyDevice01/filter");
        // The page's example username.
        assert_eq!(
            device().username(None),
            "contoso.azure-devices.net/MyDevice01/?api-version=2021-04-12"
        );
        assert_eq!(
            module().username(Some("wedge/0.1.0 (linux)")),
            "contoso.azure-devices.net/MyDevice01/filter/?api-version=2021-04-12\
             &DeviceClientType=wedge%2F0.1.0%20%28linux%29"
        );
        assert_eq!(
            module().sas_resource_uri(),
            "contoso.azure-devices.net/devices/MyDevice01/modules/filter"
        );
        assert_eq!(
            device().c2d_filter(),
            "devices/MyDevice01/messages/devicebound/#"
        );
    }

    #[test]
    fn telemetry_topics() {
        let none = Telemetry::default();
        assert_eq!(
            device().telemetry_topic(&none).unwrap(),
            "devices/MyDevice01/messages/events/"
        );
        assert_eq!(
            module().telemetry_topic(&none).unwrap(),
            "devices/MyDevice01/modules/filter/messages/events/"
        );

        let message = Message {
            body: b"{}".to_vec(),
            properties: vec![
                ("temperature alert".into(), "true".into()),
                ("route".into(), "a/b&c=d".into()),
            ],
            content_type: Some("application/json;charset=utf-8".into()),
            content_encoding: Some("utf-8".into()),
        };
        let telemetry = Telemetry {
            message_id: Some("m-1"),
            creation_time: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            ..Telemetry::from_message(&message)
        };
        // python3 -c 'import urllib.parse as u; print(u.urlencode([("$.mid","m-1"),
        //   ("$.ct","application/json;charset=utf-8"),("$.ce","utf-8"),
        //   ("$.ctime","2023-11-14T22:13:20.123Z"),("temperature alert","true"),
        //   ("route","a/b&c=d")], quote_via=u.quote))'
        assert_eq!(
            device().telemetry_topic(&telemetry).unwrap(),
            "devices/MyDevice01/messages/events/%24.mid=m-1\
             &%24.ct=application%2Fjson%3Bcharset%3Dutf-8&%24.ce=utf-8\
             &%24.ctime=2023-11-14T22%3A13%3A20.123Z&temperature%20alert=true&route=a%2Fb%26c%3Dd"
        );
    }

    #[test]
    fn telemetry_errors() {
        let reserved = [("$.ct".to_owned(), "x".to_owned())];
        let telemetry = Telemetry {
            application: &reserved,
            ..Telemetry::default()
        };
        assert_eq!(
            device().telemetry_topic(&telemetry),
            Err(TopicError::ReservedProperty("$.ct".into()))
        );
        // 64 properties of 1 KiB keys and values, all needing encoding, pass the host's limits
        // but not MQTT's.
        let big: Vec<(String, String)> = (0..64)
            .map(|i| (format!("{i}{}", "/".repeat(1000)), "/".repeat(1024)))
            .collect();
        let telemetry = Telemetry {
            application: &big,
            ..Telemetry::default()
        };
        assert!(matches!(
            device().telemetry_topic(&telemetry),
            Err(TopicError::TooLong(n)) if n > MAX_TOPIC_LEN
        ));
    }

    #[test]
    fn request_topics() {
        assert_eq!(twin_get_topic("1"), "$iothub/twin/GET/?$rid=1");
        assert_eq!(
            twin_reported_topic("42"),
            "$iothub/twin/PATCH/properties/reported/?$rid=42"
        );
        assert_eq!(
            method_response_topic(200, "ab&c"),
            "$iothub/methods/res/200/?$rid=ab%26c"
        );
        assert_eq!(
            method_response_topic(-1, "7"),
            "$iothub/methods/res/-1/?$rid=7"
        );
    }

    #[test]
    fn parse_twin_responses() {
        // The page's example.
        assert_eq!(
            Incoming::parse("$iothub/twin/res/204/?$rid=1&$version=6"),
            Ok(Incoming::TwinResponse {
                status: 204,
                rid: "1".into(),
                version: Some(6)
            })
        );
        assert_eq!(
            Incoming::parse("$iothub/twin/res/200/?$rid=abc"),
            Ok(Incoming::TwinResponse {
                status: 200,
                rid: "abc".into(),
                version: None
            })
        );
        // Encoded keys decode before comparison; order does not matter.
        assert_eq!(
            Incoming::parse("$iothub/twin/res/429/?%24version=3&%24rid=a%20b"),
            Ok(Incoming::TwinResponse {
                status: 429,
                rid: "a b".into(),
                version: Some(3)
            })
        );
        assert!(matches!(
            Incoming::parse("$iothub/twin/res/200/?$version=2"),
            Err(TopicError::MissingParameter {
                parameter: "$rid",
                ..
            })
        ));
        assert!(matches!(
            Incoming::parse("$iothub/twin/res/ok/?$rid=1"),
            Err(TopicError::NotANumber {
                field: "status",
                ..
            })
        ));
        assert!(matches!(
            Incoming::parse("$iothub/twin/res/70000/?$rid=1"),
            Err(TopicError::NotANumber {
                field: "status",
                ..
            })
        ));
        assert!(matches!(
            Incoming::parse("$iothub/twin/res/204/?$rid=1&$version=-1"),
            Err(TopicError::NotANumber {
                field: "$version",
                ..
            })
        ));
        assert!(matches!(
            Incoming::parse("$iothub/twin/res/"),
            Err(TopicError::NotANumber {
                field: "status",
                ..
            })
        ));
    }

    #[test]
    fn parse_desired_patches() {
        assert_eq!(
            Incoming::parse("$iothub/twin/PATCH/properties/desired/?$version=8"),
            Ok(Incoming::DesiredPatch { version: 8 })
        );
        assert_eq!(
            Incoming::parse("$iothub/twin/PATCH/properties/desired?$version=9"),
            Ok(Incoming::DesiredPatch { version: 9 })
        );
        assert!(matches!(
            Incoming::parse("$iothub/twin/PATCH/properties/desired/"),
            Err(TopicError::MissingParameter {
                parameter: "$version",
                ..
            })
        ));
        assert!(matches!(
            Incoming::parse("$iothub/twin/PATCH/properties/desired/?$version=x"),
            Err(TopicError::NotANumber { .. })
        ));
        assert!(matches!(
            Incoming::parse("$iothub/twin/PATCH/properties/desiredX"),
            Err(TopicError::Unrecognised(_))
        ));
    }

    #[test]
    fn parse_method_requests() {
        assert_eq!(
            Incoming::parse("$iothub/methods/POST/reboot/?$rid=5"),
            Ok(Incoming::MethodRequest {
                name: "reboot".into(),
                rid: "5".into()
            })
        );
        assert_eq!(
            Incoming::parse("$iothub/methods/POST/set%20level/?$rid=ab"),
            Ok(Incoming::MethodRequest {
                name: "set level".into(),
                rid: "ab".into()
            })
        );
        assert!(matches!(
            Incoming::parse("$iothub/methods/POST/reboot"),
            Err(TopicError::MissingParameter {
                parameter: "$rid",
                ..
            })
        ));
        assert!(matches!(
            Incoming::parse("$iothub/methods/POST//?$rid=1"),
            Err(TopicError::Unrecognised(_))
        ));
    }

    #[test]
    fn parse_c2d() {
        assert_eq!(
            Incoming::parse("devices/MyDevice01/messages/devicebound/"),
            Ok(Incoming::C2d {
                device_id: "MyDevice01".into(),
                properties: vec![]
            })
        );
        // The page's null / empty / value example, with and without its leading `?`.
        for bag in [
            "?prop1&prop2=&prop3=a%20string",
            "prop1&prop2=&prop3=a%20string",
        ] {
            let topic = format!("devices/d/messages/devicebound/{bag}");
            assert_eq!(
                Incoming::parse(&topic),
                Ok(Incoming::C2d {
                    device_id: "d".into(),
                    properties: vec![
                        ("prop1".into(), None),
                        ("prop2".into(), Some("".into())),
                        ("prop3".into(), Some("a string".into())),
                    ]
                })
            );
        }
        // What the hub sends in practice: system properties with `%24`.
        let topic = "devices/d/messages/devicebound/%24.mid=7&%24.to=%2Fdevices%2Fd%2Fmessages%2FdeviceBound\
                     &%24.ct=application%2Fjson&iothub-ack=full&color=red%2Bblue";
        let Ok(Incoming::C2d { properties, .. }) = Incoming::parse(topic) else {
            panic!("not parsed")
        };
        assert_eq!(
            properties,
            vec![
                ("$.mid".into(), Some("7".into())),
                (
                    "$.to".into(),
                    Some("/devices/d/messages/deviceBound".into())
                ),
                ("$.ct".into(), Some("application/json".into())),
                ("iothub-ack".into(), Some("full".into())),
                ("color".into(), Some("red+blue".into())),
            ]
        );
        let message = c2d_message(&properties, b"{}".to_vec());
        assert_eq!(message.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            message.properties,
            vec![("color".into(), "red+blue".into())]
        );
        assert_eq!(message.validate(), Ok(()));

        assert!(matches!(
            Incoming::parse("devices/d/messages/devicebound/%FF=1"),
            Err(TopicError::BadEncoding(_))
        ));
        assert!(matches!(
            Incoming::parse("devices/d/messages/deviceboundX"),
            Err(TopicError::Unrecognised(_))
        ));
    }

    #[test]
    fn parse_never_panics_on_odd_topics() {
        for topic in [
            "",
            "/",
            "$iothub",
            "$iothub/twin/res",
            "$iothub/twin/res/200",
            "$iothub/twin/res/200/",
            "$iothub/twin/res/200/?",
            "$iothub/twin/res/200/?&&=&$rid",
            "$iothub/methods/POST/",
            "$iothub/methods/POST//?",
            "devices/",
            "devices//messages/devicebound/",
            "devices/a/b/messages/devicebound/",
            "devices/é/messages/devicebound/%",
            "devices/d/messages/events/",
            "$iothub/twin/PATCH/properties/desired/?$version=99999999999999999999999",
        ] {
            // Only that it returns.
            let _ = Incoming::parse(topic);
        }
        let long = format!("unknown/{}", "é".repeat(1000));
        let Err(TopicError::Unrecognised(quoted)) = Incoming::parse(&long) else {
            panic!("expected unrecognised")
        };
        assert!(quoted.len() <= QUOTED_TOPIC_LEN);
        // `$rid` with no `=` counts as absent.
        assert!(matches!(
            Incoming::parse("$iothub/twin/res/200/?$rid"),
            Err(TopicError::MissingParameter { .. })
        ));
    }
}
