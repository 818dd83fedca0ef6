//! What the SIP core needs to know, in plain types; the binary builds this from
//! `conf/tandem.toml`, tests build it by hand.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use dialog_layer::auth::DigestConfig;
use dialog_layer::guard::GuardConfig;
use dialog_layer::registrar::RegistrarConfig;
use dialog_layer::transaction::TimerConfig;
use ipnet::IpNet;
use sip_transport::Transport;

/// The role of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Phones and agents: every request except OPTIONS, ACK and CANCEL authenticates.
    Internal,
    /// SIP trunks: requests are accepted only from a trunk's source networks.
    External,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Internal => "internal",
            Profile::External => "external",
        }
    }
}

/// One listener, in the order given to the transport layer (`Source::listener` indexes it).
#[derive(Clone, Debug)]
pub struct ListenerInfo {
    pub profile: Profile,
    pub transport: Transport,
    pub addr: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct EndpointSettings {
    pub password: String,
}

#[derive(Clone, Debug)]
pub struct TrunkSettings {
    pub name: String,
    /// Requests on the external profile are accepted from these networks only.
    pub networks: Vec<IpNet>,
    /// Where calls to this trunk (and its REGISTERs) go; `None`: inbound only.
    pub gateway: Option<Gateway>,
    /// Our answer to the carrier's digest challenges (401/407).
    pub credentials: Option<Credentials>,
    /// Register with the carrier (needs a gateway and credentials).
    pub register: Option<TrunkRegister>,
    /// The From user of calls sent to this trunk (the caller ID); `None`: the caller's own.
    pub from_user: Option<String>,
}

/// A trunk's carrier side.
#[derive(Clone, Debug)]
pub struct Gateway {
    /// Host and optional port as configured, for Request-URIs and the To/From
    /// domain, e.g. `sip.carrier.example` or `127.0.0.1:5090`.
    pub domain: String,
    /// The address requests go to (resolved when the configuration is loaded).
    pub addr: SocketAddr,
    pub transport: Transport,
}

#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Registration with the carrier.
#[derive(Clone, Debug)]
pub struct TrunkRegister {
    /// User part of our address of record at the carrier.
    pub user: String,
    /// Expiry asked for, in seconds.
    pub expires: u32,
    /// First wait after a failed attempt; doubled each time up to `retry_max`.
    pub retry_min: std::time::Duration,
    pub retry_max: std::time::Duration,
}

#[derive(Clone, Debug)]
pub struct CoreSettings {
    pub user_agent: String,
    /// RFC 4028 session timers on both sides of every call.
    pub session_timer: dialog_layer::session_timer::SessionTimerConfig,
    pub listeners: Vec<ListenerInfo>,
    pub endpoints: HashMap<String, EndpointSettings>,
    pub trunks: Vec<TrunkSettings>,
    pub timers: TimerConfig,
    pub max_transactions: usize,
    pub digest: DigestConfig,
    pub guard: GuardConfig,
    pub registrar: RegistrarConfig,
    pub dialplan: crate::dialplan::DialPlan,
    pub acd: AcdSettings,
    pub ivr: IvrSettings,
}

/// IVRs by name, the dispatch rules they start with, and the limit on wrong PINs.
#[derive(Clone, Debug, Default)]
pub struct IvrSettings {
    pub ivrs: HashMap<String, std::sync::Arc<pin_ivr::IvrConfig>>,
    pub rules: Vec<pin_ivr::Rule>,
    pub limiter: pin_ivr::LimiterConfig,
    /// The prompts of IVRs that speak another language than `media.language`, by IVR name.
    pub sounds: HashMap<String, std::sync::Arc<crate::prompts::Sounds>>,
}

/// ACD queues: the engine's configuration, and what the switch does around
/// it (where callers go when they leave a queue, feature codes).
#[derive(Clone, Debug, Default)]
pub struct AcdSettings {
    pub engine: acd_engine::AcdConfig,
    /// By queue name.
    pub queues: HashMap<String, QueueCallSettings>,
    pub feature_codes: FeatureCodes,
}

/// The switch's side of one queue.
#[derive(Clone, Debug)]
pub struct QueueCallSettings {
    /// Answer callers at once (music on hold in an answered call); else they
    /// hear it as early media (183) and are answered when an agent answers.
    pub answer: bool,
    /// Where a caller goes after the queue's maximum wait, or when it is full.
    pub overflow: QueueExit,
    /// Where a caller goes when the queue has no agents (join or leave when empty).
    pub when_empty: QueueExit,
    /// Announce the caller's position and the estimated wait (else only "thank you for holding").
    pub announce_position: bool,
    pub announce_wait: bool,
    /// The `external` strategy's routing service (HTTP POST, JSON).
    pub router_url: Option<String>,
    /// A key (RFC 4733) that takes a waiting caller out of the queue, and where to.
    pub exit_key: Option<(char, QueueExit)>,
}

impl Default for QueueCallSettings {
    fn default() -> Self {
        QueueCallSettings {
            answer: true,
            overflow: QueueExit::Hangup,
            when_empty: QueueExit::Hangup,
            announce_position: true,
            announce_wait: true,
            router_url: None,
            exit_key: None,
        }
    }
}

/// Where a caller leaving a queue goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueExit {
    /// "Goodbye", then the call ends.
    Hangup,
    Queue(String),
    Endpoint(String),
    Trunk { trunk: String, number: String },
    /// A SIP URI with an IP address (a meeting server).
    Uri(String),
}

/// What an agent dials to change their status (Asterisk habits: `*45`/`*46`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureCodes {
    pub login: String,
    pub logout: String,
    pub pause: String,
    pub unpause: String,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        FeatureCodes { login: "*45".into(), logout: "*46".into(), pause: "*47".into(), unpause: "*48".into() }
    }
}

impl CoreSettings {
    /// The listener to send from towards `remote` over `transport`: one of the
    /// profile's own with the same address family, else any that fits.
    pub fn listener_for(&self, profile: Profile, transport: Transport, remote: SocketAddr) -> Option<usize> {
        let fits = |l: &ListenerInfo| l.transport == transport && l.addr.is_ipv4() == remote.is_ipv4();
        let position = |p: &dyn Fn(&ListenerInfo) -> bool| self.listeners.iter().position(p);
        position(&|l| l.profile == profile && fits(l)).or_else(|| position(&fits))
    }

    pub fn trunk(&self, name: &str) -> Option<&TrunkSettings> {
        self.trunks.iter().find(|t| t.name == name)
    }

    /// The trunk owning a source address, if any.
    pub fn trunk_for(&self, ip: IpAddr) -> Option<&TrunkSettings> {
        let ip = canonical_ip(ip);
        self.trunks.iter().find(|t| t.networks.iter().any(|n| n.contains(&ip)))
    }
}

/// An IPv4-mapped IPv6 address compares as the IPv4 address it carries.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}
