//! The registrar (RFC 3261 §10.3) and the location service it writes to.
//!
//! [`Registrar::register`] applies one authenticated REGISTER: all of its
//! contacts or none (423 and out-of-order requests change nothing). Bindings
//! live in a [`LocationService`]; [`InMemoryLocation`] is the one in this
//! process, and a shared one (Redis) can implement the same trait.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use sip_transport::header::{NameAddr, Uri, parse_delta_seconds};
use sip_transport::{FlowId, HeaderName, SipMessage, Source, Target};

#[derive(Clone, Debug)]
pub struct RegistrarConfig {
    /// Shorter registrations get 423 with Min-Expires.
    pub min_expires: u32,
    /// Longer ones are shortened to this.
    pub max_expires: u32,
    /// When neither the contact nor the request says.
    pub default_expires: u32,
    /// Bindings per address of record.
    pub max_contacts: usize,
}

/// One contact bound to an address of record.
#[derive(Clone, Debug)]
pub struct Binding {
    /// The contact URI, as registered (without `<>`).
    pub contact: String,
    /// q-value in thousandths (RFC 3261 §20.10); `None` when not given.
    pub q: Option<u16>,
    pub expires_at: Instant,
    pub call_id: String,
    pub cseq: u32,
    /// Where the REGISTER came from: requests to this contact reuse its flow.
    pub source: Source,
}

impl Binding {
    /// Where requests to this contact go: back along the path the REGISTER came
    /// (its connection while open, else its source address and port), which
    /// reaches phones behind NAT that the Contact URI would not.
    pub fn target(&self) -> Target {
        Target::reply_to(&self.source)
    }

    /// The Contact header value for a 200 to REGISTER: `<uri>;expires=N[;q=0.5]`.
    pub fn to_header(&self, now: Instant) -> String {
        let left = self.expires_at.saturating_duration_since(now).as_secs();
        match self.q {
            Some(q) => format!("<{}>;expires={left};q={}", self.contact, format_q(q)),
            None => format!("<{}>;expires={left}", self.contact),
        }
    }
}

