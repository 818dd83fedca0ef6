//! Session timers (RFC 4028): both ends agree on an interval and on who
//! refreshes the session with a re-INVITE or UPDATE; a session that is not
//! refreshed in time is torn down, so a call whose peer vanished does not hold
//! a port and a channel forever. Plain functions over messages; the call that
//! owns the dialog keeps the result and arms its timers from it.

use std::time::Duration;

use sip_transport::header::{Params, parse_delta_seconds};
use sip_transport::{HeaderName, SipMessage};

#[derive(Clone, Debug)]
pub struct SessionTimerConfig {
    /// The interval we ask for or accept at most (RFC 4028 recommends 1800 s).
    pub session_expires: u32,
    /// The smallest interval we accept (at least 90 s, RFC 4028 §4).
    pub min_se: u32,
}

impl Default for SessionTimerConfig {
    fn default() -> Self {
        SessionTimerConfig { session_expires: 1800, min_se: 90 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// The agreement for one dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimer {
    /// Seconds.
    pub interval: u32,
    pub refresher: Refresher,
    /// Whether the UAC said `Supported: timer` (then the 2xx says `Require: timer`).
    pub uac_supports: bool,
}

/// How a UAS answers an INVITE's session timer request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UasTimer {
    Use(SessionTimer),
    /// 422 Session Interval Too Small, with this Min-SE.
    TooSmall { min_se: u32 },
}

/// `Session-Expires` (or `x`): `delta-seconds *( ";" param )`, with `refresher`.
fn session_expires(msg: &SipMessage) -> Result<Option<(u32, Option<Refresher>)>, &'static str> {
    let mut values = msg.other_header_values("Session-Expires").chain(msg.other_header_values("x"));
    let Some(v) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err("Multiple Session-Expires headers");
    }
    let semi = v.find(';').unwrap_or(v.len());
    let secs = parse_delta_seconds(&v[..semi]).map_err(|_| "Malformed Session-Expires header")?;
    let params = Params::parse(&v[semi..]).map_err(|_| "Malformed Session-Expires header")?;
    let refresher = match params.get("refresher") {
        None => None,
        Some(Some(r)) if r.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
        Some(Some(r)) if r.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
        Some(_) => return Err("Malformed Session-Expires header: refresher must be uac or uas"),
    };
    Ok(Some((secs, refresher)))
}

fn min_se(msg: &SipMessage) -> Result<Option<u32>, &'static str> {
    match msg.other_header_values("Min-SE").next() {
        None => Ok(None),
        Some(v) => parse_delta_seconds(v.split(';').next().unwrap_or("")).map(Some).map_err(|_| "Malformed Min-SE header"),
    }
}

fn supports_timer(msg: &SipMessage) -> bool {
    [HeaderName::Supported, HeaderName::Require]
        .into_iter()
        .any(|h| msg.option_tags(h).is_ok_and(|tags| tags.iter().any(|t| t.eq_ignore_ascii_case("timer"))))
}

/// We are the UAS of `invite` (RFC 4028 §9). `Err` is a 400 reason.
pub fn negotiate_as_uas(invite: &SipMessage, config: &SessionTimerConfig) -> Result<UasTimer, &'static str> {
    let uac_supports = supports_timer(invite);
    let requested = session_expires(invite)?;
    let their_min = min_se(invite)?.unwrap_or(90);
    let interval = match requested {
        // Too short for us: 422 tells the UAC the least we take.
        Some((secs, _)) if secs < config.min_se => return Ok(UasTimer::TooSmall { min_se: config.min_se }),
        // We may shorten it, but never below what the UAC said it needs.
        Some((secs, _)) => secs.min(config.session_expires.max(their_min)),
        None => config.session_expires.max(their_min),
    };
    // Without timer support at the UAC only we can refresh (§9).
    let refresher = match (uac_supports, requested.and_then(|(_, r)| r)) {
        (false, _) => Refresher::Uas,
        (true, Some(r)) => r,
        (true, None) => Refresher::Uac,
    };
    Ok(UasTimer::Use(SessionTimer { interval, refresher, uac_supports }))
}

/// We are the UAC: what the 2xx to our INVITE agreed (RFC 4028 §7.2). A 2xx
/// without Session-Expires means no session timer, unless we insist on one.
/// An interval under 90 s is an error (RFC 4028 lets no Min-SE be lower): one of 0 s
/// would have the refresher send a re-INVITE as soon as each refresh ends.
pub fn agreed_as_uac(response: &SipMessage) -> Result<Option<SessionTimer>, &'static str> {
    let Some((interval, refresher)) = session_expires(response)? else { return Ok(None) };
    if interval < 90 {
        return Err("Session-Expires under 90 s");
    }
    Ok(Some(SessionTimer {
        interval,
        // §7.2: a 2xx that names no refresher leaves it to us.
        refresher: refresher.unwrap_or(Refresher::Uac),
        uac_supports: true,
    }))
}

