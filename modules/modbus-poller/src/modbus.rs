//! Modbus TCP framing of "read holding registers" (function 3): the request, and the answer
//! checked against it. Only what the poller needs; the spec is the Modbus Application Protocol
//! v1.1b3 and "Modbus Messaging on TCP/IP" v1.0b.

/// Most registers one read may ask for (the spec's limit for function 3).
pub const MAX_REGISTERS: u16 = 125;

const READ_HOLDING_REGISTERS: u8 = 3;

/// The 12 bytes of a read of `count` registers from `start` on `unit`, as transaction `id`.
pub fn read_request(id: u16, unit: u8, start: u16, count: u16) -> [u8; 12] {
    let [id_hi, id_lo] = id.to_be_bytes();
    let [start_hi, start_lo] = start.to_be_bytes();
    let [count_hi, count_lo] = count.to_be_bytes();
    // MBAP: transaction, protocol 0, length of what follows (unit + 5 bytes of PDU), unit.
    [
        id_hi, id_lo, 0, 0, 0, 6, unit, READ_HOLDING_REGISTERS, start_hi, start_lo, count_hi,
        count_lo,
    ]
}

/// Bytes of the MBAP header; its last two bytes of length say how many follow.
pub const HEADER: usize = 7;

/// How many bytes follow a received header (`length` minus the unit byte it counts), or an
/// error if the header is not an answer to transaction `id`.
pub fn body_len(header: &[u8; HEADER], id: u16) -> Result<usize, String> {
    let got = u16::from_be_bytes([header[0], header[1]]);
    if got != id {
        return Err(format!("answer to transaction {got}, expected {id}"));
    }
    if header[2..4] != [0, 0] {
        return Err("not a Modbus TCP answer (protocol id is not 0)".into());
    }
    match u16::from_be_bytes([header[4], header[5]]) {
        n @ 2..=254 => Ok(usize::from(n) - 1),
        n => Err(format!("invalid length {n} in the answer's header")),
    }
}

/// The register values of a function-3 answer body (after the header), `count` expected.
pub fn registers(body: &[u8], count: u16) -> Result<Vec<u16>, String> {
    match body {
        [READ_HOLDING_REGISTERS, n, values @ ..] => {
            if usize::from(*n) != values.len() || values.len() != usize::from(count) * 2 {
                return Err(format!(
                    "answer holds {} bytes of registers, expected {}",
                    values.len(),
                    count * 2
                ));
            }
            Ok(values
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect())
        }
        [f, code, ..] if *f == READ_HOLDING_REGISTERS | 0x80 => Err(format!(
            "the device answered exception {code} ({})",
            exception(*code)
        )),
        _ => Err("unexpected answer to a register read".into()),
    }
}

fn exception(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        6 => "server device busy",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}
