//! Batches framed for a transport, and the cache that lets every client at the same cursor
//! share one.

use std::collections::VecDeque;

use bytes::Bytes;

use super::encode::{self, FrameHeader, Framing};
use super::tick::BatchSlice;

/// Shared frames kept for reuse: a few per framing is plenty, since clients at the head all
/// ask for the newest.
const FRAME_CACHE: usize = 16;

/// A batch framed for one transport, ready to send. Cloning it shares the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub cursor: u64,
    pub gap: bool,
    /// Ticks in the batch (quotes, for a gap).
    pub ticks: usize,
    /// More ticks after `cursor` were due but over the batch limit: ask again at once.
    pub more: bool,
    /// The frame as it goes on the wire: for WebSocket the frame's header, then the message;
    /// for the others the text alone.
    pub bytes: Bytes,
    /// Where the message begins in `bytes` (after a WebSocket frame's header).
    header: usize,
}

impl Frame {
    pub(super) fn encode(framing: Framing, after: u64, slice: &BatchSlice) -> Self {
        let text = encode::frame(framing, after, slice);
        // A WebSocket frame is whole, header and all, so each client's socket takes it in
        // one `send`.
        let (bytes, header) = match framing {
            Framing::WebSocket => {
                let header = FrameHeader::text(text.len());
                let mut frame = Vec::with_capacity(header.bytes().len() + text.len());
                frame.extend_from_slice(header.bytes());
                frame.extend_from_slice(text.as_bytes());
                (Bytes::from(frame), header.bytes().len())
            }
            _ => (Bytes::from(text), 0),
        };
        Self {
            cursor: slice.cursor,
            gap: slice.gap,
            ticks: slice.ticks.len(),
            more: slice.more,
            bytes,
            header,
        }
    }

    /// The message's length, without a WebSocket frame's header: what `bytes_sent` counts.
    pub fn payload_len(&self) -> usize {
        self.bytes.len() - self.header
    }
}

/// Frames of all-symbol batches, keyed by framing, the cursor they start after and the head
/// they were made at; the oldest goes first.
#[derive(Default)]
pub(super) struct FrameCache {
    entries: VecDeque<(Framing, u64, u64, Frame)>,
}

impl FrameCache {
    pub(super) fn get(&self, framing: Framing, since: u64, head: u64) -> Option<&Frame> {
        self.entries
            .iter()
            .rev()
            .find(|entry| (entry.0, entry.1, entry.2) == (framing, since, head))
            .map(|entry| &entry.3)
    }

    pub(super) fn put(&mut self, framing: Framing, since: u64, head: u64, frame: Frame) {
        if self.entries.len() == FRAME_CACHE {
            self.entries.pop_front();
        }
        self.entries.push_back((framing, since, head, frame));
    }
}
