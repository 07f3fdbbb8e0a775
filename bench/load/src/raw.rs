//! An HTTP/1.1 stream's response read straight off its socket, for the SSE and HTTP streaming
//! clients: the head parsed with `httparse`, then the body as it arrives, de-chunked when the
//! server sends chunks (tickscope sends none on HTTP/1.1: its streams end with the
//! connection).
//!
//! The load generator's own rather than hyper's client, which it uses for everything else:
//! the lag it reports must be the transport's. Through hyper, a body's data goes from the
//! connection's future to the body through a channel, and on 1,000 streams that hand-over
//! set the tail of the lag measured, not the server (docs/DEVELOPING.md, "Choices"). A WebSocket's
//! frames are read as they arrive; this reads an event the same way.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::wire::Io;

/// The most a response head may take.
const MAX_HEAD: usize = 16 * 1024;
/// What one read asks for at least.
const READ: usize = 16 * 1024;

/// A streamed response after its head.
pub struct RawStream {
    io: Box<dyn Io>,
    /// Read and not yet decoded.
    read: BytesMut,
    body: Body,
}

/// How the body is delimited.
enum Body {
    /// By the connection's end.
    UntilClose,
    /// In chunks: what is left of the current one, and whether its CRLF is still to come.
    Chunked { left: usize, crlf: bool },
}

