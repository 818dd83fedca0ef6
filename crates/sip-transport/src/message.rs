//! Zero-copy SIP message parser (RFC 3261 §7). A parsed message is the received
//! bytes plus offsets: the start line, one entry per header field, and the body.
//! Header values are interpreted lazily by typed accessors (see [`crate::header`]),
//! so the hot path pays only for what it reads.
//!
//! Faults split in two. A message whose start line or header lines cannot be
//! delimited at all is an `Err(ParseError)` and is dropped. A message that can be
//! delimited but is malformed (bad Request-Line, conflicting Content-Length, ...)
//! parses with [`SipMessage::fault`] set, so a request still gets a 400 whose
//! reason names the fault (RFC 4475).

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

use crate::header::{self, CSeq, NameAddr, Via, is_token, trim_lws};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token; method names are case-sensitive (RFC 3261 §7.1).
    Extension(Box<str>),
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Extension(other.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header names the stack reads, with their compact forms folded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Contact,
    ContentLength,
    ContentType,
    ContentEncoding,
    Expires,
    MinExpires,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    Require,
    ProxyRequire,
    Supported,
    Unsupported,
    Accept,
    Allow,
    Route,
    RecordRoute,
    Other,
}

impl HeaderName {
    pub fn parse(name: &str) -> HeaderName {
        use HeaderName::*;
        let eq = |s: &str| name.eq_ignore_ascii_case(s);
        if name.len() == 1 {
            return match name.as_bytes()[0].to_ascii_lowercase() {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'e' => ContentEncoding,
                b'k' => Supported,
                _ => Other,
            };
        }
        match name.len() {
            2 if eq("To") => To,
            3 if eq("Via") => Via,
            4 if eq("From") => From,
            4 if eq("CSeq") => CSeq,
            5 if eq("Route") => Route,
            5 if eq("Allow") => Allow,
            6 if eq("Accept") => Accept,
            7 if eq("Call-ID") => CallId,
            7 if eq("Contact") => Contact,
            7 if eq("Expires") => Expires,
            7 if eq("Require") => Require,
            9 if eq("Supported") => Supported,
            11 if eq("Min-Expires") => MinExpires,
            11 if eq("Unsupported") => Unsupported,
            12 if eq("Max-Forwards") => MaxForwards,
            12 if eq("Content-Type") => ContentType,
            12 if eq("Record-Route") => RecordRoute,
            13 if eq("Authorization") => Authorization,
            13 if eq("Proxy-Require") => ProxyRequire,
            14 if eq("Content-Length") => ContentLength,
            16 if eq("Content-Encoding") => ContentEncoding,
            16 if eq("WWW-Authenticate") => WwwAuthenticate,
            18 if eq("Proxy-Authenticate") => ProxyAuthenticate,
            19 if eq("Proxy-Authorization") => ProxyAuthorization,
            _ => Other,
        }
    }

    /// The canonical long form, for messages we write and for error texts.
    pub fn as_str(self) -> &'static str {
        use HeaderName::*;
        match self {
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            MaxForwards => "Max-Forwards",
            Contact => "Contact",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            ContentEncoding => "Content-Encoding",
            Expires => "Expires",
            MinExpires => "Min-Expires",
            Authorization => "Authorization",
            ProxyAuthorization => "Proxy-Authorization",
            WwwAuthenticate => "WWW-Authenticate",
            ProxyAuthenticate => "Proxy-Authenticate",
            Require => "Require",
            ProxyRequire => "Proxy-Require",
            Supported => "Supported",
            Unsupported => "Unsupported",
            Accept => "Accept",
            Allow => "Allow",
            Route => "Route",
            RecordRoute => "Record-Route",
            Other => "(other)",
        }
    }
}

/// A message that cannot be delimited; no response can be formed, so it is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("header section is not valid UTF-8")]
    NotUtf8,
    #[error("no end of header section")]
    Incomplete,
    #[error("start line is neither a request nor a status line")]
    BadStartLine,
}

