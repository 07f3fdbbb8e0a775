//! Writing batches and snapshots from pre-encoded ticks.
//!
//! A tick's JSON is made once, when it is published; here it is only copied. The shapes are
//! those of [`tickscope_shared::wire`], which the tests below check by parsing the output back.

use std::fmt::Write as _;
use std::sync::Arc;

use super::tick::BatchSlice;

/// How a batch is wrapped for its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A JSON body, as polling and long polling answer.
    Json,
    /// A WebSocket text message: the batch with `"type":"batch"` first.
    WebSocket,
    /// A Server-Sent Event: `id: <cursor>` and the batch as its data.
    Sse,
    /// A line of HTTP streaming: the WebSocket message (`"type":"batch"` first) and `\n`.
    Ndjson,
    /// A WebTransport stream's one line: the WebSocket message with `"after"`, the cursor the
    /// batch continues from, second, and `\n`. Batches travel on streams of their own and may
    /// arrive out of order; `after` lets the client put them back in order.
    WebTransport,
}

/// The header of an unmasked, final text frame (RFC 6455 section 5.2), on the stack.
pub struct FrameHeader {
    bytes: [u8; 10],
    len: usize,
}

impl FrameHeader {
    /// The header of a text frame of `len` bytes, in the shortest length form.
    pub fn text(len: usize) -> Self {
        const FIN_TEXT: u8 = 0x81;
        let mut bytes = [0; 10];
        bytes[0] = FIN_TEXT;
        let size = match len {
            0..=125 => {
                bytes[1] = len as u8;
                2
            }
            126..=0xffff => {
                bytes[1] = 126;
                bytes[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            _ => {
                bytes[1] = 127;
                bytes[2..10].copy_from_slice(&(len as u64).to_be_bytes());
                10
            }
        };
        Self { bytes, len: size }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A batch wrapped for its transport; `after` is the cursor it continues from.
pub fn frame(framing: Framing, after: u64, slice: &BatchSlice) -> String {
    match framing {
        Framing::WebTransport => {
            let opening = format!(r#"{{"type":"batch","after":{after},"#);
            let mut out = write_batch(String::new(), &opening, slice);
            out.push('\n');
            out
        }
        Framing::Json => batch(slice),
        Framing::WebSocket => ws_batch(slice),
        Framing::Ndjson => {
            let mut out = ws_batch(slice);
            out.push('\n');
            out
        }
        Framing::Sse => {
            let mut out = write_batch(format!("id: {}\ndata: ", slice.cursor), "{", slice);
            out.push_str("\n\n");
            out
        }
    }
}

/// A batch as the HTTP transports and SSE send it: `{"cursor":..,"gap":..,"ticks":[..]}`.
pub fn batch(slice: &BatchSlice) -> String {
    write_batch(String::new(), "{", slice)
}

/// A batch as a WebSocket message: the same with `"type":"batch"` first.
pub fn ws_batch(slice: &BatchSlice) -> String {
    write_batch(String::new(), r#"{"type":"batch","#, slice)
}

/// A snapshot: `{"cursor":..,"quotes":[..]}`.
pub fn snapshot(cursor: u64, quotes: &[Arc<str>]) -> String {
    let mut out = String::with_capacity(32 + json_len(quotes));
    write!(out, r#"{{"cursor":{cursor},"quotes":"#).expect("writing to a String cannot fail");
    push_array(&mut out, quotes);
    out.push('}');
    out
}

fn write_batch(mut out: String, opening: &str, slice: &BatchSlice) -> String {
    out.reserve(48 + json_len(&slice.ticks));
    out.push_str(opening);
    write!(out, r#""cursor":{},"gap":{},"#, slice.cursor, slice.gap)
        .expect("writing to a String cannot fail");
    if slice.conflated {
        out.push_str(r#""conflated":true,"#);
    }
    out.push_str(r#""ticks":"#);
    push_array(&mut out, &slice.ticks);
    out.push('}');
    out
}

fn json_len(items: &[Arc<str>]) -> usize {
    items.iter().map(|item| item.len() + 1).sum()
}

fn push_array(out: &mut String, items: &[Arc<str>]) {
    out.push('[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickscope_shared::wire::{Batch, ServerMessage, Snapshot, Tick};

    #[test]
    fn frame_headers_take_the_shortest_length_form() {
        assert_eq!(FrameHeader::text(0).bytes(), [0x81, 0]);
        assert_eq!(FrameHeader::text(125).bytes(), [0x81, 125]);
        assert_eq!(FrameHeader::text(126).bytes(), [0x81, 126, 0, 126]);
        assert_eq!(FrameHeader::text(65_535).bytes(), [0x81, 126, 0xff, 0xff]);
        assert_eq!(
            FrameHeader::text(65_536).bytes(),
            [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    fn tick(seq: u64) -> Tick {
        Tick {
            seq,
            symbol: "ACME".into(),
            price: 142.5,
            bid: 142.49,
            ask: 142.51,
            volume: 300,
            ts: 1_700_000_000_123_456,
        }
    }

    fn slice(ticks: &[Tick], gap: bool) -> BatchSlice {
        BatchSlice {
            cursor: 9,
            gap,
            ticks: ticks
                .iter()
                .map(|tick| serde_json::to_string(tick).unwrap().into())
                .collect(),
            more: false,
            conflated: false,
        }
    }

    #[test]
    fn batches_parse_back_into_the_wire_types() {
        let ticks = [tick(8), tick(9)];
        let expected = Batch {
            cursor: 9,
            gap: true,
            ticks: ticks.to_vec(),
        };
        let plain: Batch = serde_json::from_str(&batch(&slice(&ticks, true))).unwrap();
        assert_eq!(plain, expected);
        let ws: ServerMessage = serde_json::from_str(&ws_batch(&slice(&ticks, true))).unwrap();
        assert_eq!(ws, ServerMessage::Batch(expected));
        let empty: Batch = serde_json::from_str(&batch(&slice(&[], false))).unwrap();
        assert!(empty.ticks.is_empty() && !empty.gap);
    }

    #[test]
    fn sse_frames_carry_the_cursor_as_the_event_id() {
        let event = frame(Framing::Sse, 8, &slice(&[tick(9)], false));
        let data = event
            .strip_prefix("id: 9\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap();
        let parsed: Batch = serde_json::from_str(data).unwrap();
        assert_eq!(parsed.ticks, vec![tick(9)]);
    }

    #[test]
    fn snapshot_parses_back() {
        let quotes: Vec<Arc<str>> = vec![serde_json::to_string(&tick(3)).unwrap().into()];
        let parsed: Snapshot = serde_json::from_str(&snapshot(3, &quotes)).unwrap();
        assert_eq!(parsed.cursor, 3);
        assert_eq!(parsed.quotes, vec![tick(3)]);
    }
}
