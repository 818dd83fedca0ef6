//! Typed views of header values (RFC 3261 §20, §25). Each view borrows from the
//! message; nothing is copied. Every parse returns `Result` with a reason that names
//! the fault, so the caller can answer 400 with it.

use crate::message::Method;

/// Linear white space inside a (possibly folded) header value.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims LWS bytes from both ends; byte-wise because every LWS character is
/// ASCII (the `char` predicate version showed up in parse profiles).
#[inline]
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |e| e + 1);
    // Both ends are at ASCII bytes, so on character boundaries.
    &s[start..end]
}

/// RFC 3261 `token` characters, as a table: this is called for every byte of
/// every header name and parameter.
static TOKEN_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        c += 1;
    }
    t
};

#[inline]
pub fn is_token_char(b: u8) -> bool {
    TOKEN_CHARS[b as usize]
}

pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Position of the closing quote of a quoted string whose opening quote is at `open`.
/// Always the index of an ASCII `"` byte (a UTF-8 continuation byte never equals it),
/// so slicing there or one past stays on a character boundary.
fn closing_quote(s: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Splits a header value at top-level commas (not inside quotes or `<...>`).
/// An unterminated quote or angle bracket is an error.
pub fn split_commas(value: &str) -> Result<Vec<&str>, &'static str> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        let (item, next) = split_first_comma(rest)?;
        out.push(item);
        match next {
            Some(n) => rest = n,
            None => return Ok(out),
        }
    }
}

/// The first element of a comma-separated value (trimmed), and the rest after
/// its comma, if any; what [`split_commas`] does one step at a time, without allocating.
pub fn split_first_comma(value: &str) -> Result<(&str, Option<&str>), &'static str> {
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = closing_quote(b, i).ok_or("unterminated quoted string")? + 1,
            b'<' => i += memchr::memchr(b'>', &b[i..]).ok_or("unterminated <")? + 1,
            b',' => return Ok((trim_lws(&value[..i]), Some(&value[i + 1..]))),
            _ => i += 1,
        }
    }
    Ok((trim_lws(value), None))
}

/// A `;name[=value]` parameter list, with SWS allowed around `;` and `=`
/// (RFC 4475 §3.1.1.1). Values keep their quotes; see [`unquote`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Params<'a>(&'a str);

impl<'a> Params<'a> {
    /// `s` starts at (or before whitespace before) the first `;`, or is empty.
    pub fn parse(s: &'a str) -> Result<Self, &'static str> {
        let p = Params(s);
        for item in p.iter() {
            item?;
        }
        Ok(p)
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }

    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.0 }
    }

    /// `Some(None)` for a flag parameter, `Some(Some(v))` for `name=v`. Case-insensitive name.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .filter_map(Result::ok)
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends `;name[=value]` for every parameter but those named in `skip`
    /// (compared case-insensitively): for rewriting a header with some parameters changed.
    pub fn write_except(&self, out: &mut String, skip: &[&str]) {
        for (name, value) in self.iter().filter_map(Result::ok) {
            if skip.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                continue;
            }
            out.push(';');
            out.push_str(name);
            if let Some(v) = value {
                out.push('=');
                out.push_str(v);
            }
        }
    }
}

pub struct ParamIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Result<(&'a str, Option<&'a str>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = trim_lws(self.rest);
        if s.is_empty() {
            return None;
        }
        let Some(s) = s.strip_prefix(';') else {
            self.rest = "";
            return Some(Err("garbage between parameters"));
        };
        let s = s.trim_start_matches(|c: char| c.is_ascii() && is_lws(c as u8));
        let b = s.as_bytes();
        // name, then optional SWS "=" SWS value, up to the next top-level ';'
        let name_end = b.iter().position(|&c| !is_token_char(c)).unwrap_or(b.len());
        let name = &s[..name_end];
        if name.is_empty() {
            self.rest = "";
            return Some(Err("empty parameter"));
        }
        let after = &s[name_end..];
        let after_trim = trim_lws(after);
        if let Some(v) = after_trim.strip_prefix('=') {
            let v = v.trim_start_matches(|c: char| c.is_ascii() && is_lws(c as u8));
            let vb = v.as_bytes();
            let end = if vb.first() == Some(&b'"') {
                match closing_quote(vb, 0) {
                    Some(q) => q + 1,
                    None => {
                        self.rest = "";
                        return Some(Err("unterminated quoted parameter"));
                    }
                }
            } else {
                vb.iter()
                    .position(|&c| c == b';' || is_lws(c))
                    .unwrap_or(vb.len())
            };
            let value = &v[..end];
            if value.is_empty() {
                self.rest = "";
                return Some(Err("empty parameter value"));
            }
            self.rest = &v[end..];
            Some(Ok((name, Some(value))))
        } else {
            if !after_trim.is_empty() && !after_trim.starts_with(';') {
                self.rest = "";
                return Some(Err("bad character in parameter"));
            }
            self.rest = after;
            Some(Ok((name, None)))
        }
    }
}

