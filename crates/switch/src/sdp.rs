//! SDP offer/answer (RFC 3264) for SIP legs, as the B2BUA needs it.
//!
//! Three steps, all pure (no I/O, no clock):
//! - [`SdpSession::parse`] turns a body into Tandem's model of the session: every
//!   m-line in order (so an answer can reject the ones we do not take, RFC 3264 §6),
//!   with the audio details (codecs, telephone-event, ptime, direction, rtcp-mux).
//! - [`negotiate`] (we answer) and [`read_answer`] (we offered) decide the audio
//!   against what Tandem supports: PCMU, PCMA and telephone-event/8000.
//! - [`LocalSession`] writes this leg's offers and answers with the relay's
//!   anchored address, keeping the o= line stable and its version current (§8).
//!
//! The `sdp` crate does the line parsing and the writing, but it refuses things
//! real phones send, so `clean_for_crate` first rewrites the body into the
//! canonical order it accepts: see that function for the list.

use std::fmt;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use ::sdp::description::common::{Address, Attribute, ConnectionInformation};
use ::sdp::description::media::{MediaDescription, MediaName, RangedPort};
use ::sdp::description::session::{Origin as CrateOrigin, SessionDescription, TimeDescription, Timing};

#[cfg(test)]
mod tests;

/// Bodies longer than this are refused before parsing (a SIP-leg SDP is ~500 bytes).
pub const MAX_SDP_LEN: usize = 32 * 1024;
/// More m-lines than this are refused: no phone sends that many.
pub const MAX_MEDIA_LINES: usize = 16;

/// Why a body could not be read. The texts are meant for a SIP reason phrase:
/// anything quoted from the body is cut short and stripped of control bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP: empty body")]
    Empty,
    #[error("SDP: body too large ({len} bytes, limit {limit})", limit = MAX_SDP_LEN)]
    TooLarge { len: usize },
    #[error("SDP: line {line}: expected <type>=<value>")]
    BadLine { line: usize },
    #[error("SDP: missing {0} line")]
    Missing(&'static str),
    #[error("SDP: bad v= line (only v=0 exists)")]
    BadVersion,
    #[error("SDP: bad o= line: {0}")]
    BadOrigin(&'static str),
    /// `scope` is `session` or `m=audio line 1`.
    #[error("SDP: {scope}: bad c= line: {fault}")]
    BadConnection { scope: String, fault: String },
    /// `index` counts m-lines from 1, in the order of the body.
    #[error("SDP: m={media} line {index}: {fault}")]
    BadMedia { index: usize, media: String, fault: String },
    #[error("SDP: more than {limit} m= lines", limit = MAX_MEDIA_LINES)]
    TooManyMedia,
    #[error("SDP: no audio stream")]
    NoAudio,
    /// The `sdp` crate refused the cleaned body (should not happen; kept for safety).
    #[error("SDP: {0}")]
    Malformed(String),
}

impl SdpError {
    /// The SIP status to answer an offer with: 488 when the SDP is readable but
    /// offers nothing we can take, 400 when it is broken.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::NoAudio => 488,
            _ => 400,
        }
    }
}

/// The offer cannot be accepted (answer 488 Not Acceptable Here); the text says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAcceptable(pub String);

/// Media direction (RFC 3264 §5.1), from the point of view of whoever wrote the SDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn parse(attribute: &str) -> Option<Direction> {
        const ALL: [Direction; 4] =
            [Direction::SendRecv, Direction::SendOnly, Direction::RecvOnly, Direction::Inactive];
        ALL.into_iter().find(|d| d.as_str().eq_ignore_ascii_case(attribute))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }
}

/// The direction to put in an answer (RFC 3264 §6.1): we send only if the offerer
/// receives and we want to send, and receive only if it sends and we want to
/// receive. `wish` is our own wish: `SendRecv` normally, `SendOnly` or `Inactive`
/// when we hold. So a `sendonly` offer gets `recvonly`, never `sendrecv`.
pub fn answer_direction(offered: Direction, wish: Direction) -> Direction {
    Direction::from_flags(offered.receives() && wish.sends(), offered.sends() && wish.receives())
}

/// The transport of an m-line. Only `RtpAvp` is accepted today; the secure
/// profiles are named so that the 488 says what was offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    RtpAvp,
    RtpAvpf,
    RtpSavp,
    RtpSavpf,
    UdpTlsRtpSavp,
    UdpTlsRtpSavpf,
    /// Anything else, as written (`udptl`, `UDP/BFCP`, `TCP/MSRP`, ...).
    Other(String),
}

impl Protocol {
    const KNOWN: [Protocol; 6] = [
        Protocol::RtpAvp,
        Protocol::RtpAvpf,
        Protocol::RtpSavp,
        Protocol::RtpSavpf,
        Protocol::UdpTlsRtpSavp,
        Protocol::UdpTlsRtpSavpf,
    ];

