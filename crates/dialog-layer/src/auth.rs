//! Digest authentication for SIP (RFC 3261 §22.4) with the algorithms of RFC 8760
//! (MD5 and SHA-256) and `qop=auth`.
//!
//! Nonces are stateless until used: a nonce is its issue time and a serial
//! number, sealed with a keyed hash, so a challenge costs no memory. Once a
//! nonce has been used, the highest nonce-count seen for it is remembered (for
//! replay protection) in a bounded FIFO; a nonce older than the oldest one
//! forgotten is answered `stale=true`, so forgetting never opens a replay.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};
use sip_transport::header::{split_commas, unquote};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        [Algorithm::Md5, Algorithm::Sha256].into_iter().find(|a| a.name().eq_ignore_ascii_case(s))
    }

    fn hex(self, parts: &[&str]) -> String {
        fn run<D: Digest>(parts: &[&str]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            d.finalize().iter().fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
        }
        match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
        }
    }
}

#[derive(Clone, Debug)]
pub struct DigestConfig {
    pub realm: String,
    /// Older nonces are answered with a new challenge and `stale=true`.
    pub nonce_lifetime: Duration,
    /// Challenges offered, in order of preference (RFC 8760 §2.4: strongest first).
    pub algorithms: Vec<Algorithm>,
    /// Used nonces remembered for nonce-count replay checks.
    pub max_tracked_nonces: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    Ok { username: String },
    /// Wrong password or unknown user: counts as a failed attempt.
    Failed { username: String, reason: &'static str },
    /// The password was right but the nonce is expired, foreign or replayed:
    /// challenge again with `stale=true`.
    Stale,
    /// Credentials for another realm; another header may hold ours.
    WrongRealm,
    NotDigest,
    /// Not parseable as digest credentials: answer 400 with this reason.
    Malformed(&'static str),
}

/// The parameters of one `Digest` credentials value.
struct Credentials<'a> {
    username: Option<std::borrow::Cow<'a, str>>,
    realm: Option<std::borrow::Cow<'a, str>>,
    nonce: Option<std::borrow::Cow<'a, str>>,
    uri: Option<std::borrow::Cow<'a, str>>,
    response: Option<std::borrow::Cow<'a, str>>,
    algorithm: Option<&'a str>,
    cnonce: Option<std::borrow::Cow<'a, str>>,
    qop: Option<std::borrow::Cow<'a, str>>,
    nc: Option<&'a str>,
}

/// The `name=value` parameters of a `Digest` challenge or credentials value;
/// `Ok(None)` for another scheme.
struct DigestParams<'a>(Vec<(&'a str, &'a str)>);

impl<'a> DigestParams<'a> {
    fn parse(value: &'a str) -> Result<Option<DigestParams<'a>>, &'static str> {
        let value = value.trim_start();
        let scheme_end = value.find([' ', '\t', '\r', '\n']).unwrap_or(value.len());
        if !value[..scheme_end].eq_ignore_ascii_case("Digest") {
            return Ok(None);
        }
        let mut params = Vec::new();
        for item in split_commas(&value[scheme_end..])? {
            if item.is_empty() {
                continue;
            }
            let (name, v) = item.split_once('=').ok_or("parameter without value")?;
            params.push((name.trim(), v.trim()));
        }
        Ok(Some(DigestParams(params)))
    }

