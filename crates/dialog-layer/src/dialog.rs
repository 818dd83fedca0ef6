//! Dialogs (RFC 3261 §12): the state two user agents share after an INVITE is
//! answered (or while it rings, as an early dialog), and the rules for the
//! requests sent inside one. A B2BUA call holds two: one towards the caller
//! (we are the UAS) and one towards the callee (we are the UAC).
//!
//! Plain data and functions, no I/O and no clock: the owner of the call keeps
//! its dialogs and asks them to build and check in-dialog messages.

use std::fmt::Write as _;

use bytes::Bytes;
use sip_transport::header::NameAddr;
use sip_transport::{HeaderName, Method, MessageWriter, SipMessage};

use std::time::{Duration, Instant};

use crate::transaction::{TimerConfig, Transmit, new_branch};

/// Call-ID plus the two tags, from our point of view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog an incoming request belongs to: its To tag is ours (§12.2.2).
    /// `None` for a request outside any dialog (no To tag).
    pub fn of_request(msg: &SipMessage) -> Option<DialogId> {
        Some(DialogId {
            call_id: msg.call_id().ok()?.to_string(),
            local_tag: msg.to().ok()?.tag()?.to_string(),
            remote_tag: msg.from().ok()?.tag()?.to_string(),
        })
    }

    /// The dialog a response to our request belongs to: its From tag is ours.
    pub fn of_response(msg: &SipMessage) -> Option<DialogId> {
        Some(DialogId {
            call_id: msg.call_id().ok()?.to_string(),
            local_tag: msg.from().ok()?.tag()?.to_string(),
            remote_tag: msg.to().ok()?.tag()?.to_string(),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
}

/// Why an in-dialog request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InDialogError {
    /// §12.2.2: a CSeq lower than the last one seen; answered 500.
    #[error("CSeq out of order for this dialog")]
    OutOfOrder,
    #[error("request without a usable CSeq")]
    NoCSeq,
}

/// A fresh tag for From or To (RFC 3261 §19.3: at least 32 bits of randomness).
pub fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A fresh Call-ID for a call we originate.
pub fn new_call_id(host: &str) -> String {
    format!("{:016x}{:016x}@{host}", rand::random::<u64>(), rand::random::<u64>())
}

#[derive(Clone, Debug)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    /// Our From (UAC) or To (UAS) header value, without the tag.
    pub local_party: String,
    /// The peer's header value, without the tag.
    pub remote_party: String,
    /// The next CSeq we send is `local_seq + 1`.
    pub local_seq: u32,
    /// The highest CSeq the peer has sent in this dialog.
    pub remote_seq: Option<u32>,
    /// The peer's Contact URI: where in-dialog requests go.
    pub remote_target: String,
    /// Route set, in the order our requests carry it (loose routing only).
    pub route_set: Vec<String>,
    /// Our Contact header value (`<sip:...>`).
    pub local_contact: String,
}

/// The URI of the first Contact of a message, without `<>`.
fn contact_uri(msg: &SipMessage) -> Option<String> {
    let list = msg.list(HeaderName::Contact).ok()?;
    let first = list.first()?;
    NameAddr::parse(first).ok().map(|c| c.uri.to_string())
}

/// A name-addr header value with any `tag` parameter removed.
fn without_tag(value: &str) -> String {
    match NameAddr::parse(value) {
        Ok(n) => {
            let mut out = String::with_capacity(value.len());
            if let Some(d) = n.display {
                let _ = write!(out, "{d} ");
            }
            let _ = write!(out, "<{}>", n.uri);
            n.params.write_except(&mut out, &["tag"]);
            out
        }
        Err(_) => value.to_string(),
    }
}

fn record_routes(msg: &SipMessage) -> Vec<String> {
    msg.list(HeaderName::RecordRoute).map(|l| l.into_iter().map(str::to_string).collect()).unwrap_or_default()
}

