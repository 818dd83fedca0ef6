//! Trunks that register with their carrier: one [`RegistrationClient`] per trunk
//! with `register` set, sans-IO like the client itself. The core sends the
//! REGISTERs this hands out through client transactions and hands back each
//! final response or timeout, tagged with the trunk's index.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Instant;

use bytes::Bytes;
use dialog_layer::registration::{RegistrationClient, RegistrationConfig, RegistrationState};
use sip_transport::{SipMessage, Target, Transport};
use tracing::{debug, info, warn};

use crate::settings::{CoreSettings, Profile, TrunkSettings};

/// A trunk, as its index in [`CoreSettings::trunks`].
pub type TrunkIndex = usize;

struct TrunkRegistration {
    trunk: TrunkIndex,
    name: String,
    /// The carrier's registrar, and the listener we send from.
    target: Target,
    client: RegistrationClient,
}

/// The registrations of every trunk that has `register`.
pub struct TrunkRegistrations {
    trunks: Vec<TrunkRegistration>,
}

impl TrunkRegistrations {
    /// Every registering trunk's first REGISTER is due at `now`.
    pub fn new(settings: &CoreSettings, now: Instant) -> Self {
        let trunks = settings
            .trunks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.register.is_some())
            .filter_map(|(i, t)| match registration_for(settings, t) {
                Ok((config, target)) => {
                    info!(trunk = %t.name, registrar = %config.registrar, aor = %config.aor, contact = %config.contact, "trunk will register");
                    Some(TrunkRegistration { trunk: i, name: t.name.clone(), target, client: RegistrationClient::new(config, now) })
                }
                // The configuration loader rules these out; settings built by hand may not.
                Err(why) => {
                    warn!(trunk = %t.name, why, "trunk cannot register");
                    None
                }
            })
            .collect();
        TrunkRegistrations { trunks }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.trunks.iter().filter_map(|t| t.client.poll_timeout()).min()
    }

    /// The REGISTERs due at `now`, each with its trunk and where it goes.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(TrunkIndex, Bytes, Target)> {
        let mut out = Vec::new();
        for t in &mut self.trunks {
            if let Some(register) = t.client.handle_timeout(now) {
                debug!(trunk = %t.name, "sending REGISTER to the carrier");
                out.push((t.trunk, register, t.target));
            }
        }
        out
    }

    /// The final response to trunk `trunk`'s last REGISTER. Returns a REGISTER
    /// to send at once (the answer to a challenge, or a retry with Min-Expires).
    pub fn on_response(&mut self, trunk: TrunkIndex, resp: &SipMessage, now: Instant) -> Option<(Bytes, Target)> {
        let t = self.trunks.iter_mut().find(|t| t.trunk == trunk)?;
        let before = t.client.state().clone();
        let next = t.client.on_response(resp, now);
        log_change(&t.name, &before, t.client.state(), now);
        next.map(|register| (register, t.target))
    }

    /// Trunk `trunk`'s last REGISTER got no final response (or could not be sent).
    pub fn on_timeout(&mut self, trunk: TrunkIndex, now: Instant) {
        let Some(t) = self.trunks.iter_mut().find(|t| t.trunk == trunk) else {
            return;
        };
        let before = t.client.state().clone();
        t.client.on_timeout(now);
        log_change(&t.name, &before, t.client.state(), now);
    }

    /// Each registering trunk's name and state, in configuration order.
    pub fn states(&self) -> impl Iterator<Item = (&str, &RegistrationState)> {
        self.trunks.iter().map(|t| (t.name.as_str(), t.client.state()))
    }

    /// The state of one trunk's registration; `None` if it does not register.
    pub fn state(&self, name: &str) -> Option<&RegistrationState> {
        self.trunks.iter().find(|t| t.name == name).map(|t| t.client.state())
    }

    /// Trunks registered now, and trunks whose last attempt failed.
    pub fn counts(&self) -> (usize, usize) {
        let registered = self.states().filter(|(_, s)| matches!(s, RegistrationState::Registered { .. })).count();
        let failed = self.states().filter(|(_, s)| matches!(s, RegistrationState::Failed { .. })).count();
        (registered, failed)
    }
}

