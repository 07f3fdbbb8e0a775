//! Wire bytes on HTTP/2: one TLS connection carries many requests at once, so its bytes are
//! charged per stream.
//!
//! [`Frames`] sits between TLS and actix-http's HTTP/2 and reads the frame headers going
//! each way (RFC 9113 §4.1: 24-bit length, type, flags, stream id). Each I/O call's TLS bytes,
//! as [`super::Metered`] counted them under TLS, are shared among the frames it carried in
//! proportion to their plaintext size, so record headers, AEAD tags and HPACK's compressed
//! heads are charged to the stream whose frames they carried, and the totals stay the socket's
//! exact byte counts. Connection frames (stream 0: the preface, SETTINGS, PING, connection
//! WINDOW_UPDATE, GOAWAY), the handshake and frames of streams already closed are `other`.
//!
//! Streams are matched to requests in order: the client opens streams in increasing id order
//! with a HEADERS frame, and actix-http calls the app with each request as the h2 crate
//! accepts it, in the same order ([`super::attribute_sync`] runs in that call). A stream the
//! server refuses (RST_STREAM before the app saw it) leaves the queue when the reset is
//! written.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Charge, Connection, Direction};

/// The client connection preface (RFC 9113 §3.4), before the client's first frame.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const END_STREAM: u8 = 0x1;

/// What the frame reader found in a chunk of plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// This many bytes of a frame on `stream` (its header's or its payload's).
    Bytes { stream: u32, bytes: u64 },
    /// A frame's header was read whole.
    Start { stream: u32, kind: u8, flags: u8 },
    /// A frame was read whole.
    End { stream: u32, kind: u8, flags: u8 },
}

/// Reads frame boundaries out of one direction's plaintext, in chunks of any size.
#[derive(Debug)]
struct FrameReader {
    /// Bytes of the preface still to come (client to server only).
    preface: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// The frame being read: its stream, type, flags and the payload bytes still to come.
    frame: Option<(u32, u8, u8, usize)>,
}

impl FrameReader {
    fn new(direction: Direction) -> Self {
        Self {
            preface: match direction {
                Direction::Up => PREFACE_LEN,
                Direction::Down => 0,
            },
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            frame: None,
        }
    }

    /// Reads `chunk`, the next plaintext bytes, into `events`. A header split across chunks
    /// is counted with the chunk that completes it.
    fn read(&mut self, mut chunk: &[u8], events: &mut Vec<Event>) {
        if self.preface > 0 {
            let taken = self.preface.min(chunk.len());
            self.preface -= taken;
            chunk = &chunk[taken..];
            events.push(Event::Bytes {
                stream: 0,
                bytes: taken as u64,
            });
        }
        while !chunk.is_empty() {
            match &mut self.frame {
                None => {
                    let taken = (FRAME_HEADER_LEN - self.header_len).min(chunk.len());
                    self.header[self.header_len..self.header_len + taken]
                        .copy_from_slice(&chunk[..taken]);
                    self.header_len += taken;
                    chunk = &chunk[taken..];
                    if self.header_len == FRAME_HEADER_LEN {
                        self.header_len = 0;
                        let h = self.header;
                        let length = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                        let (kind, flags) = (h[3], h[4]);
                        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                        events.push(Event::Bytes {
                            stream,
                            bytes: FRAME_HEADER_LEN as u64,
                        });
                        events.push(Event::Start {
                            stream,
                            kind,
                            flags,
                        });
                        self.frame = Some((stream, kind, flags, length));
                        self.finish_if_read(events);
                    }
                }
                Some((stream, _, _, remaining)) => {
                    let taken = (*remaining).min(chunk.len());
                    *remaining -= taken;
                    chunk = &chunk[taken..];
                    events.push(Event::Bytes {
                        stream: *stream,
                        bytes: taken as u64,
                    });
                    self.finish_if_read(events);
                }
            }
        }
    }