impl SessionTimer {
    /// Headers for our 2xx as the UAS.
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("Session-Expires", format!("{};refresher={}", self.interval, self.refresher.as_str()))];
        if self.uac_supports {
            h.push(("Require", "timer".to_string()));
        }
        h
    }

    /// When the refresher sends its re-INVITE or UPDATE: half the interval (§10).
    /// This and `expire_after` are at most u32::MAX s (136 years): an Instant holds them.
    pub fn refresh_after(&self) -> Duration {
        Duration::from_secs(u64::from(self.interval) / 2)
    }

    /// When the other side gives up on a missing refresh and sends BYE:
    /// the interval less a third of it, at most 32 s less (§10).
    pub fn expire_after(&self) -> Duration {
        let i = u64::from(self.interval);
        Duration::from_secs(i - (i / 3).min(32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn invite(headers: &str) -> SipMessage {
        SipMessage::parse(Bytes::from(format!(
            "INVITE sip:1002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:1002@127.0.0.1>\r\nCall-ID: st\r\nCSeq: 1 INVITE\r\n{headers}Content-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    fn cfg() -> SessionTimerConfig {
        SessionTimerConfig::default()
    }

    #[test]
    fn uas_follows_the_request() {
        let t = negotiate_as_uas(&invite("Supported: timer\r\nSession-Expires: 600;refresher=uas\r\n"), &cfg()).unwrap();
        assert_eq!(t, UasTimer::Use(SessionTimer { interval: 600, refresher: Refresher::Uas, uac_supports: true }));
        // Compact form, no refresher: the UAC refreshes; a long interval is shortened to ours.
        let t = negotiate_as_uas(&invite("k: timer\r\nx: 7200\r\n"), &cfg()).unwrap();
        assert_eq!(t, UasTimer::Use(SessionTimer { interval: 1800, refresher: Refresher::Uac, uac_supports: true }));
        let UasTimer::Use(st) = t else { unreachable!() };
        assert_eq!(st.response_headers(), [("Session-Expires", "1800;refresher=uac".to_string()), ("Require", "timer".to_string())]);
    }

    #[test]
    fn a_uac_without_timer_support_is_refreshed_by_us() {
        let t = negotiate_as_uas(&invite(""), &cfg()).unwrap();
        assert_eq!(t, UasTimer::Use(SessionTimer { interval: 1800, refresher: Refresher::Uas, uac_supports: false }));
        let UasTimer::Use(st) = t else { unreachable!() };
        assert_eq!(st.response_headers(), [("Session-Expires", "1800;refresher=uas".to_string())], "no Require: timer");
    }

    #[test]
    fn too_small_is_422_and_their_min_se_is_kept() {
        assert_eq!(negotiate_as_uas(&invite("Supported: timer\r\nSession-Expires: 60\r\n"), &cfg()).unwrap(), UasTimer::TooSmall { min_se: 90 });
        // Their Min-SE above our preference: we may not go below it.
        let t = negotiate_as_uas(&invite("Supported: timer\r\nSession-Expires: 4000\r\nMin-SE: 3600\r\n"), &cfg()).unwrap();
        assert!(matches!(t, UasTimer::Use(SessionTimer { interval: 3600, .. })));
        assert!(negotiate_as_uas(&invite("Session-Expires: soon\r\n"), &cfg()).is_err());
        assert!(negotiate_as_uas(&invite("Session-Expires: 600;refresher=both\r\n"), &cfg()).is_err());
    }

    fn ok(headers: &str) -> SipMessage {
        SipMessage::parse(Bytes::from(format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>;tag=2\r\nCall-ID: st\r\nCSeq: 1 INVITE\r\n{headers}Content-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    #[test]
    fn uac_reads_the_answer_and_timers_follow_the_interval() {
        assert_eq!(agreed_as_uac(&ok("")).unwrap(), None);
        let st = agreed_as_uac(&ok("Session-Expires: 90;refresher=uas\r\n")).unwrap().unwrap();
        assert_eq!(st.refresher, Refresher::Uas);
        assert_eq!(st.refresh_after(), Duration::from_secs(45));
        assert_eq!(st.expire_after(), Duration::from_secs(60), "90 - 30");
        let long = SessionTimer { interval: 1800, refresher: Refresher::Uac, uac_supports: true };
        assert_eq!(long.expire_after(), Duration::from_secs(1768), "at most 32 s early");
    }

    #[test]
    fn a_2xx_under_90_seconds_is_refused() {
        for short in ["0", "1", "89;refresher=uac", "89;refresher=uas"] {
            let err = agreed_as_uac(&ok(&format!("Session-Expires: {short}\r\n")));
            assert_eq!(err, Err("Session-Expires under 90 s"), "{short}");
        }
        assert!(agreed_as_uac(&ok("Session-Expires: 90\r\n")).unwrap().is_some());
    }

    #[test]
    fn the_longest_intervals_fit_an_instant() {
        let t0 = std::time::Instant::now();
        // No Session-Expires and the largest Min-SE: we may not go below it.
        let t = negotiate_as_uas(&invite(&format!("Supported: timer\r\nMin-SE: {}\r\n", "9".repeat(30))), &cfg());
        let Ok(UasTimer::Use(st)) = t else { panic!("{t:?}") };
        assert_eq!(st.interval, u32::MAX);
        assert!(t0 + st.refresh_after() > t0 && t0 + st.expire_after() > t0);
        let st = agreed_as_uac(&ok(&format!("Session-Expires: {}\r\n", u64::MAX))).unwrap().unwrap();
        assert_eq!(st.interval, u32::MAX);
        assert_eq!(st.expire_after(), Duration::from_secs(u64::from(u32::MAX) - 32));
        assert!(t0 + st.expire_after() > t0);
    }
}
