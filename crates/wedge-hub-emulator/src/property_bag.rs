//! IoT Hub's "property bag": the url-encoded `key=value&...` tail of telemetry and C2D topics.
//!
//! Microsoft's MQTT page: the bag is `RFC 2396-encoded(name)=RFC 2396-encoded(value)&...`,
//! "the same encoding as query strings"; a C2D property whose value is null appears as a
//! bare `key`, an empty one as `key=`. Real hubs send C2D topics such as
//! `devices/d/messages/devicebound/%24.to=%2Fdevices%2Fd%2Fmessages%2FdeviceBound&foo=bar`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// What stays unescaped: the unreserved marks of RFC 2396 (as JavaScript's
/// `encodeURIComponent`), which matches the `%24.to=%2F...` form IoT Hub itself produces.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Decodes a property bag into `(key, value)` pairs, in order.
///
/// A bare `key` (IoT Hub's form for a null value) decodes to an empty value. `+` is kept as
/// a literal plus: RFC 2396 percent-encoding, unlike HTML forms, does not use it for space.
pub fn decode_property_bag(bag: &str) -> Vec<(String, String)> {
    bag.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// Encodes `(key, value)` pairs as a property bag.
pub fn encode_property_bag<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k.as_ref(), COMPONENT),
                utf8_percent_encode(v.as_ref(), COMPONENT)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_iot_hub_form() {
        let bag =
            encode_property_bag(&[("$.to", "/devices/d/messages/deviceBound"), ("a b", "c&d")]);
        assert_eq!(
            bag,
            "%24.to=%2Fdevices%2Fd%2Fmessages%2FdeviceBound&a%20b=c%26d"
        );
        assert_eq!(
            decode_property_bag(&bag),
            vec![
                ("$.to".into(), "/devices/d/messages/deviceBound".into()),
                ("a b".into(), "c&d".into())
            ]
        );
        assert_eq!(
            decode_property_bag("$.ct=application%2Fjson&$.ce=utf-8&flag&empty="),
            vec![
                ("$.ct".into(), "application/json".into()),
                ("$.ce".into(), "utf-8".into()),
                ("flag".into(), String::new()),
                ("empty".into(), String::new())
            ]
        );
        assert!(decode_property_bag("").is_empty());
    }
}
