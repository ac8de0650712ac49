//! The reported side of the twin: the queue of patches waiting to be sent, composed where one
//! merge patch can say the same, each at most [`MAX_REPORTED_BYTES`] (IoT Hub's limit for the
//! whole reported section, so a patch the hub would refuse for its size alone, or that would
//! outgrow an MQTT packet, is refused here, where the reporter can be told); and the patches
//! wedge reports.

use std::collections::VecDeque;

use serde_json::{Map, Value, json};
use wedge_core::MAX_REPORTED_BYTES;

/// Longest description in a configuration acknowledgement: it carries a module's refusal
/// reason, which the module chose.
const MAX_ACK_DESCRIPTION: usize = 1024;

/// A reported patch that was refused before queuing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Reported properties are patched with a JSON object.
    #[error("a reported-properties patch must be a JSON object")]
    NotAnObject,
    /// Larger than IoT Hub takes.
    #[error("reported patch is {bytes} bytes as JSON, at most {MAX_REPORTED_BYTES} allowed")]
    TooLarge {
        /// The patch's size as JSON.
        bytes: usize,
    },
    /// Too many patches wait already (while offline, those that cannot be composed).
    #[error("{0} reported patches are waiting to be sent already; try again later")]
    QueueFull(usize),
}

/// Patches waiting to be sent, oldest first.
#[derive(Debug)]
pub(super) struct ReportQueue {
    patches: VecDeque<Value>,
    max_patches: usize,
}

fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

/// `compose(first, second)` when it exists and stays within the size limit.
fn compose_within_limit(first: &Value, second: &Value) -> Option<Value> {
    compose(first, second).filter(|composed| json_len(composed) <= MAX_REPORTED_BYTES)
}

