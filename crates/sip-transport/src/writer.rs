//! Writing SIP messages: a small builder for requests and responses, and the
//! RFC 3261 §8.2.6 response skeleton copied from a request.

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::header::Via;
use crate::message::{HeaderName, Method, SipMessage};

/// Builds one message. Content-Length is always written by [`MessageWriter::finish`].
#[derive(Debug, Clone)]
pub struct MessageWriter {
    buf: String,
}

impl MessageWriter {
    pub fn request(method: &Method, uri: &str) -> Self {
        let mut buf = String::with_capacity(512);
        let _ = write!(buf, "{method} {uri} SIP/2.0\r\n");
        MessageWriter { buf }
    }

    pub fn response(code: u16, reason: &str) -> Self {
        let mut buf = String::with_capacity(512);
        // A reason phrase may not hold line breaks; a hostile one must not inject headers.
        let reason: String = reason.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        let _ = write!(buf, "SIP/2.0 {code} {reason}\r\n");
        MessageWriter { buf }
    }

    pub fn header(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.buf, "{name}: {value}\r\n");
        self
    }

    /// Appends the Content-Length (and Content-Type when there is a body) and the body.
    pub fn finish(mut self, content_type: Option<&str>, body: &[u8]) -> Bytes {
        if let (Some(ct), false) = (content_type, body.is_empty()) {
            let _ = write!(self.buf, "Content-Type: {ct}\r\n");
        }
        let _ = write!(self.buf, "Content-Length: {}\r\n\r\n", body.len());
        let mut out = self.buf.into_bytes();
        out.extend_from_slice(body);
        Bytes::from(out)
    }

    pub fn finish_empty(self) -> Bytes {
        self.finish(None, b"")
    }
}

/// The usual reason phrase of a status code (RFC 3261 §21 and extensions).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match code / 100 {
            1 => "Progress",
            2 => "OK",
            3 => "Redirect",
            4 => "Request Failure",
            5 => "Server Failure",
            _ => "Global Failure",
        },
    }
}

/// Writes a Via value with `received`/`rport` stamped from the packet's source
/// (RFC 3261 §18.2.1, RFC 3581 §4).
pub fn stamp_via(via: &Via<'_>, source: SocketAddr) -> String {
    let mut out = String::with_capacity(96);
    let _ = write!(out, "{}/{}/{} {}", via.protocol, via.version, via.transport, via.host);
    if let Some(p) = via.port {
        let _ = write!(out, ":{p}");
    }
    let wants_rport = via.rport().is_some();
    via.params.write_except(&mut out, &["received", "rport"]);
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let source_ip = source.ip().to_string();
    if wants_rport || host != source_ip {
        let _ = write!(out, ";received={source_ip}");
    }
    if wants_rport {
        let _ = write!(out, ";rport={}", source.port());
    }
    out
}

/// Starts a response to `req` (RFC 3261 §8.2.6.2): Via (top one stamped with the
/// source), From, To (with `to_tag` added when To has none), Call-ID, CSeq.
/// The request must have passed the key-header checks; missing headers are skipped.
pub fn response_to(req: &SipMessage, source: SocketAddr, code: u16, reason: &str, to_tag: Option<&str>) -> MessageWriter {
    let mut w = MessageWriter::response(code, reason);
    let mut first = true;
    for value in req.header_values(HeaderName::Via) {
        if first {
            first = false;
            let parts = crate::header::split_commas(value).unwrap_or_default();
            let top = parts.split_first().and_then(|(t, more)| Some((Via::parse(t).ok()?, more)));
            match top {
                Some((top, more)) => {
                    let mut v = stamp_via(&top, source);
                    for rest in more {
                        v.push_str(", ");
                        v.push_str(rest);
                    }
                    w.header("Via", v);
                }
                None => {
                    w.header("Via", value);
                }
            }
        } else {
            w.header("Via", value);
        }
    }
    if let Some(from) = req.first(HeaderName::From) {
        w.header("From", from);
    }
    if let Some(to) = req.first(HeaderName::To) {
        let has_tag = req.to().is_ok_and(|t| t.tag().is_some());
        match to_tag {
            Some(tag) if !has_tag && code > 100 => w.header("To", format_args!("{to};tag={tag}")),
            _ => w.header("To", to),
        };
    }
    if let Some(id) = req.first(HeaderName::CallId) {
        w.header("Call-ID", id);
    }
    if let Some(cseq) = req.first(HeaderName::CSeq) {
        w.header("CSeq", cseq);
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_copies_and_stamps() {
        let req = SipMessage::parse(Bytes::from_static(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP host.example;branch=z9hG4bKx;rport\r\nVia: SIP/2.0/UDP p2;branch=z9hG4bKy\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: abc\r\nCSeq: 2 OPTIONS\r\n\r\n",
        ))
        .unwrap();
        let src: SocketAddr = "192.0.2.7:5062".parse().unwrap();
        let resp = response_to(&req, src, 200, "OK", Some("t9")).finish_empty();
        let resp = SipMessage::parse(resp).unwrap();
        let top = resp.top_via().unwrap();
        assert_eq!(top.received(), Some("192.0.2.7"));
        assert_eq!(top.rport(), Some(Some("5062")));
        assert_eq!(resp.vias().unwrap().len(), 2);
        assert_eq!(resp.to().unwrap().tag(), Some("t9"));
        assert_eq!(resp.cseq().unwrap().seq, 2);
    }

    #[test]
    fn unparsable_top_via_is_copied_as_written() {
        let src: SocketAddr = "192.0.2.7:5062".parse().unwrap();
        for via in [", SIP/2.0/UDP h", "\"open", "<sip:x", "SIP/2.0/UDP [::1"] {
            let req = format!("OPTIONS sip:a@b SIP/2.0\r\nVia: {via}\r\nCall-ID: abc\r\n\r\n");
            let req = SipMessage::parse(Bytes::from(req)).unwrap();
            let resp = SipMessage::parse(response_to(&req, src, 400, "Bad Via", None).finish_empty()).unwrap();
            assert_eq!(resp.first(HeaderName::Via), Some(via), "{via:?}");
        }
    }

    #[test]
    fn reason_cannot_inject_headers() {
        let b = MessageWriter::response(400, "Bad\r\nX-Evil: 1").finish_empty();
        assert!(!String::from_utf8_lossy(&b).contains("\r\nX-Evil"));
    }
}