impl RawStream {
    /// Sends `GET url` on `io` (a fresh connection) and reads the answer's head; a non-2xx
    /// answer is an error.
    pub async fn open(mut io: Box<dyn Io>, url: &Url, accept: &str) -> Result<Self, String> {
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let host = url.host_str().unwrap_or("localhost");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\n\r\n");
        io.write_all(request.as_bytes())
            .await
            .map_err(|error| format!("sending the request: {error}"))?;
        let mut read = BytesMut::with_capacity(READ);
        loop {
            if io
                .read_buf(&mut read)
                .await
                .map_err(|error| format!("reading the head: {error}"))?
                == 0
            {
                return Err("the server closed before its answer's head".into());
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            let parsed = response
                .parse(&read)
                .map_err(|error| format!("the answer's head: {error}"))?;
            let httparse::Status::Complete(head_len) = parsed else {
                if read.len() > MAX_HEAD {
                    return Err(format!("an answer's head over {MAX_HEAD} bytes"));
                }
                continue;
            };
            let status = response.code.unwrap_or(0);
            if !(200..300).contains(&status) {
                return Err(format!("HTTP {status}"));
            }
            let chunked = response.headers.iter().any(|header| {
                header.name.eq_ignore_ascii_case("transfer-encoding")
                    && String::from_utf8_lossy(header.value)
                        .to_ascii_lowercase()
                        .contains("chunked")
            });
            read.advance(head_len);
            let body = if chunked {
                Body::Chunked {
                    left: 0,
                    crlf: false,
                }
            } else {
                Body::UntilClose
            };
            return Ok(Self { io, read, body });
        }
    }

    /// Appends the body's next bytes to `to`, reading when none wait; `Ok(false)` at its end.
    pub async fn next(&mut self, to: &mut Vec<u8>) -> Result<bool, String> {
        loop {
            let before = to.len();
            let ended = self.decode(to)?;
            if to.len() > before {
                return Ok(true);
            }
            if ended {
                return Ok(false);
            }
            self.read.reserve(READ);
            let read = self
                .io
                .read_buf(&mut self.read)
                .await
                .map_err(|error| format!("reading: {error}"))?;
            if read == 0 {
                return Ok(false);
            }
        }
    }

    /// Moves what was read of the body to `to`; `true` once the last chunk has come.
    fn decode(&mut self, to: &mut Vec<u8>) -> Result<bool, String> {
        let Body::Chunked { left, crlf } = &mut self.body else {
            to.extend_from_slice(&self.read);
            self.read.clear();
            return Ok(false);
        };
        loop {
            if *left > 0 {
                let take = (*left).min(self.read.len());
                to.extend_from_slice(&self.read[..take]);
                self.read.advance(take);
                *left -= take;
                if *left > 0 {
                    return Ok(false);
                }
                *crlf = true;
            }
            if *crlf {
                if self.read.len() < 2 {
                    return Ok(false);
                }
                if &self.read[..2] != b"\r\n" {
                    return Err("a chunk not followed by CRLF".into());
                }
                self.read.advance(2);
                *crlf = false;
            }
            let Some(end) = self.read.windows(2).position(|pair| pair == b"\r\n") else {
                if self.read.len() > 1024 {
                    return Err("a chunk size line over 1 KiB".into());
                }
                return Ok(false);
            };
            let line = std::str::from_utf8(&self.read[..end])
                .map_err(|_| "a chunk size that is not text".to_owned())?;
            let digits = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(digits, 16)
                .map_err(|_| format!("a chunk size {digits:?}"))?;
            self.read.advance(end + 2);
            if size == 0 {
                return Ok(true);
            }
            *left = size;
        }
    }
}

/// One Server-Sent Event: its type (`message` when it names none) and its data.
#[derive(Debug, PartialEq)]
pub struct Event {
    pub event: String,
    pub data: String,
}

/// Takes every whole event out of `buffer` (events end with a blank line; lines end with LF,
/// CRLF or CR as the SSE format allows), leaving a partial one for the next read.
pub fn take_events(buffer: &mut Vec<u8>, mut each: impl FnMut(Event)) {
    let mut start = 0;
    let mut event = Event {
        event: String::new(),
        data: String::new(),
    };
    let mut has_data = false;
    let mut consumed = 0;
    let mut at = 0;
    while at < buffer.len() {
        let byte = buffer[at];
        if byte != b'\n' && byte != b'\r' {
            at += 1;
            continue;
        }
        // A CR at the end of what was read may be half of a CRLF: wait for the next byte.
        if byte == b'\r' && at + 1 == buffer.len() {
            break;
        }
        let line = &buffer[start..at];
        at += if byte == b'\r' && buffer[at + 1] == b'\n' {
            2
        } else {
            1
        };
        start = at;
        if line.is_empty() {
            if has_data {
                if event.event.is_empty() {
                    event.event.push_str("message");
                }
                each(std::mem::replace(
                    &mut event,
                    Event {
                        event: String::new(),
                        data: String::new(),
                    },
                ));
            } else {
                event.event.clear();
            }
            has_data = false;
            consumed = at;
            continue;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => {
                event.event.clear();
                event.event.push_str(value);
            }
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    buffer.drain(..consumed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(input: &[u8]) -> (Vec<Event>, Vec<u8>) {
        let mut buffer = input.to_vec();
        let mut found = Vec::new();
        take_events(&mut buffer, |event| found.push(event));
        (found, buffer)
    }

    #[test]
    fn events_are_taken_whole_and_a_partial_one_waits() {
        let (found, rest) = events(
            b"retry: 1000\n\nid: 7\ndata: {\"a\":1}\n\nevent: heartbeat\r\ndata: x\r\n\r\ndata: par",
        );
        assert_eq!(
            found,
            vec![
                Event {
                    event: "message".into(),
                    data: "{\"a\":1}".into()
                },
                Event {
                    event: "heartbeat".into(),
                    data: "x".into()
                },
            ]
        );
        assert_eq!(rest, b"data: par");
    }

    #[test]
    fn data_lines_join_and_a_trailing_cr_waits_for_its_lf() {
        let (found, rest) = events(b"data: a\ndata: b\n\ndata: c\r");
        assert_eq!(found[0].data, "a\nb");
        assert_eq!(rest, b"data: c\r");
    }

    #[test]
    fn chunks_are_taken_off_the_body() {
        let mut stream = RawStream {
            io: Box::new(tokio::io::duplex(64).0),
            read: BytesMut::from(&b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n"[..]),
            body: Body::Chunked {
                left: 0,
                crlf: false,
            },
        };
        let mut body = Vec::new();
        assert!(stream.decode(&mut body).unwrap());
        assert_eq!(body, b"helloabc");
    }
}