    fn finish_if_read(&mut self, events: &mut Vec<Event>) {
        if let Some((stream, kind, flags, 0)) = self.frame {
            events.push(Event::End {
                stream,
                kind,
                flags,
            });
            self.frame = None;
        }
    }
}

/// One stream's accounts.
#[derive(Default)]
struct Stream {
    /// Set when its request reached the app; until then its bytes wait in `pending`.
    charge: Option<Charge>,
    pending: [u64; 2],
    /// END_STREAM seen going `[down, up]`.
    ended: [bool; 2],
}

/// An HTTP/2 connection's accounts, kept in its [`Connection`].
pub(super) struct Streams {
    readers: [FrameReader; 2],
    streams: HashMap<u32, Stream>,
    /// Streams the client opened whose request the app has not seen yet, oldest first.
    unbound: VecDeque<u32>,
    /// TLS bytes counted under TLS and not yet shared among frames, `[down, up]`.
    pub(super) raw: [u64; 2],
    /// The stream of the last frame each way, which gets TLS bytes that came with no frame.
    last: [u32; 2],
    events: Vec<Event>,
    shares: Vec<(u32, u64)>,
}

impl Streams {
    pub(super) fn new() -> Self {
        Self {
            readers: [
                FrameReader::new(Direction::Down),
                FrameReader::new(Direction::Up),
            ],
            streams: HashMap::new(),
            unbound: VecDeque::new(),
            raw: [0; 2],
            last: [0; 2],
            events: Vec::new(),
            shares: Vec::new(),
        }
    }

    /// The app got the next request: its stream is charged to `charge` from now on, and
    /// gets what it carried before.
    pub(super) fn bind(&mut self, charge: Charge, add: &impl Fn(&Charge, Direction, u64)) {
        let Some(id) = self.unbound.pop_front() else {
            return;
        };
        if let Some(stream) = self.streams.get_mut(&id) {
            for direction in [Direction::Down, Direction::Up] {
                let pending = std::mem::take(&mut stream.pending[direction as usize]);
                if pending > 0 {
                    add(&charge, direction, pending);
                }
            }
            stream.charge = Some(charge);
        }
    }

    /// `plaintext` (one I/O call's, in pieces) went `direction` through TLS: shares the TLS
    /// bytes counted since among its frames' streams and charges them with `add`.
    pub(super) fn carried<'a>(
        &mut self,
        direction: Direction,
        plaintext: impl IntoIterator<Item = &'a [u8]>,
        add: &impl Fn(&Charge, Direction, u64),
    ) {
        let d = direction as usize;
        let mut events = std::mem::take(&mut self.events);
        let mut shares = std::mem::take(&mut self.shares);
        events.clear();
        shares.clear();
        for piece in plaintext {
            self.readers[d].read(piece, &mut events);
        }
        for event in &events {
            match *event {
                Event::Bytes { stream, bytes } => match shares.last_mut() {
                    Some((last, total)) if *last == stream => *total += bytes,
                    _ => shares.push((stream, bytes)),
                },
                Event::Start {
                    stream,
                    kind: HEADERS,
                    ..
                } if direction == Direction::Up
                    && stream % 2 == 1
                    && !self.streams.contains_key(&stream) =>
                {
                    self.streams.insert(stream, Stream::default());
                    self.unbound.push_back(stream);
                }
                _ => {}
            }
        }
        let raw = std::mem::take(&mut self.raw[d]);
        let plain: u64 = shares.iter().map(|(_, bytes)| bytes).sum();
        if plain == 0 {
            // TLS bytes with no frame: a record's tail, a key update, a ticket.
            if raw > 0 {
                self.charge(self.last[d], direction, raw, add);
            }
        } else {
            let mut left = raw;
            for (i, &(stream, bytes)) in shares.iter().enumerate() {
                let share = if i + 1 == shares.len() {
                    left
                } else {
                    (u128::from(raw) * u128::from(bytes) / u128::from(plain)) as u64
                };
                left -= share;
                if share > 0 {
                    self.charge(stream, direction, share, add);
                }
                self.last[d] = stream;
            }
        }
        for event in &events {
            if let Event::End {
                stream,
                kind,
                flags,
            } = *event
            {
                self.ended(stream, direction, kind, flags, add);
            }
        }
        self.events = events;
        self.shares = shares;
    }

    fn charge(
        &mut self,
        stream: u32,
        direction: Direction,
        bytes: u64,
        add: &impl Fn(&Charge, Direction, u64),
    ) {
        match self.streams.get_mut(&stream) {
            Some(Stream {
                charge: Some(charge),
                ..
            }) => add(charge, direction, bytes),
            Some(stream) => stream.pending[direction as usize] += bytes,
            None => add(&Charge::OTHER, direction, bytes),
        }
    }

    /// A frame ended: a stream closed both ways, or reset, is forgotten.
    fn ended(
        &mut self,
        id: u32,
        direction: Direction,
        kind: u8,
        flags: u8,
        add: &impl Fn(&Charge, Direction, u64),
    ) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let closed = match kind {
            RST_STREAM => true,
            DATA | HEADERS if flags & END_STREAM != 0 => {
                stream.ended[direction as usize] = true;
                stream.ended == [true, true]
            }
            _ => false,
        };
        if closed && let Some(stream) = self.streams.remove(&id) {
            // Refused before the app saw it: what it carried is `other`.
            for direction in [Direction::Down, Direction::Up] {
                let pending = stream.pending[direction as usize];
                if pending > 0 {
                    add(&Charge::OTHER, direction, pending);
                }
            }
            if stream.charge.is_none() {
                self.unbound.retain(|unbound| *unbound != id);
            }
        }
    }

    /// Streams held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.streams.len()
    }
}

