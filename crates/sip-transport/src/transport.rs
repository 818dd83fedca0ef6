//! Addresses of messages: which transport and flow a message came on, where a
//! message goes, and the RFC 3261 §18.2.2 / RFC 3581 rule for where responses go.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::header::Via;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    /// Stream transports deliver in order and retransmit themselves (RFC 3261 §17.1.1.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The name used in Via and in `transport=` URI parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    pub fn parse(s: &str) -> Option<Transport> {
        [Transport::Udp, Transport::Tcp, Transport::Tls, Transport::Ws, Transport::Wss]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stream connection (TCP, TLS, WS, WSS); UDP has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

/// Where a message came from: stamped by the transport on every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    pub transport: Transport,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// Index of the listener (in the order given to the transport layer) it arrived on.
    pub listener: usize,
    pub flow: Option<FlowId>,
}

/// Where to send a message. With a `flow`, that connection is used while it is
/// open; otherwise a connection to `remote` is reused or opened (streams), or the
/// datagram goes out of the listener's socket (UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: Transport,
    pub remote: SocketAddr,
    pub flow: Option<FlowId>,
    /// The listener to send from (UDP source port, and the TLS client config).
    pub listener: Option<usize>,
}

impl Target {
    /// Back to where `source` came from, on the same flow.
    pub fn reply_to(source: &Source) -> Target {
        Target {
            transport: source.transport,
            remote: source.remote,
            flow: source.flow,
            listener: Some(source.listener),
        }
    }
}

/// Where a response to a request with top Via `via`, received from `source`, goes
/// (RFC 3261 §18.2.2 with RFC 3581 §4). Returns `None` when the Via names a host
/// that would need DNS (sent-by without received, on an unreliable transport).
pub fn response_target(via: &Via<'_>, source: &Source) -> Option<Target> {
    if source.transport.is_reliable() {
        // Over the connection the request came on (falls back to `remote` if it closed).
        return Some(Target::reply_to(source));
    }
    // rport: the source address and port, whatever the Via says.
    if via.rport().is_some() {
        return Some(Target::reply_to(source));
    }
    let port = via.port.unwrap_or(5060);
    let ip = match via.received().and_then(|r| r.trim_matches(['[', ']']).parse::<IpAddr>().ok()) {
        Some(ip) => ip,
        None => {
            // received is added whenever sent-by differs from the source, so a
            // missing one means sent-by is the source address.
            let host = via.host.trim_matches(['[', ']']);
            match host.parse::<IpAddr>() {
                Ok(ip) if ip == source.remote.ip() => ip,
                // sent-by is a name or another address: the source is where it really is.
                _ => source.remote.ip(),
            }
        }
    };
    Some(Target {
        transport: source.transport,
        remote: SocketAddr::new(ip, port),
        flow: None,
        listener: Some(source.listener),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(t: Transport) -> Source {
        Source {
            transport: t,
            remote: "192.0.2.9:40000".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            listener: 0,
            flow: (t != Transport::Udp).then_some(FlowId(7)),
        }
    }

    #[test]
    fn udp_without_rport_goes_to_sent_by_port() {
        let via = Via::parse("SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bKa").unwrap();
        let t = response_target(&via, &src(Transport::Udp)).unwrap();
        assert_eq!(t.remote, "192.0.2.9:5070".parse().unwrap());
    }

    #[test]
    fn udp_with_rport_goes_to_source() {
        let via = Via::parse("SIP/2.0/UDP host.example:5070;branch=z9hG4bKa;rport").unwrap();
        let t = response_target(&via, &src(Transport::Udp)).unwrap();
        assert_eq!(t.remote, "192.0.2.9:40000".parse().unwrap());
    }

    #[test]
    fn stream_reuses_flow() {
        let via = Via::parse("SIP/2.0/TCP host.example;branch=z9hG4bKa").unwrap();
        let t = response_target(&via, &src(Transport::Tcp)).unwrap();
        assert_eq!(t.flow, Some(FlowId(7)));
    }
}
