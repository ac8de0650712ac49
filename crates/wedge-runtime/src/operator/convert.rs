//! wedge messages to the operators' `data-model` and back.
//!
//! A message becomes a `data-model.message`: the body is the payload (a host `buffer`, so an
//! operator that does not read it never copies it), the properties are its user properties,
//! the content type is its content type, the topic is the input it arrived on, and the
//! timestamp is a hybrid logical clock stamp taken when the host hands it over (wall time, a
//! counter ordering stamps of the same instant, the module's name as node). Back, a message's
//! payload, properties and content type become the wedge message; bytes alone become a body;
//! a snapshot's frame becomes a body with `format`, `width` and `height` properties.

use std::time::SystemTime;

use wasmtime::component::ResourceTable;
use wedge_core::Message;

use super::bindings::{
    AioMessage, BufferOrBytes, BufferOrString, DataModel, HybridLogicalClock, MessageProperties,
    Timespec, Timestamp,
};
use super::buffer::Buffer;

/// Stamps the messages of one operator.
pub(crate) struct Clock {
    node: String,
    last: (u64, u32),
    counter: u64,
}

impl Clock {
    pub(crate) fn new(node: &str) -> Self {
        Clock {
            node: node.to_string(),
            last: (0, 0),
            counter: 0,
        }
    }

    /// A stamp for now; the counter orders stamps of one instant (or of a clock set back).
    pub(crate) fn now(&mut self) -> HybridLogicalClock {
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let now = (since.as_secs(), since.subsec_nanos());
        if now > self.last {
            self.last = now;
            self.counter = 0;
        } else {
            self.counter += 1;
        }
        HybridLogicalClock {
            timestamp: Timespec {
                secs: self.last.0,
                nanos: self.last.1,
            },
            counter: self.counter,
            node_id: self.node.clone(),
        }
    }
}

/// When `stamp` is, as wall time.
pub(crate) fn wall_time(stamp: &Timespec) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::new(stamp.secs, stamp.nanos.min(999_999_999))
}

fn stamp_of(clock: &HybridLogicalClock) -> Timestamp {
    Timestamp {
        timestamp: clock.timestamp,
        counter: clock.counter,
        node_id: BufferOrString::String(clock.node_id.clone()),
    }
}

/// `message`, arrived on `topic`, as the operator sees it. Taken by value: its body becomes
/// the payload buffer without a copy (a caller that forwards the original clones it).
pub(crate) fn to_data_model(
    table: &mut ResourceTable,
    message: Message,
    topic: &str,
    clock: &HybridLogicalClock,
) -> wasmtime::Result<DataModel> {
    let payload = table.push(Buffer(message.body))?;
    Ok(DataModel::Message(AioMessage {
        timestamp: stamp_of(clock),
        topic: BufferOrBytes::Bytes(topic.as_bytes().to_vec()),
        content_type: message.content_type.map(BufferOrString::String),
        payload: BufferOrBytes::Buffer(payload),
        properties: MessageProperties {
            user_properties: message
                .properties
                .into_iter()
                .map(|(k, v)| (BufferOrString::String(k), BufferOrString::String(v)))
                .collect(),
        },
        schema: None,
    }))
}

/// What an accumulate window starts from: a message with nothing in it.
pub(crate) fn empty(clock: &HybridLogicalClock) -> DataModel {
    DataModel::Message(AioMessage {
        timestamp: stamp_of(clock),
        topic: BufferOrBytes::Bytes(Vec::new()),
        content_type: None,
        payload: BufferOrBytes::Bytes(Vec::new()),
        properties: MessageProperties {
            user_properties: Vec::new(),
        },
        schema: None,
    })
}

/// What an operator returned, as a wedge message.
///
/// # Errors
/// A text field is not UTF-8, or a handle is not the host's: said as the operator's error.
pub(crate) fn from_data_model(
    table: &mut ResourceTable,
    model: DataModel,
) -> Result<Message, String> {
    match model {
        DataModel::BufferOrBytes(body) => Ok(Message {
            body: bytes(table, body)?,
            ..Message::default()
        }),
        DataModel::Message(m) => {
            let body = bytes(table, m.payload)?;
            bytes(table, m.topic)?;
            text(table, m.timestamp.node_id, "the node id")?;
            let content_type = m
                .content_type
                .map(|c| text(table, c, "the content type"))
                .transpose()?;
            let properties = m
                .properties
                .user_properties
                .into_iter()
                .map(|(k, v)| {
                    Ok((
                        text(table, k, "a property key")?,
                        text(table, v, "a property value")?,
                    ))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Message {
                body,
                properties,
                content_type,
                content_encoding: None,
            })
        }
        DataModel::Snapshot(s) => Ok(Message {
            body: bytes(table, s.frame)?,
            properties: vec![
                ("format".into(), text(table, s.format, "the format")?),
                ("width".into(), s.width.to_string()),
                ("height".into(), s.height.to_string()),
            ],
            content_type: None,
            content_encoding: None,
        }),
    }
}

/// The bytes of `b`, taking a returned host buffer out of the table.
fn bytes(table: &mut ResourceTable, b: BufferOrBytes) -> Result<Vec<u8>, String> {
    match b {
        BufferOrBytes::Bytes(bytes) => Ok(bytes),
        BufferOrBytes::Buffer(handle) => table
            .delete(handle)
            .map(|b| b.0)
            .map_err(|e| format!("a returned buffer: {e}")),
    }
}

/// The text of `s` (`what` names it in errors), taking a returned host buffer out of the table.
fn text(table: &mut ResourceTable, s: BufferOrString, what: &str) -> Result<String, String> {
    match s {
        BufferOrString::String(s) => Ok(s),
        BufferOrString::Buffer(handle) => {
            let raw = table
                .delete(handle)
                .map_err(|e| format!("{what}: a returned buffer: {e}"))?;
            String::from_utf8(raw.0).map_err(|_| format!("{what} is not UTF-8"))
        }
    }
}