    pub fn parse(token: &str) -> Protocol {
        Protocol::KNOWN
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(token))
            .unwrap_or_else(|| Protocol::Other(token.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Protocol::RtpAvp => "RTP/AVP",
            Protocol::RtpAvpf => "RTP/AVPF",
            Protocol::RtpSavp => "RTP/SAVP",
            Protocol::RtpSavpf => "RTP/SAVPF",
            Protocol::UdpTlsRtpSavp => "UDP/TLS/RTP/SAVP",
            Protocol::UdpTlsRtpSavpf => "UDP/TLS/RTP/SAVPF",
            Protocol::Other(s) => s,
        }
    }

    /// SRTP of any kind (SDES or DTLS).
    pub fn is_secure(&self) -> bool {
        self.as_str().to_ascii_uppercase().contains("SAVP")
    }

    /// Its formats are RTP payload types.
    pub fn is_rtp(&self) -> bool {
        self.as_str().to_ascii_uppercase().split('/').any(|t| t == "RTP")
    }
}

/// One RTP payload format of an m-line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codec {
    pub payload_type: u8,
    /// As written in the rtpmap (`PCMU`, `telephone-event`); compare ignoring case.
    pub name: String,
    pub clock_rate: u32,
    pub channels: u16,
    /// The `a=fmtp:` parameters for this payload type, if any.
    pub fmtp: Option<String>,
}

impl Codec {
    pub fn new(payload_type: u8, name: &str, clock_rate: u32) -> Codec {
        Codec { payload_type, name: name.to_string(), clock_rate, channels: 1, fmtp: None }
    }

    pub fn pcmu() -> Codec {
        Codec::new(0, "PCMU", 8000)
    }

    pub fn pcma() -> Codec {
        Codec::new(8, "PCMA", 8000)
    }

    /// RFC 4733 events at 8 kHz: DTMF 0-15 and flash (16).
    pub fn telephone_event(payload_type: u8) -> Codec {
        Codec { fmtp: Some("0-16".to_string()), ..Codec::new(payload_type, "telephone-event", 8000) }
    }

    /// The same encoding, whatever payload type each side gave it.
    pub fn same_codec(&self, other: &Codec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.clock_rate == other.clock_rate
            && self.channels == other.channels
    }

    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }

    fn label(&self) -> String {
        printable(&format!("{}/{}", self.name, self.clock_rate))
    }
}

/// What Tandem can carry: the relay passes G.711 through and speaks RFC 4733.
fn tandem_supports(codec: &Codec) -> bool {
    codec.same_codec(&Codec::pcmu()) || codec.same_codec(&Codec::pcma())
}

fn is_supported_telephone_event(codec: &Codec) -> bool {
    codec.is_telephone_event() && codec.clock_rate == 8000
}

/// RFC 3551 static audio payload types, for m-lines without an rtpmap.
fn static_codec(payload_type: u8) -> Option<Codec> {
    let (name, rate, channels) = match payload_type {
        0 => ("PCMU", 8000, 1),
        3 => ("GSM", 8000, 1),
        4 => ("G723", 8000, 1),
        5 => ("DVI4", 8000, 1),
        6 => ("DVI4", 16000, 1),
        7 => ("LPC", 8000, 1),
        8 => ("PCMA", 8000, 1),
        9 => ("G722", 8000, 1),
        10 => ("L16", 44100, 2),
        11 => ("L16", 44100, 1),
        12 => ("QCELP", 8000, 1),
        13 => ("CN", 8000, 1),
        14 => ("MPA", 90000, 1),
        15 => ("G728", 8000, 1),
        16 => ("DVI4", 11025, 1),
        17 => ("DVI4", 22050, 1),
        18 => ("G729", 8000, 1),
        _ => return None,
    };
    Some(Codec { channels, ..Codec::new(payload_type, name, rate) })
}

/// The o= line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    pub session_version: u64,
    pub address: String,
}

/// One m-line with what applies to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaLine {
    /// `audio`, `video`, `image`, ...
    pub media: String,
    /// 0: the stream is rejected or disabled.
    pub port: u16,
    pub protocol: Protocol,
    /// The m= line's format tokens as written (kept to write a rejection back).
    pub formats: Vec<String>,
    /// Media-level c= or else the session-level one.
    pub connection: Option<IpAddr>,
    /// Media-level attribute, else session-level, else `sendrecv`.
    pub direction: Direction,
    /// The RTP formats we could name (rtpmap or static type), in the m= line's
    /// order of preference, telephone-event included. Empty for non-RTP lines.
    pub codecs: Vec<Codec>,
    pub ptime: Option<u32>,
    pub rtcp_mux: bool,
    /// From `a=rtcp:` (RFC 3605); RTCP is on port + 1 without it.
    pub rtcp_port: Option<u16>,
}

impl MediaLine {
    pub fn is_audio(&self) -> bool {
        self.media.eq_ignore_ascii_case("audio")
    }

    /// The telephone-event/8000 format, if offered.
    pub fn telephone_event(&self) -> Option<&Codec> {
        self.codecs.iter().find(|c| is_supported_telephone_event(c))
    }