fn format_q(q: u16) -> String {
    let s = format!("{}.{:03}", q / 1000, q % 1000);
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').map(|i| format!("{i}.0")).unwrap_or_else(|| s.to_string())
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_q(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !(int == "0" || int == "1") || frac.len() > 3 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let frac: u16 = format!("{frac:0<3}").parse().ok()?;
    let q = if int == "1" { 1000 + frac } else { frac };
    (q <= 1000).then_some(q)
}

/// Where bindings are kept. Called by one owner (the SIP core) at a time per AOR,
/// so a read followed by `replace` is not racing another registrar.
pub trait LocationService {
    /// Live bindings of an address of record, highest q first.
    fn bindings(&self, aor: &str, now: Instant) -> Vec<Binding>;
    /// Sets the bindings of an address of record (none: it is removed).
    fn replace(&self, aor: &str, bindings: Vec<Binding>);
    /// Removes and returns every binding that has expired.
    fn expire(&self, now: Instant) -> Vec<(String, Binding)>;
    /// Removes and returns every binding registered over a connection that closed.
    fn remove_flow(&self, flow: FlowId) -> Vec<(String, Binding)>;
    /// Addresses of record with at least one binding, and bindings in all.
    fn counts(&self) -> (usize, usize);
}

#[derive(Default)]
pub struct InMemoryLocation {
    table: DashMap<String, Vec<Binding>>,
}

impl InMemoryLocation {
    fn remove_where(&self, gone: impl Fn(&Binding) -> bool) -> Vec<(String, Binding)> {
        let mut removed = Vec::new();
        self.table.retain(|aor, list| {
            list.retain(|b| {
                let g = gone(b);
                if g {
                    removed.push((aor.clone(), b.clone()));
                }
                !g
            });
            !list.is_empty()
        });
        removed
    }
}

impl LocationService for InMemoryLocation {
    fn bindings(&self, aor: &str, now: Instant) -> Vec<Binding> {
        // Clone out and drop the guard in the same statement (dashmap rule, deps.md §9).
        let mut list: Vec<Binding> = self.table.get(aor).map(|l| l.clone()).unwrap_or_default();
        list.retain(|b| b.expires_at > now);
        list.sort_by_key(|b| std::cmp::Reverse(b.q.unwrap_or(1000)));
        list
    }

    fn replace(&self, aor: &str, bindings: Vec<Binding>) {
        if bindings.is_empty() {
            self.table.remove(aor);
        } else {
            self.table.insert(aor.to_string(), bindings);
        }
    }

    fn expire(&self, now: Instant) -> Vec<(String, Binding)> {
        self.remove_where(|b| b.expires_at <= now)
    }

    fn remove_flow(&self, flow: FlowId) -> Vec<(String, Binding)> {
        self.remove_where(|b| b.source.flow == Some(flow))
    }

    fn counts(&self) -> (usize, usize) {
        (self.table.len(), self.table.iter().map(|e| e.value().len()).sum())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// 200, with the Contact header values of every current binding.
    Ok { contacts: Vec<String> },
    /// 423 with Min-Expires.
    IntervalTooBrief { min_expires: u32 },
    /// 400 with this reason.
    BadRequest(String),
    /// Same Call-ID as a binding, but a CSeq that is not higher: 500 (§10.3 step 7).
    OutOfOrder,
    /// More bindings than `max_contacts`: 403.
    TooManyContacts,
}

pub struct Registrar<L: LocationService> {
    location: L,
    config: RegistrarConfig,
}

/// RFC 3261 §19.1.4 URI equality, for what registrations carry: scheme, user
/// (case-sensitive, unescaped), host (case-insensitive), port and the
/// transport, user, ttl, method and maddr parameters.
fn same_uri(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (Uri::parse(a), Uri::parse(b)) else { return a == b };
    if !a.is_sip() || !b.is_sip() {
        return a.scheme.eq_ignore_ascii_case(b.scheme) && a.rest == b.rest;
    }
    let param = |u: &Uri<'_>, n: &str| u.params.get(n).map(|v| v.map(str::to_ascii_lowercase));
    a.scheme.eq_ignore_ascii_case(b.scheme)
        && a.user_unescaped() == b.user_unescaped()
        && a.host.eq_ignore_ascii_case(b.host)
        && a.port == b.port
        && ["transport", "user", "ttl", "method", "maddr"].iter().all(|n| param(&a, n) == param(&b, n))
}

impl<L: LocationService> Registrar<L> {
    pub fn new(location: L, config: RegistrarConfig) -> Self {
        Registrar { location, config }
    }

    pub fn location(&self) -> &L {
        &self.location
    }

    /// Applies an authenticated REGISTER for `aor` (§10.3 steps 6 to 8).
    pub fn register(&self, msg: &SipMessage, aor: &str, source: &Source, now: Instant) -> RegisterOutcome {
        let bad = |why: &str| RegisterOutcome::BadRequest(why.to_string());
        let (Ok(call_id), Ok(cseq)) = (msg.call_id(), msg.cseq()) else {
            return bad("Missing Call-ID or CSeq");
        };
        let header_expires = match msg.expires() {
            Ok(e) => e,
            Err(e) => return RegisterOutcome::BadRequest(e.to_string()),
        };
        let contacts = match msg.list(HeaderName::Contact) {
            Ok(c) => c,
            Err(e) => return RegisterOutcome::BadRequest(e.to_string()),
        };
        let mut bindings = self.location.bindings(aor, now);
        let out_of_order = |b: &Binding| b.call_id == call_id && cseq.seq <= b.cseq;

        if contacts.contains(&"*") {
            // §10.3 step 6: `*` only alone and with Expires: 0.
            if contacts.len() != 1 || header_expires != Some(0) {
                return bad("Contact: * needs Expires: 0 and no other contact");
            }
            if bindings.iter().any(out_of_order) {
                return RegisterOutcome::OutOfOrder;
            }
            self.location.replace(aor, Vec::new());
            return RegisterOutcome::Ok { contacts: Vec::new() };
        }

        for value in &contacts {
            let c = match NameAddr::parse(value) {
                Ok(c) => c,
                Err(e) => return RegisterOutcome::BadRequest(format!("Malformed Contact header: {e}")),
            };
            let expires = match c.params.get("expires") {
                Some(Some(v)) => match parse_delta_seconds(v) {
                    Ok(v) => v,
                    Err(_) => return bad("Malformed expires parameter in Contact"),
                },
                Some(None) => return bad("Malformed expires parameter in Contact"),
                None => header_expires.unwrap_or(self.config.default_expires),
            };
            let q = match c.params.get("q") {
                Some(Some(v)) => match parse_q(v) {
                    Some(q) => Some(q),
                    None => return bad("Malformed q parameter in Contact"),
                },
                Some(None) => return bad("Malformed q parameter in Contact"),
                None => None,
            };
            if expires != 0 && expires < self.config.min_expires {
                return RegisterOutcome::IntervalTooBrief { min_expires: self.config.min_expires };
            }
            let existing = bindings.iter().position(|b| same_uri(&b.contact, c.uri));
            if let Some(i) = existing {
                if out_of_order(&bindings[i]) {
                    return RegisterOutcome::OutOfOrder;
                }
                bindings.remove(i);
            }
            if expires > 0 {
                // At most u32::MAX s (136 years, parse_delta_seconds caps it): an Instant holds that.
                let expires = expires.min(self.config.max_expires);
                bindings.push(Binding {
                    contact: c.uri.to_string(),
                    q,
                    expires_at: now + Duration::from_secs(expires.into()),
                    call_id: call_id.to_string(),
                    cseq: cseq.seq,
                    source: *source,
                });
            }
        }
        if bindings.len() > self.config.max_contacts {
            return RegisterOutcome::TooManyContacts;
        }
        if !contacts.is_empty() {
            self.location.replace(aor, bindings.clone());
        }
        bindings.sort_by_key(|b| std::cmp::Reverse(b.q.unwrap_or(1000)));
        RegisterOutcome::Ok { contacts: bindings.iter().map(|b| b.to_header(now)).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sip_transport::Transport;

    fn config() -> RegistrarConfig {
        RegistrarConfig { min_expires: 60, max_expires: 3600, default_expires: 600, max_contacts: 3 }
    }

    fn source(flow: Option<u64>) -> Source {
        Source {
            transport: if flow.is_some() { Transport::Tcp } else { Transport::Udp },
            remote: "192.0.2.5:5062".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            listener: 0,
            flow: flow.map(FlowId),
        }
    }

    fn reg(call_id: &str, cseq: u32, headers: &str) -> SipMessage {
        SipMessage::parse(Bytes::from(format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5:5062;branch=z9hG4bK{cseq}\r\n\
From: <sip:1001@127.0.0.1>;tag=1\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n{headers}Content-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    const SEC: Duration = Duration::from_secs(1);

    fn ok(o: RegisterOutcome) -> Vec<String> {
        match o {
            RegisterOutcome::Ok { contacts } => contacts,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bind_refresh_query_and_expire() {
        let t0 = Instant::now();
        let r = Registrar::new(InMemoryLocation::default(), config());
        let c = ok(r.register(&reg("a", 1, "Contact: <sip:1001@192.0.2.5:5062>\r\n"), "1001", &source(None), t0));
        assert_eq!(c, ["<sip:1001@192.0.2.5:5062>;expires=600"], "default_expires");
        // A second contact with q, and Expires header capping.
        let c = ok(r.register(
            &reg("a", 2, "Contact: <sip:1001@192.0.2.6>;q=0.5\r\nExpires: 99999\r\n"),
            "1001",
            &source(None),
            t0 + 10 * SEC,
        ));
        assert_eq!(c, ["<sip:1001@192.0.2.5:5062>;expires=590", "<sip:1001@192.0.2.6>;expires=3600;q=0.5"]);
        // A query (no Contact) changes nothing and lists both.
        assert_eq!(ok(r.register(&reg("a", 3, ""), "1001", &source(None), t0 + 10 * SEC)).len(), 2);
        // The first expires on time; the sweep reports it.
        assert_eq!(r.location().bindings("1001", t0 + 599 * SEC).len(), 2);
        assert_eq!(r.location().bindings("1001", t0 + 600 * SEC).len(), 1);
        let gone = r.location().expire(t0 + 600 * SEC);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1.contact, "sip:1001@192.0.2.5:5062");
        assert_eq!(r.location().counts(), (1, 1));
    }

    #[test]
    fn the_largest_expires_are_capped_and_fit_an_instant() {
        let t0 = Instant::now();
        let huge = "9".repeat(30);
        let in_contact = reg("a", 1, &format!("Contact: <sip:1001@192.0.2.5>;expires={huge}\r\n"));
        let in_header = reg("a", 1, &format!("Contact: <sip:1001@192.0.2.5>\r\nExpires: {huge}\r\n"));
        let r = Registrar::new(InMemoryLocation::default(), config());
        let c = ok(r.register(&in_contact, "1001", &source(None), t0));
        assert_eq!(c, ["<sip:1001@192.0.2.5>;expires=3600"]);
        // Even with no cap in the configuration, the most a peer can write is u32::MAX s.
        let r = Registrar::new(InMemoryLocation::default(), RegistrarConfig { max_expires: u32::MAX, ..config() });
        let c = ok(r.register(&in_header, "1001", &source(None), t0));
        assert_eq!(c, [format!("<sip:1001@192.0.2.5>;expires={}", u32::MAX)]);
        assert_eq!(r.location().bindings("1001", t0)[0].expires_at, t0 + Duration::from_secs(u32::MAX.into()));
    }

    #[test]
    fn refresh_replaces_the_same_uri_and_zero_removes() {
        let t0 = Instant::now();
        let r = Registrar::new(InMemoryLocation::default(), config());
        ok(r.register(&reg("a", 1, "Contact: <sip:1001@Host.example:5062;transport=tcp>\r\n"), "1001", &source(None), t0));
        // Host case differs: the same binding (RFC 3261 §19.1.4).
        let c = ok(r.register(&reg("a", 2, "Contact: <sip:1001@host.example:5062;transport=TCP>;expires=120\r\n"), "1001", &source(None), t0));
        assert_eq!(c.len(), 1);
        assert!(c[0].ends_with(";expires=120"));
        let c = ok(r.register(&reg("a", 3, "Contact: <sip:1001@host.example:5062;transport=tcp>;expires=0\r\n"), "1001", &source(None), t0));
        assert!(c.is_empty());
        assert_eq!(r.location().counts(), (0, 0));
    }

    #[test]
    fn too_brief_out_of_order_and_too_many_change_nothing() {
        let t0 = Instant::now();
        let r = Registrar::new(InMemoryLocation::default(), config());
        ok(r.register(&reg("a", 5, "Contact: <sip:1001@192.0.2.5>\r\n"), "1001", &source(None), t0));
        let before = r.location().bindings("1001", t0)[0].expires_at;
        assert_eq!(
            r.register(&reg("a", 6, "Contact: <sip:1001@192.0.2.5>;expires=30\r\n"), "1001", &source(None), t0 + SEC),
            RegisterOutcome::IntervalTooBrief { min_expires: 60 }
        );
        assert_eq!(
            r.register(&reg("a", 5, "Contact: <sip:1001@192.0.2.5>\r\n"), "1001", &source(None), t0 + SEC),
            RegisterOutcome::OutOfOrder
        );
        let four = "Contact: <sip:a@192.0.2.1>, <sip:b@192.0.2.1>\r\nContact: <sip:c@192.0.2.1>\r\n";
        assert_eq!(r.register(&reg("b", 1, four), "1001", &source(None), t0 + SEC), RegisterOutcome::TooManyContacts);
        assert_eq!(r.location().bindings("1001", t0 + SEC).len(), 1);
        assert_eq!(r.location().bindings("1001", t0 + SEC)[0].expires_at, before);
        assert!(matches!(
            r.register(&reg("b", 1, "Contact: <sip:a@192.0.2.1>;q=2\r\n"), "1001", &source(None), t0),
            RegisterOutcome::BadRequest(_)
        ));
    }

    #[test]
    fn star_unregisters_everything() {
        let t0 = Instant::now();
        let r = Registrar::new(InMemoryLocation::default(), config());
        ok(r.register(&reg("a", 1, "Contact: <sip:1001@192.0.2.5>, <sip:1001@192.0.2.6>\r\n"), "1001", &source(None), t0));
        assert!(matches!(
            r.register(&reg("b", 1, "Contact: *\r\n"), "1001", &source(None), t0),
            RegisterOutcome::BadRequest(_)
        ));
        assert!(ok(r.register(&reg("b", 1, "Contact: *\r\nExpires: 0\r\n"), "1001", &source(None), t0)).is_empty());
        assert!(r.location().bindings("1001", t0).is_empty());
    }

    #[test]
    fn bindings_of_a_closed_flow_are_removed() {
        let t0 = Instant::now();
        let r = Registrar::new(InMemoryLocation::default(), config());
        ok(r.register(&reg("a", 1, "Contact: <sip:1001@192.0.2.5;transport=tcp>\r\n"), "1001", &source(Some(9)), t0));
        ok(r.register(&reg("b", 1, "Contact: <sip:1001@192.0.2.7>\r\n"), "1001", &source(None), t0));
        // Requests to the TCP contact reuse its connection.
        let tcp = r.location().bindings("1001", t0).into_iter().find(|b| b.source.flow.is_some()).unwrap();
        assert_eq!((tcp.target().flow, tcp.target().transport), (Some(FlowId(9)), Transport::Tcp));
        let gone = r.location().remove_flow(FlowId(9));
        assert_eq!(gone.len(), 1);
        assert_eq!(r.location().bindings("1001", t0).len(), 1);
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("1.1"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(format_q(500), "0.5");
        assert_eq!(format_q(1000), "1.0");
        assert_eq!(format_q(5), "0.005");
    }
}
