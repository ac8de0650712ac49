//! The line protocol, without I/O: one command per line, answers and deliveries as lines.
//!
//! ```text
//! SUB <topic>              -> OK          subscribe
//! UNSUB <topic>            -> OK          unsubscribe
//! PUB <topic> <payload>    (no answer)    every other subscriber of <topic> gets
//!                                         MSG <topic> <payload>
//! PING                     -> PONG
//! anything else            -> ERR <why>, and the connection is closed
//! ```
//!
//! Lines end with `\n` (a `\r` before it is dropped) and are UTF-8. A topic is 1 to 256 bytes
//! without spaces or control characters; the payload is the rest of the line, spaces included.

/// Longest topic, in bytes.
pub const MAX_TOPIC: usize = 256;

/// One client line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Sub(&'a str),
    Unsub(&'a str),
    Pub { topic: &'a str, payload: &'a str },
    Ping,
}

/// Parses one line (without its `\n`); the error is what `ERR` tells the client.
pub fn parse(line: &[u8]) -> Result<Command<'_>, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| "the line is not UTF-8".to_string())?;
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "SUB" => topic(rest).map(Command::Sub),
        "UNSUB" => topic(rest).map(Command::Unsub),
        "PUB" => {
            let (name, payload) = rest.split_once(' ').unwrap_or((rest, ""));
            Ok(Command::Pub {
                topic: topic(name)?,
                payload,
            })
        }
        "PING" if rest.is_empty() => Ok(Command::Ping),
        _ => Err(format!(
            "unknown command `{}`: SUB, UNSUB, PUB or PING",
            verb.chars().take(16).collect::<String>()
        )),
    }
}

fn topic(name: &str) -> Result<&str, String> {
    if name.is_empty() || name.len() > MAX_TOPIC {
        return Err(format!("a topic is 1 to {MAX_TOPIC} bytes"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a topic has no spaces or control characters".into());
    }
    Ok(name)
}

/// The line a subscriber gets for a publication.
pub fn delivery(topic: &str, payload: &str) -> Vec<u8> {
    let mut frame = Vec::with_capacity(topic.len() + payload.len() + 6);
    frame.extend_from_slice(b"MSG ");
    frame.extend_from_slice(topic.as_bytes());
    frame.push(b' ');
    frame.extend_from_slice(payload.as_bytes());
    frame.push(b'\n');
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_refusals() {
        assert_eq!(parse(b"SUB a/b"), Ok(Command::Sub("a/b")));
        assert_eq!(parse(b"UNSUB a\r"), Ok(Command::Unsub("a")));
        assert_eq!(
            parse(b"PUB t hello world"),
            Ok(Command::Pub {
                topic: "t",
                payload: "hello world"
            })
        );
        assert_eq!(
            parse(b"PUB t"),
            Ok(Command::Pub {
                topic: "t",
                payload: ""
            })
        );
        assert_eq!(parse(b"PING"), Ok(Command::Ping));
        for bad in [
            &b"SUB"[..],
            b"SUB ",
            b"HELLO",
            b"PUB \xff",
            b"\xff\xfe",
            b"PING x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(delivery("t", "x y"), b"MSG t x y\n");
    }
}