    /// The codecs proper, telephone-event left out.
    pub fn audio_codecs(&self) -> impl Iterator<Item = &Codec> {
        self.codecs.iter().filter(|c| !c.is_telephone_event())
    }

    /// Where the peer wants its RTP; `None` for a rejected stream or a 0.0.0.0 hold.
    pub fn rtp_address(&self) -> Option<SocketAddr> {
        let ip = self.connection.filter(|ip| !ip.is_unspecified())?;
        (self.port != 0).then(|| SocketAddr::new(ip, self.port))
    }

    /// Where the peer wants its RTCP: the RTP port with rtcp-mux, else `a=rtcp:`, else port + 1.
    pub fn rtcp_address(&self) -> Option<SocketAddr> {
        let rtp = self.rtp_address()?;
        let port = if self.rtcp_mux { Some(rtp.port()) } else { self.rtcp_port.or(rtp.port().checked_add(1)) };
        port.map(|p| SocketAddr::new(rtp.ip(), p))
    }

    /// sendonly, inactive, or the old RFC 2543 form `c=IN IP4 0.0.0.0`.
    pub fn is_hold(&self) -> bool {
        matches!(self.direction, Direction::SendOnly | Direction::Inactive)
            || self.connection.is_some_and(|ip| ip.is_unspecified())
    }

    /// The same m-line, rejected (port 0, RFC 3264 §6): only the m= line is
    /// written back, so the model keeps only what reading that line gives.
    fn rejected(&self, connection: Option<IpAddr>) -> MediaLine {
        MediaLine {
            media: self.media.clone(),
            port: 0,
            protocol: self.protocol.clone(),
            formats: self.formats.clone(),
            connection,
            direction: Direction::SendRecv,
            codecs: derive_codecs(&self.protocol, &self.formats, &[]),
            ptime: None,
            rtcp_mux: false,
            rtcp_port: None,
        }
    }
}

/// A parsed SDP body: Tandem's model of one side's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdpSession {
    pub origin: Origin,
    /// The session-level c= address, if there is one.
    pub connection: Option<IpAddr>,
    /// Every m-line, in order (an answer has as many, RFC 3264 §6).
    pub media: Vec<MediaLine>,
}

impl SdpSession {
    /// Reads an SDP body (offer or answer). Tolerates bare LF, blank lines,
    /// stray whitespace, missing s= and t=, lines out of order, and m-lines of
    /// kinds the `sdp` crate does not know. Needs at least one m=audio line.
    pub fn parse(body: &[u8]) -> Result<SdpSession, SdpError> {
        if body.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLarge { len: body.len() });
        }
        // Session names are sometimes Latin-1; nothing we use is outside ASCII.
        let text = String::from_utf8_lossy(body);
        let cleaned = clean_for_crate(&text)?;
        let desc = SessionDescription::unmarshal(&mut Cursor::new(cleaned.text.as_bytes()))
            .map_err(|e| SdpError::Malformed(printable(&e.to_string())))?;
        if desc.media_descriptions.len() != cleaned.media.len() {
            return Err(SdpError::Malformed("m= lines lost while parsing".to_string()));
        }

        let connection = desc.connection_information.as_ref().and_then(connection_ip);
        let session_direction = direction_of(&desc.attributes);
        let mut media = Vec::with_capacity(cleaned.media.len());
        for (index, (head, md)) in cleaned.media.into_iter().zip(&desc.media_descriptions).enumerate() {
            let line = MediaLine {
                connection: md.connection_information.as_ref().and_then(connection_ip).or(connection),
                direction: direction_of(&md.attributes).or(session_direction).unwrap_or(Direction::SendRecv),
                codecs: derive_codecs(&head.protocol, &head.formats, &md.attributes),
                ptime: attribute(&md.attributes, "ptime").and_then(|v| v.trim().parse().ok()).filter(|&p| p > 0),
                rtcp_mux: md.attributes.iter().any(|a| a.key.eq_ignore_ascii_case("rtcp-mux")),
                rtcp_port: attribute(&md.attributes, "rtcp")
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .filter(|&p| p != 0),
                media: head.media,
                port: head.port,
                protocol: head.protocol,
                formats: head.formats,
            };
            if line.is_audio() && line.port != 0 && line.connection.is_none() {
                return Err(SdpError::BadMedia {
                    index: index + 1,
                    media: printable(&line.media),
                    fault: "no c= line (neither session nor media level)".to_string(),
                });
            }
            media.push(line);
        }
        if !media.iter().any(MediaLine::is_audio) {
            return Err(SdpError::NoAudio);
        }
        let o = &desc.origin;
        let origin = Origin {
            username: o.username.clone(),
            session_id: o.session_id,
            session_version: o.session_version,
            address: o.unicast_address.clone(),
        };
        Ok(SdpSession { origin, connection, media })
    }

    /// The audio m-line that counts: the first one in use, else the first one.
    pub fn audio_index(&self) -> Option<usize> {
        let active = self.media.iter().position(|m| m.is_audio() && m.port != 0);
        active.or_else(|| self.media.iter().position(MediaLine::is_audio))
    }

    pub fn audio(&self) -> Option<&MediaLine> {
        self.audio_index().and_then(|i| self.media.get(i))
    }

    /// The offer puts the call on hold: its audio is sendonly or inactive, or
    /// its address is 0.0.0.0.
    pub fn is_hold(&self) -> bool {
        self.audio().is_some_and(MediaLine::is_hold)
    }

    /// Same o= session and version as `previous`: the peer says nothing changed
    /// (RFC 3264 §8), e.g. a session-timer refresh.
    pub fn same_version_as(&self, previous: &SdpSession) -> bool {
        self.origin == previous.origin
    }

    fn same_content(&self, other: &SdpSession) -> bool {
        self.connection == other.connection && self.media == other.media
    }

    fn to_crate(&self) -> SessionDescription {
        let origin = CrateOrigin {
            username: self.origin.username.clone(),
            session_id: self.origin.session_id,
            session_version: self.origin.session_version,
            network_type: "IN".to_string(),
            address_type: address_type(self.origin.address.parse().ok()).to_string(),
            unicast_address: self.origin.address.clone(),
        };
        SessionDescription {
            version: 0,
            origin,
            session_name: "-".to_string(),
            connection_information: self.connection.map(connection_information),
            time_descriptions: vec![TimeDescription {
                timing: Timing { start_time: 0, stop_time: 0 },
                repeat_times: vec![],
            }],
            media_descriptions: self.media.iter().map(|m| m.to_crate(self.connection)).collect(),
            ..SessionDescription::default()
        }
    }
}

