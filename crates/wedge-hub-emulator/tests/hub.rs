//! The IoT Hub service emulation, driven by a plain MQTT client acting as the device.

mod common;

use common::{Device, TIMEOUT, broker};
use serde_json::{Value, json};
use wedge_hub_emulator::{HubEmulator, decode_property_bag};

/// A broker with one device, its emulator and the connected device.
async fn setup() -> (wedge_hub_emulator::Broker, HubEmulator, Device) {
    let broker = broker(&[("hub.test/dev1/?api-version=2021-04-12", "secret")]);
    let hub = HubEmulator::start(&broker).await.unwrap();
    let device = Device::connect(&broker, "hub.test/dev1/?api-version=2021-04-12", "secret")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", broker.log()));
    (broker, hub, device)
}

fn json_body(payload: &[u8]) -> Value {
    serde_json::from_slice(payload).unwrap()
}

#[tokio::test]
async fn telemetry_with_properties_is_recorded_and_decoded() {
    let (_broker, hub, mut device) = setup().await;
    device
        .publish(
            "devices/dev1/messages/events/$.ct=application%2Fjson&$.ce=utf-8&$.mid=m-1&alert=hot%20%26%20dry",
            r#"{"t":21}"#,
        )
        .await
        .unwrap();
    device
        .publish("devices/dev1/modules/filter/messages/events/", "raw")
        .await
        .unwrap();

    let telemetry = hub.wait_for_telemetry(2, TIMEOUT).await.unwrap();
    assert_eq!(telemetry[0].device, "dev1");
    assert_eq!(telemetry[0].module, None);
    assert_eq!(telemetry[0].property("$.ct"), Some("application/json"));
    assert_eq!(telemetry[0].property("$.ce"), Some("utf-8"));
    assert_eq!(telemetry[0].property("$.mid"), Some("m-1"));
    assert_eq!(telemetry[0].property("alert"), Some("hot & dry"));
    assert_eq!(telemetry[0].body, br#"{"t":21}"#);
    assert_eq!(telemetry[1].module.as_deref(), Some("filter"));
    assert!(telemetry[1].properties.is_empty());
}

#[tokio::test]
async fn twin_get_and_reported_patch() {
    let (_broker, hub, mut device) = setup().await;
    assert!(device.subscribe("$iothub/twin/res/#").await.unwrap());

    device
        .publish("$iothub/twin/GET/?$rid=1", "")
        .await
        .unwrap();
    let response = device.next_publish().await.unwrap();
    assert_eq!(response.topic, "$iothub/twin/res/200/?$rid=1");
    assert_eq!(
        json_body(&response.payload),
        json!({"desired": {"$version": 1}, "reported": {"$version": 1}})
    );

    let patch = json!({"fw": "1.0", "net": {"rssi": -60, "ssid": "x"}});
    device
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=2",
            patch.to_string(),
        )
        .await
        .unwrap();
    let response = device.next_publish().await.unwrap();
    assert_eq!(response.topic, "$iothub/twin/res/204/?$rid=2&$version=2");
    assert!(response.payload.is_empty());

    let patch = json!({"net": {"ssid": null}});
    device
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=3",
            patch.to_string(),
        )
        .await
        .unwrap();
    let response = device.next_publish().await.unwrap();
    assert_eq!(response.topic, "$iothub/twin/res/204/?$rid=3&$version=3");
    let reported = hub
        .wait_for_reported("dev1", |r| r["$version"] == 3, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        reported,
        json!({"fw": "1.0", "net": {"rssi": -60}, "$version": 3})
    );

    device
        .publish("$iothub/twin/PATCH/properties/reported/?$rid=4", "not json")
        .await
        .unwrap();
    let response = device.next_publish().await.unwrap();
    assert_eq!(response.topic, "$iothub/twin/res/400/?$rid=4");
}

#[tokio::test]
async fn desired_patch_reaches_the_device_with_its_version() {
    let (_broker, hub, mut device) = setup().await;
    assert!(
        device
            .subscribe("$iothub/twin/PATCH/properties/desired/#")
            .await
            .unwrap()
    );

    let version = hub
        .set_desired("dev1", json!({"interval": 5}))
        .await
        .unwrap();
    assert_eq!(version, 2);
    let patch = device.next_publish().await.unwrap();
    assert_eq!(
        patch.topic,
        "$iothub/twin/PATCH/properties/desired/?$version=2"
    );
    assert_eq!(
        json_body(&patch.payload),
        json!({"interval": 5, "$version": 2})
    );
    assert!(!patch.retain);
    assert_eq!(hub.desired("dev1"), json!({"interval": 5, "$version": 2}));
    assert_eq!(hub.twin("dev1")["desired"]["interval"], 5);
}

#[tokio::test]
async fn direct_method_round_trip_and_timeout() {
    let (_broker, hub, mut device) = setup().await;
    assert!(device.subscribe("$iothub/methods/POST/#").await.unwrap());

    let invoke = hub.invoke("dev1", "reboot", json!({"delay": 1}), TIMEOUT);
    let answer = async {
        let request = device.next_publish().await.unwrap();
        let rid = request
            .topic
            .strip_prefix("$iothub/methods/POST/reboot/?$rid=");
        let rid = rid
            .unwrap_or_else(|| panic!("{}", request.topic))
            .to_owned();
        assert_eq!(json_body(&request.payload), json!({"delay": 1}));
        device
            .publish(
                &format!("$iothub/methods/res/201/?$rid={rid}"),
                r#"{"ok":true}"#,
            )
            .await
            .unwrap();
    };
    let (result, ()) = tokio::join!(invoke, answer);
    assert_eq!(result.unwrap(), (201, json!({"ok": true})));

    // Nobody answers: the call fails after its timeout, like IoT Hub's 504.
    let unanswered = hub
        .invoke(
            "dev1",
            "ignored",
            Value::Null,
            std::time::Duration::from_millis(200),
        )
        .await;
    assert!(unanswered.is_err());
}

#[tokio::test]
async fn c2d_reaches_the_device_with_its_property_bag() {
    let (_broker, hub, mut device) = setup().await;
    assert!(
        device
            .subscribe("devices/dev1/messages/devicebound/#")
            .await
            .unwrap()
    );

    hub.send_c2d("dev1", "hello", &[("kind", "greeting & more")])
        .await
        .unwrap();
    let message = device.next_publish().await.unwrap();
    let bag = message
        .topic
        .strip_prefix("devices/dev1/messages/devicebound/")
        .unwrap();
    assert_eq!(
        bag,
        "%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&kind=greeting%20%26%20more"
    );
    assert_eq!(
        decode_property_bag(bag),
        vec![
            (
                "$.to".to_owned(),
                "/devices/dev1/messages/deviceBound".to_owned()
            ),
            ("kind".to_owned(), "greeting & more".to_owned())
        ]
    );
    assert_eq!(&message.payload[..], b"hello");
    assert_eq!(message.qos, rumqttc::QoS::AtLeastOnce);
}
