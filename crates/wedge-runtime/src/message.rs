//! Messages across the WIT boundary: the guest's records and variants to the host's types.

use wedge_core::{Message, SendError};

use crate::bindings::{WitMessage, WitSendError};

impl From<WitMessage> for Message {
    fn from(m: WitMessage) -> Self {
        Message {
            body: m.body,
            properties: m.properties,
            content_type: m.content_type,
            content_encoding: m.content_encoding,
        }
    }
}

impl From<Message> for WitMessage {
    fn from(m: Message) -> Self {
        WitMessage {
            body: m.body,
            properties: m.properties,
            content_type: m.content_type,
            content_encoding: m.content_encoding,
        }
    }
}

impl From<SendError> for WitSendError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NoRoute(output) => WitSendError::NoRoute(output),
            SendError::TooLarge(limit) => WitSendError::TooLarge(limit),
            SendError::Full => WitSendError::Full,
            SendError::Invalid(why) => WitSendError::Invalid(why),
        }
    }
}
