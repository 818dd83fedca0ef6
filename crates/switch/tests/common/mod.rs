//! What the fake-clock tests of the SIP core share: settings with three
//! endpoints and a trunk, sources, and a phone's digest answers.

#![allow(dead_code)] // each test file uses part of this

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use dialog_layer::auth::{Algorithm, DigestConfig};
use dialog_layer::guard::GuardConfig;
use dialog_layer::registrar::RegistrarConfig;
use dialog_layer::transaction::{TimerConfig, Transmit};
use md5::{Digest, Md5};
use sip_transport::{SipMessage, Source, Transport};
use switch::dialplan::{Destination, DialPlan, NumberMatch, Rule, Template};
use switch::{CoreSettings, EndpointSettings, ListenerInfo, Profile, TrunkSettings};

pub const INTERNAL: &str = "127.0.0.1:5060";
pub const EXTERNAL: &str = "127.0.0.1:5080";

pub fn settings() -> CoreSettings {
    let endpoints: HashMap<String, EndpointSettings> = (1001..=1003)
        .map(|n| (n.to_string(), EndpointSettings { password: format!("demo{n}") }))
        .collect();
    CoreSettings {
        user_agent: "Tandem-test".into(),
        session_timer: Default::default(),
        listeners: vec![
            ListenerInfo { profile: Profile::Internal, transport: Transport::Udp, addr: INTERNAL.parse().unwrap() },
            ListenerInfo { profile: Profile::External, transport: Transport::Udp, addr: EXTERNAL.parse().unwrap() },
        ],
        endpoints,
        trunks: vec![TrunkSettings {
            name: "carrier".into(),
            networks: vec!["192.0.2.0/24".parse().unwrap()],
            gateway: None,
            credentials: None,
            register: None,
            from_user: None,
        }],
        timers: TimerConfig::default(),
        max_transactions: 1000,
        digest: DigestConfig {
            realm: "tandem".into(),
            nonce_lifetime: Duration::from_secs(300),
            algorithms: vec![Algorithm::Md5],
            max_tracked_nonces: 1000,
        },
        guard: GuardConfig {
            free_failures: 3,
            delay_step: Duration::from_millis(500),
            max_delay: Duration::from_secs(4),
            ban_after: 10,
            window: Duration::from_secs(60),
            ban_for: Duration::from_secs(300),
            max_tracked: 1000,
        },
        registrar: RegistrarConfig { min_expires: 60, max_expires: 3600, default_expires: 3600, max_contacts: 10 },
        acd: Default::default(),
        ivr: Default::default(),
        dialplan: DialPlan {
            internal: vec![
                Rule::new(NumberMatch::Exact("486".into()), Destination::Hangup { status: 486 }, Duration::from_secs(30)).unwrap(),
                Rule::new(NumberMatch::Exact("6000".into()), Destination::Echo, Duration::from_secs(30)).unwrap(),
                Rule::new(NumberMatch::pattern("10[0-9]{2}").unwrap(), Destination::Endpoint(Template::parse("$0").unwrap()), Duration::from_secs(30)).unwrap(),
            ],
            external: Vec::new(),
        },
    }
}

pub fn source(listener: usize, remote: &str) -> Source {
    let local = if listener == 0 { INTERNAL } else { EXTERNAL };
    Source {
        transport: Transport::Udp,
        remote: remote.parse().unwrap(),
        local: local.parse().unwrap(),
        listener,
        flow: None,
    }
}

pub fn one(out: Vec<Transmit>) -> (SipMessage, SocketAddr) {
    assert_eq!(out.len(), 1, "expected exactly one message out");
    let t = out.into_iter().next().unwrap();
    (SipMessage::parse(t.data).unwrap(), t.target.remote)
}

pub fn register(user: &str, branch: &str, cseq: u32, auth: Option<&str>, extra: &str) -> Bytes {
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    Bytes::from(format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5062;branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:{user}@127.0.0.1>;tag=abc\r\n\
To: <sip:{user}@127.0.0.1>\r\n\
Call-ID: reg-{user}@10.0.0.5\r\n\
CSeq: {cseq} REGISTER\r\n\
Contact: <sip:{user}@10.0.0.5:5062>\r\n\
{auth}{extra}Content-Length: 0\r\n\r\n"
    ))
}

pub fn hex_md5(s: &str) -> String {
    Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Answers a WWW-Authenticate challenge the way a phone would.
pub fn credentials(challenge: &str, user: &str, password: &str, uri: &str, nc: u32) -> String {
    credentials_for("REGISTER", challenge, user, password, uri, nc)
}

pub fn credentials_for(method: &str, challenge: &str, user: &str, password: &str, uri: &str, nc: u32) -> String {
    let param = |name: &str| {
        let i = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        challenge[i..i + challenge[i..].find('"').unwrap()].to_string()
    };
    let (realm, nonce) = (param("realm"), param("nonce"));
    let ha1 = hex_md5(&format!("{user}:{realm}:{password}"));
    let ha2 = hex_md5(&format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let response = hex_md5(&format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc={nc}"
    )
}
