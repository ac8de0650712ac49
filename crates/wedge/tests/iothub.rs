//! The IoT Hub upstream end to end: a real `wedge run` talks MQTT over TLS to a real Mosquitto,
//! where the emulator plays the IoT Hub service side.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::iothub::{Cloud, DEVICE, HUB, KEY, demo_pipeline, temperature, unique_ids};
use support::{Host, module, wait_for};
use wedge_hub::iothub::sas;
use wedge_hub::iothub::topics::Identity;
use wedge_test_artifacts::ECHO;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_arrives_with_its_properties() {
    let cloud = Cloud::start().await;
    let _host = Host::start(&cloud.deployment(&cloud.token, &demo_pipeline()));
    let received = cloud.hub.wait_for_telemetry(10, TIMEOUT).await.unwrap();
    let mut ids = std::collections::HashSet::new();
    for message in &received {
        assert_eq!(
            (message.device.as_str(), message.module.as_deref()),
            (DEVICE, None)
        );
        assert_eq!(
            message.property("$.ct"),
            Some("application/json"),
            "{:?}",
            message.properties
        );
        assert_eq!(message.property("$.ce"), Some("utf-8"));
        assert_eq!(message.property("wedge-module"), Some("filter"));
        assert_eq!(message.property("units-temperature"), Some("celsius"));
        assert!(message.property("$.ctime").is_some());
        assert!(
            ids.insert(message.property("$.mid").unwrap().to_string()),
            "message ids are unique"
        );
        assert!(temperature(&message.body) > 30.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn desired_properties_configure_modules_and_are_acknowledged() {
    let cloud = Cloud::start().await;
    let host = Host::start(&cloud.deployment(&cloud.token, &demo_pipeline()));
    cloud.hub.wait_for_telemetry(1, TIMEOUT).await.unwrap();

    let (ack, reported) = cloud
        .configure(DEVICE, "filter", json!({"threshold": 24.0}))
        .await;
    assert_eq!(ack["ac"], 200, "{reported}");
    assert_eq!(ack["value"], json!({"threshold": 24.0}));
    // What the module itself reports is there too.
    assert_eq!(
        reported["wedge"]["modules"]["filter"]["properties"]["threshold"], 24.0,
        "{reported}"
    );

    let before = cloud.hub.telemetry().len();
    wait_for("a reading between 24 and 30 at the hub", TIMEOUT, || {
        cloud.hub.telemetry()[before..]
            .iter()
            .any(|m| (24.0..=30.0).contains(&temperature(&m.body)))
            .then_some(())
    });

    // An invalid configuration is acknowledged 400 and changes nothing.
    let (ack, _) = cloud
        .configure(DEVICE, "filter", json!({"threshold": "warm"}))
        .await;
    assert_eq!(ack["ac"], 400, "{ack}");
    assert!(ack["ad"].as_str().unwrap().contains("threshold"), "{ack}");
    let filter = host.module_status("filter");
    assert_eq!(
        (filter["state"].as_str(), filter["restarts"].as_u64()),
        (Some("running"), Some(0))
    );
    assert_eq!(
        host.request(&json!({"op": "status"})).unwrap()["upstream"]["link"]["connected"],
        true
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_methods_reach_modules() {
    let cloud = Cloud::start().await;
    let host = Host::start(&cloud.deployment(&cloud.token, &demo_pipeline()));
    cloud.hub.wait_for_telemetry(1, TIMEOUT).await.unwrap();

    let (status, payload) = cloud
        .hub
        .invoke(DEVICE, "echo.ping", json!({"n": 1}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!((status, payload), (200, json!({"pong": {"n": 1}})));
    let (status, payload) = cloud
        .hub
        .invoke(DEVICE, "ghost.ping", json!(null), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(status, 404, "{payload}");
    let (status, payload) = cloud
        .hub
        .invoke(DEVICE, "wedge.status", json!(null), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(payload["modules"].as_array().unwrap().len(), 3, "{payload}");

    let (status, _) = cloud
        .hub
        .invoke(
            DEVICE,
            "wedge.restart-module",
            json!({"module": "echo"}),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    wait_for("echo restarted and running", TIMEOUT, || {
        let echo = host.module_status("echo");
        (echo["restarts"] == 1 && echo["state"] == "running").then_some(())
    });
    let (status, _) = cloud
        .hub
        .invoke(DEVICE, "echo.ping", json!(2), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(status, 200, "the restarted module answers");

    // A module that does not answer within its method-timeout-ms: 504, and it keeps running.
    let (status, payload) = cloud
        .hub
        .invoke(DEVICE, "echo.sleep", json!({"ms": 2000}), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(status, 504, "{payload}");
    assert!(
        payload["error"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{payload}"
    );
    // Calls queued behind the sleep time out too; once it is done, the module answers again.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (status, payload) = cloud
            .hub
            .invoke(DEVICE, "echo.ping", json!(3), TIMEOUT)
            .await
            .unwrap();
        match status {
            200 => break,
            504 => assert!(
                tokio::time::Instant::now() < deadline,
                "echo never answered again"
            ),
            other => panic!("{other}: {payload}"),
        }
    }
    assert_eq!(
        host.module_status("echo")["restarts"],
        1,
        "the late answer is no failure"
    );
    let (status, _) = cloud
        .hub
        .invoke(
            DEVICE,
            "wedge.restart-module",
            json!({"module": "ghost"}),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_refused_by_the_broker_and_reported() {
    let cloud = Cloud::start().await;
    let wrong = cloud.token.replace("sig=", "sig=x");
    let host = Host::start(&cloud.deployment(&wrong, &demo_pipeline()));
    let link = host.wait_for_link_error(TIMEOUT);
    let error = link["last-error"].as_str().unwrap();
    assert!(error.contains("refused"), "{error}");
    assert!(
        !host.log().contains(&wrong) && !host.log().contains(KEY),
        "secrets stay out of the log"
    );
    assert!(cloud.hub.telemetry().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_reported_and_not_sent() {
    let cloud = Cloud::start().await;
    let identity = Identity {
        host_name: HUB.into(),
        device_id: DEVICE.into(),
        module_id: None,
    };
    let an_hour_ago = sas::unix_seconds(std::time::SystemTime::now()) - 3600;
    let expired = sas::token(KEY, &identity.sas_resource_uri(), None, an_hour_ago).unwrap();
    let host = Host::start(&cloud.deployment(expired.expose(), &demo_pipeline()));
    let link = host.wait_for_link_error(TIMEOUT);
    assert!(
        link["last-error"].as_str().unwrap().contains("expired"),
        "{link}"
    );
    assert_eq!(link["connected"], false);
    // The modules run regardless, filling the outbox for when a valid credential is deployed.
    assert_eq!(host.module_status("filter")["state"], "running");
    assert!(
        !host.log().contains(expired.expose()),
        "secrets stay out of the log"
    );
    assert!(cloud.hub.telemetry().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_broker_restart_nothing_is_lost_and_the_twin_catches_up() {
    let mut cloud = Cloud::start().await;
    let host = Host::start(&cloud.deployment(&cloud.token, &demo_pipeline()));
    cloud.hub.wait_for_telemetry(5, TIMEOUT).await.unwrap();

    cloud.broker.stop();
    // Changed while the device is away: it only learns of it by fetching the twin again.
    let patch = json!({"wedge": {"modules": {"filter": {"config": {"threshold": 1000.0}}}}});
    let version = cloud.hub.set_desired(DEVICE, patch).await.unwrap();
    let status = |host: &Host| host.request(&json!({"op": "status"})).unwrap();
    let link = |host: &Host| status(host)["upstream"]["link"].clone();
    wait_for("wedge to notice the broker is gone", TIMEOUT, || {
        (link(&host)["connected"] == false).then_some(())
    });
    // The pipeline keeps sending while the hub is unreachable.
    let queued_offline = wait_for("telemetry queued while offline", TIMEOUT, || {
        let queued = status(&host)["outbox"]["depth"].as_u64().unwrap();
        (queued >= 3).then_some(queued)
    });

    cloud.broker.restart().unwrap();
    // wedge's reconnect backoff (doubling from 250 ms, with jitter) may have grown while the
    // broker was down on a loaded machine: allow for a few more doublings.
    let ack = |r: &Value| r["wedge"]["modules"]["filter"]["config"]["av"] == version;
    let reported = cloud
        .hub
        .wait_for_reported(DEVICE, ack, 3 * TIMEOUT)
        .await
        .unwrap();
    assert_eq!(reported["wedge"]["modules"]["filter"]["config"]["ac"], 200);

    // With the threshold at 1000 nothing new passes: every message the filter sent must arrive.
    let sent = host.module_status("filter")["messages-out"]
        .as_u64()
        .unwrap();
    let ids = wait_for("every sent message at the hub", TIMEOUT, || {
        let ids = unique_ids(&cloud.hub);
        (ids.len() as u64 >= sent).then_some(ids)
    });
    let sequences: Vec<u64> = ids.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(
        sequences,
        (1..=sent).collect::<Vec<_>>(),
        "no gaps, none missing"
    );
    assert!(
        sent >= 5 + queued_offline,
        "sent {sent}, queued offline {queued_offline}"
    );
    wait_for("the outbox emptied", TIMEOUT, || {
        (status(&host)["outbox"]["depth"] == 0).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_to_device_messages_reach_a_module_input() {
    let cloud = Cloud::start().await;
    let _host = Host::start(&cloud.deployment(&cloud.token, &demo_pipeline()));
    cloud.hub.wait_for_telemetry(1, TIMEOUT).await.unwrap();

    cloud
        .hub
        .send_c2d(
            DEVICE,
            b"reboot please".to_vec(),
            &[("command", "reboot"), ("urgency", "low")],
        )
        .await
        .unwrap();
    // echo forwards what reaches its `commands` input back to the hub, properties and all.
    let echoed = wait_for("the echoed C2D message", TIMEOUT, || {
        cloud
            .hub
            .telemetry()
            .into_iter()
            .find(|m| m.property("wedge-module") == Some("echo"))
    });
    assert_eq!(echoed.body, b"reboot please");
    assert_eq!(echoed.property("command"), Some("reboot"));
    assert_eq!(echoed.property("urgency"), Some("low"));
}

/// The session is persistent (CleanSession = 0, as the SDKs connect): a C2D message sent while
/// wedge is down waits at the hub and arrives after the reconnect.
#[tokio::test(flavor = "multi_thread")]
async fn a_c2d_message_sent_while_offline_arrives_after_the_reconnect() {
    let cloud = Cloud::start().await;
    let mut host = Host::start(&cloud.deployment(&cloud.token, &demo_pipeline()));
    cloud.hub.wait_for_telemetry(1, TIMEOUT).await.unwrap();
    host.kill();
    cloud
        .hub
        .send_c2d(
            DEVICE,
            b"sent while offline".to_vec(),
            &[("command", "late")],
        )
        .await
        .unwrap();
    host.restart();
    let echoed = wait_for("the C2D message sent while offline", TIMEOUT, || {
        cloud
            .hub
            .telemetry()
            .into_iter()
            .find(|m| m.property("wedge-module") == Some("echo"))
    });
    assert_eq!(echoed.body, b"sent while offline");
    assert_eq!(echoed.property("command"), Some("late"));
}

/// C2D is at least once: a message is acknowledged to the hub only once a route took it. A
/// slow module with a tiny inbox refuses most of a burst at first; each refused message is
/// delivered again once there is room, and none is lost.
#[tokio::test(flavor = "multi_thread")]
async fn c2d_messages_to_a_full_inbox_are_delivered_once_there_is_room() {
    const BURST: usize = 20;
    let cloud = Cloud::start().await;
    let modules = format!(
        "{}[routes]
commands = {{ from = \"$upstream/c2d\", to = \"echo/commands\" }}
echoed = {{ from = \"echo/out\", to = \"$upstream\" }}
",
        module("echo", ECHO, "inbox = 2\nconfig = { sleep-ms = 50 }"),
    );
    let host = Host::start(&cloud.deployment(&cloud.token, &modules));
    wait_for("the link up", TIMEOUT, || {
        (host.request(&json!({"op": "status"})).unwrap()["upstream"]["link"]["connected"] == true)
            .then_some(())
    });
    for n in 0..BURST {
        cloud
            .hub
            .send_c2d(DEVICE, n.to_string().into_bytes(), &[])
            .await
            .unwrap();
    }
    let echoed = wait_for("every C2D message echoed", TIMEOUT, || {
        let bodies: std::collections::BTreeSet<usize> = cloud
            .hub
            .telemetry()
            .iter()
            .filter(|m| m.property("wedge-module") == Some("echo"))
            .map(|m| String::from_utf8_lossy(&m.body).parse().unwrap())
            .collect();
        (bodies.len() == BURST).then_some(bodies)
    });
    assert_eq!(echoed, (0..BURST).collect(), "every message, none lost");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_identity_uses_its_own_topics_and_twin() {
    let cloud = Cloud::start_as(Some("edge")).await;
    let _host = Host::start(&cloud.deployment(&cloud.token, &demo_pipeline()));
    let received = cloud.hub.wait_for_telemetry(3, TIMEOUT).await.unwrap();
    for message in &received {
        assert_eq!(
            (message.device.as_str(), message.module.as_deref()),
            (DEVICE, Some("edge")),
            "telemetry goes to devices/{DEVICE}/modules/edge/messages/events/"
        );
    }
    let identity = format!("{DEVICE}/edge");
    let (ack, _) = cloud
        .configure(&identity, "filter", json!({"threshold": 25.0}))
        .await;
    assert_eq!(ack["ac"], 200, "{ack}");
    let (status, payload) = cloud
        .hub
        .invoke(&identity, "echo.ping", json!("m"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!((status, payload), (200, json!({"pong": "m"})));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_the_method_payload_limit_is_replaced_by_413() {
    let cloud = Cloud::start().await;
    let host = Host::start(&cloud.deployment(&cloud.token, &demo_pipeline()));
    cloud.hub.wait_for_telemetry(1, TIMEOUT).await.unwrap();

    // `ping` answers with what it was sent: 130 KiB in, over 128 KiB out.
    let big = "x".repeat(130 * 1024);
    let (status, payload) = cloud
        .hub
        .invoke(DEVICE, "echo.ping", json!(big), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(status, 413);
    assert!(
        payload["error"]
            .as_str()
            .unwrap()
            .contains("131072-byte limit"),
        "{payload}"
    );
    let (status, _) = cloud
        .hub
        .invoke(DEVICE, "echo.ping", json!(1), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(status, 200, "the link is still up");
    let link = host.request(&json!({"op": "status"})).unwrap()["upstream"]["link"].clone();
    assert_eq!(link["dropped"]["method-answers-too-large"], 1, "{link}");
}

#[tokio::test(flavor = "multi_thread")]
async fn methods_past_the_bound_get_503_while_a_slow_module_blocks_and_telemetry_flows() {
    let cloud = std::sync::Arc::new(Cloud::start().await);
    // The demo pipeline with an `echo` that may take 3 s per call.
    let modules = demo_pipeline().replace("method-timeout-ms = 500", "method-timeout-ms = 3000");
    let host = Host::start(&cloud.deployment(&cloud.token, &modules));
    cloud.hub.wait_for_telemetry(1, TIMEOUT).await.unwrap();

    // 20 calls of a method that blocks the module for a second each: 16 are taken (the first
    // few answered, the rest time out in the module's queue), 4 are answered 503 at once.
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let cloud = cloud.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let (status, _) = cloud
                    .hub
                    .invoke(DEVICE, "echo.sleep", json!({"ms": 1000}), TIMEOUT)
                    .await
                    .unwrap();
                (status, started.elapsed())
            })
        })
        .collect();
    // Meanwhile telemetry keeps arriving: the link does not wait for the module.
    let before = cloud.hub.telemetry().len();
    cloud
        .hub
        .wait_for_telemetry(before + 5, Duration::from_secs(3))
        .await
        .unwrap();
    let mut busy = 0;
    for call in calls {
        let (status, elapsed) = call.await.unwrap();
        match status {
            503 => {
                assert!(elapsed < Duration::from_secs(2), "503 after {elapsed:?}");
                busy += 1;
            }
            200 | 504 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(busy, 4, "calls past the 16 unanswered are refused");
    let link = host.request(&json!({"op": "status"})).unwrap()["upstream"]["link"].clone();
    assert_eq!(
        (&link["connected"], &link["last-error"]),
        (&json!(true), &Value::Null),
        "the connection held: {link}"
    );
    assert_eq!(link["dropped"]["methods-refused"], 4, "{link}");
}