/// Removes surrounding quotes and backslash escapes, if quoted.
pub fn unquote(s: &str) -> std::borrow::Cow<'_, str> {
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        None => s.into(),
        Some(inner) if !inner.contains('\\') => inner.into(),
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut esc = false;
            for c in inner.chars() {
                if esc || c != '\\' {
                    out.push(c);
                    esc = false;
                } else {
                    esc = true;
                }
            }
            out.into()
        }
    }
}

/// Host and optional port, as in `sent-by` and `hostport`.
fn parse_hostport(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    if s.is_empty() {
        return Err("missing host");
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']').ok_or("unterminated IPv6 reference")?;
        // `s` is `[` then `rest`: `close + 2` is just past the `]`.
        let host = &s[..close + 2];
        let after = &rest[close + 1..];
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err("garbage after IPv6 reference"),
        }
    } else {
        match s.rfind(':') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        }
    };
    if host.is_empty()
        || !host.starts_with('[')
            && !host.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
    {
        return Err("bad host");
    }
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, &'static str> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
        return Err("bad port");
    }
    p.parse::<u16>().map_err(|_| "port out of range")
}

/// One Via value: `SIP/2.0/UDP host:port;params`.
#[derive(Clone, Copy, Debug)]
pub struct Via<'a> {
    pub protocol: &'a str,
    pub version: &'a str,
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    pub fn parse(s: &'a str) -> Result<Self, &'static str> {
        let s = trim_lws(s);
        // sent-protocol: name SWS "/" SWS version SWS "/" SWS transport
        let mut parts = s.splitn(3, '/');
        let protocol = trim_lws(parts.next().unwrap_or(""));
        let version = trim_lws(parts.next().ok_or("missing sent-protocol")?);
        let rest = trim_lws(parts.next().ok_or("missing sent-protocol")?);
        let tend = rest.bytes().position(|c| !is_token_char(c)).unwrap_or(rest.len());
        let transport = &rest[..tend];
        if !is_token(protocol) || !is_token(version) || !is_token(transport) {
            return Err("bad sent-protocol");
        }
        let rest = trim_lws(&rest[tend..]);
        let hend = rest.bytes().position(|c| c == b';' || is_lws(c)).unwrap_or(rest.len());
        let (host, port) = parse_hostport(&rest[..hend])?;
        let params = Params::parse(&rest[hend..])?;
        Ok(Via { protocol, version, transport, host, port, params })
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// The branch, if it carries the RFC 3261 magic cookie.
    pub fn rfc3261_branch(&self) -> Option<&'a str> {
        self.branch().filter(|b| b.starts_with("z9hG4bK") && b.len() > 7)
    }

    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// `Some(None)` when the client asked for rport (RFC 3581), `Some(Some(p))` when filled.
    pub fn rport(&self) -> Option<Option<&'a str>> {
        self.params.get("rport")
    }

    pub fn maddr(&self) -> Option<&'a str> {
        self.params.get("maddr").flatten()
    }

    /// The sent-by as written (`host` or `host:port`).
    pub fn sent_by(&self) -> (&'a str, Option<u16>) {
        (self.host, self.port)
    }
}

/// A URI: `sip:`/`sips:` are parsed into parts; other schemes stay opaque.
#[derive(Clone, Copy, Debug)]
pub struct Uri<'a> {
    pub scheme: &'a str,
    /// For sip/sips: the userinfo's user part (still %-escaped); `None` without `@`.
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// Text after `?`, without it.
    pub headers: Option<&'a str>,
    /// Everything after `scheme:`.
    pub rest: &'a str,
}