fn log_change(trunk: &str, before: &RegistrationState, after: &RegistrationState, now: Instant) {
    match after {
        RegistrationState::Registered { until } => {
            let expires_s = until.saturating_duration_since(now).as_secs();
            if matches!(before, RegistrationState::Registered { .. }) {
                debug!(trunk, expires_s, "trunk registration refreshed");
            } else {
                info!(trunk, expires_s, "trunk registered");
            }
        }
        RegistrationState::Failed { status, reason, retry_at } => {
            let retry_in_s = retry_at.saturating_duration_since(now).as_secs();
            warn!(trunk, status, reason = %reason, retry_in_s, "trunk registration failed");
        }
        RegistrationState::Registering => {}
    }
}

/// The client configuration and the destination of a trunk's REGISTERs.
fn registration_for(
    settings: &CoreSettings,
    trunk: &TrunkSettings,
) -> Result<(RegistrationConfig, Target), &'static str> {
    let (Some(gateway), Some(credentials), Some(register)) = (&trunk.gateway, &trunk.credentials, &trunk.register)
    else {
        return Err("registration needs a gateway and credentials");
    };
    let listener = settings
        .listener_for(Profile::External, gateway.transport, gateway.addr)
        .ok_or("no listener for the gateway's transport and address family")?;
    let local = reachable_addr(settings.listeners[listener].addr, gateway.addr);
    let contact = match gateway.transport {
        Transport::Udp => format!("<sip:{}@{local}>", register.user),
        t => format!("<sip:{}@{local};transport={}>", register.user, t.as_str().to_ascii_lowercase()),
    };
    let config = RegistrationConfig {
        registrar: format!("sip:{}", gateway.domain),
        aor: format!("sip:{}@{}", register.user, gateway.domain),
        contact,
        via: format!("SIP/2.0/{} {local};rport", gateway.transport),
        username: credentials.username.clone(),
        password: credentials.password.clone(),
        expires: register.expires,
        retry_min: register.retry_min,
        retry_max: register.retry_max,
    };
    let target = Target { transport: gateway.transport, remote: gateway.addr, flow: None, listener: Some(listener) };
    Ok((config, target))
}

