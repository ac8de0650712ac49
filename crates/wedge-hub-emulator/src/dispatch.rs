//! The emulator's event-loop task: keeps the service connection subscribed and answers
//! what devices publish, the way IoT Hub does.
//!
//! Topic facts (Microsoft's MQTT page; Azure SDK for C `az_iot_hub_client_*.c`):
//! - telemetry: `devices/{d}[/modules/{m}]/messages/events/{property-bag}`;
//! - twin GET: `$iothub/twin/GET/?$rid={rid}` -> `$iothub/twin/res/200/?$rid={rid}`;
//! - reported patch: `$iothub/twin/PATCH/properties/reported/?$rid={rid}` ->
//!   `$iothub/twin/res/204/?$rid={rid}&$version={v}` (400 for malformed JSON);
//! - method answers: `$iothub/methods/res/{status}/?$rid={rid}`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS, SubscribeFilter, SubscribeReasonCode};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use crate::emulator::{State, Telemetry};

/// What the service side subscribes to. QoS 1 so device publishes at QoS 1 stay at-least-once
/// end to end.
const FILTERS: [&str; 5] = [
    "devices/+/messages/events/#",
    "devices/+/modules/+/messages/events/#",
    "$iothub/twin/GET/#",
    "$iothub/twin/PATCH/properties/reported/#",
    "$iothub/methods/res/#",
];

/// State shared between the emulator handle and its task.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Bumped after every state change, so waiters re-check without polling on a timer.
    pub(crate) revision: watch::Sender<u64>,
    /// The identity `$iothub/...` traffic is attributed to (see `HubEmulator::start`).
    pub(crate) twin_identity: Option<String>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn changed(&self) {
        self.revision.send_modify(|r| *r += 1);
    }
}

/// Polls the event loop forever; the handle aborts the task on drop.
pub(crate) async fn run(shared: Arc<Shared>, client: AsyncClient, mut eventloop: EventLoop) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // Clean sessions lose subscriptions on every (re)connect, e.g. a broker restart.
                let filters = FILTERS
                    .iter()
                    .map(|f| SubscribeFilter::new((*f).to_owned(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    tracing::warn!("hub emulator could not subscribe: {e}");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .all(|c| !matches!(c, SubscribeReasonCode::Failure))
                {
                    shared.lock().connections += 1;
                } else {
                    shared.lock().last_error = Some(format!("subscription refused: {ack:?}"));
                }
                shared.changed();
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                handle_publish(&shared, &client, &publish.topic, &publish.payload);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("hub emulator connection: {e}");
                shared.lock().last_error = Some(e.to_string());
                shared.changed();
                // Reconnect backoff (the next poll reconnects), not a wait for a condition.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn handle_publish(shared: &Shared, client: &AsyncClient, topic: &str, payload: &[u8]) {
    if let Some(telemetry) = parse_telemetry(topic, payload) {
        shared.lock().telemetry.push(telemetry);
    } else if let Some(tail) = topic.strip_prefix("$iothub/twin/GET/") {
        let Some((identity, rid)) = twin_request(shared, topic, tail) else {
            return;
        };
        let body = shared.lock().twins.entry(identity).or_default().document();
        publish(
            client,
            format!("$iothub/twin/res/200/?$rid={rid}"),
            body.to_string().into_bytes(),
        );
    } else if let Some(tail) = topic.strip_prefix("$iothub/twin/PATCH/properties/reported/") {
        let Some((identity, rid)) = twin_request(shared, topic, tail) else {
            return;
        };
        let response = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(patch)) => {
                let version = shared
                    .lock()
                    .twins
                    .entry(identity)
                    .or_default()
                    .reported
                    .apply(&patch);
                format!("$iothub/twin/res/204/?$rid={rid}&$version={version}")
            }
            _ => format!("$iothub/twin/res/400/?$rid={rid}"),
        };
        publish(client, response, Vec::new());
    } else if let Some(tail) = topic.strip_prefix("$iothub/methods/res/") {
        let parsed = tail.split_once('/').and_then(|(status, query)| {
            Some((status.parse::<u16>().ok()?, query_param(query, "$rid")?))
        });
        let Some((status, rid)) = parsed else {
            tracing::warn!("hub emulator: malformed method response topic {topic}");
            return;
        };
        let waiter: Option<oneshot::Sender<(u16, Vec<u8>)>> =
            shared.lock().pending_methods.remove(rid);
        match waiter {
            Some(waiter) => {
                let _ = waiter.send((status, payload.to_vec()));
            }
            None => tracing::warn!("hub emulator: method response for unknown $rid {rid}"),
        }
    } else {
        return;
    }
    shared.changed();
}

/// The twin owner and `$rid` of a twin request, or `None` (logged) when either is missing.
fn twin_request<'t>(shared: &Shared, topic: &str, tail: &'t str) -> Option<(String, &'t str)> {
    let Some(identity) = shared.twin_identity.clone() else {
        tracing::warn!("hub emulator: no twin identity to attribute {topic} to (several users)");
        return None;
    };
    let Some(rid) = query_param(tail, "$rid") else {
        tracing::warn!("hub emulator: twin request without $rid: {topic}");
        return None;
    };
    Some((identity, rid))
}

/// The raw value of `key` in a `?k=v&k2=v2` topic tail. Kept raw: a `$rid` is echoed back
/// exactly as the device sent it.
fn query_param<'t>(tail: &'t str, key: &str) -> Option<&'t str> {
    tail.strip_prefix('?')?.split('&').find_map(|pair| {
        pair.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

fn parse_telemetry(topic: &str, payload: &[u8]) -> Option<Telemetry> {
    let rest = topic.strip_prefix("devices/")?;
    let (device, rest) = rest.split_once('/')?;
    let (module, rest) = match rest.strip_prefix("modules/") {
        Some(rest) => {
            let (module, rest) = rest.split_once('/')?;
            (Some(module.to_owned()), rest)
        }
        None => (None, rest),
    };
    let bag = rest.strip_prefix("messages/events")?;
    // The documented topic ends `events/`; `events` alone is tolerated as an empty bag.
    let bag = match bag.strip_prefix('/') {
        Some(bag) => bag,
        None if bag.is_empty() => bag,
        None => return None,
    };
    Some(Telemetry {
        device: device.to_owned(),
        module,
        properties: crate::decode_property_bag(bag),
        body: payload.to_vec(),
    })
}

/// Publishes to a device with QoS 1 and retain off; from inside the event-loop task it must
/// not await the request channel, hence `try_publish`.
fn publish(client: &AsyncClient, topic: String, payload: Vec<u8>) {
    if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
        tracing::warn!("hub emulator could not publish: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_telemetry_and_query_topics() {
        let t = parse_telemetry(
            "devices/d1/messages/events/$.ct=application%2Fjson&a=1",
            b"x",
        )
        .unwrap();
        assert_eq!((t.device.as_str(), t.module.as_deref()), ("d1", None));
        assert_eq!(t.properties[0], ("$.ct".into(), "application/json".into()));
        let t = parse_telemetry("devices/d1/modules/m1/messages/events/", b"").unwrap();
        assert_eq!(t.module.as_deref(), Some("m1"));
        assert!(t.properties.is_empty());
        assert!(parse_telemetry("devices/d1/messages/eventsX/", b"").is_none());
        assert_eq!(query_param("?$rid=7&$version=3", "$version"), Some("3"));
        assert_eq!(query_param("?$rid=7", "$version"), None);
    }
}