/// Writes the body (CRLF line ends) through the `sdp` crate.
impl fmt::Display for SdpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_crate().marshal())
    }
}

impl MediaLine {
    fn to_crate(&self, session_connection: Option<IpAddr>) -> MediaDescription {
        let mut attributes = Vec::new();
        // A rejected line is written as its m= line alone (RFC 3264 §6).
        if self.port != 0 {
            let attr = |key: &str, value: Option<String>| Attribute::new(key.to_string(), value);
            for c in &self.codecs {
                let channels = if c.channels == 1 { String::new() } else { format!("/{}", c.channels) };
                let map = format!("{} {}/{}{}", c.payload_type, c.name, c.clock_rate, channels);
                attributes.push(attr("rtpmap", Some(map)));
            }
            for c in &self.codecs {
                if let Some(fmtp) = &c.fmtp {
                    attributes.push(attr("fmtp", Some(format!("{} {}", c.payload_type, fmtp))));
                }
            }
            if let Some(ptime) = self.ptime {
                attributes.push(attr("ptime", Some(ptime.to_string())));
            }
            if let Some(port) = self.rtcp_port {
                attributes.push(attr("rtcp", Some(port.to_string())));
            }
            if self.rtcp_mux {
                attributes.push(attr("rtcp-mux", None));
            }
            attributes.push(attr(self.direction.as_str(), None));
        }
        let connection = self.connection.filter(|&ip| Some(ip) != session_connection);
        MediaDescription {
            media_name: MediaName {
                media: self.media.clone(),
                port: RangedPort { value: self.port as isize, range: None },
                // One token holding the slashes: the crate joins tokens with '/'.
                protos: vec![self.protocol.as_str().to_string()],
                formats: self.formats.clone(),
            },
            connection_information: connection.map(connection_information),
            attributes,
            ..MediaDescription::default()
        }
    }
}

/// Resumed: the previous offer held and this one is sendrecv on a real address.
pub fn is_resume(previous: &SdpSession, current: &SdpSession) -> bool {
    previous.is_hold() && current.audio().is_some_and(|a| a.direction == Direction::SendRecv && !a.is_hold())
}

/// The audio Tandem writes for one leg. Payload types are this leg's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioParams {
    /// In order of preference; telephone-event is not in here.
    pub codecs: Vec<Codec>,
    pub telephone_event: Option<Codec>,
    pub ptime: Option<u32>,
    /// What Tandem does on this leg, as written in Tandem's SDP.
    pub direction: Direction,
    pub rtcp_mux: bool,
}

impl AudioParams {
    /// What Tandem offers when it starts a session itself: PCMU, PCMA,
    /// telephone-event on 101, 20 ms, sendrecv. No rtcp-mux: an offerer cannot
    /// know the peer takes it, and then needs the RTCP port anyway.
    pub fn tandem_default() -> AudioParams {
        AudioParams {
            codecs: vec![Codec::pcmu(), Codec::pcma()],
            telephone_event: Some(Codec::telephone_event(101)),
            ptime: Some(20),
            direction: Direction::SendRecv,
            rtcp_mux: false,
        }
    }

    /// Keeps only the codecs `other` also has (with this leg's payload types),
    /// and telephone-event only if both have it: what can be relayed between
    /// this leg and the other one without transcoding.
    pub fn restricted_to(&self, other: &AudioParams) -> Result<AudioParams, NotAcceptable> {
        let codecs: Vec<Codec> =
            self.codecs.iter().filter(|c| other.codecs.iter().any(|o| o.same_codec(c))).cloned().collect();
        if codecs.is_empty() {
            return Err(NotAcceptable("no codec common to both call legs".to_string()));
        }
        let telephone_event = self.telephone_event.clone().filter(|_| other.telephone_event.is_some());
        Ok(AudioParams { codecs, telephone_event, ..self.clone() })
    }
}