impl Dialog {
    /// We are the UAS: the dialog of an INVITE we answer with `local_tag` in To
    /// (§12.1.1). `confirmed` for a 2xx, else early (a 1xx with the tag).
    pub fn as_uas(req: &SipMessage, local_tag: &str, local_contact: &str, confirmed: bool) -> Result<Dialog, &'static str> {
        let from = req.from().map_err(|_| "no usable From")?;
        let cseq = req.cseq().map_err(|_| "no usable CSeq")?;
        Ok(Dialog {
            id: DialogId {
                call_id: req.call_id().map_err(|_| "no usable Call-ID")?.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: from.tag().ok_or("From without tag")?.to_string(),
            },
            state: if confirmed { DialogState::Confirmed } else { DialogState::Early },
            local_party: without_tag(req.first(HeaderName::To).ok_or("no To")?),
            remote_party: without_tag(req.first(HeaderName::From).ok_or("no From")?),
            local_seq: 0,
            remote_seq: Some(cseq.seq),
            remote_target: contact_uri(req).ok_or("INVITE without Contact")?,
            route_set: record_routes(req),
            local_contact: local_contact.to_string(),
        })
    }

    /// We are the UAC: the dialog a response with a To tag creates for our
    /// request `req` (§12.1.2). The route set is the Record-Route reversed.
    pub fn as_uac(req: &SipMessage, resp: &SipMessage, local_contact: &str) -> Result<Dialog, &'static str> {
        let id = DialogId::of_response(resp).ok_or("response without tags")?;
        let status = resp.status().ok_or("not a response")?;
        let mut route_set = record_routes(resp);
        route_set.reverse();
        Ok(Dialog {
            id,
            state: if (200..300).contains(&status) { DialogState::Confirmed } else { DialogState::Early },
            local_party: without_tag(req.first(HeaderName::From).ok_or("no From")?),
            remote_party: without_tag(resp.first(HeaderName::To).ok_or("no To")?),
            local_seq: req.cseq().map_err(|_| "no usable CSeq")?.seq,
            remote_seq: None,
            remote_target: contact_uri(resp).ok_or("response without Contact")?,
            route_set,
            local_contact: local_contact.to_string(),
        })
    }

    /// A response to a request we sent in this dialog: a 2xx confirms an early
    /// dialog, and a 2xx to a target refresh (INVITE, UPDATE) moves the target.
    pub fn on_response(&mut self, resp: &SipMessage) {
        let Some(status) = resp.status() else { return };
        if !(200..300).contains(&status) {
            return;
        }
        if self.state == DialogState::Early {
            // §12.1.2: the route set is fixed by the 2xx.
            let mut rs = record_routes(resp);
            rs.reverse();
            self.route_set = rs;
            self.state = DialogState::Confirmed;
        }
        let refresh = resp.cseq().is_ok_and(|c| matches!(c.method, Method::Invite | Method::Update));
        if let (true, Some(target)) = (refresh, contact_uri(resp)) {
            self.remote_target = target;
        }
    }

    /// A request from the peer inside this dialog (§12.2.2): CSeq must not go
    /// back (ACK and CANCEL reuse the INVITE's); a target refresh moves the target.
    pub fn on_request(&mut self, req: &SipMessage) -> Result<(), InDialogError> {
        let cseq = req.cseq().map_err(|_| InDialogError::NoCSeq)?;
        let same_as_invite = matches!(cseq.method, Method::Ack | Method::Cancel);
        match self.remote_seq {
            Some(last) if cseq.seq < last || (cseq.seq == last && !same_as_invite) => return Err(InDialogError::OutOfOrder),
            _ => self.remote_seq = Some(cseq.seq),
        }
        if let (Method::Invite | Method::Update, Some(target)) = (&cseq.method, contact_uri(req)) {
            self.remote_target = target;
        }
        Ok(())
    }

    /// Confirms an early UAS dialog when we send the 2xx.
    pub fn confirm(&mut self) {
        self.state = DialogState::Confirmed;
    }

    /// Builds a request inside the dialog (§12.2.1.1) with a new CSeq, ready for
    /// a client transaction. `via` is our Via value without branch, e.g.
    /// `SIP/2.0/UDP 127.0.0.1:5060;rport`. Returns the message and its CSeq.
    pub fn request(&mut self, method: &Method, via: &str, extra: &[(&str, &str)], body: Option<(&str, &[u8])>) -> (Bytes, u32) {
        self.local_seq += 1;
        let seq = self.local_seq;
        (self.write(method, seq, via, &new_branch(), extra, body), seq)
    }

    /// The ACK for a 2xx to our INVITE with CSeq `invite_seq` (§13.2.2.4): its own
    /// branch, the INVITE's CSeq number.
    pub fn ack(&self, invite_seq: u32, via: &str, body: Option<(&str, &[u8])>) -> Bytes {
        self.write(&Method::Ack, invite_seq, via, &new_branch(), &[], body)
    }

    fn write(&self, method: &Method, seq: u32, via: &str, branch: &str, extra: &[(&str, &str)], body: Option<(&str, &[u8])>) -> Bytes {
        let mut w = MessageWriter::request(method, &self.remote_target);
        w.header("Via", format_args!("{via};branch={branch}"));
        for route in &self.route_set {
            w.header("Route", route);
        }
        w.header("Max-Forwards", 70);
        w.header("From", format_args!("{};tag={}", self.local_party, self.id.local_tag));
        w.header("To", format_args!("{};tag={}", self.remote_party, self.id.remote_tag));
        w.header("Call-ID", &self.id.call_id);
        w.header("CSeq", format_args!("{seq} {method}"));
        if matches!(method, Method::Invite | Method::Update | Method::Refer | Method::Subscribe | Method::Notify) {
            w.header("Contact", &self.local_contact);
        }
        for (name, value) in extra {
            w.header(name, value);
        }
        match body {
            Some((ct, b)) => w.finish(Some(ct), b),
            None => w.finish_empty(),
        }
    }
}