impl<'a> Uri<'a> {
    pub fn parse(s: &'a str) -> Result<Self, &'static str> {
        let colon = s.find(':').ok_or("URI without scheme")?;
        let scheme = &s[..colon];
        if scheme.is_empty()
            || !scheme.as_bytes()[0].is_ascii_alphabetic()
            || !scheme.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err("bad URI scheme");
        }
        let rest = &s[colon + 1..];
        if rest.is_empty() || rest.bytes().any(|c| is_lws(c) || c == b'<' || c == b'>' || c == b'"') {
            return Err("bad character in URI");
        }
        let mut uri = Uri {
            scheme,
            user: None,
            password: None,
            host: "",
            port: None,
            params: Params::default(),
            headers: None,
            rest,
        };
        if !uri.is_sip() {
            return Ok(uri);
        }
        // The userinfo ends at the first '@', and may itself hold '?', ';' and '/'
        // (user-unreserved, RFC 3261 §25.1), so it is split off before the headers.
        let after_user = match rest.find('@') {
            Some(at) if rest[..at].bytes().all(is_userinfo_char) => {
                let userinfo = &rest[..at];
                let (user, password) = match userinfo.find(':') {
                    Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                    None => (userinfo, None),
                };
                if user.is_empty() {
                    return Err("empty user in URI");
                }
                uri.user = Some(user);
                uri.password = password;
                &rest[at + 1..]
            }
            _ => rest,
        };
        let (hostpart, headers) = match after_user.find('?') {
            Some(q) => (&after_user[..q], Some(&after_user[q + 1..])),
            None => (after_user, None),
        };
        uri.headers = headers;
        let pstart = hostpart.find(';').unwrap_or(hostpart.len());
        let (host, port) = parse_hostport(&hostpart[..pstart])?;
        uri.host = host;
        uri.port = port;
        uri.params = Params::parse(&hostpart[pstart..])?;
        Ok(uri)
    }

    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
    }

    pub fn is_sips(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sips")
    }

    /// The user part with %-escapes decoded (RFC 3261 §19.1.4 compares unescaped).
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.map(percent_decode)
    }

    pub fn transport_param(&self) -> Option<&'a str> {
        self.params.get("transport").flatten()
    }
}

/// Characters of `userinfo`: unreserved, escaped, user-unreserved and password characters.
fn is_userinfo_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,;?/:".contains(&c)
}

/// Decodes `%XX` escapes; malformed escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name-addr` or `addr-spec` with header parameters: From, To, Contact, Route...
#[derive(Clone, Copy, Debug)]
pub struct NameAddr<'a> {
    /// Display name as written (quotes kept), if any.
    pub display: Option<&'a str>,
    /// The URI text, without `<>`.
    pub uri: &'a str,
    /// Header parameters (after the URI or after `>`).
    pub params: Params<'a>,
    /// Whether the URI was enclosed in `<>`.
    pub bracketed: bool,
}

impl<'a> NameAddr<'a> {
    pub fn parse(s: &'a str) -> Result<Self, &'static str> {
        let s = trim_lws(s);
        let b = s.as_bytes();
        if b.is_empty() {
            return Err("empty value");
        }
        // Where the `<` is, if the value is a name-addr.
        let (display, lt) = if b[0] == b'"' {
            let q = closing_quote(b, 0).ok_or("unterminated quoted string")?;
            let rest = trim_lws(&s[q + 1..]);
            if !rest.starts_with('<') {
                return Err("quoted display name without <URI>");
            }
            (Some(&s[..q + 1]), s.len() - rest.len())
        } else {
            match memchr::memchr(b'<', b) {
                Some(lt) => {
                    let d = trim_lws(&s[..lt]);
                    if !d.split(|c: char| c.is_ascii() && is_lws(c as u8))
                        .filter(|w| !w.is_empty())
                        .all(is_token)
                    {
                        return Err("display name has characters that need quoting");
                    }
                    ((!d.is_empty()).then_some(d), lt)
                }
                None => (None, usize::MAX),
            }
        };
        if lt == usize::MAX {
            // addr-spec: the URI runs to the first ';' and may not hold ',', '?' (RFC 3261 §20.10)
            let end = memchr::memchr(b';', b).unwrap_or(b.len());
            let uri = trim_lws(&s[..end]);
            if uri.contains(['?', ',']) {
                return Err("URI with '?' or ',' must be enclosed in <>");
            }
            Uri::parse(uri)?;
            let params = Params::parse(&s[end..])?;
            return Ok(NameAddr { display: None, uri, params, bracketed: false });
        }
        // `b[lt]` is the `<`, so `gt > lt` and the URI slice is never inverted.
        let gt = lt + memchr::memchr(b'>', &b[lt..]).ok_or("unterminated <")?;
        let uri = &s[lt + 1..gt];
        Uri::parse(uri)?;
        let params = Params::parse(&s[gt + 1..])?;
        Ok(NameAddr { display, uri, params, bracketed: true })
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }

    pub fn uri(&self) -> Result<Uri<'a>, &'static str> {
        Uri::parse(self.uri)
    }
}

/// `CSeq: 4711 INVITE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = trim_lws(s);
        let end = s.bytes().position(|c| !c.is_ascii_digit()).unwrap_or(s.len());
        let digits = &s[..end];
        if digits.is_empty() {
            return Err("missing sequence number");
        }
        // RFC 3261 §8.1.1.5: less than 2**31.
        let seq = digits.parse::<u32>().ok().filter(|&n| n < 1 << 31).ok_or("sequence number too large")?;
        let m = trim_lws(&s[end..]);
        if m.len() == s.len() - end || !is_token(m) {
            return Err("bad method");
        }
        Ok(CSeq { seq, method: Method::parse(m) })
    }
}