/// The audio agreed on one leg, from [`negotiate`] or [`read_answer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioAgreement {
    /// Which m-line carries the audio (the others are rejected).
    pub media_index: usize,
    /// Codecs in the offerer's order of preference, with this leg's payload types.
    pub audio: AudioParams,
    /// Where the peer wants RTP; `None` while it is on hold with 0.0.0.0.
    pub remote_rtp: Option<SocketAddr>,
    /// Where the peer wants RTCP (the RTP address with rtcp-mux).
    pub remote_rtcp: Option<SocketAddr>,
}

/// Decides how Tandem answers `offer`: the first m=audio line in use with
/// RTP/AVP and a codec we support wins. `wish` is our own direction wish
/// (see [`answer_direction`]).
pub fn negotiate(offer: &SdpSession, wish: Direction) -> Result<AudioAgreement, NotAcceptable> {
    let candidates: Vec<(usize, &MediaLine)> =
        offer.media.iter().enumerate().filter(|(_, m)| m.is_audio() && m.port != 0).collect();
    let Some(&(_, first)) = candidates.first() else {
        return Err(NotAcceptable("audio stream disabled (port 0)".to_string()));
    };
    for &(index, line) in &candidates {
        let codecs: Vec<Codec> = line.audio_codecs().filter(|c| tandem_supports(c)).cloned().collect();
        if line.protocol != Protocol::RtpAvp || codecs.is_empty() {
            continue;
        }
        let audio = AudioParams {
            codecs,
            telephone_event: line.telephone_event().cloned(),
            ptime: line.ptime,
            direction: answer_direction(line.direction, wish),
            rtcp_mux: line.rtcp_mux,
        };
        return Ok(AudioAgreement {
            media_index: index,
            audio,
            remote_rtp: line.rtp_address(),
            remote_rtcp: line.rtcp_address(),
        });
    }
    Err(NotAcceptable(refusal_reason(first)))
}

/// Reads the answer to an offer Tandem made (`our_offer`, as [`LocalSession`]
/// wrote it): which codecs the peer took, with the payload types of its answer.
pub fn read_answer(our_offer: &SdpSession, answer: &SdpSession) -> Result<AudioAgreement, NotAcceptable> {
    let Some(index) = our_offer.audio_index() else {
        return Err(NotAcceptable("our offer has no audio".to_string()));
    };
    let Some(offered) = our_offer.media.get(index) else {
        return Err(NotAcceptable("our offer has no audio".to_string()));
    };
    let line = match answer.media.get(index) {
        Some(line) if line.is_audio() && line.port != 0 => line,
        _ => return Err(NotAcceptable("the answer rejects the audio stream".to_string())),
    };
    if line.protocol != offered.protocol {
        return Err(NotAcceptable(format!("the answer changes the protocol to {}", printable(line.protocol.as_str()))));
    }
    let codecs: Vec<Codec> = line
        .audio_codecs()
        .filter(|c| tandem_supports(c) && offered.codecs.iter().any(|o| o.same_codec(c)))
        .cloned()
        .collect();
    if codecs.is_empty() {
        return Err(NotAcceptable("the answer has no codec we offered".to_string()));
    }
    let audio = AudioParams {
        codecs,
        telephone_event: line.telephone_event().filter(|_| offered.telephone_event().is_some()).cloned(),
        ptime: line.ptime,
        // Same rule as for an answer we write, seen from our side.
        direction: answer_direction(line.direction, offered.direction),
        rtcp_mux: offered.rtcp_mux && line.rtcp_mux,
    };
    Ok(AudioAgreement { media_index: index, audio, remote_rtp: line.rtp_address(), remote_rtcp: line.rtcp_address() })
}

fn refusal_reason(line: &MediaLine) -> String {
    if line.protocol.is_secure() {
        return format!("secure media ({}) not supported", printable(line.protocol.as_str()));
    }
    if line.protocol != Protocol::RtpAvp {
        return format!("media protocol {} not supported", printable(line.protocol.as_str()));
    }
    let offered: Vec<String> = line.audio_codecs().take(8).map(Codec::label).collect();
    let offered = if offered.is_empty() { "none we can name".to_string() } else { offered.join(" ") };
    format!("no common codec: offered {offered}; supported PCMU/8000 PCMA/8000")
}

/// Payload types of the same codecs on two legs, for the relay to rewrite
/// RTP headers (e.g. telephone-event 101 on leg A is 96 on leg B).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadTypeMap {
    /// (payload type on leg A, payload type on leg B)
    pairs: Vec<(u8, u8)>,
}

