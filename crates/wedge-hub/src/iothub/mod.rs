//! The I/O-free protocol core of the Azure IoT Hub MQTT device upstream: connection strings, SAS
//! tokens, MQTT identity and topics, and the device twin state machine. Nothing here opens a
//! socket; the transport feeds received topics and payloads in and publishes what comes out.
//!
//! Sources for the wire formats, cited again where each is built:
//! - Microsoft Learn, "Communicate with an IoT hub using the MQTT protocol"
//!   (<https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub>, source
//!   `MicrosoftDocs/azure-docs` `articles/iot/iot-mqtt-connect-to-iot-hub.md`).
//! - Azure SDK for Embedded C, `Azure/azure-sdk-for-c` `sdk/src/azure/iot/az_iot_hub_client*.c`.
//! - Azure IoT Python SDK, `Azure/azure-iot-sdk-python`
//!   `azure-iot-device/azure/iot/device/{common/auth,iothub/pipeline}/*.py`.
//! - Azure IoT C SDK, `Azure/azure-iot-sdk-c` `iothub_client/src/iothubtransport_mqtt_common.c`.

pub mod connection_string;
pub mod dps;
pub mod sas;
pub mod session;
pub mod topics;
pub mod twin;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Bytes left as they are by the SDKs' URL encoding: ASCII letters, digits and `-_.~` (RFC 3986
/// unreserved). Everything else, `/`, `$`, `=` and `&` included, becomes `%XX` with upper-case
/// hex. Same set as `_az_span_url_should_encode` in `azure-sdk-for-c` `sdk/src/azure/core/az_span.c`
/// and Python's `urllib.parse.quote(s, safe="")` used throughout `azure-iot-sdk-python`.
const URL_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` URL-encoded as the SDKs do (see [`URL_ENCODE_SET`]): `a b/c` becomes `a%20b%2Fc`; a space is
/// never `+`.
pub(crate) fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_ENCODE_SET).to_string()
}

/// `s` with `%XX` sequences decoded. `+` stays `+` (the Python SDK warns against
/// `unquote_plus`, `mqtt_topic_iothub.py`). `None` when the result is not UTF-8.
pub(crate) fn url_decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

pub(crate) use wedge_core::truncate;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_python_quote_with_no_safe_characters() {
        // python3 -c 'import urllib.parse as u; print(u.quote("a b/c$.ct=application/json&~-_.é", safe=""))'
        assert_eq!(
            url_encode("a b/c$.ct=application/json&~-_.é"),
            "a%20b%2Fc%24.ct%3Dapplication%2Fjson%26~-_.%C3%A9"
        );
    }

    #[test]
    fn decoding_keeps_plus_and_rejects_bad_utf8() {
        assert_eq!(url_decode("a+b%20c%2F").as_deref(), Some("a+b c/"));
        assert_eq!(url_decode("%FF"), None);
        // A stray `%` is kept as is rather than failing.
        assert_eq!(url_decode("100%").as_deref(), Some("100%"));
    }
}