/// A header field that is missing, repeated or malformed; its `Display` is the
/// reason phrase of the 400 that answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("Missing {0} header")]
    Missing(&'static str),
    #[error("Multiple {0} headers")]
    Multiple(&'static str),
    #[error("Malformed {0} header: {1}")]
    Malformed(&'static str, &'static str),
}

#[derive(Clone, Debug)]
enum StartLine {
    Request { method: Method, uri: Range<usize>, version: Range<usize> },
    Response { version: Range<usize>, code: u16, reason: Range<usize> },
}

#[derive(Clone, Debug)]
struct Field {
    name: HeaderName,
    raw_name: Range<usize>,
    value: Range<usize>,
}

#[derive(Clone, Debug)]
pub struct SipMessage {
    raw: Bytes,
    start: StartLine,
    fields: Vec<Field>,
    body: Range<usize>,
    fault: Option<&'static str>,
}

/// Finds the end of the header section: the index of the blank line's first byte
/// and the index where the body starts. Accepts bare LF line ends.
pub fn find_head_end(b: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &b[from..]) {
        let nl = from + i;
        match b.get(nl + 1) {
            Some(b'\n') => return Some((nl, nl + 2)),
            Some(b'\r') if b.get(nl + 2) == Some(&b'\n') => return Some((nl, nl + 3)),
            _ => from = nl + 1,
        }
    }
    None
}

/// The declared Content-Length of a header section, for stream framing.
/// `Ok(None)` when absent; an error text when malformed or conflicting.
pub fn content_length_of_head(head: &[u8]) -> Result<Option<usize>, &'static str> {
    let mut found: Option<usize> = None;
    for line in head.split(|&c| c == b'\n') {
        let Some(colon) = memchr::memchr(b':', line) else { continue };
        let Ok(name) = std::str::from_utf8(&line[..colon]) else { continue };
        if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
            continue;
        }
        if HeaderName::parse(name.trim_end()) != HeaderName::ContentLength {
            continue;
        }
        let v = std::str::from_utf8(&line[colon + 1..]).map_err(|_| "Malformed Content-Length")?;
        let n = parse_content_length(v)?;
        if found.is_some_and(|f| f != n) {
            return Err("Multiple Content-Length values");
        }
        found = Some(n);
    }
    Ok(found)
}

fn parse_content_length(v: &str) -> Result<usize, &'static str> {
    let v = trim_lws(v);
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err("Malformed Content-Length");
    }
    v.parse().map_err(|_| "Malformed Content-Length")
}