impl PayloadTypeMap {
    /// Pairs every codec and the telephone-event both legs agreed on.
    pub fn between(leg_a: &AudioParams, leg_b: &AudioParams) -> PayloadTypeMap {
        let b_formats: Vec<&Codec> = leg_b.codecs.iter().chain(&leg_b.telephone_event).collect();
        let pairs = leg_a
            .codecs
            .iter()
            .chain(&leg_a.telephone_event)
            .filter_map(|a| b_formats.iter().find(|b| b.same_codec(a)).map(|b| (a.payload_type, b.payload_type)))
            .collect();
        PayloadTypeMap { pairs }
    }

    pub fn a_to_b(&self, payload_type: u8) -> Option<u8> {
        self.pairs.iter().find(|p| p.0 == payload_type).map(|p| p.1)
    }

    pub fn b_to_a(&self, payload_type: u8) -> Option<u8> {
        self.pairs.iter().find(|p| p.1 == payload_type).map(|p| p.0)
    }

    pub fn pairs(&self) -> &[(u8, u8)] {
        &self.pairs
    }

    /// Nothing to rewrite: the relay can pass headers through.
    pub fn is_identity(&self) -> bool {
        self.pairs.iter().all(|(a, b)| a == b)
    }
}

/// Tandem's side of the SDP on one leg: a stable o= session id, a version that
/// grows whenever what we send changes (RFC 3264 §8), and the last SDP sent, so
/// that a new offer keeps the m-lines already in the session.
#[derive(Clone, Debug)]
pub struct LocalSession {
    session_id: u64,
    version: u64,
    address: IpAddr,
    last_sent: Option<SdpSession>,
}

impl LocalSession {
    /// `session_id` is the caller's (random) choice; `address` goes into o=.
    pub fn new(session_id: u64, address: IpAddr) -> LocalSession {
        // Some stacks read o= numbers as signed 64-bit: keep below 2^62.
        LocalSession { session_id: session_id & (u64::MAX >> 2), version: 1, address, last_sent: None }
    }

    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The version of the last SDP written (1 for the first).
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn last_sent(&self) -> Option<&SdpSession> {
        self.last_sent.as_ref()
    }

    /// An offer for this leg: our audio on `relay` (the relay's address and port
    /// for this leg). A re-offer keeps the previous m-lines in place, the
    /// non-audio ones still rejected (RFC 3264 §8).
    pub fn offer(&mut self, relay: SocketAddr, audio: &AudioParams) -> SdpSession {
        let ours = local_audio_line(relay, audio);
        let media = match &self.last_sent {
            Some(last) if !last.media.is_empty() => {
                let audio_at = last.audio_index().unwrap_or(0);
                let lines = last.media.iter().enumerate();
                lines
                    .map(|(i, line)| if i == audio_at { ours.clone() } else { line.rejected(Some(relay.ip())) })
                    .collect()
            }
            _ => vec![ours],
        };
        self.stamp(SdpSession { origin: self.origin(), connection: Some(relay.ip()), media })
    }

    /// The answer to `offer` on this leg: the agreed audio on `relay`, every
    /// other m-line of the offer rejected with port 0, in the same order.
    pub fn answer(&mut self, offer: &SdpSession, agreed: &AudioAgreement, relay: SocketAddr) -> SdpSession {
        let media = offer
            .media
            .iter()
            .enumerate()
            .map(|(i, line)| {
                if i == agreed.media_index {
                    local_audio_line(relay, &agreed.audio)
                } else {
                    line.rejected(Some(relay.ip()))
                }
            })
            .collect();
        self.stamp(SdpSession { origin: self.origin(), connection: Some(relay.ip()), media })
    }

    fn origin(&self) -> Origin {
        Origin {
            username: "tandem".to_string(),
            session_id: self.session_id,
            session_version: self.version,
            address: self.address.to_string(),
        }
    }

    /// Bumps the version if the content differs from the last SDP sent.
    fn stamp(&mut self, mut sdp: SdpSession) -> SdpSession {
        if self.last_sent.as_ref().is_some_and(|last| !last.same_content(&sdp)) {
            self.version = self.version.wrapping_add(1);
        }
        sdp.origin = self.origin();
        self.last_sent = Some(sdp.clone());
        sdp
    }
}

fn local_audio_line(relay: SocketAddr, audio: &AudioParams) -> MediaLine {
    let codecs: Vec<Codec> = audio.codecs.iter().chain(&audio.telephone_event).cloned().collect();
    MediaLine {
        media: "audio".to_string(),
        port: relay.port(),
        protocol: Protocol::RtpAvp,
        formats: codecs.iter().map(|c| c.payload_type.to_string()).collect(),
        connection: Some(relay.ip()),
        direction: audio.direction,
        codecs,
        ptime: audio.ptime,
        rtcp_mux: audio.rtcp_mux,
        rtcp_port: None,
    }
}

// ---- reading ----

/// An m= line as we parsed it ourselves.
#[derive(Debug)]
struct MediaHead {
    media: String,
    port: u16,
    protocol: Protocol,
    formats: Vec<String>,
}

/// The body rewritten for the `sdp` crate, and the m= lines we read ourselves.
#[derive(Debug)]
struct Cleaned {
    text: String,
    media: Vec<MediaHead>,
}