    /// The value as written (quotes kept).
    fn raw(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    /// The value with quotes and escapes removed.
    fn get(&self, name: &str) -> Option<std::borrow::Cow<'a, str>> {
        self.raw(name).map(unquote)
    }
}

fn parse_credentials(value: &str) -> Result<Option<Credentials<'_>>, &'static str> {
    let Some(p) = DigestParams::parse(value)? else { return Ok(None) };
    Ok(Some(Credentials {
        username: p.get("username"),
        realm: p.get("realm"),
        nonce: p.get("nonce"),
        uri: p.get("uri"),
        response: p.get("response"),
        algorithm: p.raw("algorithm").map(|a| a.trim_matches('"')),
        cnonce: p.get("cnonce"),
        qop: p.get("qop"),
        nc: p.raw("nc"),
    }))
}

/// Answers a server's challenges as a client (RFC 8760 §2.4: the first challenge
/// with an algorithm we support), for requests we send to a trunk. Returns the
/// Authorization / Proxy-Authorization value. `nc` counts our uses of the nonce.
pub fn answer_challenge(challenges: &[&str], method: &str, uri: &str, username: &str, password: &str, nc: u32) -> Result<String, &'static str> {
    let mut chosen = None;
    for c in challenges {
        let Ok(Some(p)) = DigestParams::parse(c) else { continue };
        let algorithm = match p.raw("algorithm").map(|a| a.trim_matches('"')) {
            None => Some(Algorithm::Md5),
            Some(a) => Algorithm::parse(a),
        };
        if let Some(a) = algorithm {
            chosen = Some((p, a));
            break;
        }
    }
    let (p, algorithm) = chosen.ok_or("no digest challenge with a supported algorithm")?;
    let realm = p.get("realm").ok_or("challenge without realm")?;
    let nonce = p.get("nonce").ok_or("challenge without nonce")?;
    let qop_auth = p.get("qop").is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
    let ha1 = algorithm.hex(&[username, &realm, password]);
    let ha2 = algorithm.hex(&[method, uri]);
    let mut out = format!("Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\"");
    if qop_auth {
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let nc = format!("{nc:08x}");
        let response = algorithm.hex(&[&ha1, &nonce, &nc, &cnonce, "auth", &ha2]);
        let _ = write!(out, ", response=\"{response}\", algorithm={}, cnonce=\"{cnonce}\", qop=auth, nc={nc}", algorithm.name());
    } else {
        let response = algorithm.hex(&[&ha1, &nonce, &ha2]);
        let _ = write!(out, ", response=\"{response}\", algorithm={}", algorithm.name());
    }
    if let Some(opaque) = p.raw("opaque") {
        let _ = write!(out, ", opaque={opaque}");
    }
    Ok(out)
}

/// The serial and issue time of a nonce, once its seal checks.
struct NonceInfo {
    serial: u64,
    issued_ms: u64,
}

pub struct DigestAuthenticator {
    config: DigestConfig,
    epoch: Instant,
    secret: [u8; 32],
    next_serial: u64,
    /// Highest nonce-count seen per used nonce, by serial.
    used: HashMap<u64, u32>,
    /// Used nonces in the order first used: (serial, issued_ms).
    used_order: VecDeque<(u64, u64)>,
    /// Nonces with a lower serial that are not in `used` may have been forgotten: stale.
    forgotten_below: u64,
}

impl DigestAuthenticator {
    pub fn new(config: DigestConfig, now: Instant) -> Self {
        DigestAuthenticator {
            config,
            epoch: now,
            secret: rand::random(),
            next_serial: 0,
            used: HashMap::new(),
            used_order: VecDeque::new(),
            forgotten_below: 0,
        }
    }

    pub fn tracked_nonces(&self) -> usize {
        self.used.len()
    }

    fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn seal(&self, issued_ms: u64, serial: u64) -> u64 {
        let mut d = Sha256::new();
        d.update(self.secret);
        d.update(issued_ms.to_be_bytes());
        d.update(serial.to_be_bytes());
        let h = d.finalize();
        u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
    }

    fn new_nonce(&mut self, now: Instant) -> String {
        let issued = self.millis(now);
        let serial = self.next_serial;
        self.next_serial += 1;
        format!("{issued:016x}{serial:016x}{:016x}", self.seal(issued, serial))
    }

    fn open_nonce(&self, nonce: &str) -> Option<NonceInfo> {
        if nonce.len() != 48 || !nonce.is_ascii() {
            return None;
        }
        let field = |i: usize| u64::from_str_radix(&nonce[i * 16..(i + 1) * 16], 16).ok();
        let (issued_ms, serial, seal) = (field(0)?, field(1)?, field(2)?);
        (self.seal(issued_ms, serial) == seal).then_some(NonceInfo { serial, issued_ms })
    }

    /// The challenge header values (one per algorithm, same nonce).
    pub fn challenge(&mut self, now: Instant, stale: bool) -> Vec<String> {
        let nonce = self.new_nonce(now);
        let stale = if stale { ", stale=true" } else { "" };
        self.config
            .algorithms
            .iter()
            .map(|a| {
                format!("Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}", self.config.realm, a.name())
            })
            .collect()
    }

