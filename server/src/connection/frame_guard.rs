//! A guard in front of actix-http's WebSocket frame parser: a frame is refused at its header
//! when it declares more than the server takes, so no byte of it is ever held.
//!
//! actix-http 3.20 (`ws::Parser::parse` in `src/ws/frame.rs`) compares a frame's declared
//! length with its limit only once the whole frame has arrived: until then it answers "not
//! enough data", and a reader that keeps appending what the client sends (as actix-ws 0.4's
//! `MessageStream` did, which this server used before it ran WebSockets on their own socket) holds it all: a client that
//! declared 2^40 bytes and streamed made the server hold 200 MiB for 200 MiB sent.
//! [`FrameScanner`] follows the frame boundaries as the bytes pass through, holding at most one
//! header's 14 bytes, and refuses ([`Refusal`]) as soon as a header's length field is complete
//! and over the limit. The WebSocket connection (`transport::websocket`) scans every byte it
//! reads before decoding, so a refused frame is never held.
//!
//! The same scan refuses, at the header, a fragment that takes its message's running total
//! past the limit, and a control frame declaring more than the 125 bytes RFC 6455 allows
//! (actix-http buffers those too before checking).

/// The longest frame header: 2 bytes, a 64-bit length, a 4-byte mask.
const MAX_HEADER_BYTES: usize = 14;

/// RFC 6455 §5.5: control frames carry at most 125 bytes.
pub const MAX_CONTROL_PAYLOAD_BYTES: u64 = 125;

/// Why a frame was refused at its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A data frame whose message, by its declared length, would pass `max` bytes.
    #[error("message over {max} bytes (a frame declared {declared})")]
    MessageTooLarge { declared: u64, max: u64 },
    /// A ping, pong or close declaring more than 125 bytes.
    #[error("control frame of {declared} bytes; at most 125 are allowed")]
    ControlTooLong { declared: u64 },
}

/// Where the scan is in the client's byte stream.
#[derive(Debug, Clone, Copy)]
enum Position {
    /// Reading a frame header, of which `len` bytes have come.
    Header {
        bytes: [u8; MAX_HEADER_BYTES],
        len: usize,
    },
    /// Inside a frame's payload, with `remaining` bytes still to pass.
    Payload { remaining: u64 },
}

impl Position {
    const NEW_HEADER: Position = Position::Header {
        bytes: [0; MAX_HEADER_BYTES],
        len: 0,
    };
}

/// Follows the frames of a client's byte stream by their headers alone (sans I/O): the
/// payload bytes are counted as they pass, never kept.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    max_message_bytes: u64,
    position: Position,
    /// The declared bytes of the fragmented message in progress (0 when none is).
    message_bytes: u64,
}

/// A header whose length field is complete.
struct Header {
    fin: bool,
    opcode: u8,
    length: u64,
    /// Where the length field ends: 2 plus the extended length.
    length_end: usize,
    /// The whole header's size: the length field and the mask.
    size: usize,
}

impl FrameScanner {
    pub fn new(max_message_bytes: u64) -> Self {
        Self {
            max_message_bytes,
            position: Position::NEW_HEADER,
            message_bytes: 0,
        }
    }

    /// Scans the next bytes of the stream. An error is final: the stream must end there.
    pub fn scan(&mut self, mut chunk: &[u8]) -> Result<(), Refusal> {
        while !chunk.is_empty() {
            match &mut self.position {
                Position::Payload { remaining } => {
                    let passed = (*remaining).min(chunk.len() as u64);
                    *remaining -= passed;
                    // `passed` is at most `chunk.len()`, so it fits a usize.
                    chunk = &chunk[passed as usize..];
                    if *remaining == 0 {
                        self.position = Position::NEW_HEADER;
                    }
                }
                Position::Header { bytes, len } => {
                    let before = *len;
                    let wanted = header_size(&bytes[..before]).unwrap_or(2);
                    let take = (wanted - before).min(chunk.len());
                    bytes[before..before + take].copy_from_slice(&chunk[..take]);
                    *len += take;
                    chunk = &chunk[take..];
                    let (bytes, len) = (*bytes, *len);
                    let Some(header) = parse(&bytes[..len]) else {
                        continue;
                    };
                    // Checked once, in the scan that completed the length field.
                    if before < header.length_end {
                        self.check(&header)?;
                    }
                    if len == header.size {
                        self.accept(&header);
                    }
                }
            }
        }
        Ok(())
    }

    /// Refuses a header whose frame the server would not take.
    fn check(&self, header: &Header) -> Result<(), Refusal> {
        if is_control(header.opcode) {
            if header.length > MAX_CONTROL_PAYLOAD_BYTES {
                return Err(Refusal::ControlTooLong {
                    declared: header.length,
                });
            }
            return Ok(());
        }
        let declared = self.message_total(header);
        if declared > self.max_message_bytes {
            return Err(Refusal::MessageTooLarge {
                declared,
                max: self.max_message_bytes,
            });
        }
        Ok(())
    }

    /// The message's declared size with this frame: the running total for a continuation.
    fn message_total(&self, header: &Header) -> u64 {
        if header.opcode == OPCODE_CONTINUATION {
            self.message_bytes.saturating_add(header.length)
        } else {
            header.length
        }
    }

    /// Moves past a complete, accepted header into its payload.
    fn accept(&mut self, header: &Header) {
        if !is_control(header.opcode) {
            self.message_bytes = if header.fin {
                0
            } else {
                self.message_total(header)
            };
        }
        self.position = if header.length == 0 {
            Position::NEW_HEADER
        } else {
            Position::Payload {
                remaining: header.length,
            }
        };
    }
}