/// Rewrites a body into the strict shape the `sdp` crate 0.17.2 accepts, which
/// refuses, among what phones really send:
/// - a missing `s=` or `t=` line (we add `s=-` and `t=0 0`);
/// - session lines out of RFC 4566 order, e.g. `c=` after `t=` or `a=` before
///   `t=` (we write them in order);
/// - a line starting with whitespace, trailing junk after the last line;
/// - `b=`, `u=`, `r=`, `z=`, `k=` values it cannot parse (we drop those and the
///   other lines we do not use: i, e, p, and unknown letters);
/// - m-lines whose media or protocol is outside its fixed lists (`UDP/BFCP`,
///   `TCP/MSRP`, `TCP/RTP/AVP`): we parse every m= line ourselves, for precise
///   errors, and hand the crate a stand-in line that carries the section's
///   c= and a= lines.
///
/// o= and c= are checked here so that their errors name the fault.
fn clean_for_crate(text: &str) -> Result<Cleaned, SdpError> {
    let mut version = None;
    let mut origin = None;
    let mut name = None;
    let mut connection = None;
    let mut session_attributes = Vec::new();
    // Per m-line: the m= line we parsed, its first c=, its a= lines.
    let mut sections: Vec<(MediaHead, Option<IpAddr>, Vec<&str>)> = Vec::new();
    let mut blank = true;

    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if line.is_empty() {
            continue;
        }
        blank = false;
        let bytes = line.as_bytes();
        if bytes.len() < 2 || !bytes[0].is_ascii_lowercase() || bytes[1] != b'=' {
            return Err(SdpError::BadLine { line: n + 1 });
        }
        let (kind, value) = (bytes[0], line[2..].trim());
        if kind == b'm' {
            if sections.len() == MAX_MEDIA_LINES {
                return Err(SdpError::TooManyMedia);
            }
            sections.push((parse_media_head(value, sections.len() + 1)?, None, Vec::new()));
            continue;
        }
        let index = sections.len(); // the number of the m-line being read, 0 before any
        match (kind, sections.last_mut()) {
            (b'v', None) if version.is_none() => version = Some(value),
            (b'o', None) if origin.is_none() => origin = Some(check_origin(value)?),
            (b's', None) if name.is_none() => name = Some(value),
            (b'c', None) if connection.is_none() => connection = Some(parse_connection(value, "session")?),
            (b'a', None) => session_attributes.push(value),
            (b'c', Some((head, c, _))) if c.is_none() => {
                *c = Some(parse_connection(value, &format!("m={} line {index}", printable(&head.media)))?)
            }
            (b'a', Some((_, _, attributes))) => attributes.push(value),
            _ => {} // not used by us; see above
        }
    }

    if blank {
        return Err(SdpError::Empty);
    }
    match version {
        None => return Err(SdpError::Missing("v=0")),
        Some(v) if v != "0" => return Err(SdpError::BadVersion),
        Some(_) => {}
    }
    let Some(origin) = origin else { return Err(SdpError::Missing("o=")) };

    let mut out = String::with_capacity(text.len() + 32);
    let mut push = |kind: &str, value: &str| {
        out.push_str(kind);
        out.push_str(value);
        out.push_str("\r\n");
    };
    push("v=", "0");
    push("o=", &origin);
    push("s=", name.filter(|s| !s.is_empty()).unwrap_or("-"));
    if let Some(ip) = connection {
        push("c=", &connection_line(ip));
    }
    push("t=", "0 0");
    for a in &session_attributes {
        push("a=", a);
    }
    let mut media = Vec::with_capacity(sections.len());
    for (head, c, attributes) in sections {
        push("m=", "audio 9 RTP/AVP 0"); // the stand-in; `head` is the real line
        if let Some(ip) = c {
            push("c=", &connection_line(ip));
        }
        for a in &attributes {
            push("a=", a);
        }
        media.push(head);
    }
    Ok(Cleaned { text: out, media })
}

/// `<media> <port>[/<count>] <proto> <fmt> ...`
fn parse_media_head(value: &str, index: usize) -> Result<MediaHead, SdpError> {
    let mut tokens = value.split_whitespace();
    let media = tokens.next().unwrap_or("");
    let fault = |fault: String| SdpError::BadMedia { index, media: printable(media), fault };
    let port = tokens.next().ok_or_else(|| fault("no port".to_string()))?;
    let port =
        port.split('/').next().and_then(|p| p.parse::<u16>().ok()).ok_or_else(|| fault("bad port".to_string()))?;
    let protocol = Protocol::parse(tokens.next().ok_or_else(|| fault("no protocol".to_string()))?);
    let formats: Vec<String> = tokens.map(str::to_string).collect();
    if formats.is_empty() {
        return Err(fault("no formats".to_string()));
    }
    if protocol.is_rtp()
        && let Some(bad) = formats.iter().find(|f| f.parse::<u8>().map_or(true, |pt| pt > 127))
    {
        return Err(fault(format!("bad payload type \"{}\"", printable(bad))));
    }
    Ok(MediaHead { media: media.to_string(), port, protocol, formats })
}