/// Our 2xx to an INVITE, sent again until its ACK arrives (RFC 3261 §13.3.1.4):
/// the INVITE transaction hands 2xx reliability to the TU (RFC 6026), so the call
/// that answered keeps one of these. T1, doubling up to T2; after 64×T1 without
/// ACK the call should be ended with a BYE.
#[derive(Clone, Debug)]
pub struct PendingAnswer {
    transmit: Transmit,
    next: Instant,
    interval: Duration,
    t2: Duration,
    give_up: Instant,
}

/// What a [`PendingAnswer`] wants at a timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerTimer {
    Retransmit(Transmit),
    /// No ACK for 64×T1: confirm the dialog and end the session with a BYE.
    GiveUp,
}

impl PendingAnswer {
    /// `transmit` was just sent (through the server transaction) at `now`.
    pub fn new(transmit: Transmit, timers: &TimerConfig, now: Instant) -> Self {
        PendingAnswer { transmit, next: now + timers.t1, interval: timers.t1, t2: timers.t2, give_up: now + timers.t1 * 64 }
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next.min(self.give_up)
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<AnswerTimer> {
        if now >= self.give_up {
            return Some(AnswerTimer::GiveUp);
        }
        if now < self.next {
            return None;
        }
        self.interval = (self.interval * 2).min(self.t2);
        self.next += self.interval;
        Some(AnswerTimer::Retransmit(self.transmit.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> SipMessage {
        SipMessage::parse(Bytes::from(s.replace('\n', "\r\n"))).unwrap()
    }

    const INVITE: &str = "INVITE sip:1002@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1
Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>
Max-Forwards: 70
From: \"Alice\" <sip:1001@127.0.0.1>;tag=a1
To: <sip:1002@127.0.0.1>
Call-ID: call-1
CSeq: 10 INVITE
Contact: <sip:1001@10.0.0.5:5062>
Content-Length: 0

";

    #[test]
    fn uas_dialog_and_in_dialog_requests() {
        let invite = msg(INVITE);
        let mut d = Dialog::as_uas(&invite, "b2", "<sip:tandem@127.0.0.1:5060>", true).unwrap();
        assert_eq!(d.id, DialogId { call_id: "call-1".into(), local_tag: "b2".into(), remote_tag: "a1".into() });
        assert_eq!(d.remote_target, "sip:1001@10.0.0.5:5062");
        assert_eq!(d.route_set, ["<sip:p1.example;lr>", "<sip:p2.example;lr>"], "UAS keeps Record-Route order");
        // Our BYE: From is our To with our tag, To is their From with theirs.
        let (bye, seq) = d.request(&Method::Bye, "SIP/2.0/UDP 127.0.0.1:5060;rport", &[], None);
        assert_eq!(seq, 1);
        let bye = SipMessage::parse(bye).unwrap();
        assert_eq!(bye.request_uri(), Some("sip:1001@10.0.0.5:5062"));
        assert_eq!(bye.from().unwrap().tag(), Some("b2"));
        assert_eq!(bye.to().unwrap().tag(), Some("a1"));
        assert_eq!(bye.to().unwrap().display, Some("\"Alice\""));
        assert_eq!(bye.header_values(HeaderName::Route).collect::<Vec<_>>(), ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
        assert!(bye.top_via().unwrap().branch().unwrap().starts_with(crate::transaction::BRANCH_PREFIX));
        assert_eq!(DialogId::of_request(&msg(&INVITE.replace("To: <sip:1002@127.0.0.1>", "To: <sip:1002@127.0.0.1>;tag=b2"))), Some(d.id.clone()));
    }

    #[test]
    fn cseq_order_and_target_refresh() {
        let mut d = Dialog::as_uas(&msg(INVITE), "b2", "<sip:t@127.0.0.1>", true).unwrap();
        let reinvite = msg(&INVITE.replace("CSeq: 10 INVITE", "CSeq: 11 INVITE").replace("10.0.0.5:5062>", "10.0.0.9:5070>"));
        d.on_request(&reinvite).unwrap();
        assert_eq!(d.remote_target, "sip:1001@10.0.0.9:5070", "a re-INVITE moves the target");
        let ack = msg(&INVITE.replace("INVITE sip", "ACK sip").replace("CSeq: 10 INVITE", "CSeq: 11 ACK"));
        assert_eq!(d.on_request(&ack), Ok(()), "ACK reuses the INVITE's CSeq");
        let old = msg(&INVITE.replace("INVITE sip", "BYE sip").replace("CSeq: 10 INVITE", "CSeq: 9 BYE"));
        assert_eq!(d.on_request(&old), Err(InDialogError::OutOfOrder));
        let same = msg(&INVITE.replace("INVITE sip", "BYE sip").replace("CSeq: 10 INVITE", "CSeq: 11 BYE"));
        assert_eq!(d.on_request(&same), Err(InDialogError::OutOfOrder));
    }

    #[test]
    fn uac_dialog_from_early_to_confirmed() {
        let req = msg("INVITE sip:1002@10.0.0.7:5064 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-tdm-1
From: <sip:1001@127.0.0.1>;tag=t1
To: <sip:1002@127.0.0.1>
Call-ID: out-1
CSeq: 1 INVITE
Contact: <sip:tandem@127.0.0.1:5060>
Content-Length: 0

");
        const RINGING: &str = "SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-tdm-1
Record-Route: <sip:p1.example;lr>
From: <sip:1001@127.0.0.1>;tag=t1
To: <sip:1002@127.0.0.1>;tag=r9
Call-ID: out-1
CSeq: 1 INVITE
Contact: <sip:1002@10.0.0.7:5064>
Content-Length: 0

";
        let mut d = Dialog::as_uac(&req, &msg(RINGING), "<sip:tandem@127.0.0.1:5060>").unwrap();
        assert_eq!(d.state, DialogState::Early);
        assert_eq!(d.id.remote_tag, "r9");
        let ok = msg(&RINGING
            .replace("180 Ringing", "200 OK")
            .replace("Record-Route: <sip:p1.example;lr>", "Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>")
            .replace("10.0.0.7:5064>", "10.0.0.8:5064>"));
        d.on_response(&ok);
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.route_set, ["<sip:p1.example;lr>", "<sip:p2.example;lr>"], "UAC reverses Record-Route; the 2xx fixes it");
        assert_eq!(d.remote_target, "sip:1002@10.0.0.8:5064");
        // The ACK for the 2xx carries the INVITE's CSeq number and a new branch.
        let ack = SipMessage::parse(d.ack(1, "SIP/2.0/UDP 127.0.0.1:5060", None)).unwrap();
        assert_eq!(ack.cseq().unwrap().seq, 1);
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_ne!(ack.top_via().unwrap().branch(), Some("z9hG4bK-tdm-1"));
        // The next request gets CSeq 2.
        let (_, seq) = d.request(&Method::Bye, "SIP/2.0/UDP 127.0.0.1:5060", &[], None);
        assert_eq!(seq, 2);
    }

    #[test]
    fn a_2xx_is_resent_until_ack_then_given_up() {
        let t0 = Instant::now();
        let target = sip_transport::Target {
            transport: sip_transport::Transport::Udp,
            remote: "10.0.0.5:5062".parse().unwrap(),
            flow: None,
            listener: Some(0),
        };
        let ok = Transmit { target, data: Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n") };
        let mut p = PendingAnswer::new(ok.clone(), &TimerConfig::default(), t0);
        let mut sent = Vec::new();
        let end = loop {
            let now = p.poll_timeout();
            match p.handle_timeout(now) {
                Some(AnswerTimer::Retransmit(t)) => {
                    assert_eq!(t, ok);
                    sent.push((now - t0).as_millis());
                }
                Some(AnswerTimer::GiveUp) => break now,
                None => panic!("woken for nothing at {:?}", now - t0),
            }
        };
        assert_eq!(sent, [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
        assert_eq!((end - t0).as_millis(), 32_000, "64×T1");
    }

    #[test]
    fn tags_and_call_ids_are_fresh() {
        assert_ne!(new_tag(), new_tag());
        let id = new_call_id("127.0.0.1");
        assert!(id.ends_with("@127.0.0.1") && id.len() > 30);
    }
}