impl SipMessage {
    /// Parses one message. `raw` is a whole datagram or one framed stream message:
    /// a body shorter than Content-Length is a fault, extra bytes after it are ignored,
    /// and without Content-Length the body is the rest (RFC 3261 §18.3).
    pub fn parse(raw: Bytes) -> Result<SipMessage, ParseError> {
        let b = &raw[..];
        // Leading CRLFs before the start line are ignored (RFC 3261 §7.5).
        let start = b.iter().position(|&c| c != b'\r' && c != b'\n').ok_or(ParseError::Empty)?;
        let (head_end, body_start) = match find_head_end(&b[start..]) {
            Some((h, s)) => (start + h, start + s),
            // A datagram that ends right after its last header line has an empty body.
            None if b.ends_with(b"\n") => (b.len() - 1, b.len()),
            None => return Err(ParseError::Incomplete),
        };
        let head = std::str::from_utf8(&b[start..head_end]).map_err(|_| ParseError::NotUtf8)?;
        let mut fault = None;
        let mut lines = LineIter { s: head, pos: 0 };
        let (first, _) = lines.next().ok_or(ParseError::BadStartLine)?;
        let startline = parse_start_line(first, start, &mut fault)?;

        let mut fields = Vec::with_capacity(16);
        let mut content_length: Option<usize> = None;
        for (line, off) in lines {
            let off = start + off;
            let Some(colon) = memchr::memchr(b':', line.as_bytes()) else {
                fault.get_or_insert("Malformed header line");
                continue;
            };
            let name = line[..colon].trim_end_matches([' ', '\t']);
            if !is_token(name) {
                fault.get_or_insert("Malformed header name");
                continue;
            }
            let value = &line[colon + 1..];
            let lead = value.len() - value.trim_start_matches(|c: char| c.is_ascii() && header::is_lws(c as u8)).len();
            let vtrim = trim_lws(value);
            let vstart = off + colon + 1 + lead;
            let kind = HeaderName::parse(name);
            if kind == HeaderName::ContentLength {
                match parse_content_length(vtrim) {
                    Ok(n) if content_length.is_some_and(|c| c != n) => {
                        fault.get_or_insert("Multiple Content-Length values");
                    }
                    Ok(n) => content_length = Some(n),
                    Err(e) => {
                        fault.get_or_insert(e);
                    }
                }
            }
            fields.push(Field {
                name: kind,
                raw_name: off..off + name.len(),
                value: vstart..vstart + vtrim.len(),
            });
        }

        let available = b.len() - body_start;
        let body = match content_length {
            Some(n) if n > available => {
                fault.get_or_insert("Content-Length larger than message");
                body_start..b.len()
            }
            Some(n) => body_start..body_start + n,
            None => body_start..b.len(),
        };
        Ok(SipMessage { raw, start: startline, fields, body, fault })
    }

    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    fn text(&self, r: &Range<usize>) -> &str {
        // Ranges index into the header section, checked as UTF-8 at parse time; `get`
        // so that a wrong range could only ever read as empty, never panic.
        self.raw.get(r.clone()).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }

