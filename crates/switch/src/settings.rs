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
    pub networks: Vec<IpNet>,
}

#[derive(Clone, Debug)]
pub struct CoreSettings {
    pub user_agent: String,
    pub listeners: Vec<ListenerInfo>,
    pub endpoints: HashMap<String, EndpointSettings>,
    pub trunks: Vec<TrunkSettings>,
    pub timers: TimerConfig,
    pub max_transactions: usize,
    pub digest: DigestConfig,
    pub guard: GuardConfig,
    pub registrar: RegistrarConfig,
    pub dialplan: crate::dialplan::DialPlan,
}

impl CoreSettings {
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