/// Our listener's address as the carrier can reach it. A listener on 0.0.0.0 or
/// [::] has no address to put in Contact and Via: take the one the system routes
/// towards the gateway from (a connected UDP socket sends nothing).
fn reachable_addr(listener: SocketAddr, gateway: SocketAddr) -> SocketAddr {
    if !listener.ip().is_unspecified() {
        return listener;
    }
    let any: IpAddr = if gateway.is_ipv4() { [0, 0, 0, 0].into() } else { std::net::Ipv6Addr::UNSPECIFIED.into() };
    let routed = UdpSocket::bind((any, 0)).and_then(|s| {
        s.connect(gateway)?;
        s.local_addr()
    });
    match routed {
        Ok(local) => SocketAddr::new(local.ip(), listener.port()),
        Err(e) => {
            warn!(%listener, %gateway, error = %e, "no local address towards the gateway: Contact and Via name the wildcard address");
            listener
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    use dialog_layer::auth::{Algorithm, DigestConfig};
    use dialog_layer::guard::GuardConfig;
    use dialog_layer::registrar::RegistrarConfig;
    use dialog_layer::transaction::TimerConfig;
    use sip_transport::HeaderName;
    use sip_transport::writer::response_to;

    use crate::dialplan::DialPlan;
    use crate::settings::{Credentials, Gateway, ListenerInfo, TrunkRegister};

    const SEC: Duration = Duration::from_secs(1);

    fn listener(profile: Profile, transport: Transport, addr: &str) -> ListenerInfo {
        ListenerInfo { profile, transport, addr: addr.parse().unwrap() }
    }

    fn trunk(name: &str, gateway: &str, transport: Transport, register: bool) -> TrunkSettings {
        TrunkSettings {
            name: name.into(),
            networks: vec!["192.0.2.0/24".parse().unwrap()],
            gateway: Some(Gateway { domain: gateway.into(), addr: gateway.parse().unwrap(), transport }),
            credentials: Some(Credentials { username: "acct77".into(), password: "s3cret".into() }),
            register: register.then(|| TrunkRegister {
                user: "4420001".into(),
                expires: 600,
                retry_min: 5 * SEC,
                retry_max: 60 * SEC,
            }),
            from_user: None,
        }
    }

    fn settings(trunks: Vec<TrunkSettings>) -> CoreSettings {
        CoreSettings {
            user_agent: "Tandem-test".into(),
            session_timer: Default::default(),
            listeners: vec![
                listener(Profile::Internal, Transport::Udp, "127.0.0.1:5060"),
                listener(Profile::External, Transport::Udp, "127.0.0.1:5080"),
                listener(Profile::External, Transport::Tcp, "127.0.0.1:5080"),
                listener(Profile::External, Transport::Udp, "[::1]:5080"),
                listener(Profile::External, Transport::Tls, "0.0.0.0:5081"),
            ],
            endpoints: HashMap::new(),
            trunks,
            timers: TimerConfig::default(),
            max_transactions: 100,
            digest: DigestConfig {
                realm: "tandem".into(),
                nonce_lifetime: 300 * SEC,
                algorithms: vec![Algorithm::Md5],
                max_tracked_nonces: 100,
            },
            guard: GuardConfig {
                free_failures: 3,
                delay_step: Duration::ZERO,
                max_delay: Duration::ZERO,
                ban_after: 10,
                window: 60 * SEC,
                ban_for: 300 * SEC,
                max_tracked: 100,
            },
            registrar: RegistrarConfig { min_expires: 60, max_expires: 3600, default_expires: 3600, max_contacts: 10 },
            acd: Default::default(),
            ivr: Default::default(),
            dialplan: DialPlan::default(),
        }
    }

    /// The carrier's answer to `register`.
    fn answer(register: &Bytes, status: u16, headers: &[(&str, &str)]) -> SipMessage {
        let req = SipMessage::parse(register.clone()).unwrap();
        let mut w = response_to(&req, "127.0.0.1:5080".parse().unwrap(), status, "Carrier", Some("c1"));
        for (name, value) in headers {
            w.header(name, value);
        }
        SipMessage::parse(w.finish_empty()).unwrap()
    }

    #[test]
    fn registers_only_the_trunks_that_ask_and_answers_the_challenge() {
        let t0 = Instant::now();
        let s = settings(vec![
            trunk("inbound-only", "127.0.0.1:5070", Transport::Udp, false),
            trunk("carrier", "127.0.0.1:5090", Transport::Udp, true),
        ]);
        let mut regs = TrunkRegistrations::new(&s, t0);
        assert_eq!(regs.poll_timeout(), Some(t0));
        assert_eq!(regs.state("inbound-only"), None);
        let out = regs.handle_timeout(t0);
        assert_eq!(out.len(), 1);
        let (index, register, target) = out.into_iter().next().unwrap();
        assert_eq!(index, 1, "the trunk's index in the settings");
        assert_eq!(
            target,
            Target {
                transport: Transport::Udp,
                remote: "127.0.0.1:5090".parse().unwrap(),
                flow: None,
                listener: Some(1)
            }
        );
        let req = SipMessage::parse(register.clone()).unwrap();
        assert_eq!(req.request_uri(), Some("sip:127.0.0.1:5090"));
        assert_eq!(req.first(HeaderName::To), Some("<sip:4420001@127.0.0.1:5090>"));
        assert_eq!(req.first(HeaderName::Contact), Some("<sip:4420001@127.0.0.1:5080>"));
        assert!(req.first(HeaderName::Via).unwrap().starts_with("SIP/2.0/UDP 127.0.0.1:5080;rport;branch=z9hG4bK"));
        assert_eq!(regs.handle_timeout(t0), Vec::new(), "one REGISTER out at a time");
        assert_eq!(regs.poll_timeout(), None);

        let challenge =
            answer(&register, 401, &[("WWW-Authenticate", "Digest realm=\"carrier\", nonce=\"n1\", algorithm=MD5")]);
        let (again, target2) = regs.on_response(1, &challenge, t0).expect("answers the challenge");
        assert_eq!(target2, target);
        let authorization =
            SipMessage::parse(again.clone()).unwrap().first(HeaderName::Authorization).unwrap().to_string();
        assert!(
            authorization.contains("username=\"acct77\"") && authorization.contains("uri=\"sip:127.0.0.1:5090\""),
            "{authorization}"
        );
        assert_eq!(regs.counts(), (0, 0));

        let ok = answer(&again, 200, &[("Contact", "<sip:4420001@127.0.0.1:5080>;expires=120")]);
        assert_eq!(regs.on_response(1, &ok, t0), None);
        assert_eq!(regs.state("carrier"), Some(&RegistrationState::Registered { until: t0 + 120 * SEC }));
        assert_eq!(regs.counts(), (1, 0));
        // Refreshed 30 s before the end.
        assert_eq!(regs.poll_timeout(), Some(t0 + 90 * SEC));
        assert_eq!(regs.handle_timeout(t0 + 89 * SEC), Vec::new());
        assert_eq!(regs.handle_timeout(t0 + 90 * SEC).len(), 1);
    }

    #[test]
    fn a_refusal_or_a_timeout_is_retried_after_the_backoff() {
        let t0 = Instant::now();
        let mut regs =
            TrunkRegistrations::new(&settings(vec![trunk("carrier", "127.0.0.1:5090", Transport::Udp, true)]), t0);
        let (_, register, _) = regs.handle_timeout(t0).remove(0);
        assert_eq!(regs.on_response(0, &answer(&register, 403, &[]), t0), None);
        assert!(
            matches!(regs.state("carrier"), Some(RegistrationState::Failed { status: 403, retry_at, .. }) if *retry_at == t0 + 5 * SEC)
        );
        assert_eq!(regs.counts(), (0, 1));
        assert_eq!(regs.poll_timeout(), Some(t0 + 5 * SEC));
        assert_eq!(regs.handle_timeout(t0 + 4 * SEC), Vec::new());
        let (_, register, _) = regs.handle_timeout(t0 + 5 * SEC).remove(0);
        assert_eq!(regs.state("carrier"), Some(&RegistrationState::Registering));
        // The carrier is silent this time (timer F): the wait doubles.
        regs.on_timeout(0, t0 + 37 * SEC);
        assert!(
            matches!(regs.state("carrier"), Some(RegistrationState::Failed { status: 408, retry_at, .. }) if *retry_at == t0 + 47 * SEC)
        );
        // A response for a trunk that does not register is ignored.
        assert_eq!(regs.on_response(7, &answer(&register, 200, &[]), t0 + 38 * SEC), None);
        regs.on_timeout(7, t0 + 38 * SEC);
        let (_, register, _) = regs.handle_timeout(t0 + 47 * SEC).remove(0);
        assert_eq!(regs.on_response(0, &answer(&register, 200, &[("Expires", "600")]), t0 + 47 * SEC), None);
        assert_eq!(regs.counts(), (1, 0));
    }

    #[test]
    fn the_listener_matches_the_gateways_transport_and_address_family() {
        let t0 = Instant::now();
        let s = settings(vec![
            trunk("tcp", "127.0.0.1:5090", Transport::Tcp, true),
            trunk("v6", "[::1]:5090", Transport::Udp, true),
            trunk("tls", "127.0.0.1:5091", Transport::Tls, true),
            trunk("nowhere", "[::1]:5092", Transport::Tcp, true),
        ]);
        let mut regs = TrunkRegistrations::new(&s, t0);
        assert_eq!(
            regs.states().map(|(name, _)| name).collect::<Vec<_>>(),
            ["tcp", "v6", "tls"],
            "no IPv6 TCP listener for the last"
        );
        let out = regs.handle_timeout(t0);
        let headers = |i: usize| {
            let m = SipMessage::parse(out[i].1.clone()).unwrap();
            (
                m.first(HeaderName::Contact).unwrap().to_string(),
                m.first(HeaderName::Via).unwrap().to_string(),
                out[i].2.listener,
            )
        };
        let (contact, via, listener) = headers(0);
        assert_eq!((contact.as_str(), listener), ("<sip:4420001@127.0.0.1:5080;transport=tcp>", Some(2)));
        assert!(via.starts_with("SIP/2.0/TCP 127.0.0.1:5080;rport"), "{via}");
        let (contact, _, listener) = headers(1);
        assert_eq!((contact.as_str(), listener), ("<sip:4420001@[::1]:5080>", Some(3)));
        // A wildcard listener: the address the system routes towards the gateway.
        let (contact, via, listener) = headers(2);
        assert_eq!((contact.as_str(), listener), ("<sip:4420001@127.0.0.1:5081;transport=tls>", Some(4)));
        assert!(via.starts_with("SIP/2.0/TLS 127.0.0.1:5081;rport"), "{via}");
    }
}