    /// The structural fault found while parsing, if any: the reason for a 400.
    pub fn fault(&self) -> Option<&'static str> {
        self.fault
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method; `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(self.text(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// `SIP/2.0` as written (case kept).
    pub fn version(&self) -> &str {
        match &self.start {
            StartLine::Request { version, .. } | StartLine::Response { version, .. } => self.text(version),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(self.text(reason)),
            StartLine::Request { .. } => None,
        }
    }

    pub fn body(&self) -> &[u8] {
        // Within `raw`: `parse` caps the body at the bytes received.
        self.raw.get(self.body.clone()).unwrap_or_default()
    }

    /// All header fields in order: (name as written, value).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|f| (self.text(&f.raw_name), self.text(&f.value)))
    }

    /// Values of every field with this name, in order (compact forms included).
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &str> {
        self.fields.iter().filter(move |f| f.name == name).map(|f| self.text(&f.value))
    }

    /// Values of fields with a name the stack has no variant for, matched case-insensitively.
    pub fn other_header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> {
        self.fields
            .iter()
            .filter(move |f| f.name == HeaderName::Other && self.text(&f.raw_name).eq_ignore_ascii_case(name))
            .map(|f| self.text(&f.value))
    }

    /// The one value of a single-valued header; missing or repeated is an error.
    pub fn single(&self, name: HeaderName) -> Result<&str, HeaderError> {
        let mut it = self.header_values(name);
        let v = it.next().ok_or(HeaderError::Missing(name.as_str()))?;
        if it.next().is_some() {
            return Err(HeaderError::Multiple(name.as_str()));
        }
        Ok(v)
    }

    /// The first value of a header, if present.
    pub fn first(&self, name: HeaderName) -> Option<&str> {
        self.header_values(name).next()
    }

    /// Every element of a list header (comma-separated values across fields).
    pub fn list(&self, name: HeaderName) -> Result<Vec<&str>, HeaderError> {
        let mut out = Vec::new();
        for v in self.header_values(name) {
            let parts = header::split_commas(v).map_err(|e| HeaderError::Malformed(name.as_str(), e))?;
            out.extend(parts);
        }
        Ok(out)
    }

    pub fn call_id(&self) -> Result<&str, HeaderError> {
        let v = self.single(HeaderName::CallId)?;
        if v.is_empty() || v.bytes().any(header::is_lws) {
            return Err(HeaderError::Malformed("Call-ID", "bad word"));
        }
        Ok(v)
    }

    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.single(HeaderName::CSeq)?).map_err(|e| HeaderError::Malformed("CSeq", e))
    }

    pub fn from(&self) -> Result<NameAddr<'_>, HeaderError> {
        NameAddr::parse(self.single(HeaderName::From)?).map_err(|e| HeaderError::Malformed("From", e))
    }

    pub fn to(&self) -> Result<NameAddr<'_>, HeaderError> {
        NameAddr::parse(self.single(HeaderName::To)?).map_err(|e| HeaderError::Malformed("To", e))
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via<'_>, HeaderError> {
        let first = self.first(HeaderName::Via).ok_or(HeaderError::Missing("Via"))?;
        let (top, _) = header::split_first_comma(first).map_err(|e| HeaderError::Malformed("Via", e))?;
        Via::parse(top).map_err(|e| HeaderError::Malformed("Via", e))
    }

    /// Every Via value, top first; any malformed value is an error.
    pub fn vias(&self) -> Result<Vec<Via<'_>>, HeaderError> {
        self.list(HeaderName::Via)?
            .into_iter()
            .map(|v| Via::parse(v).map_err(|e| HeaderError::Malformed("Via", e)))
            .collect()
    }

    /// Max-Forwards, if present (0-255, RFC 3261 §20.22).
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        let mut it = self.header_values(HeaderName::MaxForwards);
        let Some(v) = it.next() else { return Ok(None) };
        if it.next().is_some() {
            return Err(HeaderError::Multiple("Max-Forwards"));
        }
        let v = trim_lws(v);
        if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
            return Err(HeaderError::Malformed("Max-Forwards", "not a number"));
        }
        let n: u32 = v.parse().unwrap_or(u32::MAX);
        u8::try_from(n).map(Some).map_err(|_| HeaderError::Malformed("Max-Forwards", "larger than 255"))
    }

    /// The Expires header, if present.
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        let mut it = self.header_values(HeaderName::Expires);
        let Some(v) = it.next() else { return Ok(None) };
        if it.next().is_some() {
            return Err(HeaderError::Multiple("Expires"));
        }
        header::parse_delta_seconds(v).map(Some).map_err(|e| HeaderError::Malformed("Expires", e))
    }

    /// Content-Type media type (lower-cased comparison is the caller's), without parameters.
    pub fn content_type(&self) -> Result<Option<&str>, HeaderError> {
        let mut it = self.header_values(HeaderName::ContentType);
        let Some(v) = it.next() else { return Ok(None) };
        if it.next().is_some() {
            return Err(HeaderError::Multiple("Content-Type"));
        }
        let media = trim_lws(v.split(';').next().unwrap_or(""));
        if !media.split_once('/').is_some_and(|(t, s)| is_token(trim_lws(t)) && is_token(trim_lws(s))) {
            return Err(HeaderError::Malformed("Content-Type", "not type/subtype"));
        }
        Ok(Some(media))
    }

    /// Option tags of Require / Proxy-Require / Supported.
    pub fn option_tags(&self, name: HeaderName) -> Result<Vec<&str>, HeaderError> {
        let tags = self.list(name)?;
        if tags.iter().any(|t| !is_token(t)) {
            return Err(HeaderError::Malformed(name.as_str(), "bad option tag"));
        }
        Ok(tags)
    }
}

/// Iterates logical header lines, joining folded continuation lines (RFC 3261 §7.3.1).
/// Yields each line (without its final line break) and its offset in the head.
struct LineIter<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for LineIter<'a> {
    type Item = (&'a str, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.s.as_bytes();
        if self.pos >= b.len() {
            return None;
        }
        let start = self.pos;
        let mut from = start;
        loop {
            match memchr::memchr(b'\n', &b[from..]) {
                None => {
                    self.pos = b.len();
                    return Some((trim_cr(&self.s[start..]), start));
                }
                Some(i) => {
                    let nl = from + i;
                    // A following line that starts with SP/HT continues this one.
                    if matches!(b.get(nl + 1), Some(b' ' | b'\t')) && start != 0 {
                        from = nl + 1;
                        continue;
                    }
                    self.pos = nl + 1;
                    return Some((trim_cr(&self.s[start..nl]), start));
                }
            }
        }
    }
}

fn trim_cr(s: &str) -> &str {
    s.strip_suffix('\r').unwrap_or(s)
}

/// `SIP/` in any case; compared as bytes, since the line may hold any UTF-8.
fn starts_with_sip_slash(s: &str) -> bool {
    s.as_bytes().get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
}

fn parse_start_line(line: &str, base: usize, fault: &mut Option<&'static str>) -> Result<StartLine, ParseError> {
    if starts_with_sip_slash(line) {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (version, rest) = line.split_once(' ').ok_or(ParseError::BadStartLine)?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = match (code.len(), code.parse::<u16>()) {
            (3, Ok(c)) if (100..700).contains(&c) => c,
            _ => return Err(ParseError::BadStartLine),
        };
        let vstart = base;
        let rstart = base + line.len() - reason.len();
        return Ok(StartLine::Response {
            version: vstart..vstart + version.len(),
            code,
            reason: rstart..rstart + reason.len(),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, exactly single spaces.
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("");
    if !is_token(method) {
        return Err(ParseError::BadStartLine);
    }
    let uri = parts.next().unwrap_or("");
    let version = parts.next().unwrap_or("");
    let well_formed = parts.next().is_none()
        && !uri.is_empty()
        && starts_with_sip_slash(version);
    let uri_start = base + method.len() + 1;
    if !well_formed {
        fault.get_or_insert("Malformed Request-Line");
    } else {
        match header::Uri::parse(uri) {
            Err(_) => {
                fault.get_or_insert("Malformed Request-URI");
            }
            // Header fields are not allowed in a Request-URI (RFC 3261 §19.1.5).
            Ok(u) if u.is_sip() && u.headers.is_some() => {
                fault.get_or_insert("Request-URI with header fields");
            }
            Ok(_) => {}
        }
    }
    let uri_range = if well_formed { uri_start..uri_start + uri.len() } else { 0..0 };
    let vstart = uri_start + uri.len() + 1;
    let version_range = if well_formed { vstart..vstart + version.len() } else { 0..0 };
    Ok(StartLine::Request { method: Method::parse(method), uri: uri_range, version: version_range })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SipMessage {
        SipMessage::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds, SIP/2.0/TCP proxy.example.com;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
l: 4\r\n\
\r\n\
v=0\r\nextra";

    #[test]
    fn parses_typical_invite() {
        let m = parse(INVITE);
        assert_eq!(m.fault(), None);
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.request_uri(), Some("sip:bob@biloxi.example.com"));
        assert_eq!(m.call_id().unwrap(), "a84b4c76e66710@pc33.atlanta.example.com");
        assert_eq!(m.cseq().unwrap(), CSeq { seq: 314159, method: Method::Invite });
        assert_eq!(m.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(m.to().unwrap().tag(), None);
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(m.vias().unwrap().len(), 2);
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(m.body(), b"v=0\r");
    }

    #[test]
    fn content_length_faults() {
        let m = parse("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc");
        assert_eq!(m.fault(), Some("Content-Length larger than message"));
        let m = parse("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert_eq!(m.fault(), Some("Malformed Content-Length"));
        let m = parse("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab");
        assert_eq!(m.fault(), Some("Multiple Content-Length values"));
        assert_eq!(content_length_of_head(b"X: y\r\nl: 2\r\nContent-Length: 3"), Err("Multiple Content-Length values"));
        assert_eq!(content_length_of_head(b"X: y\r\ncontent-length :  12"), Ok(Some(12)));
    }

    #[test]
    fn request_line_faults() {
        assert_eq!(parse("INVITE  sip:a@b  SIP/2.0\r\n\r\n").fault(), Some("Malformed Request-Line"));
        assert_eq!(parse("OPTIONS sip:a@b SIP/2.0 \r\n\r\n").fault(), Some("Malformed Request-Line"));
        assert_eq!(parse("INVITE <sip:a@b> SIP/2.0\r\n\r\n").fault(), Some("Malformed Request-URI"));
        assert!(SipMessage::parse(Bytes::from_static(b"SIP/2.0 4294967301 big\r\n\r\n")).is_err());
        assert!(SipMessage::parse(Bytes::from_static(b"\r\n\r\n")).is_err());
        // Found by the fuzzer: a multi-byte character across byte 4 of the start line.
        assert!(SipMessage::parse(Bytes::from("SI\u{feff} x\r\n\r\n".as_bytes())).is_err());
        assert!(parse("OPTIONS sip:a@b SI\u{feff}\r\n\r\n").fault().is_some());
        assert!(SipMessage::parse(Bytes::from_static(b"INVITE sip:a@b SIP/2.0\r\nVia: x")).is_err());
    }

    #[test]
    fn repeated_single_headers_are_errors() {
        let m = parse("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\ni: 2\r\n\r\n");
        assert_eq!(m.call_id(), Err(HeaderError::Multiple("Call-ID")));
        assert_eq!(m.cseq(), Err(HeaderError::Missing("CSeq")));
    }

    #[test]
    fn response_line() {
        let m = parse("SIP/2.0 100 \r\nCSeq: 1 INVITE\r\n\r\n");
        assert_eq!((m.status(), m.reason()), (Some(100), Some("")));
    }

    /// Offsets at the very ends of the input, and multi-byte characters next to the
    /// delimiters the parser cuts at: every accessor answers, none panics.
    #[test]
    fn edge_offsets_read_without_panic() {
        // A method alone, ending the datagram: no Request-URI or version to point at.
        for raw in ["FOO\n", "FOO\r\n", "\r\n\nFOO\r\n\r\n", "FOO \n"] {
            let m = parse(raw);
            assert_eq!(m.fault(), Some("Malformed Request-Line"), "{raw:?}");
            assert_eq!((m.request_uri(), m.version(), m.body()), (Some(""), "", &b""[..]), "{raw:?}");
        }
        let m = parse("SIP/2.0 200\n");
        assert_eq!((m.status(), m.reason(), m.body()), (Some(200), Some(""), &b""[..]));

        let m = parse("OPTIONS sip:a@b SIP/2.0\r\nF\u{e9}: x\r\nVia: SIP/2.0/UDP\u{e9}h\r\nl: 0\r\nFrom: \"a\\\u{e9}\" <sip:a@b>;tag=\u{e9}1\r\n\r\n");
        assert_eq!(m.fault(), Some("Malformed header name"));
        assert_eq!(m.top_via().err(), Some(HeaderError::Malformed("Via", "bad host")));
        // The backslash escapes the first byte of the two-byte character; the quote still closes.
        let from = m.from().unwrap();
        assert_eq!((from.display, from.tag()), (Some("\"a\\\u{e9}\""), Some("\u{e9}1")));
        assert_eq!(m.headers().count(), 3);

        // Header values that end the datagram with no line break, or with only LWS.
        let m = parse("OPTIONS sip:a@b SIP/2.0\r\nTo:\r\nCall-ID:   \r\n");
        assert_eq!(m.to().err(), Some(HeaderError::Malformed("To", "empty value")));
        assert_eq!(m.call_id(), Err(HeaderError::Malformed("Call-ID", "bad word")));
    }
}
