//! A client's WebSocket byte stream, as the frame guard scans it before actix-http's parser:
//! the scan never panics, gives the same verdict however the stream is cut into chunks, and
//! refuses exactly the frames actix-http's parser would find over the limit.
#![no_main]

use actix_http::ws::{OpCode, Parser};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tickscope::connection::frame_guard::{FrameScanner, MAX_CONTROL_PAYLOAD_BYTES, Refusal};

/// Small, so that frames over it are easy to reach.
const LIMIT: u64 = 300;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let whole = FrameScanner::new(LIMIT).scan(stream);
    let mut scanner = FrameScanner::new(LIMIT);
    let chunked = stream
        .chunks(usize::from(step).max(1))
        .try_for_each(|chunk| scanner.scan(chunk));
    assert_eq!(whole, chunked, "the verdict depends on the chunking");

    // actix-http's parser, given the whole stream and a limit no input reaches, finds the
    // frames. Fed the same frames one by one, the guard takes each one within the limit and
    // refuses the first one over it.
    let mut buf = BytesMut::from(stream);
    let mut by_frames = FrameScanner::new(LIMIT);
    let mut consumed = 0;
    let mut message = 0u64;
    loop {
        let (fin, opcode, payload) = match Parser::parse(&mut buf, true, 1 << 20) {
            Ok(Some(frame)) => frame,
            // A trailing frame still incomplete, or a stream actix-http refuses itself: the
            // guard may have refused a header there, which the parser cannot show.
            Ok(None) | Err(_) => return,
        };
        let end = stream.len() - buf.len();
        let verdict = by_frames.scan(&stream[consumed..end]);
        consumed = end;
        let length = payload.map_or(0, |payload| payload.len() as u64);
        let expected = match opcode {
            OpCode::Ping | OpCode::Pong | OpCode::Close => (length > MAX_CONTROL_PAYLOAD_BYTES)
                .then_some(Refusal::ControlTooLong { declared: length }),
            _ => {
                let total = if opcode == OpCode::Continue {
                    message + length
                } else {
                    length
                };
                message = if fin { 0 } else { total };
                (total > LIMIT).then_some(Refusal::MessageTooLarge {
                    declared: total,
                    max: LIMIT,
                })
            }
        };
        assert_eq!(verdict, expected.map_or(Ok(()), Err), "frame by frame");
        if let Some(refusal) = expected {
            assert_eq!(whole, Err(refusal), "the whole stream's verdict");
            return;
        }
    }
});