/// Checks `<username> <sess-id> <sess-version> IN IP4|IP6 <address>` and
/// returns it with single spaces and upper-case tokens.
fn check_origin(value: &str) -> Result<String, SdpError> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [username, id, version, net, addr_type, address] = fields[..] else {
        return Err(SdpError::BadOrigin("expected 6 fields"));
    };
    if id.parse::<u64>().is_err() {
        return Err(SdpError::BadOrigin("session id is not a 64-bit number"));
    }
    if version.parse::<u64>().is_err() {
        return Err(SdpError::BadOrigin("session version is not a 64-bit number"));
    }
    let addr_type = addr_type.to_ascii_uppercase();
    if !net.eq_ignore_ascii_case("IN") || !(addr_type == "IP4" || addr_type == "IP6") {
        return Err(SdpError::BadOrigin("expected IN IP4 or IN IP6"));
    }
    Ok(format!("{username} {id} {version} IN {addr_type} {address}"))
}

/// `IN IP4|IP6 <address>[/ttl[/count]]` to the address.
fn parse_connection(value: &str, scope: &str) -> Result<IpAddr, SdpError> {
    let fault = |fault: String| SdpError::BadConnection { scope: scope.to_string(), fault };
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [net, addr_type, address, ..] = fields[..] else {
        return Err(fault("expected IN IP4 <address>".to_string()));
    };
    let addr_type = addr_type.to_ascii_uppercase();
    if !net.eq_ignore_ascii_case("IN") || !(addr_type == "IP4" || addr_type == "IP6") {
        return Err(fault("expected IN IP4 or IN IP6".to_string()));
    }
    let address = address.split('/').next().unwrap_or("");
    address.parse().map_err(|_| fault(format!("\"{}\" is not an IP address", printable(address))))
}

fn connection_line(ip: IpAddr) -> String {
    format!("IN {} {ip}", address_type(Some(ip)))
}

fn address_type(ip: Option<IpAddr>) -> &'static str {
    match ip {
        Some(IpAddr::V6(_)) => "IP6",
        _ => "IP4",
    }
}

fn connection_information(ip: IpAddr) -> ConnectionInformation {
    ConnectionInformation {
        network_type: "IN".to_string(),
        address_type: address_type(Some(ip)).to_string(),
        address: Some(Address { address: ip.to_string(), ttl: None, range: None }),
    }
}

fn connection_ip(c: &ConnectionInformation) -> Option<IpAddr> {
    c.address.as_ref()?.address.split('/').next()?.parse().ok()
}

fn attribute<'a>(attributes: &'a [Attribute], key: &str) -> Option<&'a str> {
    attributes.iter().find(|a| a.key.eq_ignore_ascii_case(key)).and_then(|a| a.value.as_deref())
}

fn direction_of(attributes: &[Attribute]) -> Option<Direction> {
    attributes.iter().find_map(|a| Direction::parse(&a.key))
}

/// The RTP formats of an m-line we can name, in its order: rtpmap first, else
/// the static table. Dynamic types without an rtpmap are left out.
fn derive_codecs(protocol: &Protocol, formats: &[String], attributes: &[Attribute]) -> Vec<Codec> {
    if !protocol.is_rtp() {
        return Vec::new();
    }
    let mut codecs: Vec<Codec> = Vec::with_capacity(formats.len());
    for format in formats {
        let Ok(pt) = format.parse::<u8>() else { continue };
        if codecs.iter().any(|c| c.payload_type == pt) {
            continue;
        }
        let values = |key: &'static str| {
            attributes.iter().filter(move |a| a.key.eq_ignore_ascii_case(key)).filter_map(|a| a.value.as_deref())
        };
        let mapped = values("rtpmap").find_map(|v| parse_rtpmap(v, pt));
        let Some(mut codec) = mapped.or_else(|| static_codec(pt)) else { continue };
        codec.fmtp = values("fmtp").find_map(|v| {
            let (p, params) = v.trim().split_once(char::is_whitespace)?;
            (p.parse::<u8>().ok()? == pt).then(|| params.trim().to_string()).filter(|s| !s.is_empty())
        });
        codecs.push(codec);
    }
    codecs
}

/// `<pt> <name>/<rate>[/<channels>]` if it is for `pt`.
fn parse_rtpmap(value: &str, pt: u8) -> Option<Codec> {
    let (p, map) = value.trim().split_once(char::is_whitespace)?;
    if p.parse::<u8>().ok()? != pt {
        return None;
    }
    let mut parts = map.trim().split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let clock_rate = parts.next()?.trim().parse::<u32>().ok()?;
    let channels = match parts.next() {
        Some(c) => c.trim().parse::<u16>().ok()?,
        None => 1,
    };
    Some(Codec { channels, ..Codec::new(pt, name, clock_rate) })
}

/// Text from the body, fit to quote in an error: printable ASCII, 40 chars at most.
fn printable(s: &str) -> String {
    s.chars().take(40).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}
