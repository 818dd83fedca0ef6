//! Sans-IO stream framing for TCP and TLS (RFC 3261 §18.3), with CRLF keep-alives.
//!
//! A stream carries messages back to back; each one ends after its header section
//! plus `Content-Length` body bytes, so Content-Length is required. Between
//! messages a peer may send a double CRLF "ping" (RFC 5626 §3.5.1, answered with a
//! single CRLF "pong") or stray CRLFs (RFC 3261 §7.5, ignored).
//!
//! The framer never holds more than `max_message_size` bytes of an unfinished
//! message: a message that cannot fit is an error and the connection is closed.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::message::{content_length_of_head, find_head_end};

/// One unit read off a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One whole message: header section plus exactly Content-Length body bytes.
    Message(Bytes),
    /// A double-CRLF keep-alive; answer with a single "\r\n" on the same connection.
    Ping,
}

/// Why a stream cannot be framed; the connection is closed after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("stream message has no Content-Length header (required on TCP/TLS, RFC 3261 §18.3)")]
    MissingContentLength,
    #[error("stream message has a bad Content-Length: {0}")]
    BadContentLength(&'static str),
    #[error("stream message larger than the {max}-byte limit: {}", too_large_detail(*.declared))]
    TooLarge {
        /// Head plus declared body length, when the head was complete.
        declared: Option<usize>,
        max: usize,
    },
}

fn too_large_detail(declared: Option<usize>) -> String {
    match declared {
        Some(n) => format!("header section and Content-Length body add up to {n} bytes"),
        None => "the header section does not end within the limit".to_string(),
    }
}

/// Splits a byte stream into messages and keep-alive pings. Feed it with
/// [`push`](Self::push), take frames with [`next_frame`](Self::next_frame) until
/// it returns `Ok(None)`. After an error every call returns that error.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max: usize,
    /// Frames split off while `push` made room; handed out before anything else.
    ready: VecDeque<Frame>,
    error: Option<FramingError>,
    /// How far `buf` was searched for the end of the head (so a slow head is not rescanned).
    scanned: usize,
    /// Head + body length of the message at the front, once its head is complete.
    pending: Option<usize>,
}

impl StreamFramer {
    pub fn new(max_message_size: usize) -> Self {
        StreamFramer {
            buf: BytesMut::new(),
            max: max_message_size,
            ready: VecDeque::new(),
            error: None,
            scanned: 0,
            pending: None,
        }
    }

