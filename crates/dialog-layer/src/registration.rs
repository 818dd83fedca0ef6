//! Registering Tandem with a carrier (a trunk that REGISTERs): a sans-IO state
//! machine with an explicit clock. It builds each REGISTER; the owner sends it
//! through a client transaction and hands back the final response or the
//! timeout. It answers digest challenges, refreshes before the binding expires,
//! follows 423 Min-Expires, and backs off exponentially after a failure.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_transport::{HeaderName, Method, MessageWriter, SipMessage};

use crate::auth::answer_challenge;
use crate::dialog::{new_call_id, new_tag};
use crate::transaction::new_branch;

#[derive(Clone, Debug)]
pub struct RegistrationConfig {
    /// Request-URI of the REGISTER, e.g. `sip:carrier.example.com`.
    pub registrar: String,
    /// Our address of record there (To and From), e.g. `sip:4420001@carrier.example.com`.
    pub aor: String,
    /// Our Contact header value, e.g. `<sip:4420001@203.0.113.5:5080>`.
    pub contact: String,
    /// Our Via value without branch, e.g. `SIP/2.0/UDP 203.0.113.5:5080;rport`.
    pub via: String,
    pub username: String,
    pub password: String,
    /// Expiry we ask for.
    pub expires: u32,
    /// First wait after a failure; doubled each time up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrationState {
    /// A REGISTER is out (or about to go).
    Registering,
    /// The carrier accepted us until `until`; a refresh goes out before then.
    Registered { until: Instant },
    /// The last attempt failed (status, or 408 for a timeout); the next is at `retry_at`.
    Failed { status: u16, reason: String, retry_at: Instant },
}

pub struct RegistrationClient {
    config: RegistrationConfig,
    state: RegistrationState,
    call_id: String,
    from_tag: String,
    cseq: u32,
    expires: u32,
    /// When to send the next REGISTER, if none is out.
    next_send: Option<Instant>,
    /// Failures in a row, for the backoff.
    failures: u32,
    /// Whether the REGISTER that is out already answered a challenge: a second
    /// challenge then means the credentials are wrong (unless the nonce was stale).
    answered_challenge: bool,
    /// REGISTERs sent at once in answer to a response since the last one the timer sent.
    retries_in_a_row: u32,
}

/// REGISTERs sent at once in answer to responses (a challenge, a stale nonce,
/// 423) before the next one waits: a carrier that keeps saying stale or keeps
/// raising Min-Expires gets the backoff, not a REGISTER per round trip. The
/// longest honest run is three (423, a challenge, a stale nonce); one to spare.
const MAX_RETRIES_IN_A_ROW: u32 = 4;

/// When to refresh a binding granted for `granted` seconds: at 80% of it, and
/// never later than 30 s before it ends (at least 1 s from now).
/// `mul_f32` cannot panic: the factor is finite and positive, the product at most 2^32 s.
fn refresh_after(granted: u32) -> Duration {
    let granted = Duration::from_secs(granted.into());
    (granted.mul_f32(0.8)).min(granted.saturating_sub(Duration::from_secs(30))).max(Duration::from_secs(1))
}

impl RegistrationClient {
    /// The first REGISTER is due at `now`.
    pub fn new(config: RegistrationConfig, now: Instant) -> Self {
        let host = config.registrar.split(':').nth(1).unwrap_or("tandem").to_string();
        RegistrationClient {
            expires: config.expires,
            config,
            state: RegistrationState::Registering,
            call_id: new_call_id(&host),
            from_tag: new_tag(),
            cseq: 0,
            next_send: Some(now),
            failures: 0,
            answered_challenge: false,
            retries_in_a_row: 0,
        }
    }

    pub fn state(&self) -> &RegistrationState {
        &self.state
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_send
    }