    /// Checks one credentials value for a request with `method`; `password_of`
    /// looks up a user's password.
    pub fn verify(&mut self, value: &str, method: &str, password_of: &dyn Fn(&str) -> Option<String>, now: Instant) -> AuthOutcome {
        let c = match parse_credentials(value) {
            Ok(Some(c)) => c,
            Ok(None) => return AuthOutcome::NotDigest,
            Err(e) => return AuthOutcome::Malformed(e),
        };
        let (Some(username), Some(realm), Some(nonce), Some(uri), Some(response)) =
            (&c.username, &c.realm, &c.nonce, &c.uri, &c.response)
        else {
            return AuthOutcome::Malformed("missing username, realm, nonce, uri or response");
        };
        if *realm != self.config.realm {
            return AuthOutcome::WrongRealm;
        }
        let algorithm = match c.algorithm {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::parse(a) {
                Some(a) if self.config.algorithms.contains(&a) => a,
                _ => return AuthOutcome::Malformed("algorithm not offered"),
            },
        };
        // The uri parameter is not required to equal the Request-URI (RFC 7616
        // §3.4.6 says SHOULD check): the response covers the uri the client states,
        // nonce-counts stop replays, and real clients differ here (SIPp writes
        // `sip:::1:5060` for an IPv6 Request-URI).
        // qop=auth needs cnonce and an 8-hex-digit nc; no qop is RFC 2069 style.
        let nc = match c.qop.as_deref() {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc = c.nc.filter(|n| n.len() == 8).and_then(|n| u32::from_str_radix(n, 16).ok());
                match (nc, &c.cnonce) {
                    (Some(nc), Some(_)) => Some(nc),
                    _ => return AuthOutcome::Malformed("qop=auth needs cnonce and an 8-digit hex nc"),
                }
            }
            Some(_) => return AuthOutcome::Malformed("unsupported qop"),
        };
        let Some(password) = password_of(username) else {
            return AuthOutcome::Failed { username: username.to_string(), reason: "unknown user" };
        };
        let ha1 = algorithm.hex(&[username, realm, &password]);
        let ha2 = algorithm.hex(&[method, uri]);
        let expected = match (nc, &c.cnonce, &c.qop) {
            (Some(_), Some(cnonce), Some(qop)) => algorithm.hex(&[&ha1, nonce, c.nc.unwrap_or(""), cnonce, qop, &ha2]),
            _ => algorithm.hex(&[&ha1, nonce, &ha2]),
        };
        if !expected.eq_ignore_ascii_case(response) {
            return AuthOutcome::Failed { username: username.to_string(), reason: "wrong password" };
        }
        // The password is right; now whether this nonce may still be used.
        let Some(info) = self.open_nonce(nonce) else { return AuthOutcome::Stale };
        let age = self.millis(now).saturating_sub(info.issued_ms);
        if age > self.config.nonce_lifetime.as_millis() as u64 {
            return AuthOutcome::Stale;
        }
        // Without qop a nonce is good for one request.
        let nc = nc.unwrap_or(1);
        match self.used.get_mut(&info.serial) {
            Some(seen) if *seen >= nc => return AuthOutcome::Stale,
            Some(seen) => *seen = nc,
            None if info.serial < self.forgotten_below => return AuthOutcome::Stale,
            None => self.remember(info, nc, now),
        }
        AuthOutcome::Ok { username: username.to_string() }
    }

    fn remember(&mut self, info: NonceInfo, nc: u32, now: Instant) {
        let now_ms = self.millis(now);
        let lifetime = self.config.nonce_lifetime.as_millis() as u64;
        // Expired nonces are refused by age anyway; beyond the bound the oldest go.
        while let Some(&(serial, issued)) = self.used_order.front() {
            let expired = now_ms.saturating_sub(issued) > lifetime;
            if !expired && self.used.len() < self.config.max_tracked_nonces.max(1) {
                break;
            }
            self.used_order.pop_front();
            self.used.remove(&serial);
            if !expired {
                // The nonce's seal checked, so we issued it: serial < next_serial, no overflow.
                self.forgotten_below = self.forgotten_below.max(serial + 1);
            }
        }
        self.used.insert(info.serial, nc);
        self.used_order.push_back((info.serial, info.issued_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "sip:127.0.0.1";

    fn config(algorithms: Vec<Algorithm>) -> DigestConfig {
        DigestConfig { realm: "tandem".into(), nonce_lifetime: Duration::from_secs(300), algorithms, max_tracked_nonces: 3 }
    }

    fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
        let i = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        &challenge[i..i + challenge[i..].find('"').unwrap()]
    }

    fn answer(challenge: &str, alg: Algorithm, password: &str, nc: u32) -> String {
        let nonce = param(challenge, "nonce");
        let ha1 = alg.hex(&["1001", "tandem", password]);
        let ha2 = alg.hex(&["REGISTER", URI]);
        let nc = format!("{nc:08x}");
        let resp = alg.hex(&[&ha1, nonce, &nc, "abc", "auth", &ha2]);
        format!(
            "Digest username=\"1001\",realm=\"tandem\",nonce=\"{nonce}\",uri=\"{URI}\",response=\"{resp}\",algorithm={},cnonce=\"abc\",qop=auth,nc={nc}",
            alg.name()
        )
    }

    fn pw(u: &str) -> Option<String> {
        (u == "1001").then(|| "secret".to_string())
    }

    #[test]
    fn rfc_8760_vectors() {
        // RFC 7616 §3.9.1 example: SHA-256 and MD5 of the same exchange.
        let ha1 = Algorithm::Sha256.hex(&["Mufasa", "http-auth@example.org", "Circle of Life"]);
        let ha2 = Algorithm::Sha256.hex(&["GET", "/dir/index.html"]);
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let r = Algorithm::Sha256.hex(&[&ha1, nonce, "00000001", cnonce, "auth", &ha2]);
        assert_eq!(r, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
        let ha1 = Algorithm::Md5.hex(&["Mufasa", "http-auth@example.org", "Circle of Life"]);
        let ha2 = Algorithm::Md5.hex(&["GET", "/dir/index.html"]);
        let r = Algorithm::Md5.hex(&[&ha1, nonce, "00000001", cnonce, "auth", &ha2]);
        assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn both_algorithms_verify_and_replays_are_stale() {
        let t0 = Instant::now();
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let mut a = DigestAuthenticator::new(config(vec![Algorithm::Sha256, Algorithm::Md5]), t0);
            let ch = a.challenge(t0, false);
            assert_eq!(ch.len(), 2);
            assert!(ch[0].contains("algorithm=SHA-256") && ch[1].contains("algorithm=MD5"));
            let c = ch.iter().find(|c| c.contains(alg.name())).unwrap();
            let ok = answer(c, alg, "secret", 1);
            assert_eq!(a.verify(&ok, "REGISTER", &pw, t0), AuthOutcome::Ok { username: "1001".into() });
            // The same nonce-count again is a replay; a higher one is fine.
            assert_eq!(a.verify(&ok, "REGISTER", &pw, t0), AuthOutcome::Stale);
            assert!(matches!(a.verify(&answer(c, alg, "secret", 2), "REGISTER", &pw, t0), AuthOutcome::Ok { .. }));
            assert!(matches!(a.verify(&answer(c, alg, "nope", 3), "REGISTER", &pw, t0), AuthOutcome::Failed { reason: "wrong password", .. }));
        }
    }

    #[test]
    fn nonces_expire_and_foreign_nonces_are_stale() {
        let t0 = Instant::now();
        let mut a = DigestAuthenticator::new(config(vec![Algorithm::Md5]), t0);
        let ch = a.challenge(t0, false).remove(0);
        let late = t0 + Duration::from_secs(301);
        assert_eq!(a.verify(&answer(&ch, Algorithm::Md5, "secret", 1), "REGISTER", &pw, late), AuthOutcome::Stale);
        assert!(a.challenge(late, true)[0].ends_with(", stale=true"));
        // A nonce from another process (another secret): right password, so stale.
        let mut other = DigestAuthenticator::new(config(vec![Algorithm::Md5]), t0);
        let foreign = other.challenge(t0, false).remove(0);
        assert_eq!(a.verify(&answer(&foreign, Algorithm::Md5, "secret", 1), "REGISTER", &pw, t0), AuthOutcome::Stale);
    }

    #[test]
    fn forgetting_a_nonce_never_reopens_it() {
        let t0 = Instant::now();
        let mut a = DigestAuthenticator::new(config(vec![Algorithm::Md5]), t0);
        let chs: Vec<String> = (0..5).map(|_| a.challenge(t0, false).remove(0)).collect();
        for c in &chs {
            assert!(matches!(a.verify(&answer(c, Algorithm::Md5, "secret", 1), "REGISTER", &pw, t0), AuthOutcome::Ok { .. }));
        }
        assert_eq!(a.tracked_nonces(), 3, "bounded by max_tracked_nonces");
        // The first two were forgotten: a replay of them is still refused.
        for c in &chs[..2] {
            assert_eq!(a.verify(&answer(c, Algorithm::Md5, "secret", 1), "REGISTER", &pw, t0), AuthOutcome::Stale);
        }
    }

    #[test]
    fn our_client_answers_our_server() {
        let t0 = Instant::now();
        for algorithms in [vec![Algorithm::Sha256, Algorithm::Md5], vec![Algorithm::Md5]] {
            let mut server = DigestAuthenticator::new(config(algorithms.clone()), t0);
            let challenges = server.challenge(t0, false);
            let refs: Vec<&str> = challenges.iter().map(String::as_str).collect();
            let answer = answer_challenge(&refs, "REGISTER", URI, "1001", "secret", 1).unwrap();
            assert!(answer.contains(&format!("algorithm={}", algorithms[0].name())), "the first supported challenge: {answer}");
            assert_eq!(server.verify(&answer, "REGISTER", &pw, t0), AuthOutcome::Ok { username: "1001".into() });
        }
        // A challenge without qop (RFC 2069 style) and with opaque, which is echoed.
        let legacy = "Digest realm=\"carrier\", nonce=\"abc\", opaque=\"xyz\"";
        let a = answer_challenge(&[legacy], "INVITE", "sip:1@c", "u", "p", 1).unwrap();
        assert!(a.contains("opaque=\"xyz\"") && !a.contains("qop") && a.contains("algorithm=MD5"), "{a}");
        assert!(answer_challenge(&["Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256"], "INVITE", "sip:x", "u", "p", 1).is_err());
        assert!(answer_challenge(&["Basic realm=\"r\""], "INVITE", "sip:x", "u", "p", 1).is_err());
    }

    #[test]
    fn malformed_and_foreign_credentials() {
        let t0 = Instant::now();
        let mut a = DigestAuthenticator::new(config(vec![Algorithm::Sha256]), t0);
        let ch = a.challenge(t0, false).remove(0);
        assert_eq!(a.verify("Basic YWxhZGRpbjpvcGVuc2VzYW1l", "REGISTER", &pw, t0), AuthOutcome::NotDigest);
        assert!(matches!(a.verify("Digest username=\"1001\"", "REGISTER", &pw, t0), AuthOutcome::Malformed(_)));
        assert!(matches!(a.verify("Digest username=\"1001, realm", "REGISTER", &pw, t0), AuthOutcome::Malformed(_)));
        let md5 = answer(&ch, Algorithm::Md5, "secret", 1);
        assert_eq!(a.verify(&md5, "REGISTER", &pw, t0), AuthOutcome::Malformed("algorithm not offered"));
        let other_realm = answer(&ch, Algorithm::Sha256, "secret", 1).replace("realm=\"tandem\"", "realm=\"elsewhere\"");
        assert_eq!(a.verify(&other_realm, "REGISTER", &pw, t0), AuthOutcome::WrongRealm);
        let ok = answer(&ch, Algorithm::Sha256, "secret", 1);
        assert!(matches!(a.verify(&ok, "INVITE", &pw, t0), AuthOutcome::Failed { .. }), "the method is part of the digest");
        let stranger = ok.replace("username=\"1001\"", "username=\"9999\"");
        assert!(matches!(a.verify(&stranger, "REGISTER", &pw, t0), AuthOutcome::Failed { reason: "unknown user", .. }));
    }

    #[test]
    fn odd_nonces_with_the_right_password_are_stale() {
        let t0 = Instant::now();
        let mut a = DigestAuthenticator::new(config(vec![Algorithm::Md5]), t0);
        let nonces = [
            "€".repeat(16), // 48 bytes, but byte 16 is inside a character
            "z".repeat(48),
            "0".repeat(47),
            format!("{:016x}{:016x}{:016x}", u64::MAX, u64::MAX, 0), // the last serial, unsealed
            String::new(),
        ];
        for n in nonces {
            let credentials = answer(&format!("nonce=\"{n}\""), Algorithm::Md5, "secret", 1);
            assert_eq!(a.verify(&credentials, "REGISTER", &pw, t0), AuthOutcome::Stale, "{n}");
        }
        assert_eq!(a.tracked_nonces(), 0);
    }
}