/// The plaintext side of an HTTP/2 connection's TLS stream, reading frame headers as they
/// pass; see the module comment.
pub struct Frames<T> {
    io: T,
    connection: Rc<Connection>,
}

impl<T> Frames<T> {
    /// Starts `connection`'s per-stream accounts; its TLS handshake is done.
    pub fn new(io: T, connection: Rc<Connection>) -> Self {
        connection.start_h2();
        Self { io, connection }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Frames<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        self.connection
            .h2_carried(Direction::Up, [&buf.filled()[before..]]);
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Frames<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        let written = match result {
            Poll::Ready(Ok(written)) => written,
            _ => 0,
        };
        self.connection
            .h2_carried(Direction::Down, [&buf[..written]]);
        result
    }

    /// A frame's head and its payload in one call, so TLS seals them in one record.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        let mut left = match result {
            Poll::Ready(Ok(written)) => written,
            _ => 0,
        };
        let written = bufs.iter().map_while(|buf| {
            (left > 0).then(|| {
                let taken = left.min(buf.len());
                left -= taken;
                &buf[..taken]
            })
        });
        self.connection.h2_carried(Direction::Down, written);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.connection
            .h2_carried(Direction::Down, std::iter::empty());
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_shutdown(cx);
        self.connection
            .h2_carried(Direction::Down, std::iter::empty());
        result
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::connection::wire::Account;

    fn frame(kind: u8, flags: u8, stream: u32, payload: usize) -> Vec<u8> {
        let mut bytes = (payload as u32).to_be_bytes()[1..].to_vec();
        bytes.extend([kind, flags]);
        bytes.extend(stream.to_be_bytes());
        bytes.extend(std::iter::repeat_n(0u8, payload));
        bytes
    }

    /// What each account got, by `(account, meter named, direction)`.
    type Ledger = RefCell<Vec<(Account, Direction, u64)>>;

    fn adder(ledger: &Ledger) -> impl Fn(&Charge, Direction, u64) + '_ {
        |charge, direction, bytes| ledger.borrow_mut().push((charge.account, direction, bytes))
    }

    fn total(ledger: &Ledger, account: Account, direction: Direction) -> u64 {
        ledger
            .borrow()
            .iter()
            .filter(|(a, d, _)| *a == account && *d == direction)
            .map(|(_, _, bytes)| bytes)
            .sum()
    }

    fn polling() -> Charge {
        Charge {
            account: Account::Transport(crate::metrics::Transport::Polling),
            meter: None,
        }
    }

    #[test]
    fn frames_split_anywhere_are_read_whole() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(4, 0, 0, 18));
        bytes.extend(frame(HEADERS, END_STREAM | 0x4, 1, 40));
        bytes.extend(frame(DATA, 0, 3, 0));
        for split in 1..bytes.len() {
            let mut reader = FrameReader::new(Direction::Up);
            let mut events = Vec::new();
            reader.read(&bytes[..split], &mut events);
            reader.read(&bytes[split..], &mut events);
            let by_stream = |id| -> u64 {
                events
                    .iter()
                    .filter_map(|event| match event {
                        Event::Bytes { stream, bytes } if *stream == id => Some(*bytes),
                        _ => None,
                    })
                    .sum()
            };
            assert_eq!(by_stream(0), 24 + 9 + 18, "split at {split}");
            assert_eq!(by_stream(1), 9 + 40);
            assert_eq!(by_stream(3), 9);
            let ends: Vec<_> = events
                .iter()
                .filter(|event| matches!(event, Event::End { .. }))
                .collect();
            assert_eq!(ends.len(), 3);
        }
    }

    #[test]
    fn tls_bytes_are_shared_by_frame_size_and_waiting_bytes_go_to_the_request() {
        let ledger = Ledger::default();
        let add = adder(&ledger);
        let mut streams = Streams::new();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(4, 0, 0, 6)); // 39 bytes of connection
        hello.extend(frame(HEADERS, END_STREAM | 0x4, 1, 30)); // 39 bytes of stream 1
        streams.raw[Direction::Up as usize] = 78 + 44;
        streams.carried(Direction::Up, [&hello[..]], &add);
        // Stream 1 is not bound yet: its share waits; the connection's is `other`.
        assert_eq!(total(&ledger, Account::Other, Direction::Up), 61);
        streams.bind(polling(), &add);
        assert_eq!(total(&ledger, polling().account, Direction::Up), 61);
        // The answer: HEADERS and DATA with END_STREAM, in one record of 22 extra bytes.
        let mut answer = frame(HEADERS, 0x4, 1, 20);
        answer.extend(frame(DATA, END_STREAM, 1, 100));
        streams.raw[Direction::Down as usize] = answer.len() as u64 + 22;
        streams.carried(Direction::Down, [&answer[..]], &add);
        assert_eq!(
            total(&ledger, polling().account, Direction::Down),
            answer.len() as u64 + 22
        );
        assert_eq!(
            streams.held(),
            0,
            "closed both ways, the stream is forgotten"
        );
        // A late WINDOW_UPDATE for it is the connection's.
        streams.raw[Direction::Up as usize] = 13 + 22;
        streams.carried(Direction::Up, [&frame(8, 0, 1, 4)[..]], &add);
        assert_eq!(total(&ledger, Account::Other, Direction::Up), 61 + 35);
    }

    #[test]
    fn a_refused_stream_leaves_the_queue() {
        let ledger = Ledger::default();
        let add = adder(&ledger);
        let mut streams = Streams::new();
        let mut opens = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        opens.extend(frame(HEADERS, 0x4, 1, 10));
        opens.extend(frame(HEADERS, 0x4, 3, 10));
        streams.carried(Direction::Up, [&opens[..]], &add);
        // The server resets stream 1 before the app sees it; the next request is stream 3's.
        streams.carried(Direction::Down, [&frame(RST_STREAM, 0, 1, 4)[..]], &add);
        streams.bind(polling(), &add);
        let mut data = frame(DATA, END_STREAM, 3, 5);
        data.extend(frame(DATA, END_STREAM, 1, 5));
        streams.raw[Direction::Up as usize] = data.len() as u64;
        streams.carried(Direction::Up, [&data[..]], &add);
        assert_eq!(total(&ledger, polling().account, Direction::Up), 14);
        assert_eq!(total(&ledger, Account::Other, Direction::Up), 14);
    }
}