    /// A REGISTER to send now, if one is due.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Bytes> {
        if self.next_send.is_none_or(|t| t > now) {
            return None;
        }
        self.next_send = None;
        if !matches!(self.state, RegistrationState::Registered { .. }) {
            self.state = RegistrationState::Registering;
        }
        self.retries_in_a_row = 0;
        Some(self.register(self.expires, None))
    }

    /// The next REGISTER, with `credentials` (header name, value) if given.
    fn register(&mut self, expires: u32, credentials: Option<(&str, String)>) -> Bytes {
        // At most 1 + MAX_RETRIES_IN_A_ROW per timed REGISTER, and those are paced by
        // the refresh (at least 1 s) or the backoff: the CSeq stays far below 2^31.
        self.cseq += 1;
        let c = &self.config;
        let mut w = MessageWriter::request(&Method::Register, &c.registrar);
        w.header("Via", format_args!("{};branch={}", c.via, new_branch()));
        w.header("Max-Forwards", 70);
        w.header("From", format_args!("<{}>;tag={}", c.aor, self.from_tag));
        w.header("To", format_args!("<{}>", c.aor));
        w.header("Call-ID", &self.call_id);
        w.header("CSeq", format_args!("{} REGISTER", self.cseq));
        w.header("Contact", &c.contact);
        w.header("Expires", expires);
        self.answered_challenge = credentials.is_some();
        if let Some((name, value)) = credentials {
            w.header(name, value);
        }
        w.finish_empty()
    }

    /// The final response to the last REGISTER. Returns a REGISTER to send at
    /// once (the answer to a challenge, or a retry with Min-Expires).
    pub fn on_response(&mut self, resp: &SipMessage, now: Instant) -> Option<Bytes> {
        let status = resp.status()?;
        match status {
            200..=299 => {
                // The binding for our Contact, or the Expires header, or what we asked.
                let granted = resp
                    .list(HeaderName::Contact)
                    .ok()
                    .and_then(|cs| {
                        cs.iter().find_map(|c| {
                            let n = sip_transport::NameAddr::parse(c).ok()?;
                            self.config.contact.contains(n.uri).then(|| n.params.get("expires").flatten()?.parse::<u32>().ok())?
                        })
                    })
                    .or(resp.expires().ok().flatten())
                    .unwrap_or(self.expires);
                if granted == 0 {
                    return self.fail(status, "registrar granted no time", now);
                }
                self.failures = 0;
                // The carrier's number is a u32: at most 136 years, within an Instant's range.
                self.state = RegistrationState::Registered { until: now + Duration::from_secs(granted.into()) };
                self.next_send = Some(now + refresh_after(granted));
                None
            }
            401 | 407 if !self.answered_challenge => {
                let (challenge, credentials) = if status == 401 {
                    (HeaderName::WwwAuthenticate, "Authorization")
                } else {
                    (HeaderName::ProxyAuthenticate, "Proxy-Authorization")
                };
                let challenges: Vec<&str> = resp.header_values(challenge).collect();
                let c = &self.config;
                match answer_challenge(&challenges, "REGISTER", &c.registrar, &c.username, &c.password, 1) {
                    Ok(value) => self.retry(status, self.expires, Some((credentials, value)), now),
                    Err(why) => self.fail(status, why, now),
                }
            }
            // A stale nonce is not a wrong password: answer the new challenge once more.
            401 | 407 if resp.header_values(HeaderName::WwwAuthenticate).chain(resp.header_values(HeaderName::ProxyAuthenticate)).any(|c| c.to_ascii_lowercase().contains("stale=true")) => {
                self.answered_challenge = false;
                self.on_response(resp, now)
            }
            401 | 407 => self.fail(status, "credentials refused", now),
            423 => match resp.first(HeaderName::MinExpires).and_then(|v| v.trim().parse::<u32>().ok()) {
                Some(min) if min > self.expires => {
                    self.expires = min;
                    self.retry(status, min, None, now)
                }
                _ => self.fail(status, "423 without a usable Min-Expires", now),
            },
            _ => {
                let reason = resp.reason().unwrap_or("").to_string();
                self.fail(status, &reason, now)
            }
        }
    }

    /// A REGISTER sent at once in answer to a response with `status`, unless
    /// too many went in a row: then the attempt fails and backs off.
    fn retry(&mut self, status: u16, expires: u32, credentials: Option<(&str, String)>, now: Instant) -> Option<Bytes> {
        if self.retries_in_a_row >= MAX_RETRIES_IN_A_ROW {
            return self.fail(status, "too many retries in a row", now);
        }
        self.retries_in_a_row += 1;
        Some(self.register(expires, credentials))
    }

    /// The client transaction of the last REGISTER timed out (timer F).
    pub fn on_timeout(&mut self, now: Instant) {
        self.fail(408, "Request Timeout", now);
    }

    fn fail(&mut self, status: u16, reason: &str, now: Instant) -> Option<Bytes> {
        self.failures = self.failures.saturating_add(1);
        let wait = self.config.retry_min.saturating_mul(1 << (self.failures - 1).min(16)).min(self.config.retry_max);
        self.state = RegistrationState::Failed { status, reason: reason.to_string(), retry_at: now + wait };
        self.next_send = Some(now + wait);
        None
    }

    /// A REGISTER that removes our binding (on shutdown).
    pub fn unregister(&mut self) -> Bytes {
        self.next_send = None;
        self.retries_in_a_row = 0;
        self.register(0, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Algorithm, AuthOutcome, DigestAuthenticator, DigestConfig};
    use sip_transport::writer::response_to;

    const SEC: Duration = Duration::from_secs(1);

    fn config() -> RegistrationConfig {
        RegistrationConfig {
            registrar: "sip:127.0.0.1:5090".into(),
            aor: "sip:trunkuser@127.0.0.1".into(),
            contact: "<sip:trunkuser@127.0.0.1:5080>".into(),
            via: "SIP/2.0/UDP 127.0.0.1:5080;rport".into(),
            username: "trunkuser".into(),
            password: "s3cret".into(),
            expires: 600,
            retry_min: Duration::from_secs(5),
            retry_max: Duration::from_secs(60),
        }
    }

    /// A carrier registrar: our own server-side digest, so both sides are checked.
    struct Carrier {
        auth: DigestAuthenticator,
        password: &'static str,
    }

    impl Carrier {
        fn new(now: Instant, password: &'static str) -> Carrier {
            let cfg = DigestConfig {
                realm: "carrier".into(),
                nonce_lifetime: Duration::from_secs(300),
                algorithms: vec![Algorithm::Md5],
                max_tracked_nonces: 100,
            };
            Carrier { auth: DigestAuthenticator::new(cfg, now), password }
        }

        fn answer(&mut self, register: &Bytes, now: Instant, granted: u32) -> SipMessage {
            let req = SipMessage::parse(register.clone()).unwrap();
            let pw = |u: &str| (u == "trunkuser").then(|| self.password.to_string());
            let ok = req.first(HeaderName::Authorization).map(|a| self.auth.verify(a, "REGISTER", &pw, now));
            let src = "127.0.0.1:5080".parse().unwrap();
            let resp = match ok {
                Some(AuthOutcome::Ok { .. }) => {
                    let mut w = response_to(&req, src, 200, "OK", Some("c1"));
                    w.header("Contact", format_args!("<sip:trunkuser@127.0.0.1:5080>;expires={granted}"));
                    w.finish_empty()
                }
                _ => {
                    let mut w = response_to(&req, src, 401, "Unauthorized", Some("c1"));
                    for c in self.auth.challenge(now, false) {
                        w.header("WWW-Authenticate", c);
                    }
                    w.finish_empty()
                }
            };
            SipMessage::parse(resp).unwrap()
        }
    }

    #[test]
    fn registers_through_a_challenge_and_refreshes_before_expiry() {
        let t0 = Instant::now();
        let mut carrier = Carrier::new(t0, "s3cret");
        let mut c = RegistrationClient::new(config(), t0);
        assert_eq!(c.poll_timeout(), Some(t0));
        let first = c.handle_timeout(t0).unwrap();
        let again = c.on_response(&carrier.answer(&first, t0, 600), t0).expect("answers the challenge");
        let sent = SipMessage::parse(again.clone()).unwrap();
        assert_eq!(sent.cseq().unwrap().seq, 2, "same Call-ID, next CSeq");
        assert!(c.on_response(&carrier.answer(&again, t0, 120), t0).is_none());
        assert_eq!(c.state(), &RegistrationState::Registered { until: t0 + 120 * SEC });
        // 80% of 120 s is 96 s, but no later than 30 s before the end: 90 s.
        assert_eq!(c.poll_timeout(), Some(t0 + 90 * SEC));
        assert!(c.handle_timeout(t0 + 89 * SEC).is_none());
        let refresh = c.handle_timeout(t0 + 90 * SEC).unwrap();
        assert!(matches!(c.state(), RegistrationState::Registered { .. }), "still registered while refreshing");
        let again = c.on_response(&carrier.answer(&refresh, t0 + 90 * SEC, 3600), t0 + 90 * SEC).unwrap();
        assert!(c.on_response(&carrier.answer(&again, t0 + 90 * SEC, 3600), t0 + 90 * SEC).is_none());
        assert_eq!(c.poll_timeout(), Some(t0 + 90 * SEC + 2880 * SEC));
    }

    #[test]
    fn a_refused_registration_backs_off_and_recovers() {
        let t0 = Instant::now();
        let mut wrong = Carrier::new(t0, "another password");
        let mut c = RegistrationClient::new(config(), t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..5 {
            let reg = c.handle_timeout(now).unwrap();
            let answered = c.on_response(&wrong.answer(&reg, now, 600), now).unwrap();
            // The credentials are refused: no second answer to the same kind of challenge.
            assert!(c.on_response(&wrong.answer(&answered, now, 600), now).is_none());
            let RegistrationState::Failed { status, retry_at, .. } = c.state().clone() else { panic!("{:?}", c.state()) };
            assert_eq!(status, 401);
            waits.push((retry_at - now).as_secs());
            now = retry_at;
        }
        assert_eq!(waits, [5, 10, 20, 40, 60], "doubling up to retry_max");
        // The carrier is fixed: the next attempt succeeds and the backoff resets.
        let mut right = Carrier::new(now, "s3cret");
        let reg = c.handle_timeout(now).unwrap();
        let answered = c.on_response(&right.answer(&reg, now, 600), now).unwrap();
        c.on_response(&right.answer(&answered, now, 600), now);
        assert!(matches!(c.state(), RegistrationState::Registered { .. }));
        c.on_timeout(now + 480 * SEC);
        assert!(matches!(c.state(), RegistrationState::Failed { status: 408, retry_at, .. } if *retry_at == now + 485 * SEC));
    }

    #[test]
    fn interval_too_brief_is_followed() {
        let t0 = Instant::now();
        let mut c = RegistrationClient::new(RegistrationConfig { expires: 30, ..config() }, t0);
        let reg = SipMessage::parse(c.handle_timeout(t0).unwrap()).unwrap();
        let mut w = response_to(&reg, "127.0.0.1:5080".parse().unwrap(), 423, "Interval Too Brief", Some("x"));
        w.header("Min-Expires", 300);
        let retry = c.on_response(&SipMessage::parse(w.finish_empty()).unwrap(), t0).unwrap();
        assert_eq!(SipMessage::parse(retry).unwrap().expires().unwrap(), Some(300));
        let unreg = SipMessage::parse(c.unregister()).unwrap();
        assert_eq!(unreg.expires().unwrap(), Some(0));
        assert_eq!(c.poll_timeout(), None);
    }

    /// The carrier's answer to `register`: `status` with `headers`.
    fn reply(register: &Bytes, status: u16, headers: &[(&str, String)]) -> SipMessage {
        let req = SipMessage::parse(register.clone()).unwrap();
        let mut w = response_to(&req, "127.0.0.1:5080".parse().unwrap(), status, "X", Some("c1"));
        for (name, value) in headers {
            w.header(name, value);
        }
        SipMessage::parse(w.finish_empty()).unwrap()
    }

    /// Feeds every REGISTER sent at once the carrier's answer; how many went.
    fn run(c: &mut RegistrationClient, first: Bytes, answer: &mut dyn FnMut(&Bytes) -> SipMessage, t: Instant) -> u32 {
        let mut sent = 1;
        let mut reg = first;
        while let Some(again) = c.on_response(&answer(&reg), t) {
            sent += 1;
            reg = again;
            assert!(sent < 100, "a REGISTER per round trip");
        }
        sent
    }

    #[test]
    fn a_carrier_that_keeps_saying_stale_gets_the_backoff() {
        let t0 = Instant::now();
        let mut carrier = Carrier::new(t0, "s3cret");
        let mut stale = |reg: &Bytes| {
            let stale = carrier.auth.challenge(t0, true);
            reply(reg, 401, &stale.into_iter().map(|c| ("WWW-Authenticate", c)).collect::<Vec<_>>())
        };
        let mut c = RegistrationClient::new(config(), t0);
        let first = c.handle_timeout(t0).unwrap();
        // The first REGISTER, then one answer to the challenge and three to stale nonces.
        assert_eq!(run(&mut c, first, &mut stale, t0), 1 + MAX_RETRIES_IN_A_ROW);
        let reason = "too many retries in a row".to_string();
        assert_eq!(c.state(), &RegistrationState::Failed { status: 401, reason, retry_at: t0 + 5 * SEC });
        assert_eq!(c.poll_timeout(), Some(t0 + 5 * SEC));
        // The timed attempt may answer as many again.
        let next = c.handle_timeout(t0 + 5 * SEC).unwrap();
        assert_eq!(run(&mut c, next, &mut stale, t0 + 5 * SEC), 1 + MAX_RETRIES_IN_A_ROW);
        assert!(matches!(c.state(), RegistrationState::Failed { retry_at, .. } if *retry_at == t0 + 15 * SEC));
    }

    #[test]
    fn a_carrier_that_keeps_raising_min_expires_gets_the_backoff() {
        let t0 = Instant::now();
        let mut raise = |reg: &Bytes| {
            let asked = SipMessage::parse(reg.clone()).unwrap().expires().unwrap().unwrap();
            reply(reg, 423, &[("Min-Expires", (asked + 1).to_string())])
        };
        let mut c = RegistrationClient::new(config(), t0);
        let first = c.handle_timeout(t0).unwrap();
        assert_eq!(run(&mut c, first, &mut raise, t0), 1 + MAX_RETRIES_IN_A_ROW);
        let reason = "too many retries in a row".to_string();
        assert_eq!(c.state(), &RegistrationState::Failed { status: 423, reason, retry_at: t0 + 5 * SEC });
        // The last Min-Expires is kept for the next attempt.
        let next = SipMessage::parse(c.handle_timeout(t0 + 5 * SEC).unwrap()).unwrap();
        assert_eq!(next.expires().unwrap(), Some(600 + 1 + MAX_RETRIES_IN_A_ROW));
    }

    #[test]
    fn the_longest_grant_a_carrier_can_write_is_kept() {
        let t0 = Instant::now();
        let mut c = RegistrationClient::new(config(), t0);
        let reg = c.handle_timeout(t0).unwrap();
        let contact = ("Contact", format!("<sip:trunkuser@127.0.0.1:5080>;expires={}", u32::MAX));
        assert!(c.on_response(&reply(&reg, 200, &[contact]), t0).is_none());
        let until = t0 + Duration::from_secs(u32::MAX.into());
        assert_eq!(c.state(), &RegistrationState::Registered { until });
        assert!(c.poll_timeout().is_some_and(|t| t > t0 + 100 * 365 * 86_400 * SEC && t < until));
        // An Expires past u64 counts as the longest u32 there is.
        let now = c.poll_timeout().unwrap();
        let reg = c.handle_timeout(now).unwrap();
        assert!(c.on_response(&reply(&reg, 200, &[("Expires", "9".repeat(30))]), now).is_none());
        let until = now + Duration::from_secs(u32::MAX.into());
        assert_eq!(c.state(), &RegistrationState::Registered { until });
    }
}