const OPCODE_CONTINUATION: u8 = 0x0;

/// Opcodes 0x8 to 0xF are control frames (RFC 6455 §5.5).
fn is_control(opcode: u8) -> bool {
    opcode & 0x8 != 0
}

fn mask_bytes(second: u8) -> usize {
    if second & 0x80 != 0 { 4 } else { 0 }
}

/// How long the header starting with `bytes` is, once its second byte has come.
fn header_size(bytes: &[u8]) -> Option<usize> {
    let second = *bytes.get(1)?;
    let extended = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    Some(2 + extended + mask_bytes(second))
}

/// The header in `bytes` once its length field is complete (the mask may still be coming).
fn parse(bytes: &[u8]) -> Option<Header> {
    let size = header_size(bytes)?;
    let length_end = size - mask_bytes(bytes[1]);
    if bytes.len() < length_end {
        return None;
    }
    let length = match bytes[1] & 0x7F {
        126 => u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        127 => u64::from_be_bytes(bytes[2..10].try_into().expect("8 length bytes")),
        short => u64::from(short),
    };
    Some(Header {
        fin: bytes[0] & 0x80 != 0,
        opcode: bytes[0] & 0x0F,
        length,
        length_end,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header declaring `length` in the shortest form, or in `form`
    /// (7, 16 or 64 bits) when given.
    fn header(fin: bool, opcode: u8, length: u64, form: Option<u8>) -> Vec<u8> {
        let mut bytes = vec![if fin { 0x80 } else { 0 } | opcode];
        let form = form.unwrap_or(match length {
            0..=125 => 7,
            126..=65_535 => 16,
            _ => 64,
        });
        match form {
            7 => bytes.push(0x80 | length as u8),
            16 => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(length as u16).to_be_bytes());
            }
            _ => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&length.to_be_bytes());
            }
        }
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        bytes
    }

    fn frame(fin: bool, opcode: u8, payload_len: usize) -> Vec<u8> {
        let mut bytes = header(fin, opcode, payload_len as u64, None);
        bytes.extend(std::iter::repeat_n(b'x', payload_len));
        bytes
    }

    /// Scans `bytes` whole, then again a byte at a time: both must agree.
    fn scan_both_ways(max: u64, bytes: &[u8]) -> Result<(), Refusal> {
        let whole = FrameScanner::new(max).scan(bytes);
        let mut scanner = FrameScanner::new(max);
        let bytewise = bytes.iter().try_for_each(|b| scanner.scan(&[*b]));
        assert_eq!(whole, bytewise, "whole and byte by byte");
        whole
    }

    #[test]
    fn frames_within_the_limit_pass() {
        let mut stream = frame(true, 0x1, 4096);
        stream.extend(frame(true, 0x9, 125));
        stream.extend(frame(true, 0x1, 0));
        stream.extend(frame(false, 0x1, 2000));
        stream.extend(frame(true, 0xA, 3));
        stream.extend(frame(true, 0x0, 2096));
        stream.extend(frame(true, 0x2, 300));
        stream.extend(frame(true, 0x8, 2));
        assert_eq!(scan_both_ways(4096, &stream), Ok(()));
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_at_its_header() {
        for (length, form) in [
            (4097, Some(16)),
            (65_535, Some(16)),
            (65_536, Some(64)),
            (1 << 40, Some(64)),
            (i64::MAX as u64, Some(64)),
            (u64::MAX, Some(64)),
            // A short length in the long form is still read for what it says.
            (4097, Some(64)),
        ] {
            let bytes = header(true, 0x1, length, form);
            // The mask has not come yet: the length alone decides.
            let length_field = bytes.len() - 4;
            assert_eq!(
                scan_both_ways(4096, &bytes[..length_field]),
                Err(Refusal::MessageTooLarge {
                    declared: length,
                    max: 4096
                }),
                "{length} in {form:?}"
            );
        }
        let mut after_valid = frame(true, 0x1, 100);
        after_valid.extend(header(true, 0x2, 4097, None));
        assert!(scan_both_ways(4096, &after_valid).is_err());
    }

    #[test]
    fn a_fragment_past_the_running_total_is_refused_at_its_header() {
        let mut stream = frame(false, 0x1, 3000);
        stream.extend(frame(true, 0x9, 10));
        stream.extend(frame(false, 0x0, 1000));
        let fits = stream.clone();
        assert_eq!(scan_both_ways(4096, &fits), Ok(()));
        stream.extend(header(true, 0x0, 97, None));
        assert_eq!(
            scan_both_ways(4096, &stream),
            Err(Refusal::MessageTooLarge {
                declared: 4097,
                max: 4096
            })
        );
        // A finished message starts the count again.
        let mut two = frame(false, 0x1, 3000);
        two.extend(frame(true, 0x0, 1096));
        two.extend(frame(false, 0x1, 4000));
        two.extend(frame(true, 0x0, 96));
        assert_eq!(scan_both_ways(4096, &two), Ok(()));
    }

    #[test]
    fn a_control_frame_over_125_bytes_is_refused_at_its_header() {
        for opcode in [0x8, 0x9, 0xA] {
            assert_eq!(
                scan_both_ways(4096, &header(true, opcode, 126, None)),
                Err(Refusal::ControlTooLong { declared: 126 })
            );
        }
    }
}
