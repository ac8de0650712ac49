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
