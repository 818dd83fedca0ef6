use std::io;

use crate::session::{Leg, Mode};

/// Errors of the relay's API. Packet faults are not errors here: they are counted
/// in [`crate::LegStats`] and the packet is dropped.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("invalid media port range {min}-{max}: {reason}")]
    InvalidPortRange { min: u16, max: u16, reason: &'static str },
    #[error("media port range {min}-{max} exhausted: all {legs} legs are in use")]
    PortsExhausted { min: u16, max: u16, legs: usize },
    #[error(
        "media port range {min}-{max}: no free port could be bound after {attempts} attempts (last: port {port}: {source})"
    )]
    Bind { min: u16, max: u16, attempts: usize, port: u16, source: io::Error },
    #[error("invalid media relay config: {0}")]
    InvalidConfig(String),
    #[error("payload type {pt} is not usable: {reason}")]
    InvalidPayloadType { pt: u8, reason: &'static str },
    #[error("payload map has {count} entries, more than the {max} allowed")]
    TooManyPayloadTypes { count: usize, max: usize },
    #[error("mode {mode:?} needs leg B, but this call has only leg A")]
    NoLegB { mode: Mode },
    #[error("this call has no leg {leg:?}")]
    NoSuchLeg { leg: Leg },
    #[error("leg {leg:?} negotiated neither PCMU nor PCMA: a prompt cannot be played to it")]
    NoG711 { leg: Leg },
    #[error("the media of this call has stopped")]
    Stopped,
}
