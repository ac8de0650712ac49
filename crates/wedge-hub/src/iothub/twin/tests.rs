use super::*;

fn connected() -> (Twin, Instant, String) {
    let mut twin = Twin::default();
    let now = Instant::now();
    let actions = twin.on_connected(now);
    let rid = get_rid(&actions).expect("a GET on connect");
    (twin, now, rid)
}

fn get_rid(actions: &[Action]) -> Option<String> {
    actions.iter().find_map(|action| match action {
        Action::Publish { topic, payload } => {
            let rid = topic.strip_prefix("$iothub/twin/GET/?$rid=")?;
            assert!(payload.is_empty());
            Some(rid.to_owned())
        }
        _ => None,
    })
}

fn report_sent(actions: &[Action]) -> Option<(String, Value)> {
    actions.iter().find_map(|action| match action {
        Action::Publish { topic, payload } => {
            let rid = topic.strip_prefix("$iothub/twin/PATCH/properties/reported/?$rid=")?;
            Some((rid.to_owned(), serde_json::from_slice(payload).unwrap()))
        }
        _ => None,
    })
}

/// Module name to `config` in a desired deployment.
fn module_configs(wedge: &Value) -> BTreeMap<String, Value> {
    wedge["modules"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, module)| Some((name.clone(), module.get("config")?.clone())))
        .collect()
}

fn modules(actions: &[Action]) -> Option<(u64, BTreeMap<String, Value>)> {
    actions.iter().find_map(|action| match action {
        Action::Desired { version, wedge } => Some((*version, module_configs(wedge))),
        _ => None,
    })
}

fn document(version: u64, threshold: i64) -> Vec<u8> {
    json!({
        "desired": {
            "$version": version,
            "wedge": { "modules": { "filter": { "config": { "threshold": threshold } } } },
            "other": true
        },
        "reported": { "$version": 7 }
    })
    .to_string()
    .into_bytes()
}

fn patch(version: u64, threshold: i64) -> Vec<u8> {
    json!({
        "wedge": { "modules": { "filter": { "config": { "threshold": threshold } } } },
        "$version": version
    })
    .to_string()
    .into_bytes()
}

fn threshold(twin: &Twin) -> Option<i64> {
    module_configs(&twin.desired_wedge()).get("filter")?["threshold"].as_i64()
}

#[test]
fn connect_gets_the_document_and_emits_modules() {
    let (mut twin, now, rid) = connected();
    assert_eq!(twin.desired_version(), None);
    let actions = twin.on_response(200, &rid, None, &document(5, 25), now);
    let (version, modules) = modules(&actions).expect("modules");
    assert_eq!(version, 5);
    assert_eq!(modules["filter"], json!({ "threshold": 25 }));
    assert_eq!(twin.desired_version(), Some(5));
    assert_eq!(twin.reported_version(), Some(7));
    assert_eq!(twin.desired().unwrap()["other"], json!(true));
    // Each request gets a fresh $rid.
    twin.on_disconnected();
    let again = get_rid(&twin.on_connected(now)).unwrap();
    assert_ne!(again, rid);
}