    /// Bytes held of a message not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends received bytes. Complete messages are split off whenever the buffer
    /// fills, so a push of any size works; an unfinished message that would need more
    /// than `max_message_size` bytes is `TooLarge`.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), FramingError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        while !data.is_empty() {
            let room = self.max.saturating_sub(self.buf.len());
            if room == 0 {
                // Full: move complete frames out so the rest of `data` fits.
                self.split_ready()?;
                if self.buf.len() >= self.max {
                    return Err(self.fail(FramingError::TooLarge {
                        declared: None,
                        max: self.max,
                    }));
                }
                continue;
            }
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if let Some(f) = self.ready.pop_front() {
            return Ok(Some(f));
        }
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.extract().map_err(|e| self.fail(e))
    }

    fn fail(&mut self, e: FramingError) -> FramingError {
        self.error = Some(e.clone());
        e
    }

    fn split_ready(&mut self) -> Result<(), FramingError> {
        loop {
            match self.extract() {
                Ok(Some(f)) => self.ready.push_back(f),
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.scanned = 0;
    }

    fn extract(&mut self) -> Result<Option<Frame>, FramingError> {
        const PING: &[u8] = b"\r\n\r\n";
        let total = match self.pending {
            Some(total) => total,
            None => {
                // Between messages: keep-alives and stray line ends.
                loop {
                    match self.buf.first() {
                        None => return Ok(None),
                        Some(b'\r') => {
                            if self.buf.starts_with(PING) {
                                self.consume(PING.len());
                                return Ok(Some(Frame::Ping));
                            }
                            if PING.starts_with(&self.buf) {
                                // Could still become a ping: wait for the next bytes.
                                return Ok(None);
                            }
                            if self.buf.starts_with(b"\r\n") {
                                self.consume(2); // lone CRLF (RFC 3261 §7.5)
                                continue;
                            }
                            break; // CR + something else: let the head parser judge it
                        }
                        Some(b'\n') => {
                            self.consume(1); // bare LF, tolerated like a CRLF
                            continue;
                        }
                        Some(_) => break,
                    }
                }
                // The end marker is at most 3 bytes, so resume a little before where we stopped.
                let from = self.scanned.saturating_sub(3);
                let Some((h, s)) = find_head_end(&self.buf[from..]) else {
                    self.scanned = self.buf.len();
                    if self.buf.len() >= self.max {
                        // Any end of head would need more bytes than allowed.
                        return Err(FramingError::TooLarge {
                            declared: None,
                            max: self.max,
                        });
                    }
                    return Ok(None);
                };
                let (head_end, body_start) = (from + h, from + s);
                let len = content_length_of_head(&self.buf[..head_end])
                    .map_err(FramingError::BadContentLength)?
                    .ok_or(FramingError::MissingContentLength)?;
                let total = body_start.saturating_add(len);
                if total > self.max {
                    return Err(FramingError::TooLarge {
                        declared: Some(total),
                        max: self.max,
                    });
                }
                self.pending = Some(total);
                total
            }
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        self.pending = None;
        self.scanned = 0;
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: &[u8] = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\nhello";
    const M2: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n";
    const M3_BARE_LF: &[u8] = b"SIP/2.0 200 OK\nContent-Length: 3\n\nabc";

    /// Pushes `chunks` one by one, taking every frame after each push.
    fn frames(max: usize, chunks: &[&[u8]]) -> Result<Vec<Frame>, FramingError> {
        let mut f = StreamFramer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c)?;
            while let Some(fr) = f.next_frame()? {
                out.push(fr);
            }
        }
        Ok(out)
    }

    fn msg(b: &[u8]) -> Frame {
        Frame::Message(Bytes::copy_from_slice(b))
    }

    #[test]
    fn split_at_every_byte_position() {
        let mut stream = Vec::new();
        stream.extend_from_slice(M1);
        stream.extend_from_slice(b"\r\n\r\n"); // ping
        stream.extend_from_slice(b"\r\n"); // lone CRLF
        stream.extend_from_slice(M2);
        stream.extend_from_slice(M3_BARE_LF);
        let want = vec![msg(M1), Frame::Ping, msg(M2), msg(M3_BARE_LF)];
        for i in 0..=stream.len() {
            let got = frames(4096, &[&stream[..i], &stream[i..]]).unwrap();
            assert_eq!(got, want, "split at {i}");
        }
        // And one byte at a time.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(4096, &bytes).unwrap(), want);
    }

    #[test]
    fn two_messages_in_one_push() {
        let both = [M1, M2].concat();
        assert_eq!(frames(4096, &[&both]).unwrap(), vec![msg(M1), msg(M2)]);
    }

    #[test]
    fn ping_between_messages() {
        let s = [M2, b"\r\n\r\n", M2].concat();
        assert_eq!(frames(4096, &[&s]).unwrap(), vec![msg(M2), Frame::Ping, msg(M2)]);
        // Two pings in a row, and a ping alone.
        assert_eq!(
            frames(4096, &[b"\r\n\r\n\r\n\r\n"]).unwrap(),
            vec![Frame::Ping, Frame::Ping]
        );
    }

    #[test]
    fn half_ping_waits() {
        let mut f = StreamFramer::new(4096);
        f.push(b"\r\n").unwrap();
        assert_eq!(f.next_frame().unwrap(), None);
        f.push(b"\r\n").unwrap();
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
    }

    #[test]
    fn lone_crlf_is_skipped() {
        let s = [b"\r\n", M2, b"\r\n", M2].concat();
        assert_eq!(frames(4096, &[&s]).unwrap(), vec![msg(M2), msg(M2)]);
    }

    #[test]
    fn missing_content_length() {
        let e = frames(4096, &[b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"]).unwrap_err();
        assert_eq!(e, FramingError::MissingContentLength);
        assert!(e.to_string().contains("Content-Length"));
    }

    #[test]
    fn bad_content_length() {
        let e = frames(4096, &[b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1x\r\n\r\n"]).unwrap_err();
        assert!(matches!(e, FramingError::BadContentLength(_)), "{e}");
    }

    #[test]
    fn head_that_never_ends_is_too_large() {
        let mut f = StreamFramer::new(100);
        let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\n").unwrap();
        let mut err = None;
        for _ in 0..10 {
            if let Err(e) = f.push(line).and_then(|_| f.next_frame().map(|_| ())) {
                err = Some(e);
                break;
            }
            assert!(f.buffered() <= 100);
        }
        let e = err.expect("an error before 10 lines");
        assert_eq!(
            e,
            FramingError::TooLarge {
                declared: None,
                max: 100
            }
        );
        assert!(e.to_string().contains("100-byte limit"), "{e}");
        // Sticky.
        assert_eq!(f.push(b"x"), Err(e.clone()));
        assert_eq!(f.next_frame(), Err(e));
    }

    #[test]
    fn declared_body_over_max_is_too_large() {
        let head = b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 900\r\n\r\n";
        let e = frames(500, &[head]).unwrap_err();
        assert_eq!(
            e,
            FramingError::TooLarge {
                declared: Some(head.len() + 900),
                max: 500
            }
        );
        assert!(e.to_string().contains("add up to"), "{e}");
    }

    #[test]
    fn message_of_exactly_max_fits() {
        assert_eq!(frames(M1.len(), &[M1, M1]).unwrap(), vec![msg(M1), msg(M1)]);
    }

    #[test]
    fn big_push_of_small_messages_is_framed_within_the_bound() {
        // 50 messages in one push, far more than max in total: all framed.
        let many: Vec<u8> = std::iter::repeat_n(M1, 50).flatten().copied().collect();
        let mut f = StreamFramer::new(M1.len() + 10);
        f.push(&many).unwrap();
        assert!(f.buffered() <= M1.len() + 10);
        let mut n = 0;
        while let Some(fr) = f.next_frame().unwrap() {
            assert_eq!(fr, msg(M1));
            n += 1;
        }
        assert_eq!(n, 50);
    }

    #[test]
    fn bare_lf_heads() {
        let s = [M3_BARE_LF, b"\n", M3_BARE_LF].concat();
        assert_eq!(frames(4096, &[&s]).unwrap(), vec![msg(M3_BARE_LF), msg(M3_BARE_LF)]);
        // Mixed: CRLF lines ending with a bare-LF blank line.
        let mixed: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\nok";
        assert_eq!(frames(4096, &[mixed]).unwrap(), vec![msg(mixed)]);
    }

    #[test]
    fn lone_cr_before_a_message_is_part_of_its_head() {
        let mut s = b"\n\n\r".to_vec();
        s.extend_from_slice(M2);
        let want = [b"\r".as_slice(), M2].concat();
        assert_eq!(frames(4096, &[&s]).unwrap(), vec![msg(&want)]);
        let m = crate::SipMessage::parse(Bytes::from(want)).unwrap();
        assert_eq!(m.method(), Some(&crate::Method::Options));
        // A head that never ends is cut at the limit.
        let e = frames(64, &[b"\rX", &[b'y'; 100]]).unwrap_err();
        assert_eq!(e, FramingError::TooLarge { declared: None, max: 64 });
    }
}