/// `delta-seconds`, clamped to 2**32-1 as RFC 3261 §20.19 asks.
pub fn parse_delta_seconds(s: &str) -> Result<u32, &'static str> {
    let s = trim_lws(s);
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err("not a number of seconds");
    }
    Ok(s.parse::<u64>().map(|v| v.min(u32::MAX as u64) as u32).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_cut_short_are_kept() {
        assert_eq!(percent_decode("%41b%4"), "Ab%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%zz%C3"), "a%zz\u{fffd}");
        assert_eq!(percent_decode("%C3%A9\u{e9}"), "\u{e9}\u{e9}");
    }

    #[test]
    fn delimiters_at_the_ends_are_errors() {
        assert_eq!(Via::parse("SIP/2.0/UDP [").err(), Some("unterminated IPv6 reference"));
        assert_eq!(Via::parse("SIP/2.0/UDP h:").err(), Some("bad port"));
        assert_eq!(Via::parse("SIP/2.0/").err(), Some("bad sent-protocol"));
        assert_eq!(NameAddr::parse("<").err(), Some("unterminated <"));
        assert_eq!(NameAddr::parse("\"").err(), Some("unterminated quoted string"));
        assert_eq!(NameAddr::parse("\"\\").err(), Some("unterminated quoted string"));
        assert_eq!(Uri::parse(":x").err(), Some("bad URI scheme"));
        assert_eq!(Uri::parse("sip:@h").err(), Some("empty user in URI"));
        assert_eq!(Params::parse(";a=\"\\").err(), Some("unterminated quoted parameter"));
        assert_eq!(split_first_comma("\"a\\\u{e9}\",b"), Ok(("\"a\\\u{e9}\"", Some("b"))));
        assert_eq!(CSeq::parse("4294967296 INVITE").err(), Some("sequence number too large"));
    }

    #[test]
    fn params_with_sws_around_equals() {
        let p = Params::parse(" ;   tag    = 1918181833n").unwrap();
        assert_eq!(p.get("TAG"), Some(Some("1918181833n")));
    }

    #[test]
    fn empty_params_are_errors() {
        assert!(Params::parse(";;").is_err());
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
    }

    #[test]
    fn via_with_lws_in_protocol() {
        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((v.transport, v.host, v.branch()), ("UDP", "192.0.2.2", Some("390skdjuw")));
        assert_eq!(v.rfc3261_branch(), None);
        let v = Via::parse("SIP/2.0/TCP [2001:db8::9:1]:5070;branch=z9hG4bK1;rport").unwrap();
        assert_eq!((v.host, v.port, v.rport()), ("[2001:db8::9:1]", Some(5070), Some(None)));
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8").unwrap();
        assert_eq!(n.tag(), Some("98asjd8"));
        assert_eq!(n.uri, "sip:jdrosen@example.com");
        let n = NameAddr::parse("sip:caller@example.net;tag=134161461246").unwrap();
        assert_eq!((n.uri, n.tag()), ("sip:caller@example.net", Some("134161461246")));
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
    }

    #[test]
    fn uri_parts() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!((u.user, u.host), (Some("user;par=u%40example.net"), "example.com"));
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.user_unescaped().as_deref(), Some("sips:user@example.com"));
        let u = Uri::parse("sip:[::1]:5060;transport=tcp").unwrap();
        assert_eq!((u.host, u.port, u.transport_param()), ("[::1]", Some(5060), Some("tcp")));
        assert!(Uri::parse("sip:user@example.com; lr").is_err());
        assert!(!Uri::parse("soap.beep://192.0.2.103:3002").unwrap().is_sip());
        // RFC 4475 intmeth: '?', ';' and '/' inside the userinfo.
        let u = Uri::parse("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com").unwrap();
        assert_eq!((u.host, u.headers), ("example.com", None));
        assert_eq!(u.user, Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"));
        let u = Uri::parse("sip:user@example.com?Route=%3Csip:example.com%3E").unwrap();
        assert_eq!((u.host, u.headers), ("example.com", Some("Route=%3Csip:example.com%3E")));
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(CSeq::parse("0009\r\n  INVITE").unwrap().seq, 9);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("1").is_err());
    }

    #[test]
    fn commas_respect_quotes() {
        let v = split_commas("\"a,b\" <sip:x@y>, <sip:z@w;p=1,2>").unwrap();
        assert_eq!(v, ["\"a,b\" <sip:x@y>", "<sip:z@w;p=1,2>"]);
    }
}