impl ReportQueue {
    pub(super) fn new(max_patches: usize) -> Self {
        ReportQueue {
            patches: VecDeque::new(),
            max_patches,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.patches.is_empty()
    }

    pub(super) fn pop_front(&mut self) -> Option<Value> {
        self.patches.pop_front()
    }

    /// Queues `patch` after the others, composed into the last one when possible.
    pub(super) fn push(&mut self, patch: Value) -> Result<(), ReportError> {
        if !patch.is_object() {
            return Err(ReportError::NotAnObject);
        }
        let bytes = json_len(&patch);
        if bytes > MAX_REPORTED_BYTES {
            return Err(ReportError::TooLarge { bytes });
        }
        if let Some(last) = self.patches.back_mut()
            && let Some(composed) = compose_within_limit(last, &patch)
        {
            *last = composed;
            return Ok(());
        }
        if self.patches.len() >= self.max_patches {
            return Err(ReportError::QueueFull(self.max_patches));
        }
        self.patches.push_back(patch);
        Ok(())
    }

    /// Puts back `patch` (taken by [`ReportQueue::pop_front`] and not delivered) before
    /// everything queued after it. It was accepted once, so it is never refused now: the queue
    /// may hold one more than its bound until it is sent.
    pub(super) fn push_front(&mut self, patch: Value) {
        match self.patches.front_mut() {
            Some(next) => match compose_within_limit(&patch, next) {
                Some(composed) => *next = composed,
                None => self.patches.push_front(patch),
            },
            None => self.patches.push_front(patch),
        }
    }
}

/// One merge patch with the effect of applying `first` then `second`, when one exists.
///
/// It does not when `first` sets a member to a non-object (or deletes it) and `second` patches
/// an object into it: applied in turn, the member is *replaced* by `second`'s object; a single
/// merge patch can only merge into whatever the target holds.
pub fn compose(first: &Value, second: &Value) -> Option<Value> {
    let (Value::Object(first), Value::Object(second)) = (first, second) else {
        return None;
    };
    let mut out: Map<String, Value> = first.clone();
    for (key, later) in second {
        let composed = match (out.get(key), later) {
            (None, _) | (Some(_), Value::Null) => later.clone(),
            (Some(earlier @ Value::Object(_)), Value::Object(_)) => compose(earlier, later)?,
            (Some(_), Value::Object(_)) => return None,
            (Some(_), _) => later.clone(),
        };
        out.insert(key.clone(), composed);
    }
    Some(Value::Object(out))
}

/// An IoT Plug and Play acknowledgement of a desired value: `{"value": value, "ac": status,
/// "av": version, "ad": description}`; `ad` left out when `None` (as `azure-sdk-for-c` leaves
/// out an empty description), and cut to 1 KiB (it may be a module's refusal reason).
pub fn ack(value: Value, status: u16, version: u64, description: Option<&str>) -> Value {
    let mut ack = json!({ "value": value, "ac": status, "av": version });
    if let Some(description) = description {
        let cut = wedge_core::truncate(description, MAX_ACK_DESCRIPTION);
        ack["ad"] = match cut.len() < description.len() {
            true => json!(format!("{cut}…")),
            false => json!(description),
        };
    }
    ack
}

/// The reported patch carrying what module `module` reports with `twin.report`:
/// `{"wedge": {"modules": {"<module>": {"properties": <patch>}}}}`.
pub fn properties_patch(module: &str, patch: Value) -> Value {
    json!({ "wedge": { "modules": { module: { "properties": patch } } } })
}

/// The reported patch acknowledging module `module`'s desired `config`:
/// `{"wedge": {"modules": {"<module>": {"config": <ack>}}}}`, mirroring where it was desired.
pub fn config_ack_patch(
    module: &str,
    config: Value,
    status: u16,
    version: u64,
    description: Option<&str>,
) -> Value {
    let mut modules = Map::new();
    modules.insert(
        module.to_owned(),
        json!({ "config": ack(config, status, version, description) }),
    );
    json!({ "wedge": { "modules": modules } })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A patch of about `bytes` bytes under key `key`.
    fn sized(key: &str, bytes: usize) -> Value {
        json!({ key: "x".repeat(bytes) })
    }

    #[test]
    fn an_oversized_patch_is_refused() {
        let mut queue = ReportQueue::new(4);
        let err = queue.push(sized("a", MAX_REPORTED_BYTES)).unwrap_err();
        assert!(
            matches!(err, ReportError::TooLarge { bytes } if bytes > MAX_REPORTED_BYTES),
            "{err}"
        );
        assert!(queue.is_empty());
        assert_eq!(queue.push(json!([1])), Err(ReportError::NotAnObject));
    }

    #[test]
    fn composition_stops_at_the_size_limit_and_the_queue_at_its_bound() {
        let mut queue = ReportQueue::new(3);
        // Patches of 10 KiB with distinct keys: three fit in one composed patch, so nine fill a
        // queue of three.
        for n in 0..9 {
            queue.push(sized(&format!("k{n}"), 10 * 1024)).unwrap();
        }
        assert_eq!(
            queue.push(sized("k9", 10 * 1024)),
            Err(ReportError::QueueFull(3))
        );
        let mut keys = Vec::new();
        while let Some(patch) = queue.pop_front() {
            assert!(json_len(&patch) <= MAX_REPORTED_BYTES);
            keys.extend(patch.as_object().unwrap().keys().cloned());
        }
        let expected: Vec<String> = (0..9).map(|n| format!("k{n}")).collect();
        keys.sort();
        assert_eq!(keys, expected, "nothing accepted is lost");
    }

    #[test]
    fn a_patch_put_back_composes_only_within_the_limit() {
        let mut queue = ReportQueue::new(1);
        queue.push(sized("b", 20 * 1024)).unwrap();
        queue.push_front(sized("a", 20 * 1024));
        assert_eq!(queue.pop_front().unwrap().as_object().unwrap().len(), 1);
        assert_eq!(queue.pop_front().unwrap().as_object().unwrap().len(), 1);
        queue.push(json!({"b": 1})).unwrap();
        queue.push_front(json!({"a": 1}));
        assert_eq!(queue.pop_front(), Some(json!({"a": 1, "b": 1})));
    }

    #[test]
    fn a_long_refusal_reason_is_cut_in_the_ack() {
        let ack = ack(json!({}), 400, 3, Some(&"é".repeat(4000)));
        let ad = ack["ad"].as_str().unwrap();
        assert!(
            ad.len() <= MAX_ACK_DESCRIPTION + '…'.len_utf8(),
            "{}",
            ad.len()
        );
        assert!(ad.ends_with('…'));
    }
}
