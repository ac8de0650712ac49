//! The one MQTT 3.1.1 packet the gateway reads and writes itself: CONNECT (read from the device,
//! written again with the broker's credentials) and the CONNACK of a refusal. Everything after
//! the CONNECT is piped through unread.
//!
//! Layout from the MQTT 3.1.1 specification, section 3.1: fixed header `0x10` + remaining length
//! (1 to 4 bytes, 7 bits each), protocol name `MQTT`, level 4, connect flags, keep alive, then
//! the client id, the will topic and message, the username and the password, each a 16-bit
//! length followed by the bytes.

use anyhow::{Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest CONNECT accepted: a SAS token is a few hundred bytes.
const MAX_CONNECT: usize = 16 * 1024;

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL: u8 = 0x04;

/// A parsed CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connect {
    pub(crate) client_id: String,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Vec<u8>>,
    /// The flags other than username and password (clean session, will, will QoS and retain).
    flags: u8,
    keep_alive: u16,
    /// Will topic and message, as they came.
    will: Option<(Vec<u8>, Vec<u8>)>,
}

/// The CONNACK return code of a refused credential (MQTT 3.1.1 section 3.2.2.3), as IoT Hub
/// and DPS answer a bad SAS token or an unknown identity.
pub(crate) const NOT_AUTHORIZED: u8 = 5;

/// A CONNACK refusing the connection with `code`.
pub(crate) fn connack(code: u8) -> [u8; 4] {
    [0x20, 0x02, 0x00, code]
}

/// Reads one CONNECT packet from `stream`.
pub(crate) async fn read(stream: &mut (impl AsyncRead + Unpin)) -> Result<Connect> {
    let header = stream.read_u8().await?;
    if header != 0x10 {
        bail!("the first packet is not CONNECT (header {header:#04x})");
    }
    let mut length = 0usize;
    for shift in 0..4 {
        let byte = stream.read_u8().await?;
        length |= usize::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            break;
        }
        if shift == 3 {
            bail!("malformed remaining length");
        }
    }
    if length > MAX_CONNECT {
        bail!("CONNECT of {length} bytes is too large");
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    parse(&body)
}

fn parse(body: &[u8]) -> Result<Connect> {
    let mut reader = Reader(body);
    let protocol = reader.field()?;
    let level = reader.byte()?;
    if protocol != b"MQTT" || level != 4 {
        bail!("only MQTT 3.1.1 is emulated");
    }
    let flags = reader.byte()?;
    let keep_alive = u16::from_be_bytes([reader.byte()?, reader.byte()?]);
    let client_id = String::from_utf8(reader.field()?.to_vec())?;
    let will = if flags & WILL != 0 {
        Some((reader.field()?.to_vec(), reader.field()?.to_vec()))
    } else {
        None
    };
    let username = if flags & USERNAME != 0 {
        Some(String::from_utf8(reader.field()?.to_vec())?)
    } else {
        None
    };
    let password = if flags & PASSWORD != 0 {
        Some(reader.field()?.to_vec())
    } else {
        None
    };
    Ok(Connect {
        client_id,
        username,
        password,
        flags: flags & !(USERNAME | PASSWORD),
        keep_alive,
        will,
    })
}

impl Connect {
    /// The packet again, with `username` and `password` in place of the device's.
    pub(crate) fn encode_as(&self, username: &str, password: &str) -> Vec<u8> {
        let mut body = Vec::new();
        put(&mut body, b"MQTT");
        body.push(4);
        body.push(self.flags | USERNAME | PASSWORD);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        put(&mut body, self.client_id.as_bytes());
        if let Some((topic, message)) = &self.will {
            put(&mut body, topic);
            put(&mut body, message);
        }
        put(&mut body, username.as_bytes());
        put(&mut body, password.as_bytes());
        let mut packet = vec![0x10];
        let mut length = body.len();
        loop {
            let mut byte = (length % 128) as u8;
            length /= 128;
            if length > 0 {
                byte |= 0x80;
            }
            packet.push(byte);
            if length == 0 {
                break;
            }
        }
        packet.extend_from_slice(&body);
        packet
    }

    /// The password as text (a SAS token), if it is UTF-8.
    pub(crate) fn password_text(&self) -> Option<&str> {
        self.password
            .as_deref()
            .and_then(|p| std::str::from_utf8(p).ok())
    }
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u16).to_be_bytes());
    out.extend_from_slice(field);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8> {
        let (&first, rest) = self.0.split_first().ok_or_else(truncated)?;
        self.0 = rest;
        Ok(first)
    }

    fn field(&mut self) -> Result<&'a [u8]> {
        let length = usize::from(u16::from_be_bytes([self.byte()?, self.byte()?]));
        if self.0.len() < length {
            return Err(truncated());
        }
        let (field, rest) = self.0.split_at(length);
        self.0 = rest;
        Ok(field)
    }
}

fn truncated() -> anyhow::Error {
    anyhow::anyhow!("truncated CONNECT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connect_reads_back_after_encoding_with_other_credentials() {
        let original = Connect {
            client_id: "dev1".into(),
            username: Some("u".into()),
            password: Some(b"p".to_vec()),
            flags: 0x02,
            keep_alive: 60,
            will: None,
        };
        let packet = original.encode_as("broker-user", "secret");
        let parsed = read(&mut &packet[..]).await.unwrap();
        assert_eq!(parsed.client_id, "dev1");
        assert_eq!(parsed.username.as_deref(), Some("broker-user"));
        assert_eq!(parsed.password_text(), Some("secret"));
        assert_eq!((parsed.flags, parsed.keep_alive), (0x02, 60));
        // A long password takes a two-byte remaining length.
        let long = original.encode_as("u", &"x".repeat(300));
        // "MQTT" 6, level 1, flags 1, keep alive 2, client id 6, username 3, password 302.
        assert_eq!(read_len(&long), 6 + 1 + 1 + 2 + 6 + 3 + 302);
        assert_eq!(
            read(&mut &long[..]).await.unwrap().password.unwrap().len(),
            300
        );
    }

    fn read_len(packet: &[u8]) -> usize {
        usize::from(packet[1] & 0x7f) + (usize::from(packet[2]) << 7)
    }
}
