//! The network entry point: bytes from a socket into the SIP core, as a UDP
//! datagram on the internal and on the external profile, and through the
//! stream framer as TCP bytes. Nothing may panic. Every generated answer must
//! parse again.
//!
//! cargo +nightly fuzz run sip_core fuzz/corpus/sip_core -- -max_total_time=300

#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dialog_layer::auth::{Algorithm, DigestConfig};
use dialog_layer::guard::GuardConfig;
use dialog_layer::registrar::RegistrarConfig;
use dialog_layer::transaction::TimerConfig;
use libfuzzer_sys::fuzz_target;
use sip_transport::{FlowId, Frame, SipMessage, Source, StreamFramer, Transport};
use switch::dialplan::{Destination, DialPlan, NumberMatch, Rule, Template};
use switch::{CoreSettings, EndpointSettings, ListenerInfo, Profile, SipCore, TrunkSettings};

fn settings() -> CoreSettings {
    let endpoints: HashMap<String, EndpointSettings> =
        [("1001", "demo1001"), ("1002", "demo1002")].iter().map(|(u, p)| (u.to_string(), EndpointSettings { password: p.to_string() })).collect();
    CoreSettings {
        user_agent: "fuzz".into(),
        session_timer: Default::default(),
        listeners: vec![
            ListenerInfo { profile: Profile::Internal, transport: Transport::Udp, addr: "127.0.0.1:5060".parse().unwrap() },
            ListenerInfo { profile: Profile::External, transport: Transport::Udp, addr: "127.0.0.1:5080".parse().unwrap() },
            ListenerInfo { profile: Profile::Internal, transport: Transport::Tcp, addr: "127.0.0.1:5060".parse().unwrap() },
        ],
        endpoints,
        trunks: vec![TrunkSettings {
            name: "t".into(),
            networks: vec!["127.0.0.0/8".parse().unwrap()],
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
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
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
            internal: vec![Rule::new(NumberMatch::Prefix("4".into()), Destination::Hangup { status: 486 }, Duration::from_secs(30)).unwrap()],
            external: vec![Rule::new(NumberMatch::pattern("(1[0-9]+)").unwrap(), Destination::Endpoint(Template::parse("$1").unwrap()), Duration::from_secs(30)).unwrap()],
        },
    }
}

fn source(listener: usize, transport: Transport) -> Source {
    Source {
        transport,
        remote: "127.0.0.9:5062".parse().unwrap(),
        local: "127.0.0.1:5060".parse().unwrap(),
        listener,
        flow: transport.is_reliable().then_some(FlowId(1)),
    }
}

fn check_answers(out: Vec<dialog_layer::transaction::Transmit>) {
    for t in out {
        let m = SipMessage::parse(t.data).expect("our own response parses");
        assert!(m.status().is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    static T0: OnceLock<Instant> = OnceLock::new();
    let t0 = *T0.get_or_init(Instant::now);
    // A fresh core per input keeps runs reproducible.
    let mut core = SipCore::new(settings(), t0);
    let bytes = Bytes::copy_from_slice(data);
    check_answers(core.handle_message(bytes.clone(), source(0, Transport::Udp), t0));
    check_answers(core.handle_message(bytes, source(1, Transport::Udp), t0));
    // Timers after the input: retransmissions and expiry paths.
    check_answers(core.handle_timeout(t0 + Duration::from_secs(40)));

    let mut framer = StreamFramer::new(4096);
    for chunk in data.chunks(97) {
        if framer.push(chunk).is_err() {
            return;
        }
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => check_answers(core.handle_message(m, source(2, Transport::Tcp), t0)),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