#[test]
fn patches_apply_in_version_order_and_stale_ones_are_ignored() {
    let (mut twin, now, rid) = connected();
    twin.on_response(200, &rid, None, &document(5, 25), now);

    let actions = twin.on_desired_patch(6, &patch(6, 30), now);
    assert_eq!(modules(&actions).unwrap().0, 6);
    assert_eq!(threshold(&twin), Some(30));
    assert_eq!(twin.desired().unwrap()["$version"], json!(6));

    // Stale: same or older version.
    for stale in [6, 5, 1] {
        let actions = twin.on_desired_patch(stale, &patch(stale, 99), now);
        assert!(actions.is_empty(), "{actions:?}");
    }
    assert_eq!(threshold(&twin), Some(30));

    // A patch that does not touch the modules changes the version but emits nothing.
    let actions = twin.on_desired_patch(7, br#"{"other": null, "$version": 7}"#, now);
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(twin.desired_version(), Some(7));
    assert!(twin.desired().unwrap().get("other").is_none());
}

#[test]
fn a_gap_fetches_the_document_and_later_patches_fill_in() {
    let (mut twin, now, rid) = connected();
    twin.on_response(200, &rid, None, &document(5, 25), now);

    // 7 arrives before 6: keep it, fetch again.
    let actions = twin.on_desired_patch(7, &patch(7, 70), now);
    let get = get_rid(&actions).expect("GET on a gap");
    assert_eq!(threshold(&twin), Some(25));
    // 8 arrives while the GET is in flight: kept too, no second GET.
    let actions = twin.on_desired_patch(8, &patch(8, 80), now);
    assert!(get_rid(&actions).is_none(), "{actions:?}");

    // The GET answers at version 7 (6 and 7 included): 7 is dropped, 8 applied on top.
    let actions = twin.on_response(200, &get, None, &document(7, 70), now);
    assert_eq!(modules(&actions).unwrap(), (8, modules_with(80)));
    assert_eq!(twin.desired_version(), Some(8));
    assert!(get_rid(&actions).is_none());
}

fn modules_with(threshold: i64) -> BTreeMap<String, Value> {
    BTreeMap::from([("filter".to_owned(), json!({ "threshold": threshold }))])
}

#[test]
fn patches_before_the_first_document_wait_for_it() {
    let (mut twin, now, rid) = connected();
    // Out of order, before the GET answers.
    assert!(twin.on_desired_patch(7, &patch(7, 70), now).is_empty());
    assert!(twin.on_desired_patch(6, &patch(6, 60), now).is_empty());
    assert!(twin.on_desired_patch(4, &patch(4, 40), now).is_empty());
    assert_eq!(twin.desired_version(), None);
    // The document is at 5: 4 is dropped, 6 and 7 applied in order.
    let actions = twin.on_response(200, &rid, None, &document(5, 50), now);
    assert_eq!(modules(&actions).unwrap(), (7, modules_with(70)));
}

#[test]
fn a_document_older_than_kept_patches_with_a_gap_fetches_again() {
    let (mut twin, now, rid) = connected();
    twin.on_desired_patch(9, &patch(9, 90), now);
    let actions = twin.on_response(200, &rid, None, &document(5, 50), now);
    assert_eq!(modules(&actions).unwrap(), (5, modules_with(50)));
    let again = get_rid(&actions).expect("GET again: 6 to 8 are missing");
    let actions = twin.on_response(200, &again, None, &document(9, 90), now);
    assert_eq!(modules(&actions).unwrap(), (9, modules_with(90)));
    assert!(get_rid(&actions).is_none());
}

#[test]
fn extreme_versions_do_not_overflow() {
    let (mut twin, now, rid) = connected();
    twin.on_desired_patch(u64::MAX, &patch(u64::MAX, 1), now);
    let actions = twin.on_response(200, &rid, None, &document(u64::MAX, 2), now);
    assert_eq!(modules(&actions).unwrap(), (u64::MAX, modules_with(2)));
    assert!(get_rid(&actions).is_none());
    assert!(
        twin.on_desired_patch(u64::MAX, &patch(u64::MAX, 3), now)
            .is_empty()
    );
    assert!(twin.on_desired_patch(0, &patch(0, 3), now).is_empty());
    assert_eq!(threshold(&twin), Some(2));
}

#[test]
fn failed_and_lost_gets_are_retried() {
    let (mut twin, now, rid) = connected();
    let actions = twin.on_response(503, &rid, None, b"", now);
    assert!(matches!(&actions[..], [Action::Warn(_)]), "{actions:?}");
    assert_eq!(twin.next_deadline(), Some(now + Duration::from_secs(1)));
    assert!(get_rid(&twin.tick(now + Duration::from_millis(999))).is_none());
    let retry = get_rid(&twin.tick(now + Duration::from_secs(1))).expect("retry");
    // A malformed document counts as a failure too; the backoff doubles.
    let t = now + Duration::from_secs(1);
    let actions = twin.on_response(200, &retry, None, b"{\"desired\": 3}", t);
    assert!(matches!(&actions[..], [Action::Warn(w)] if w.contains("desired")));
    assert_eq!(twin.next_deadline(), Some(t + Duration::from_secs(2)));
    let retry = get_rid(&twin.tick(t + Duration::from_secs(2))).unwrap();
    // No answer at all: after the timeout, a new GET with a new $rid.
    let t = t + Duration::from_secs(2);
    assert_eq!(twin.next_deadline(), Some(t + Duration::from_secs(60)));
    let actions = twin.tick(t + Duration::from_secs(60));
    let fresh = get_rid(&actions).expect("GET after timeout");
    assert_ne!(fresh, retry);
    // The late answer to the old request is ignored.
    assert!(
        twin.on_response(200, &retry, None, &document(3, 3), t)
            .is_empty()
    );
    let actions = twin.on_response(200, &fresh, None, &document(4, 4), t);
    assert_eq!(modules(&actions).unwrap().0, 4);
}

#[test]
fn a_malformed_patch_fetches_the_document() {
    let (mut twin, now, rid) = connected();
    twin.on_response(200, &rid, None, &document(5, 25), now);
    let actions = twin.on_desired_patch(6, b"not json", now);
    assert!(matches!(&actions[0], Action::Warn(_)));
    assert!(get_rid(&actions).is_some());
}

#[test]
fn too_many_kept_patches_are_dropped_and_fetched_again() {
    let mut twin = Twin::new(TwinConfig {
        max_buffered_patches: 2,
        ..TwinConfig::default()
    });
    let now = Instant::now();
    let rid = get_rid(&twin.on_connected(now)).unwrap();
    twin.on_desired_patch(6, &patch(6, 60), now);
    twin.on_desired_patch(7, &patch(7, 70), now);
    let actions = twin.on_desired_patch(8, &patch(8, 80), now);
    assert!(matches!(&actions[..], [Action::Warn(_)]));
    // The in-flight GET may predate 8: another follows its answer.
    let actions = twin.on_response(200, &rid, None, &document(5, 50), now);
    assert_eq!(modules(&actions).unwrap().0, 5);
    let again = get_rid(&actions).expect("fetch again");
    let actions = twin.on_response(200, &again, None, &document(8, 80), now);
    assert_eq!(modules(&actions).unwrap(), (8, modules_with(80)));
    assert!(get_rid(&actions).is_none());
}

#[test]
fn reports_coalesce_while_one_is_in_flight() {
    let (mut twin, now, _) = connected();
    let (rid, sent) = report_sent(&twin.report(json!({"a": 1}), now).unwrap()).unwrap();
    assert_eq!(sent, json!({"a": 1}));
    // While it is in flight, the next ones merge into one.
    assert!(twin.report(json!({"b": {"x": 1}}), now).unwrap().is_empty());
    assert!(
        twin.report(json!({"b": {"y": 2}, "c": null}), now)
            .unwrap()
            .is_empty()
    );
    assert!(twin.reports_pending());
    // 204 completes it; the merged one goes out.
    let actions = twin.on_response(204, &rid, Some(8), b"", now);
    let (rid2, sent) = report_sent(&actions).unwrap();
    assert_eq!(sent, json!({"b": {"x": 1, "y": 2}, "c": null}));
    assert_ne!(rid2, rid);
    assert_eq!(twin.reported_version(), Some(8));
    assert!(twin.on_response(204, &rid2, Some(9), b"", now).is_empty());
    assert!(!twin.reports_pending());
}

#[test]
fn reports_that_cannot_merge_are_queued_in_order() {
    let (mut twin, now, _) = connected();
    let (rid, _) = report_sent(&twin.report(json!({"first": 1}), now).unwrap()).unwrap();
    twin.report(json!({"k": 5}), now).unwrap();
    // `k` set to 5, then an object merged into it: no single merge patch says that.
    twin.report(json!({"k": {"a": 1}}), now).unwrap();
    let (rid, sent) = report_sent(&twin.on_response(204, &rid, None, b"", now)).unwrap();
    assert_eq!(sent, json!({"k": 5}));
    let (_, sent) = report_sent(&twin.on_response(204, &rid, None, b"", now)).unwrap();
    assert_eq!(sent, json!({"k": {"a": 1}}));
}

#[test]
fn failed_reports_are_retried_with_backoff_and_refused_ones_dropped() {
    let (mut twin, now, _) = connected();
    let (rid, _) = report_sent(&twin.report(json!({"a": 1}), now).unwrap()).unwrap();
    twin.report(json!({"a": 2, "b": 1}), now).unwrap();
    // Throttled: the failed patch and the queued one merge and wait for the backoff.
    let actions = twin.on_response(429, &rid, None, b"", now);
    assert!(matches!(&actions[..], [Action::Warn(_)]), "{actions:?}");
    assert!(twin.report(json!({"c": 1}), now).unwrap().is_empty());
    assert_eq!(twin.next_deadline(), Some(now + Duration::from_secs(1)));
    assert!(twin.tick(now + Duration::from_millis(500)).is_empty());
    let t = now + Duration::from_secs(1);
    let (rid, sent) = report_sent(&twin.tick(t)).unwrap();
    assert_eq!(sent, json!({"a": 2, "b": 1, "c": 1}));
    // A server error doubles the backoff.
    twin.on_response(500, &rid, None, b"", t);
    assert_eq!(twin.next_deadline(), Some(t + Duration::from_secs(2)));
    let t = t + Duration::from_secs(2);
    let (rid, _) = report_sent(&twin.tick(t)).unwrap();
    // 400: sending it again cannot help; dropped.
    let actions = twin.on_response(400, &rid, None, b"", t);
    assert!(matches!(&actions[..], [Action::Warn(w)] if w.contains("dropped")));
    assert!(!twin.reports_pending());
}

#[test]
fn lost_reports_are_sent_again_after_the_timeout_or_a_reconnect() {
    let (mut twin, now, _) = connected();
    let (rid, _) = report_sent(&twin.report(json!({"a": 1}), now).unwrap()).unwrap();
    let timeout = now + Duration::from_secs(300);
    assert_eq!(twin.next_deadline(), Some(now + Duration::from_secs(60)));
    let actions = twin.tick(timeout);
    let (rid2, sent) = report_sent(&actions).expect("resent");
    assert_eq!(sent, json!({"a": 1}));
    assert_ne!(rid2, rid);
    // The late answer to the first attempt does not complete the second.
    twin.on_response(204, &rid, None, b"", timeout);
    assert!(twin.reports_pending());

    // Disconnected: nothing is sent, and what was in flight goes out again on reconnect
    // together with what was reported meanwhile.
    twin.on_disconnected();
    assert!(twin.report(json!({"b": 1}), timeout).unwrap().is_empty());
    let actions = twin.on_connected(timeout);
    assert!(get_rid(&actions).is_some());
    let (_, sent) = report_sent(&actions).unwrap();
    assert_eq!(sent, json!({"a": 1, "b": 1}));
}

#[test]
fn report_needs_an_object() {
    let mut twin = Twin::default();
    assert_eq!(
        twin.report(json!([1]), Instant::now()),
        Err(ReportError::NotAnObject)
    );
    // Disconnected: queued, nothing published.
    assert_eq!(twin.report(json!({"a": 1}), Instant::now()), Ok(vec![]));
}

#[test]
fn incoming_dispatch() {
    let (mut twin, now, rid) = connected();
    let response = Incoming::parse(&format!("$iothub/twin/res/200/?$rid={rid}")).unwrap();
    let actions = twin.on_incoming(&response, &document(1, 10), now);
    assert_eq!(modules(&actions).unwrap().0, 1);
    let desired = Incoming::parse("$iothub/twin/PATCH/properties/desired/?$version=2").unwrap();
    let actions = twin.on_incoming(&desired, &patch(2, 20), now);
    assert_eq!(modules(&actions).unwrap(), (2, modules_with(20)));
    let method = Incoming::parse("$iothub/methods/POST/m/?$rid=1").unwrap();
    assert!(twin.on_incoming(&method, b"{}", now).is_empty());
}

#[test]
fn composition_matches_sequential_application() {
    let target = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": {"z": 1}, "d": 4});
    let cases = [
        (json!({"a": 2}), json!({"a": 3})),
        (json!({"b": {"x": null}}), json!({"b": {"y": 5, "w": 1}})),
        (json!({"a": null}), json!({"a": 7})),
        (json!({"c": {"z": 2}}), json!({"c": null})),
        (json!({"c": {"z": 2}}), json!({"c": 9})),
        (json!({"b": {"x": 2}}), json!({"d": {"new": true}})),
        (json!({}), json!({"b": {"x": null}})),
    ];
    for (first, second) in cases {
        let composed = compose(&first, &second).expect("composable");
        let mut one = target.clone();
        merge_patch(&mut one, &composed);
        let mut two = target.clone();
        merge_patch(&mut two, &first);
        merge_patch(&mut two, &second);
        assert_eq!(one, two, "{first} then {second} as {composed}");
    }
    // Not expressible as one merge patch.
    assert_eq!(compose(&json!({"a": 1}), &json!({"a": {"x": 1}})), None);
    assert_eq!(compose(&json!({"c": null}), &json!({"c": {"q": 1}})), None);
    assert_eq!(compose(&json!(1), &json!({})), None);
}

#[test]
fn acks() {
    assert_eq!(
        ack(json!({"threshold": 25}), 200, 5, Some("applied")),
        json!({"value": {"threshold": 25}, "ac": 200, "av": 5, "ad": "applied"})
    );
    assert_eq!(
        ack(json!(1), 400, 6, None),
        json!({"value": 1, "ac": 400, "av": 6})
    );
    assert_eq!(
        config_ack_patch(
            "filter",
            json!({"threshold": -1}),
            400,
            7,
            Some("threshold < 0")
        ),
        json!({"wedge": {"modules": {"filter": {"config": {
            "value": {"threshold": -1}, "ac": 400, "av": 7, "ad": "threshold < 0"
        }}}}})
    );
}

#[test]
fn an_answer_to_an_earlier_processs_request_is_not_taken_for_this_ones() {
    // With a persistent session the hub may deliver the answer to the last process's GET
    // (rid 1) after a restart: a twin numbered from elsewhere ignores it.
    let mut twin = Twin::starting_at(TwinConfig::default(), 1 << 20);
    let now = Instant::now();
    let rid = get_rid(&twin.on_connected(now)).unwrap();
    assert_eq!(rid, (1u64 << 20).to_string());
    let stale = Incoming::TwinResponse {
        status: 200,
        rid: "1".into(),
        version: None,
    };
    let actions = twin.on_incoming(&stale, br#"{"desired":{"$version":1},"reported":{}}"#, now);
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(Twin::starting_at(TwinConfig::default(), 0).next_rid, 1);
}
