//! The relay state of one call, sans-IO: packets and the time go in, where to
//! send them comes out. The driver owns the sockets; tests drive this directly
//! with a fake clock.
//!
//! # Latching (symmetric RTP)
//!
//! The address a leg's SDP advertises is only a hint: behind NAT it is a private
//! address. Per leg, RTP and RTCP each latch a source address:
//!
//! - Until latched, packets for the leg go to the SDP hint (RTCP: `a=rtcp`, or RTP
//!   port + 1, or the RTP address with rtcp-mux); with no hint they are dropped.
//! - The first valid packet (RTP version 2 with a payload type in the leg's map;
//!   for RTCP a valid RTCP header) latches its source, and the leg's packets go
//!   there from then on.
//! - Once latched, packets from any other source are dropped and counted, except
//!   that the source takes over the latch (a re-latch, counted) if
//!   1. it is the SDP hint itself: signalling says that is the peer; or
//!   2. the latched source has sent nothing valid for `relatch_after` (default
//!      2 s; `None` turns this off): the phone changed network or its NAT binding
//!      expired. A source that keeps talking cannot be hijacked.
//! - [`MediaSession::update_leg`] with a different hint forgets the latch and
//!   learns again (a re-INVITE to another device, or a transfer). No hint (absent,
//!   `0.0.0.0` as in RFC 2543 hold, or port 0) is never sent to, and does not
//!   disturb a latch.
//!
//! # Continuity
//!
//! Each receiving leg sees one RTP stream for the whole call: one SSRC, and
//! sequence numbers and timestamps that continue whatever feeds it. Per receiving
//! leg the relay keeps a sequence offset and a timestamp offset, added to every
//! packet it sends there. At the first packet they are zero and the SSRC is the
//! sender's (plain pass-through; for echo the SSRC is changed so a phone's loop
//! detection, RFC 3550 §8.2, never sees its own). They are recomputed at a
//! switch-over, which is: a new source (another SSRC, the other leg, or injected
//! media), a sequence jump beyond RFC 3550 A.1's limits (3000 ahead or 100
//! behind), or a mode change. Then the first packet of the new source is sent
//! with sequence = last sent + 1, timestamp = last sent audio timestamp + the
//! wall-clock time since it in the codec's clock, and the marker bit set so the
//! receiver's jitter buffer resynchronises. RTCP passes through unchanged, so
//! after a switch-over its SSRCs and timestamps no longer match the rewritten
//! stream; receivers treat that as an unknown source, which is harmless.
//!
//! # Modes
//!
//! - `Bridge`: A's packets go to B, B's to A.
//! - `Echo`: A's packets come back to A; anything from B is dropped.
//! - `Hold { held }`: no RTP is forwarded either way. The holder offered
//!   sendonly or inactive and was answered recvonly or inactive (RFC 3264 §6.1),
//!   so it must not receive; the held leg hears music on hold, which the driver
//!   sends with [`MediaSession::inject`]. RTCP still flows between the legs.
//!
//! # Injected media
//!
//! [`MediaSession::inject`] sends media the switch generates (a prompt, music
//! on hold) to a leg, continuing that leg's stream. In `Hold` nothing else is
//! sent to the held leg. In any other mode relayed packets would interleave
//! with the injected ones, every packet a switch-over, and the phone would
//! play both by turns; so while a leg is marked with
//! [`MediaSession::set_injecting`], relayed RTP for it is dropped (counted in
//! the sender's `dropped_by_mode`) and it hears only what is injected. The
//! other direction is untouched: a leg hearing a prompt is still heard.
//!
//! # Inactivity
//!
//! A leg is expected to send RTP in `Bridge` (both legs) and `Echo` (leg A); in
//! `Hold` neither is (phones stop sending on hold). Silence is measured from the
//! later of its last RTP packet and `start_grace` after the moment media became
//! expected (session start, mode change, `update_leg`). When it reaches
//! `rtp_timeout`, [`MediaSession::handle_timeout`] reports
//! [`MediaEvent::Inactive`] once; the next packet re-arms it.
//!
//! # One-way audio
//!
//! In `Bridge` each leg should hear the other. A leg is *silent* when it has
//! sent no accepted RTP for `one_way_after` (default 5 s; `None` turns this
//! off), silence measured as for inactivity: from the later of its last packet
//! and `start_grace` after media became expected. A leg is *sending* when its
//! last accepted packet is less than `one_way_after` old. When one leg is silent
//! while the other is sending, [`MediaSession::handle_timeout`] reports
//! [`MediaEvent::OneWay`] once, at the first moment both hold: when the silence
//! reaches `one_way_after` if the other leg is sending then, else at the other
//! leg's next packet. Both legs silent is not one-way audio (inactivity covers
//! it). The episode ends with [`MediaEvent::OneWayEnded`], once, when the silent
//! leg sends again, or when a mode change or [`MediaSession::update_leg`] re-arms
//! the detection as it re-arms inactivity; a leg still silent after that is
//! reported again, after a new grace. Each `OneWay` is followed by one
//! `OneWayEnded` unless the session ends first, so a counter of calls with
//! one-way audio stays right. In `Echo` and `Hold` nothing is reported.
//!
//! # Receive statistics
//!
//! Per leg, the RTP it sends (accepted packets only) is measured as an RTCP
//! receiver would (RFC 3550 A.1, A.3, A.8), per source: the source's first
//! packet starts it, and a new SSRC or a sequence jump by the A.1 rule above
//! starts a new one. Expected packets run from the first sequence number to the
//! extended highest; lost = expected - received, never below zero (duplicates
//! can outnumber losses). Counts of earlier sources are kept, so expected and
//! lost cover the whole call. A packet up to 100 behind the highest sequence
//! number is counted as reordered. Interarrival jitter is A.8's estimator,
//! computed in the clock of the packet's codec from the arrival time given to
//! [`MediaSession::on_rtp`]; telephone-events are left out (their timestamp is
//! the event's start), and a change of clock rate restarts the transit times.
//! It is reported in microseconds, for the current source, with its maximum over
//! the call.
//!
//! # Keys (DTMF)
//!
//! A key pressed on a leg becomes one [`MediaEvent::Digit`], which
//! [`MediaSession::take_digit`] hands out (the driver asks after each packet).
//!
//! - RFC 4733 telephone-events: all packets of one event share its start
//!   timestamp, so the timestamp names the event. An event is reported once, at
//!   its first end packet; its other end packets (three are sent) and any
//!   retransmission, however late, are not reported again. An event whose end
//!   packets were all lost is reported when the next event begins (a new
//!   timestamp, or a new SSRC, means the previous one ended); an event whose
//!   start was lost is read from the packets that did arrive. A packet of an
//!   event older than the current one (behind it in timestamp, same SSRC) is a
//!   late retransmission and is ignored. An event longer than the duration
//!   field can hold (8.2 s at 8 kHz) goes on in segments with new timestamps
//!   (RFC 4733 §2.5.1.3): a segment of the same event after one that reached
//!   the largest duration is the same press.
//! - In-band tones ([`LegParams::inband_dtmf`], for a leg that negotiated no
//!   telephone-event): the PCMU or PCMA audio the leg sends is decoded, 160
//!   samples at a time into a buffer on the stack, and fed to its
//!   [`InbandDtmf`] detector. The packet itself is relayed unchanged.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::MediaError;
use crate::dtmf::InbandDtmf;
use crate::g711;
use crate::rtp::{self, RtpPacket, TelephoneEvent};

/// Largest datagram relayed; anything longer is counted as malformed. The driver
/// reads into a buffer one byte longer, so an oversized datagram shows as such.
pub const MAX_PACKET_LEN: usize = 2048;

/// RFC 3550 A.1: a sequence number further ahead than this, or further behind
/// than [`MAX_MISORDER`], means the sender restarted its stream.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

/// Echoed packets get the sender's SSRC xor this, so they are never its own.
const ECHO_SSRC_XOR: u32 = 0x4543_484f; // "ECHO"

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leg {
    A,
    B,
}

impl Leg {
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Leg::A => 0,
            Leg::B => 1,
        }
    }
}

/// What a payload type carries. Two legs' payload types are matched by codec, so
/// a re-INVITE that renumbers one leg needs only that leg's new map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
    G722,
    G729,
    Opus,
    /// RFC 3389 comfort noise.
    ComfortNoise,
    /// RFC 4733 events; the clock is the audio codec's.
    TelephoneEvent {
        clock_rate: u32,
    },
}

impl Codec {
    /// The RTP clock (G.722's is 8000 Hz by RFC 3551's historical error).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma | Codec::G722 | Codec::G729 | Codec::ComfortNoise => 8000,
            Codec::Opus => 48000,
            Codec::TelephoneEvent { clock_rate } => clock_rate,
        }
    }

    /// From an `a=rtpmap` encoding name (any case) and clock rate; `None` for a
    /// codec the relay does not carry or a clock rate that does not fit it.
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<Codec> {
        let codec = match name.to_ascii_lowercase().as_str() {
            "pcmu" => Codec::Pcmu,
            "pcma" => Codec::Pcma,
            "g722" => Codec::G722,
            "g729" => Codec::G729,
            "opus" => Codec::Opus,
            "cn" => Codec::ComfortNoise,
            "telephone-event" if clock_rate > 0 => return Some(Codec::TelephoneEvent { clock_rate }),
            _ => return None,
        };
        (codec.clock_rate() == clock_rate).then_some(codec)
    }

    /// The RFC 3551 static payload type, for SDP without an `a=rtpmap`.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::ComfortNoise => Some(13),
            Codec::G729 => Some(18),
            Codec::Opus | Codec::TelephoneEvent { .. } => None,
        }
    }

    fn is_event(self) -> bool {
        matches!(self, Codec::TelephoneEvent { .. })
    }
}

/// The payload types one leg negotiated. Looked up per packet by a short scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadMap {
    entries: Vec<(u8, Codec)>,
}

impl PayloadMap {
    pub const MAX_ENTRIES: usize = 32;

    /// Payload types must be 0-127, not 64-95 (RFC 5761 §4 keeps those clear of
    /// RTCP on a shared port), and listed once. A codec may have several payload
    /// types; the first is the one sent.
    pub fn new(entries: &[(u8, Codec)]) -> Result<Self, MediaError> {
        if entries.len() > Self::MAX_ENTRIES {
            return Err(MediaError::TooManyPayloadTypes { count: entries.len(), max: Self::MAX_ENTRIES });
        }
        for (i, &(pt, _)) in entries.iter().enumerate() {
            if pt > 127 {
                return Err(MediaError::InvalidPayloadType { pt, reason: "payload types are 0-127" });
            }
            if (64..=95).contains(&pt) {
                return Err(MediaError::InvalidPayloadType {
                    pt,
                    reason: "64-95 would be taken for RTCP on a shared port (RFC 5761 §4)",
                });
            }
            if entries[..i].iter().any(|&(earlier, _)| earlier == pt) {
                return Err(MediaError::InvalidPayloadType { pt, reason: "it is listed twice" });
            }
        }
        Ok(PayloadMap { entries: entries.to_vec() })
    }

    pub fn codec(&self, pt: u8) -> Option<Codec> {
        self.entries.iter().find(|&&(p, _)| p == pt).map(|&(_, codec)| codec)
    }

    pub fn payload_type(&self, codec: Codec) -> Option<u8> {
        self.entries.iter().find(|&&(_, c)| c == codec).map(|&(pt, _)| pt)
    }

    pub fn entries(&self) -> &[(u8, Codec)] {
        &self.entries
    }
}

/// What signalling says about a leg's remote side: given when the call is
/// bridged and again at each re-INVITE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegParams {
    /// The `c=`/`m=` address; only a hint (see the module docs on latching).
    pub remote_rtp: Option<SocketAddr>,
    /// `a=rtcp`; `None` means RTP port + 1, or the RTP address with rtcp-mux.
    pub remote_rtcp: Option<SocketAddr>,
    pub payloads: PayloadMap,
    /// Listen for keys in the leg's PCMU or PCMA audio (module docs, keys). The
    /// switch sets it for a leg whose offer has no telephone-event when it needs
    /// that leg's keys (an IVR, a queue's exit key): it costs a G.711 decode
    /// and a detector run per packet.
    pub inband_dtmf: bool,
}

/// A leg as the session starts with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegSetup {
    /// RTCP arrives on, and is sent from, the RTP port.
    pub rtcp_mux: bool,
    pub params: LegParams,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Bridge,
    Echo,
    /// `held` hears music on hold; the other leg is the holder.
    Hold {
        held: Leg,
    },
}

impl Mode {
    fn needs_leg_b(self) -> bool {
        matches!(self, Mode::Bridge | Mode::Hold { held: Leg::B })
    }

    fn expects_rtp_from(self, leg: Leg) -> bool {
        match self {
            Mode::Bridge => true,
            Mode::Echo => leg == Leg::A,
            Mode::Hold { .. } => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Silence on an expected leg longer than this is reported.
    pub rtp_timeout: Duration,
    /// Silence is not counted until this long after media became expected.
    pub start_grace: Duration,
    /// A latched source silent this long may be replaced; `None`: never.
    pub relatch_after: Option<Duration>,
    /// One leg silent this long while the other sends is reported (module docs,
    /// one-way audio); `None` (or zero): never.
    pub one_way_after: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            rtp_timeout: Duration::from_secs(30),
            start_grace: Duration::from_secs(5),
            relatch_after: Some(Duration::from_secs(2)),
            one_way_after: Some(Duration::from_secs(5)),
        }
    }
}

/// Which socket of the destination leg a packet leaves from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Rtp,
    /// Only for legs without rtcp-mux.
    Rtcp,
}

/// Send the (rewritten) packet from `leg`'s `channel` socket to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    pub leg: Leg,
    pub to: SocketAddr,
    pub channel: Channel,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP came from `leg` for `silent_for` while media was expected.
    Inactive { leg: Leg, silent_for: Duration },
    /// One-way audio: `silent` has sent no RTP for `silent_for` while the other
    /// leg sends (module docs).
    OneWay { silent: Leg, silent_for: Duration },
    /// The one-way audio with `leg` silent is over: it sent again, or the mode
    /// or its parameters changed (module docs).
    OneWayEnded { leg: Leg },
    /// `leg` pressed a key: an RFC 4733 telephone-event ended (its three
    /// redundant end packets and retransmissions count once), or an in-band
    /// tone was heard (module docs, keys).
    Digit { leg: Leg, digit: char },
}

/// Counters of one leg. "In" counts accepted packets (valid, from the latched
/// source, known payload type); the drops count the rest, on the leg they came
/// from. "Out" counts what the relay sent to this leg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegStats {
    pub rtp_packets_in: u64,
    pub rtp_bytes_in: u64,
    pub rtp_packets_out: u64,
    pub rtp_bytes_out: u64,
    pub rtcp_packets_in: u64,
    pub rtcp_packets_out: u64,
    pub dropped_wrong_source: u64,
    /// Not in this leg's map, or the codec is not in the other leg's.
    pub dropped_unknown_pt: u64,
    /// Not RTP/RTCP, truncated, oversized, or a short telephone-event.
    pub dropped_malformed: u64,
    /// Accepted but not forwarded in this mode (hold; leg B during echo), or
    /// because the leg it was for is hearing injected media.
    pub dropped_by_mode: u64,
    /// Nowhere to send it: the other leg has no hint and has not latched.
    pub dropped_no_destination: u64,
    /// The driver could not send to this leg (e.g. socket buffer full).
    pub send_errors: u64,
    pub relatches: u64,
    /// Switch-overs of the stream sent to this leg (see the module docs).
    pub stream_changes: u64,
    pub rtp_source: Option<SocketAddr>,
    pub rtcp_source: Option<SocketAddr>,
    /// Receive statistics of the RTP this leg sent (module docs): packets
    /// expected by the sequence numbers, over the call.
    pub rtp_packets_expected: u64,
    /// Expected but never received, over the call; never negative.
    pub rtp_packets_lost: u64,
    /// Arrived after a packet with a higher sequence number (at most 100 higher).
    pub rtp_packets_reordered: u64,
    /// Extended highest sequence number of the current source (RFC 3550 A.1):
    /// sequence number wraps in the upper 16 bits.
    pub rtp_highest_seq: u32,
    /// Interarrival jitter of the current source (RFC 3550 A.8), in microseconds.
    pub jitter_us: u32,
    /// The highest `jitter_us` of the call, in microseconds.
    pub max_jitter_us: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Latching {
    Same,
    Learn,
    Relatch,
    Reject,
}

#[derive(Clone, Copy, Debug, Default)]
struct Latch {
    source: Option<(SocketAddr, Instant)>,
}

impl Latch {
    fn decide(
        &self,
        from: SocketAddr,
        hint: Option<SocketAddr>,
        relatch_after: Option<Duration>,
        now: Instant,
    ) -> Latching {
        match self.source {
            None => Latching::Learn,
            Some((addr, _)) if addr == from => Latching::Same,
            Some(_) if hint == Some(from) => Latching::Relatch,
            Some((_, last_seen)) => {
                let silent = now.saturating_duration_since(last_seen);
                if relatch_after.is_some_and(|limit| silent >= limit) { Latching::Relatch } else { Latching::Reject }
            }
        }
    }

    fn commit(&mut self, from: SocketAddr, now: Instant) {
        self.source = Some((from, now));
    }

    fn addr(&self) -> Option<SocketAddr> {
        self.source.map(|(addr, _)| addr)
    }
}

/// Who feeds a receiving leg's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamSource {
    Leg(Leg, u32),
    Injected(u32),
}

/// The stream one leg receives from the relay (see the module docs on continuity).
#[derive(Clone, Copy, Debug, Default)]
struct OutStream {
    ssrc: u32,
    /// `None` until the first packet.
    source: Option<StreamSource>,
    rebase_next: bool,
    seq_offset: u16,
    ts_offset: u32,
    /// Highest in-order sequence number of the current source.
    last_in_seq: u16,
    last_out_seq: u16,
    /// Last audio timestamp sent and when: the base for the next switch-over
    /// (telephone-event timestamps stay at the event start, so they are not used).
    ts_base: Option<(u32, Instant)>,
}

impl OutStream {
    /// Rewrites SSRC, sequence and timestamp; true at a switch-over.
    fn rewrite(
        &mut self,
        packet: &mut RtpPacket<&mut [u8]>,
        source: StreamSource,
        codec: Codec,
        echo: bool,
        now: Instant,
    ) -> bool {
        let in_seq = packet.sequence();
        let in_ts = packet.timestamp();
        let switch_over = match self.source {
            None => {
                let ssrc = packet.ssrc();
                self.ssrc = if echo { ssrc ^ ECHO_SSRC_XOR } else { ssrc };
                self.seq_offset = 0;
                self.ts_offset = 0;
                false
            }
            Some(current) => current != source || self.rebase_next || seq_jumped(in_seq, self.last_in_seq),
        };
        if switch_over {
            let out_seq = self.last_out_seq.wrapping_add(1);
            let out_ts = match self.ts_base {
                Some((ts, at)) => {
                    ts.wrapping_add(clock_ticks(now.saturating_duration_since(at), codec.clock_rate()).max(1))
                }
                None => in_ts,
            };
            self.seq_offset = out_seq.wrapping_sub(in_seq);
            self.ts_offset = out_ts.wrapping_sub(in_ts);
            self.rebase_next = false;
            packet.set_marker(true);
        }
        let in_order = match self.source {
            None => true,
            Some(_) if switch_over => true,
            Some(_) => {
                let ahead = in_seq.wrapping_sub(self.last_in_seq);
                ahead != 0 && ahead < MAX_DROPOUT
            }
        };
        self.source = Some(source);
        let out_seq = in_seq.wrapping_add(self.seq_offset);
        let out_ts = in_ts.wrapping_add(self.ts_offset);
        packet.set_ssrc(self.ssrc);
        packet.set_sequence(out_seq);
        packet.set_timestamp(out_ts);
        if in_order {
            self.last_in_seq = in_seq;
            self.last_out_seq = out_seq;
            if !codec.is_event() || self.ts_base.is_none() {
                self.ts_base = Some((out_ts, now));
            }
        }
        switch_over
    }
}

/// A restart by RFC 3550 A.1: too far ahead to be loss, too far behind to be reordering.
fn seq_jumped(seq: u16, last: u16) -> bool {
    let ahead = seq.wrapping_sub(last);
    (MAX_DROPOUT..=u16::MAX - MAX_MISORDER).contains(&ahead)
}

/// Drops hints nothing can be sent to: `0.0.0.0` (RFC 2543 hold) or port 0.
fn usable_hints(mut params: LegParams) -> LegParams {
    let usable = |addr: Option<SocketAddr>| addr.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
    params.remote_rtp = usable(params.remote_rtp);
    params.remote_rtcp = usable(params.remote_rtcp);
    params
}

/// `elapsed` in RTP clock units, modulo 2^32 as RTP timestamps are.
fn clock_ticks(elapsed: Duration, clock_rate: u32) -> u32 {
    (elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as u32
}

/// Receive statistics of one source a leg sends (RFC 3550 A.1, A.3, A.8).
#[derive(Clone, Copy, Debug)]
struct SourceStats {
    ssrc: u32,
    /// Arrival of its first packet: arrival times are counted from here.
    since: Instant,
    base_seq: u16,
    max_seq: u16,
    /// Times the sequence number wrapped.
    cycles: u32,
    received: u64,
    /// Clock of `transit` and `jitter` (0 before the first audio packet).
    clock_rate: u32,
    /// Relative transit time of the last audio packet, modulo 2^32.
    transit: Option<u32>,
    /// The A.8 estimate, in timestamp units.
    jitter: f64,
}

impl SourceStats {
    fn new(ssrc: u32, seq: u16, now: Instant) -> Self {
        SourceStats {
            ssrc,
            since: now,
            base_seq: seq,
            max_seq: seq,
            cycles: 0,
            received: 0,
            clock_rate: 0,
            transit: None,
            jitter: 0.0,
        }
    }

    fn extended_max(&self) -> u64 {
        (u64::from(self.cycles) << 16) + u64::from(self.max_seq)
    }

    fn expected(&self) -> u64 {
        // max_seq only moves forward from base_seq, so this never underflows
        // (and once `cycles` has saturated, extended_max is above 2^47 anyway).
        self.extended_max() + 1 - u64::from(self.base_seq)
    }

    fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    fn jitter_us(&self) -> u32 {
        if self.clock_rate == 0 {
            return 0;
        }
        (self.jitter * 1e6 / f64::from(self.clock_rate)).round() as u32
    }
}

/// What a leg sends us, measured as an RTCP receiver would (module docs).
#[derive(Clone, Copy, Debug, Default)]
struct Reception {
    current: Option<SourceStats>,
    /// Expected and lost packets of the sources before the current one.
    earlier_expected: u64,
    earlier_lost: u64,
}

impl Reception {
    /// One accepted packet. Counts reordering and the maximum jitter in `stats`.
    fn record(&mut self, packet: &RtpPacket<&mut [u8]>, codec: Codec, now: Instant, stats: &mut LegStats) {
        let (ssrc, seq) = (packet.ssrc(), packet.sequence());
        if !self.current.is_some_and(|s| s.ssrc == ssrc && !seq_jumped(seq, s.max_seq)) {
            if let Some(old) = self.current {
                // The totals grow by less than MAX_DROPOUT per accepted packet: 10^15
                // packets before they could overflow.
                self.earlier_expected += old.expected();
                self.earlier_lost += old.lost();
            }
            self.current = Some(SourceStats::new(ssrc, seq, now));
        }
        let Some(source) = self.current.as_mut() else { return };
        // A.1: in order up to MAX_DROPOUT ahead; a jump was handled above, so
        // anything behind is within MAX_MISORDER. Ahead by 0: a duplicate (or
        // the source's first packet).
        let ahead = seq.wrapping_sub(source.max_seq);
        if ahead != 0 && ahead < MAX_DROPOUT {
            if seq < source.max_seq {
                // Saturates: a source that keeps one SSRC for 2^32 wraps (some 10^11
                // packets) gets a stuck count, not an overflow.
                source.cycles = source.cycles.saturating_add(1);
            }
            source.max_seq = seq;
        } else if ahead != 0 {
            stats.rtp_packets_reordered += 1;
        }
        source.received += 1;
        if codec.is_event() {
            return;
        }
        // A.8, in the codec's clock.
        let clock_rate = codec.clock_rate();
        if clock_rate != source.clock_rate {
            if source.clock_rate != 0 {
                source.jitter = source.jitter * f64::from(clock_rate) / f64::from(source.clock_rate);
            }
            source.clock_rate = clock_rate;
            source.transit = None;
        }
        let arrival = clock_ticks(now.saturating_duration_since(source.since), clock_rate);
        let transit = arrival.wrapping_sub(packet.timestamp());
        if let Some(last) = source.transit.replace(transit) {
            let d = (transit.wrapping_sub(last) as i32).unsigned_abs();
            source.jitter += (f64::from(d) - source.jitter) / 16.0;
            stats.max_jitter_us = stats.max_jitter_us.max(source.jitter_us());
        }
    }

    /// Fills in the receive statistics of `stats`.
    fn fill(&self, stats: &mut LegStats) {
        let current = self.current.as_ref();
        stats.rtp_packets_expected = self.earlier_expected + current.map_or(0, SourceStats::expected);
        stats.rtp_packets_lost = self.earlier_lost + current.map_or(0, SourceStats::lost);
        stats.rtp_highest_seq = current.map_or(0, |s| s.extended_max() as u32);
        stats.jitter_us = current.map_or(0, SourceStats::jitter_us);
    }
}

/// One-way audio with this leg the silent one (module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum OneWay {
    #[default]
    No,
    Reported,
    /// Reported, and over since this moment: [`MediaEvent::OneWayEnded`] is due.
    Over(Instant),
}

/// The latest RFC 4733 event of a leg: all its packets carry `timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EventState {
    ssrc: u32,
    timestamp: u32,
    code: u8,
    /// The key, for events 0-15.
    digit: Option<char>,
    /// The longest duration its packets gave.
    duration: u16,
    reported: bool,
}

/// Keys pressed on a leg, not yet taken: a bounded queue. The driver takes them
/// after every packet, and one packet adds at most two (an event whose end was
/// lost and the next one), or one per 25 ms of in-band audio; keys beyond
/// [`Digits::MAX`] are dropped.
#[derive(Clone, Copy, Debug, Default)]
struct Digits {
    keys: [char; Digits::MAX],
    len: usize,
}

impl Digits {
    const MAX: usize = 8;

    fn push(&mut self, key: Option<char>) {
        if let Some(key) = key
            && self.len < Self::MAX
        {
            self.keys[self.len] = key;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<char> {
        if self.len == 0 {
            return None;
        }
        let key = self.keys[0];
        self.keys.copy_within(1..self.len, 0);
        self.len -= 1;
        Some(key)
    }
}

#[derive(Clone, Debug)]
struct LegState {
    rtcp_mux: bool,
    params: LegParams,
    rtp: Latch,
    rtcp: Latch,
    out: OutStream,
    /// When this leg's RTP became expected; `None` while it is not.
    expected_since: Option<Instant>,
    /// Fed by injected media only (see the module docs).
    injecting: bool,
    last_rtp_at: Option<Instant>,
    inactive_reported: bool,
    one_way: OneWay,
    reception: Reception,
    stats: LegStats,
    /// The latest telephone-event seen (module docs, keys).
    event: Option<EventState>,
    /// Listens for tones in the leg's audio, if [`LegParams::inband_dtmf`].
    inband: Option<Box<InbandDtmf>>,
    /// Keys pressed, not yet taken.
    digits: Digits,
}

impl LegState {
    fn new(setup: LegSetup, expected_since: Option<Instant>) -> Self {
        let mut state = LegState {
            rtcp_mux: setup.rtcp_mux,
            params: usable_hints(setup.params),
            rtp: Latch::default(),
            rtcp: Latch::default(),
            out: OutStream::default(),
            expected_since,
            injecting: false,
            last_rtp_at: None,
            inactive_reported: false,
            one_way: OneWay::No,
            reception: Reception::default(),
            stats: LegStats::default(),
            event: None,
            inband: None,
            digits: Digits::default(),
        };
        state.follow_inband_dtmf();
        state
    }

    /// A detector if the parameters ask for one (the one there is, if any:
    /// a re-INVITE does not lose a key being pressed), none otherwise.
    fn follow_inband_dtmf(&mut self) {
        if !self.params.inband_dtmf {
            self.inband = None;
        } else if self.inband.is_none() {
            self.inband = Some(Box::default());
        }
    }

    /// One telephone-event packet from `ssrc` (module docs, keys).
    fn on_event(&mut self, event: TelephoneEvent, ssrc: u32, timestamp: u32) {
        let mut next = EventState {
            ssrc,
            timestamp,
            code: event.event,
            digit: event.digit(),
            duration: event.duration,
            reported: false,
        };
        if let Some(current) = self.event.filter(|current| current.ssrc == ssrc) {
            if current.timestamp == timestamp {
                next = EventState { duration: current.duration.max(event.duration), ..current };
            } else if (timestamp.wrapping_sub(current.timestamp) as i32) < 0 {
                // Behind the current event by RFC 3550's wrap-around comparison: a late retransmission.
                return;
            } else if current.code == event.event && current.duration == u16::MAX && !current.reported {
                // The next segment of an event too long for the duration field (RFC 4733 §2.5.1.3).
            } else if !current.reported {
                // A new event: the current one ended, even if its end packets were lost.
                self.digits.push(current.digit);
            }
        } else if let Some(current) = self.event.filter(|current| !current.reported) {
            // Another source: what the old one was sending ended.
            self.digits.push(current.digit);
        }
        if event.end && !next.reported {
            self.digits.push(next.digit);
            next.reported = true;
        }
        self.event = Some(next);
    }

    /// The audio of a PCMU or PCMA packet, to the in-band detector if there is one.
    fn listen(&mut self, codec: Codec, payload: &[u8]) {
        let Some(detector) = self.inband.as_deref_mut() else { return };
        let decode = match codec {
            Codec::Pcmu => g711::ulaw_to_linear,
            Codec::Pcma => g711::alaw_to_linear,
            _ => return,
        };
        let mut samples = [0i16; 160];
        for chunk in payload.chunks(samples.len()) {
            for (sample, &code) in samples.iter_mut().zip(chunk) {
                *sample = decode(code);
            }
            if let Some(key) = detector.push(&samples[..chunk.len()]) {
                self.digits.push(Some(key));
            }
        }
    }

    fn rtcp_hint(&self) -> Option<SocketAddr> {
        self.params.remote_rtcp.or_else(|| {
            let rtp = self.params.remote_rtp?;
            if self.rtcp_mux { Some(rtp) } else { Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?)) }
        })
    }

    fn rtp_destination(&self) -> Option<SocketAddr> {
        self.rtp.addr().or(self.params.remote_rtp)
    }

    fn rtcp_destination(&self) -> Option<SocketAddr> {
        let latched_rtp = if self.rtcp_mux { self.rtp.addr() } else { None };
        self.rtcp.addr().or(latched_rtp).or_else(|| self.rtcp_hint())
    }

    fn rtcp_channel(&self) -> Channel {
        if self.rtcp_mux { Channel::Rtp } else { Channel::Rtcp }
    }

    /// Where silence on this leg counts from, if it is expected to send: the
    /// later of its last packet and the end of the start grace.
    fn silence_counted_from(&self, config: &SessionConfig) -> Option<Instant> {
        let counted_from = self.expected_since?.checked_add(config.start_grace)?;
        Some(self.last_rtp_at.map_or(counted_from, |last| last.max(counted_from)))
    }

    /// What a silence is reported as lasting: since the last packet, or since
    /// media became expected (the grace included).
    fn silent_for(&self, now: Instant) -> Duration {
        let since = self.last_rtp_at.into_iter().chain(self.expected_since).max().unwrap_or(now);
        now.saturating_duration_since(since)
    }

    /// When silence on this leg is reported, if it is expected to send.
    fn inactivity_deadline(&self, config: &SessionConfig) -> Option<Instant> {
        if self.inactive_reported {
            return None;
        }
        self.silence_counted_from(config)?.checked_add(config.rtp_timeout)
    }

    /// Re-arms the silence checks (a mode change, new parameters).
    fn expect_rtp(&mut self, expected: bool, now: Instant) {
        self.expected_since = expected.then_some(now);
        self.inactive_reported = false;
        if self.one_way == OneWay::Reported {
            self.one_way = OneWay::Over(now);
        }
    }
}

/// The relay state of one call: leg A, optionally leg B, and the mode.
#[derive(Clone, Debug)]
pub struct MediaSession {
    config: SessionConfig,
    mode: Mode,
    legs: [Option<LegState>; 2],
}

impl MediaSession {
    pub fn bridge(config: SessionConfig, a: LegSetup, b: LegSetup, now: Instant) -> Self {
        MediaSession {
            config,
            mode: Mode::Bridge,
            legs: [Some(LegState::new(a, Some(now))), Some(LegState::new(b, Some(now)))],
        }
    }

    /// A call with one leg whose media comes back to it.
    pub fn echo(config: SessionConfig, a: LegSetup, now: Instant) -> Self {
        MediaSession { config, mode: Mode::Echo, legs: [Some(LegState::new(a, Some(now))), None] }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn has_leg(&self, leg: Leg) -> bool {
        self.legs[leg.index()].is_some()
    }

    /// `None` if the call has no such leg.
    pub fn stats(&self, leg: Leg) -> Option<LegStats> {
        let state = self.legs[leg.index()].as_ref()?;
        let mut stats = LegStats { rtp_source: state.rtp.addr(), rtcp_source: state.rtcp.addr(), ..state.stats };
        state.reception.fill(&mut stats);
        Some(stats)
    }

    /// A datagram that arrived on `leg`'s RTP socket. RTCP there (rtcp-mux) is
    /// handed to [`MediaSession::on_rtcp`]. On `Some`, `buf` has been rewritten
    /// in place and is to be sent as the [`Forward`] says. Allocates nothing.
    pub fn on_rtp(&mut self, leg: Leg, from: SocketAddr, buf: &mut [u8], now: Instant) -> Option<Forward> {
        if rtp::is_rtcp(buf) {
            return self.on_rtcp(leg, from, buf, now);
        }
        let relatch_after = self.config.relatch_after;
        let mode = self.mode;
        let len = buf.len() as u64;
        let input = self.legs[leg.index()].as_mut()?;
        if buf.len() > MAX_PACKET_LEN {
            input.stats.dropped_malformed += 1;
            return None;
        }
        let Ok(mut packet) = RtpPacket::parse(buf) else {
            input.stats.dropped_malformed += 1;
            return None;
        };
        let latching = input.rtp.decide(from, input.params.remote_rtp, relatch_after, now);
        if latching == Latching::Reject {
            input.stats.dropped_wrong_source += 1;
            return None;
        }
        let Some(codec) = input.params.payloads.codec(packet.payload_type()) else {
            input.stats.dropped_unknown_pt += 1;
            return None;
        };
        if codec.is_event() {
            let Ok(event) = TelephoneEvent::parse(packet.payload()) else {
                input.stats.dropped_malformed += 1;
                return None;
            };
            input.on_event(event, packet.ssrc(), packet.timestamp());
        } else {
            input.listen(codec, packet.payload());
        }
        input.rtp.commit(from, now);
        match latching {
            Latching::Learn => tracing::debug!(?leg, %from, "RTP source latched"),
            Latching::Relatch => {
                input.stats.relatches += 1;
                tracing::debug!(?leg, %from, "RTP source re-latched");
            }
            Latching::Same | Latching::Reject => {}
        }
        input.stats.rtp_packets_in += 1;
        input.stats.rtp_bytes_in += len;
        input.reception.record(&packet, codec, now, &mut input.stats);
        input.last_rtp_at = Some(now);
        input.inactive_reported = false;
        if input.one_way == OneWay::Reported {
            input.one_way = OneWay::Over(now);
        }

        let dest_leg = match mode {
            Mode::Bridge => leg.other(),
            Mode::Echo if leg == Leg::A => Leg::A,
            Mode::Echo | Mode::Hold { .. } => {
                input.stats.dropped_by_mode += 1;
                return None;
            }
        };
        let ssrc = packet.ssrc();
        let Some(dest) = self.legs[dest_leg.index()].as_mut() else {
            return self.count_drop(leg, |s| &mut s.dropped_by_mode);
        };
        if dest.injecting {
            return self.count_drop(leg, |s| &mut s.dropped_by_mode);
        }
        let Some(to) = dest.rtp_destination() else {
            return self.count_drop(leg, |s| &mut s.dropped_no_destination);
        };
        let Some(out_pt) = dest.params.payloads.payload_type(codec) else {
            return self.count_drop(leg, |s| &mut s.dropped_unknown_pt);
        };
        if dest.out.rewrite(&mut packet, StreamSource::Leg(leg, ssrc), codec, dest_leg == leg, now) {
            dest.stats.stream_changes += 1;
        }
        packet.set_payload_type(out_pt);
        dest.stats.rtp_packets_out += 1;
        dest.stats.rtp_bytes_out += len;
        Some(Forward { leg: dest_leg, to, channel: Channel::Rtp })
    }

    /// A datagram that arrived on `leg`'s RTCP port (or RTCP demultiplexed from
    /// its RTP port). Relayed unchanged to the other leg in `Bridge` and `Hold`.
    pub fn on_rtcp(&mut self, leg: Leg, from: SocketAddr, buf: &[u8], now: Instant) -> Option<Forward> {
        let relatch_after = self.config.relatch_after;
        let mode = self.mode;
        let input = self.legs[leg.index()].as_mut()?;
        if buf.len() > MAX_PACKET_LEN || rtp::check_rtcp(buf).is_err() {
            input.stats.dropped_malformed += 1;
            return None;
        }
        let latching = input.rtcp.decide(from, input.rtcp_hint(), relatch_after, now);
        match latching {
            Latching::Reject => {
                input.stats.dropped_wrong_source += 1;
                return None;
            }
            Latching::Relatch => input.stats.relatches += 1,
            Latching::Same | Latching::Learn => {}
        }
        input.rtcp.commit(from, now);
        input.stats.rtcp_packets_in += 1;
        if mode == Mode::Echo {
            input.stats.dropped_by_mode += 1;
            return None;
        }
        let dest_leg = leg.other();
        let Some(dest) = self.legs[dest_leg.index()].as_mut() else {
            return self.count_drop(leg, |s| &mut s.dropped_by_mode);
        };
        let Some(to) = dest.rtcp_destination() else {
            return self.count_drop(leg, |s| &mut s.dropped_no_destination);
        };
        dest.stats.rtcp_packets_out += 1;
        Some(Forward { leg: dest_leg, to, channel: dest.rtcp_channel() })
    }

    /// Media the switch generates for `to` (music on hold, prompts): an RTP
    /// packet with a payload type of `to`'s map and its own SSRC, sequence and
    /// timestamp, which are rewritten to continue `to`'s stream. Meant for when
    /// nothing else feeds `to` (hold, or a leg marked with
    /// [`MediaSession::set_injecting`]): mixed with relayed packets, every change
    /// of source would be a switch-over.
    pub fn inject(&mut self, to: Leg, buf: &mut [u8], now: Instant) -> Option<Forward> {
        let dest = self.legs[to.index()].as_mut()?;
        let mut packet = RtpPacket::parse(&mut *buf).ok()?;
        let codec = dest.params.payloads.codec(packet.payload_type())?;
        let addr = dest.rtp_destination()?;
        let ssrc = packet.ssrc();
        if dest.out.rewrite(&mut packet, StreamSource::Injected(ssrc), codec, false, now) {
            dest.stats.stream_changes += 1;
        }
        dest.stats.rtp_packets_out += 1;
        dest.stats.rtp_bytes_out += buf.len() as u64;
        Some(Forward { leg: to, to: addr, channel: Channel::Rtp })
    }

    /// Marks `leg` as fed by injected media only, or no longer (module docs).
    /// Its stream stays continuous either way.
    pub fn set_injecting(&mut self, leg: Leg, injecting: bool) -> Result<(), MediaError> {
        let state = self.legs[leg.index()].as_mut().ok_or(MediaError::NoSuchLeg { leg })?;
        state.injecting = injecting;
        Ok(())
    }

    /// The payload types `leg` negotiated; `None` if the call has no such leg.
    pub fn payloads(&self, leg: Leg) -> Option<&PayloadMap> {
        Some(&self.legs[leg.index()].as_ref()?.params.payloads)
    }

    /// A re-INVITE: new remote hint and payload types for `leg`. The streams the
    /// legs receive continue; a changed hint drops the leg's latches (module docs).
    pub fn update_leg(&mut self, leg: Leg, params: LegParams, now: Instant) -> Result<(), MediaError> {
        let mode = self.mode;
        let state = self.legs[leg.index()].as_mut().ok_or(MediaError::NoSuchLeg { leg })?;
        let params = usable_hints(params);
        if params.remote_rtp.is_some() && params.remote_rtp != state.params.remote_rtp {
            state.rtp = Latch::default();
        }
        let old_rtcp_hint = state.rtcp_hint();
        state.params = params;
        state.follow_inband_dtmf();
        let rtcp_hint = state.rtcp_hint();
        if rtcp_hint.is_some() && rtcp_hint != old_rtcp_hint {
            state.rtcp = Latch::default();
        }
        state.expect_rtp(mode.expects_rtp_from(leg), now);
        Ok(())
    }

    /// Changes what is forwarded where. Each receiving leg's stream stays
    /// continuous: the next packet it gets is a switch-over.
    pub fn set_mode(&mut self, mode: Mode, now: Instant) -> Result<(), MediaError> {
        if mode.needs_leg_b() && self.legs[Leg::B.index()].is_none() {
            return Err(MediaError::NoLegB { mode });
        }
        if mode == self.mode {
            return Ok(());
        }
        self.mode = mode;
        for leg in [Leg::A, Leg::B] {
            if let Some(state) = self.legs[leg.index()].as_mut() {
                state.expect_rtp(mode.expects_rtp_from(leg), now);
                if state.out.source.is_some() {
                    state.out.rebase_next = true;
                }
            }
        }
        Ok(())
    }

    /// The driver could not send a packet to `leg`.
    pub fn record_send_error(&mut self, leg: Leg) {
        if let Some(state) = self.legs[leg.index()].as_mut() {
            state.stats.send_errors += 1;
        }
    }

    /// The earliest moment [`MediaSession::handle_timeout`] has something to do
    /// (possibly already past: an event is due at once).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let inactivity = self.legs.iter().flatten().filter_map(|state| state.inactivity_deadline(&self.config));
        let one_way = [Leg::A, Leg::B].into_iter().filter_map(|leg| self.one_way_deadline(leg));
        inactivity.chain(one_way).min()
    }

    /// When a one-way event about `leg` as the silent leg is due (module docs):
    /// the end of a reported episode, or the first moment `leg` is silent while
    /// the other leg is sending, as things stand.
    fn one_way_deadline(&self, leg: Leg) -> Option<Instant> {
        let state = self.legs[leg.index()].as_ref()?;
        match state.one_way {
            OneWay::Over(at) => return Some(at),
            OneWay::Reported => return None,
            OneWay::No => {}
        }
        let after = self.config.one_way_after.filter(|after| !after.is_zero())?;
        if self.mode != Mode::Bridge {
            return None;
        }
        let silent_at = state.silence_counted_from(&self.config)?.checked_add(after)?;
        let other_last = self.legs[leg.other().index()].as_ref()?.last_rtp_at?;
        // The other leg is sending until `other_last + after`.
        (other_last.checked_add(after)? > silent_at).then(|| silent_at.max(other_last))
    }

    /// Reports legs silent for `rtp_timeout`, each once per silence, and one-way
    /// audio and its end (module docs).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<MediaEvent> {
        let mut events = Vec::new();
        for leg in [Leg::A, Leg::B] {
            let Some(state) = self.legs[leg.index()].as_mut() else { continue };
            if state.inactivity_deadline(&self.config).is_some_and(|deadline| deadline <= now) {
                state.inactive_reported = true;
                events.push(MediaEvent::Inactive { leg, silent_for: state.silent_for(now) });
            }
        }
        for leg in [Leg::A, Leg::B] {
            if self.one_way_deadline(leg).is_none_or(|due| due > now) {
                continue;
            }
            let Some(state) = self.legs[leg.index()].as_mut() else { continue };
            if let OneWay::Over(_) = state.one_way {
                state.one_way = OneWay::No;
                events.push(MediaEvent::OneWayEnded { leg });
            } else {
                state.one_way = OneWay::Reported;
                events.push(MediaEvent::OneWay { silent: leg, silent_for: state.silent_for(now) });
            }
        }
        events
    }

    /// The next key pressed on either leg and not yet taken, in order per leg,
    /// as an event ([`MediaEvent::Digit`]). One packet can complete two keys:
    /// the driver takes them until `None` after each packet.
    pub fn take_digit(&mut self) -> Option<MediaEvent> {
        for leg in [Leg::A, Leg::B] {
            if let Some(digit) = self.legs[leg.index()].as_mut().and_then(|s| s.digits.pop()) {
                return Some(MediaEvent::Digit { leg, digit });
            }
        }
        None
    }

    fn count_drop(&mut self, leg: Leg, counter: impl FnOnce(&mut LegStats) -> &mut u64) -> Option<Forward> {
        if let Some(state) = self.legs[leg.index()].as_mut() {
            *counter(&mut state.stats) += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::write_packet;

    const PCMU: Codec = Codec::Pcmu;
    const PCMA: Codec = Codec::Pcma;
    const TE: Codec = Codec::TelephoneEvent { clock_rate: 8000 };

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn map(entries: &[(u8, Codec)]) -> PayloadMap {
        PayloadMap::new(entries).unwrap()
    }

    fn setup(remote: Option<&str>, entries: &[(u8, Codec)]) -> LegSetup {
        LegSetup {
            rtcp_mux: false,
            params: LegParams { remote_rtp: remote.map(addr), payloads: map(entries), ..LegParams::default() },
        }
    }

    /// A re-INVITE's parameters: `remote` and `entries`, nothing else.
    fn params(remote: &str, entries: &[(u8, Codec)]) -> LegParams {
        setup(Some(remote), entries).params
    }

    fn config() -> SessionConfig {
        SessionConfig {
            rtp_timeout: Duration::from_secs(10),
            start_grace: Duration::ZERO,
            relatch_after: Some(Duration::from_secs(2)),
            // Off here: the one-way tests turn it on.
            one_way_after: None,
        }
    }

    const PHONE_A: &str = "127.0.0.1:40000";
    const PHONE_B: &str = "127.0.0.1:40010";

    /// A (PCMU 0, PCMA 8, telephone-event 101) and B (PCMU 0, PCMA 8, telephone-event 96),
    /// both advertising their real addresses.
    fn bridged(t0: Instant) -> MediaSession {
        MediaSession::bridge(
            config(),
            setup(Some(PHONE_A), &[(0, PCMU), (8, PCMA), (101, TE)]),
            setup(Some(PHONE_B), &[(8, PCMA), (0, PCMU), (96, TE)]),
            t0,
        )
    }

    fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut buf = vec![0; 12 + 160];
        write_packet(&mut buf, pt, false, seq, ts, ssrc, &[0xd5; 160]).unwrap();
        buf
    }

    /// (pt, marker, seq, ts, ssrc) of a packet.
    fn header(buf: &[u8]) -> (u8, bool, u16, u32, u32) {
        let p = RtpPacket::parse(buf).unwrap();
        (p.payload_type(), p.marker(), p.sequence(), p.timestamp(), p.ssrc())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bridges_both_ways_mapping_payload_types() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        let mut buf = rtp(0, 1, 160, 0xaaaa);
        let fwd = s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t0).unwrap();
        assert_eq!(fwd, Forward { leg: Leg::B, to: addr(PHONE_B), channel: Channel::Rtp });
        assert_eq!(header(&buf), (0, false, 1, 160, 0xaaaa), "first packet passes through unchanged");

        let mut buf = rtp(8, 500, 8000, 0xbbbb);
        let fwd = s.on_rtp(Leg::B, addr(PHONE_B), &mut buf, t0).unwrap();
        assert_eq!(fwd.leg, Leg::A);
        assert_eq!(fwd.to, addr(PHONE_A));
        assert_eq!(header(&buf).0, 8);

        let a = s.stats(Leg::A).unwrap();
        let b = s.stats(Leg::B).unwrap();
        assert_eq!((a.rtp_packets_in, a.rtp_bytes_in, a.rtp_packets_out, a.rtp_bytes_out), (1, 172, 1, 172));
        assert_eq!((b.rtp_packets_in, b.rtp_packets_out), (1, 1));
        assert_eq!(a.rtp_source, Some(addr(PHONE_A)));
    }

    /// RFC 4733 events: one digit per key press, whatever end packets are
    /// repeated, whatever packets are lost, however late a retransmission comes
    /// (module docs, keys).
    #[test]
    fn a_key_press_is_one_digit_whatever_is_lost_repeated_or_late() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        // One event packet from `leg` (A: type 101, B: its own 96), relayed; the keys it completes.
        let send_event = |s: &mut MediaSession, leg: Leg, ssrc: u32, seq: u16, ts: u32, event: TelephoneEvent| {
            let (from, pt) = if leg == Leg::A { (PHONE_A, 101) } else { (PHONE_B, 96) };
            let mut buf = vec![0; 16];
            write_packet(&mut buf, pt, !event.end, seq, ts, ssrc, &event.to_bytes()).unwrap();
            assert!(s.on_rtp(leg, addr(from), &mut buf, t0).is_some(), "relayed");
            let keys = std::iter::from_fn(|| s.take_digit()).map(|event| match event {
                MediaEvent::Digit { leg: from, digit } if from == leg => digit,
                other => panic!("{other:?}"),
            });
            keys.collect::<String>()
        };
        let send_from = |s: &mut MediaSession, leg: Leg, ssrc: u32, seq: u16, ts: u32, event: u8, end: bool| {
            let duration = 160 * (seq % 8 + 1);
            send_event(s, leg, ssrc, seq, ts, TelephoneEvent { event, end, volume: 10, duration })
        };
        let send = |s: &mut MediaSession, seq: u16, ts: u32, event: u8, end: bool| {
            send_from(s, Leg::A, 0xaaaa, seq, ts, event, end)
        };
        // Key 5 held for three packets, then three end packets (RFC 4733 §2.5.1.4), one repeated later.
        for seq in 1..=3 {
            assert_eq!(send(&mut s, seq, 4000, 5, false), "", "not before its end");
        }
        assert_eq!(send(&mut s, 4, 4000, 5, true), "5");
        for seq in [5, 6, 5] {
            assert_eq!(send(&mut s, seq, 4000, 5, true), "", "the same event's end counts once");
        }
        // The next press of the same key is a new event (a new timestamp); `#` is event 11; B's own type 96.
        assert_eq!(send(&mut s, 7, 5600, 5, true), "5");
        assert_eq!(send_from(&mut s, Leg::B, 0xbbbb, 1, 900, 11, true), "#");
        // An event that is no key (16: a tone, RFC 4733 §3) says nothing.
        assert_eq!(send(&mut s, 8, 7000, 16, true), "");

        // The first packets of key 8 lost: the later ones and the end make one digit.
        assert_eq!(send(&mut s, 12, 9000, 8, false), "");
        assert_eq!(send(&mut s, 13, 9000, 8, true), "8");
        // Every end packet of key 1 lost: the next event's first packet says it ended.
        assert_eq!(send(&mut s, 14, 10600, 1, false), "");
        assert_eq!(send(&mut s, 15, 10600, 1, false), "");
        assert_eq!(send(&mut s, 19, 12200, 2, false), "1");
        assert_eq!(send(&mut s, 20, 12200, 2, true), "2");
        // ... even when all that arrives of the next event is an end: two keys from one packet, in order.
        assert_eq!(send(&mut s, 21, 13800, 3, false), "");
        assert_eq!(send(&mut s, 25, 15400, 4, true), "34");
        // Five seconds of audio later, an end of that event again (same timestamp), and one of an
        // older event: nothing, and the next press still counts.
        for seq in 26..276u16 {
            let mut audio = rtp(0, seq, 15400 + 160 * u32::from(seq - 25), 0xaaaa);
            assert!(s.on_rtp(Leg::A, addr(PHONE_A), &mut audio, t0 + ms(20 * u64::from(seq - 25))).is_some());
        }
        assert_eq!(send(&mut s, 25, 15400, 4, true), "", "retransmitted");
        assert_eq!(send(&mut s, 20, 12200, 2, true), "", "older than the last event");
        assert_eq!(send(&mut s, 276, 56000, 6, true), "6");
        // A key held longer than the duration field can say (8.2 s) sends segments with new
        // timestamps (RFC 4733 §2.5.1.3): still one press.
        let held = |duration: u16, end: bool| TelephoneEvent { event: 0, end, volume: 10, duration };
        assert_eq!(send_event(&mut s, Leg::A, 0xaaaa, 277, 60000, held(0xfe00, false)), "");
        assert_eq!(send_event(&mut s, Leg::A, 0xaaaa, 278, 60000, held(0xffff, false)), "");
        assert_eq!(send_event(&mut s, Leg::A, 0xaaaa, 279, 60000 + 0xffff, held(160, false)), "");
        assert_eq!(send_event(&mut s, Leg::A, 0xaaaa, 280, 60000 + 0xffff, held(320, true)), "0");
        // A new SSRC (the phone restarted its stream) starts anew, whatever its timestamps.
        assert_eq!(send_from(&mut s, Leg::A, 0xcccc, 1, 100, 9, true), "9");
        assert_eq!(s.stats(Leg::A).unwrap().dropped_malformed, 0);
    }

    /// 20 ms frame `n` of a stream that plays key 7 (852 and 1209 Hz, at -8 and
    /// -6 dBm0) in the frames `on` and silence in the others, encoded by `encode`.
    fn key_7_frame(on: std::ops::Range<usize>, n: usize, encode: fn(i16) -> u8) -> [u8; 160] {
        use std::f32::consts::TAU;
        std::array::from_fn(|i| {
            let t = (n * 160 + i) as f32 / 8000.0;
            let tone = 9_025.0 * (TAU * 852.0 * t).sin() + 11_360.0 * (TAU * 1209.0 * t).sin();
            encode(if on.contains(&n) { tone as i16 } else { 0 })
        })
    }

    /// In-band tones are keys on a leg that asks for it, and only there; the
    /// packets go on as they came.
    #[test]
    fn in_band_tones_are_keys_on_a_leg_that_listens_and_are_relayed_unchanged() {
        use crate::g711::{linear_to_alaw, linear_to_ulaw};
        let t0 = Instant::now();
        // A sends 500 ms of PCMU with the tone from 100 to 200 ms; B PCMA with it from 240 to 300 ms.
        let run = |s: &mut MediaSession| {
            let mut keys = Vec::new();
            for n in 0..25usize {
                let now = t0 + ms(20 * n as u64);
                for (leg, from, pt, payload) in [
                    (Leg::A, PHONE_A, 0, key_7_frame(5..10, n, linear_to_ulaw)),
                    (Leg::B, PHONE_B, 8, key_7_frame(12..15, n, linear_to_alaw)),
                ] {
                    let mut buf = vec![0; 12 + 160];
                    write_packet(&mut buf, pt, false, n as u16, 160 * n as u32, 0x77, &payload).unwrap();
                    assert!(s.on_rtp(leg, addr(from), &mut buf, now).is_some(), "relayed");
                    assert_eq!(buf[12..], payload, "the audio goes on unchanged");
                    keys.extend(std::iter::from_fn(|| s.take_digit()));
                }
            }
            keys
        };
        let listening = |mut setup: LegSetup| {
            setup.params.inband_dtmf = true;
            setup
        };
        let a = setup(Some(PHONE_A), &[(0, PCMU), (8, PCMA), (101, TE)]);
        let b = setup(Some(PHONE_B), &[(8, PCMA), (0, PCMU), (96, TE)]);
        let mut s = MediaSession::bridge(config(), listening(a.clone()), listening(b.clone()), t0);
        let digit = |leg| MediaEvent::Digit { leg, digit: '7' };
        assert_eq!(run(&mut s), [digit(Leg::A), digit(Leg::B)]);
        // Without the flag: nothing.
        let mut s = MediaSession::bridge(config(), a.clone(), b, t0);
        assert_eq!(run(&mut s), []);
        // A re-INVITE turns it on for A, then off.
        s.update_leg(Leg::A, listening(a.clone()).params, t0).unwrap();
        assert_eq!(run(&mut s), [digit(Leg::A)]);
        s.update_leg(Leg::A, a.params, t0).unwrap();
        assert_eq!(run(&mut s), []);
    }

    #[test]
    fn telephone_events_get_the_other_legs_payload_type() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        let event = TelephoneEvent { event: 5, end: false, volume: 10, duration: 320 };
        let mut buf = vec![0; 16];
        write_packet(&mut buf, 101, true, 9, 4000, 0xaaaa, &event.to_bytes()).unwrap();
        s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t0).unwrap();
        let p = RtpPacket::parse(&buf[..]).unwrap();
        assert_eq!(p.payload_type(), 96);
        assert!(p.marker(), "the event's marker is kept");
        assert_eq!(TelephoneEvent::parse(p.payload()).unwrap(), event);

        // A truncated event is malformed, not relayed.
        let mut short = vec![0; 14];
        write_packet(&mut short, 101, false, 10, 4000, 0xaaaa, &[5, 0]).unwrap();
        assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), &mut short, t0), None);
        assert_eq!(s.stats(Leg::A).unwrap().dropped_malformed, 1);
    }

    #[test]
    fn unknown_payload_types_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut s = MediaSession::bridge(
            config(),
            setup(Some(PHONE_A), &[(0, PCMU), (18, Codec::G729)]),
            setup(Some(PHONE_B), &[(0, PCMU)]),
            t0,
        );
        assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(9, 1, 0, 1), t0), None, "not in A's map");
        assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(18, 2, 0, 1), t0), None, "not in B's map");
        assert_eq!(s.stats(Leg::A).unwrap().dropped_unknown_pt, 2);
        assert_eq!(s.stats(Leg::A).unwrap().rtp_source, Some(addr(PHONE_A)), "G.729 is A's: it latches");
        assert!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 3, 0, 1), t0).is_some());
        assert_eq!(s.stats(Leg::B).unwrap().rtp_packets_out, 1);
    }

    #[test]
    fn unknown_payload_type_does_not_latch() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        s.on_rtp(Leg::A, addr("127.0.0.1:9999"), &mut rtp(33, 1, 0, 1), t0);
        assert_eq!(s.stats(Leg::A).unwrap().rtp_source, None);
        assert!(s.on_rtp(Leg::A, addr("127.0.0.1:40002"), &mut rtp(0, 1, 0, 1), t0).is_some());
        assert_eq!(s.stats(Leg::A).unwrap().rtp_source, Some(addr("127.0.0.1:40002")));
    }

    /// SDP says 10.0.0.5:4000 (the phone's private address); its packets come
    /// from the NAT's 127.0.0.1:52000.
    #[test]
    fn latches_the_real_source_behind_nat() {
        let t0 = Instant::now();
        let nat = addr("127.0.0.1:52000");
        let mut s = MediaSession::bridge(
            config(),
            setup(Some("10.0.0.5:4000"), &[(0, PCMU)]),
            setup(Some(PHONE_B), &[(0, PCMU)]),
            t0,
        );
        // Before A sends, B's packets go where A's SDP said.
        let fwd = s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 1, 0, 2), t0).unwrap();
        assert_eq!(fwd.to, addr("10.0.0.5:4000"));

        let fwd = s.on_rtp(Leg::A, nat, &mut rtp(0, 1, 0, 1), t0).unwrap();
        assert_eq!(fwd.to, addr(PHONE_B));
        assert_eq!(s.stats(Leg::A).unwrap().rtp_source, Some(nat));
        let fwd = s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 2, 160, 2), t0 + ms(20)).unwrap();
        assert_eq!(fwd.to, nat, "B's media follows A's real address");
        // RTCP to A: the SDP hint's port + 1 until A's RTCP latches.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 2];
        assert_eq!(s.on_rtcp(Leg::B, addr("127.0.0.1:40011"), &rr, t0).unwrap().to, addr("10.0.0.5:4001"));
        s.on_rtcp(Leg::A, addr("127.0.0.1:52001"), &rr, t0).unwrap();
        assert_eq!(s.on_rtcp(Leg::B, addr("127.0.0.1:40011"), &rr, t0).unwrap().to, addr("127.0.0.1:52001"));
    }

    #[test]
    fn no_hint_and_no_latch_means_no_destination() {
        let t0 = Instant::now();
        let mut s = MediaSession::bridge(config(), setup(None, &[(0, PCMU)]), setup(None, &[(0, PCMU)]), t0);
        assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 1, 0, 1), t0), None);
        assert_eq!(s.stats(Leg::A).unwrap().dropped_no_destination, 1);
        // B latches by sending; then A's packets reach it.
        assert_eq!(s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 1, 0, 2), t0).unwrap().to, addr(PHONE_A));
        assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 2, 160, 1), t0).unwrap().to, addr(PHONE_B));
    }

    #[test]
    fn other_sources_are_dropped_until_the_latched_one_is_silent() {
        let t0 = Instant::now();
        let intruder = addr("127.0.0.1:6666");
        let mut s = bridged(t0);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 1, 0, 1), t0).unwrap();
        assert_eq!(s.on_rtp(Leg::A, intruder, &mut rtp(0, 2, 160, 1), t0 + ms(10)), None);
        // Just short of the silence limit: still dropped.
        assert_eq!(s.on_rtp(Leg::A, intruder, &mut rtp(0, 3, 160, 1), t0 + ms(1999)), None);
        assert_eq!(s.stats(Leg::A).unwrap().dropped_wrong_source, 2);
        // The latched phone keeps talking: the limit restarts from its last packet.
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 4, 480, 1), t0 + ms(1999)).unwrap();
        assert_eq!(s.on_rtp(Leg::A, intruder, &mut rtp(0, 5, 160, 1), t0 + ms(3000)), None);
        // Silent for exactly 2 s: the new source takes over.
        let new_nat = addr("127.0.0.1:52002");
        assert!(s.on_rtp(Leg::A, new_nat, &mut rtp(0, 6, 640, 1), t0 + ms(3999)).is_some());
        let stats = s.stats(Leg::A).unwrap();
        assert_eq!((stats.rtp_source, stats.relatches, stats.dropped_wrong_source), (Some(new_nat), 1, 3));
        assert_eq!(s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 1, 0, 2), t0 + ms(4000)).unwrap().to, new_nat);
        assert_eq!(
            s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 7, 800, 1), t0 + ms(4000)),
            Some(Forward { leg: Leg::B, to: addr(PHONE_B), channel: Channel::Rtp }),
            "the SDP address itself may always take the latch back"
        );
    }

    #[test]
    fn relatching_can_be_turned_off() {
        let t0 = Instant::now();
        let mut s = MediaSession::bridge(
            SessionConfig { relatch_after: None, ..config() },
            setup(Some("10.0.0.5:4000"), &[(0, PCMU)]),
            setup(Some(PHONE_B), &[(0, PCMU)]),
            t0,
        );
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 1, 0, 1), t0).unwrap();
        assert_eq!(
            s.on_rtp(Leg::A, addr("127.0.0.1:6666"), &mut rtp(0, 2, 0, 1), t0 + Duration::from_secs(3600)),
            None
        );
    }

    #[test]
    fn a_new_hint_from_a_reinvite_unlatches() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 1, 0, 1), t0).unwrap();
        // Same hint, new payload types: the latch stays.
        let same = params(PHONE_A, &[(0, PCMU), (110, TE)]);
        s.update_leg(Leg::A, same, t0).unwrap();
        assert_eq!(s.stats(Leg::A).unwrap().rtp_source, Some(addr(PHONE_A)));
        // Another device: learn again, from whoever sends first.
        let moved = params("10.0.0.9:5000", &[(0, PCMU)]);
        s.update_leg(Leg::A, moved, t0).unwrap();
        assert_eq!(s.stats(Leg::A).unwrap().rtp_source, None);
        assert_eq!(s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 1, 0, 2), t0).unwrap().to, addr("10.0.0.9:5000"));
        s.on_rtp(Leg::A, addr("127.0.0.1:41000"), &mut rtp(0, 2, 160, 1), t0).unwrap();
        assert_eq!(s.stats(Leg::A).unwrap().rtp_source, Some(addr("127.0.0.1:41000")));
    }

    #[test]
    fn a_hold_reinvite_to_0_0_0_0_keeps_the_latch_and_sends_nowhere_new() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 1, 0, 2), t0).unwrap();
        let hold = params("0.0.0.0:40010", &[(0, PCMU)]);
        s.update_leg(Leg::B, hold, t0).unwrap();
        assert_eq!(s.stats(Leg::B).unwrap().rtp_source, Some(addr(PHONE_B)));
        assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 1, 0, 1), t0).unwrap().to, addr(PHONE_B));
        // A leg that never latched has nowhere to go rather than 0.0.0.0.
        let mut s = MediaSession::bridge(
            config(),
            setup(Some(PHONE_A), &[(0, PCMU)]),
            setup(Some("0.0.0.0:40010"), &[(0, PCMU)]),
            t0,
        );
        assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 1, 0, 1), t0), None);
        assert_eq!(s.stats(Leg::A).unwrap().dropped_no_destination, 1);
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 2];
        assert_eq!(s.on_rtcp(Leg::A, addr("127.0.0.1:40001"), &rr, t0), None);
    }

    #[test]
    fn reinvite_renumbering_payload_types_maps_by_codec() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        let renumbered = params(PHONE_B, &[(8, PCMA), (120, TE)]);
        s.update_leg(Leg::B, renumbered, t0).unwrap();
        let mut buf = vec![0; 16];
        write_packet(&mut buf, 101, false, 1, 0, 1, &[1, 0, 0, 160]).unwrap();
        s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t0).unwrap();
        assert_eq!(header(&buf).0, 120);
        assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 2, 0, 1), t0), None, "B dropped PCMU");
    }

    /// After a re-INVITE the caller's phone restarts its stream (new SSRC,
    /// sequence and timestamp); B must see one stream continue.
    #[test]
    fn ssrc_change_keeps_the_receivers_stream_continuous() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        let mut t = t0;
        for i in 0..50u16 {
            let mut buf = rtp(0, 1000 + i, 16000 + 160 * u32::from(i), 0x1111);
            s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t).unwrap();
            assert_eq!(header(&buf), (0, false, 1000 + i, 16000 + 160 * u32::from(i), 0x1111));
            t += ms(20);
        }
        // Last sent: seq 1049, ts 23840 at t0 + 980 ms. The new stream starts 20 ms later.
        let mut buf = rtp(0, 7, 999_999, 0x2222);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t).unwrap();
        assert_eq!(header(&buf), (0, true, 1050, 24000, 0x1111), "seq + 1, ts + 20 ms, same SSRC, marker");
        let mut buf = rtp(0, 8, 999_999 + 160, 0x2222);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t + ms(20)).unwrap();
        assert_eq!(header(&buf), (0, false, 1051, 24160, 0x1111));
        assert_eq!(s.stats(Leg::B).unwrap().stream_changes, 1);

        // A late packet of the old stream is just another switch-over: still continuous.
        let mut buf = rtp(0, 1049, 23840, 0x1111);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t + ms(30)).unwrap();
        assert_eq!(header(&buf).2, 1052);
    }

    #[test]
    fn a_timestamp_gap_follows_the_wall_clock() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 1, 0, 0x1111), t0).unwrap();
        let mut buf = rtp(0, 1, 0, 0x2222);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(header(&buf), (0, true, 2, 24000, 0x1111));
    }

    #[test]
    fn a_sequence_restart_with_the_same_ssrc_is_a_switch_over() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 40000, 0, 7), t0).unwrap();
        // Reordering (100 behind) and loss (2999 ahead) pass through.
        let mut late = rtp(0, 39900, 0, 7);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut late, t0).unwrap();
        assert_eq!(header(&late).2, 39900);
        let mut lossy = rtp(0, 42999, 480, 7);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut lossy, t0 + ms(20)).unwrap();
        assert_eq!(header(&lossy).2, 42999);
        // The phone restarted at 1.
        let mut restarted = rtp(0, 1, 0, 7);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut restarted, t0 + ms(40)).unwrap();
        assert_eq!(header(&restarted), (0, true, 43000, 480 + 160, 7));
    }

    #[test]
    fn hold_forwards_nothing_and_resumes_continuously() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 10, 1600, 0xa), t0).unwrap();
        s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 90, 800, 0xb), t0).unwrap();
        s.set_mode(Mode::Hold { held: Leg::B }, t0).unwrap();
        assert_eq!(s.poll_timeout(), None, "no inactivity on hold");
        assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 11, 1760, 0xa), t0 + ms(20)), None);
        assert_eq!(s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 91, 960, 0xb), t0 + ms(20)), None);
        assert_eq!(s.stats(Leg::A).unwrap().dropped_by_mode, 1);
        assert_eq!(s.stats(Leg::B).unwrap().dropped_by_mode, 1);
        // RTCP still flows.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 2];
        assert_eq!(s.on_rtcp(Leg::A, addr("127.0.0.1:40001"), &rr, t0).unwrap().leg, Leg::B);

        // Music on hold continues B's stream.
        let mut moh = rtp(0, 5000, 77, 0x3333);
        assert_eq!(s.inject(Leg::B, &mut moh, t0 + ms(40)).unwrap().to, addr(PHONE_B));
        assert_eq!(header(&moh), (0, true, 11, 1600 + 320, 0xa));

        s.set_mode(Mode::Bridge, t0 + ms(60)).unwrap();
        let mut buf = rtp(0, 12, 1920, 0xa);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t0 + ms(60)).unwrap();
        assert_eq!(header(&buf), (0, true, 12, 1920 + 160, 0xa), "after the music, A's stream again");
    }

    #[test]
    fn a_leg_fed_by_injection_hears_nothing_else() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 10, 1600, 0xa), t0).unwrap();
        s.set_injecting(Leg::B, true).unwrap();
        // A prompt plays to B in a bridged call: A's audio for B is dropped.
        let mut prompt = rtp(8, 300, 48000, 0x5555);
        assert_eq!(s.inject(Leg::B, &mut prompt, t0 + ms(20)).unwrap().to, addr(PHONE_B));
        assert_eq!(header(&prompt), (8, true, 11, 1600 + 160, 0xa), "B's stream continues");
        assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 11, 1760, 0xa), t0 + ms(20)), None);
        let mut prompt = rtp(8, 301, 48160, 0x5555);
        s.inject(Leg::B, &mut prompt, t0 + ms(40)).unwrap();
        assert_eq!(header(&prompt), (8, false, 12, 1600 + 320, 0xa), "one stream, no switch-over");
        // B is still heard.
        assert_eq!(s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 1, 0, 0xb), t0 + ms(40)).unwrap().leg, Leg::A);
        assert_eq!(s.stats(Leg::A).unwrap().dropped_by_mode, 1);
        assert_eq!(s.stats(Leg::B).unwrap().stream_changes, 1);
        // The prompt stops: A's audio again, continuing the stream.
        s.set_injecting(Leg::B, false).unwrap();
        let mut buf = rtp(0, 12, 1920, 0xa);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t0 + ms(60)).unwrap();
        assert_eq!(header(&buf), (0, true, 13, 1600 + 480, 0xa));
        assert_eq!(s.payloads(Leg::B).unwrap().payload_type(PCMU), Some(0));
        let mut echo = MediaSession::echo(config(), setup(None, &[(0, PCMU)]), t0);
        assert!(matches!(echo.set_injecting(Leg::B, true), Err(MediaError::NoSuchLeg { leg: Leg::B })));
        assert!(echo.payloads(Leg::B).is_none());
    }

    #[test]
    fn echo_returns_packets_to_their_sender() {
        let t0 = Instant::now();
        let mut s = MediaSession::echo(config(), setup(None, &[(0, PCMU), (101, TE)]), t0);
        let mut buf = rtp(0, 1, 160, 0x1234);
        let fwd = s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t0).unwrap();
        assert_eq!(fwd, Forward { leg: Leg::A, to: addr(PHONE_A), channel: Channel::Rtp });
        let (pt, _, seq, ts, ssrc) = header(&buf);
        assert_eq!((pt, seq, ts), (0, 1, 160));
        assert_ne!(ssrc, 0x1234, "the phone must not see its own SSRC");
        // RTCP is not echoed.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 2];
        assert_eq!(s.on_rtcp(Leg::A, addr(PHONE_A), &rr, t0), None);
        // No leg B to bridge or hold.
        assert!(matches!(s.set_mode(Mode::Bridge, t0), Err(MediaError::NoLegB { .. })));
        assert!(s.set_mode(Mode::Hold { held: Leg::B }, t0).is_err());
        assert!(s.update_leg(Leg::B, LegParams::default(), t0).is_err());
    }

    #[test]
    fn echo_mode_in_a_bridged_call_drops_leg_b() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        s.set_mode(Mode::Echo, t0).unwrap();
        assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 1, 0, 1), t0).unwrap().leg, Leg::A);
        assert_eq!(s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 1, 0, 2), t0), None);
        assert_eq!(s.stats(Leg::B).unwrap().dropped_by_mode, 1);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)), "only A is expected to send");
    }

    #[test]
    fn rtcp_is_relayed_unchanged_to_the_latched_address() {
        let t0 = Instant::now();
        let mut a = setup(Some(PHONE_A), &[(0, PCMU)]);
        a.rtcp_mux = true;
        let mut s = MediaSession::bridge(config(), a, setup(Some(PHONE_B), &[(0, PCMU)]), t0);
        let sr = [0x80, 200, 0, 1, 0, 0, 0, 0xa];
        // A muxes: its RTCP arrives on the RTP port and leaves B's RTCP port.
        let mut buf = sr;
        let fwd = s.on_rtp(Leg::A, addr(PHONE_A), &mut buf, t0).unwrap();
        assert_eq!(fwd, Forward { leg: Leg::B, to: addr("127.0.0.1:40011"), channel: Channel::Rtcp });
        assert_eq!(buf, sr);
        // B's RTCP goes to A's RTP address (mux), from A's RTP socket.
        let fwd = s.on_rtcp(Leg::B, addr("127.0.0.1:40011"), &sr, t0).unwrap();
        assert_eq!(fwd, Forward { leg: Leg::A, to: addr(PHONE_A), channel: Channel::Rtp });
        // RTCP latches like RTP: another source is dropped.
        assert_eq!(s.on_rtcp(Leg::B, addr("127.0.0.1:7777"), &sr, t0 + ms(10)), None);
        let b = s.stats(Leg::B).unwrap();
        assert_eq!((b.rtcp_packets_in, b.rtcp_packets_out, b.dropped_wrong_source), (1, 1, 1));
        assert_eq!(b.rtcp_source, Some(addr("127.0.0.1:40011")));
        assert_eq!(s.on_rtcp(Leg::B, addr("127.0.0.1:40011"), &sr[..6], t0), None);
        assert_eq!(s.stats(Leg::B).unwrap().dropped_malformed, 1);
    }

    #[test]
    fn inactivity_is_reported_exactly_at_the_timeout() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        let timeout = Duration::from_secs(10);
        let last_a = t0 + ms(500);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 1, 0, 1), last_a).unwrap();
        let last_b = t0 + ms(700);
        s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 1, 0, 2), last_b).unwrap();
        assert_eq!(s.poll_timeout(), Some(last_a + timeout));
        assert_eq!(s.handle_timeout(last_a + timeout - Duration::from_nanos(1)), []);
        assert_eq!(s.handle_timeout(last_a + timeout), [MediaEvent::Inactive { leg: Leg::A, silent_for: timeout }]);
        // Reported once; B's deadline is next.
        assert_eq!(s.poll_timeout(), Some(last_b + timeout));
        assert_eq!(s.handle_timeout(last_b + timeout), [MediaEvent::Inactive { leg: Leg::B, silent_for: timeout }]);
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.handle_timeout(last_b + timeout * 2), []);
        // A packet re-arms it.
        let back = t0 + Duration::from_secs(30);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 2, 160, 1), back).unwrap();
        assert_eq!(s.poll_timeout(), Some(back + timeout));
    }

    #[test]
    fn inactivity_waits_for_the_start_grace() {
        let t0 = Instant::now();
        let config = SessionConfig { start_grace: Duration::from_secs(5), ..config() };
        let mut s = MediaSession::echo(config, setup(None, &[(0, PCMU)]), t0);
        let due = t0 + Duration::from_secs(15);
        assert_eq!(s.poll_timeout(), Some(due), "never sent: grace, then the timeout");
        assert_eq!(s.handle_timeout(due - ms(1)), []);
        assert_eq!(s.handle_timeout(due), [MediaEvent::Inactive { leg: Leg::A, silent_for: Duration::from_secs(15) }]);
        // A packet inside the grace does not shorten it.
        let mut s = MediaSession::echo(config, setup(None, &[(0, PCMU)]), t0);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 1, 0, 1), t0 + ms(100)).unwrap();
        assert_eq!(s.poll_timeout(), Some(due));
        // Resuming from hold starts a new grace.
        s.set_mode(Mode::Hold { held: Leg::A }, t0 + Duration::from_secs(1)).unwrap();
        let resumed = t0 + Duration::from_secs(100);
        s.set_mode(Mode::Echo, resumed).unwrap();
        assert_eq!(s.poll_timeout(), Some(resumed + Duration::from_secs(15)));
    }

    /// Sends `seqs` from A, one every 20 ms from `t`, timestamps following the
    /// sequence numbers; returns the time after the last.
    fn send_a(s: &mut MediaSession, seqs: impl IntoIterator<Item = u16>, mut t: Instant) -> Instant {
        for seq in seqs {
            s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, seq, u32::from(seq) * 160, 7), t).unwrap();
            t += ms(20);
        }
        t
    }

    #[test]
    fn loss_is_counted_from_sequence_gaps_across_a_wrap() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        // 65530..=65535 then 0..=9, with 3 and 4 missing: 16 expected, 2 lost.
        let t = send_a(&mut s, (65530..=65535).chain(0..10).filter(|&q| q != 3 && q != 4), t0);
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.rtp_packets_in, a.rtp_packets_expected, a.rtp_packets_lost), (14, 16, 2));
        assert_eq!(a.rtp_highest_seq, 0x1_0009, "one wrap");
        assert_eq!(s.stats(Leg::B).unwrap().rtp_packets_lost, 0, "B sent nothing");
        // One of them arrives late: reordered, no longer lost.
        let t = send_a(&mut s, [3], t);
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.rtp_packets_expected, a.rtp_packets_lost, a.rtp_packets_reordered), (16, 1, 1));
        // Duplicates make up for more than the loss: the count stops at zero.
        let t = send_a(&mut s, [9, 9], t);
        assert_eq!(s.stats(Leg::A).unwrap().rtp_packets_lost, 0);
        // Loss goes on being counted.
        send_a(&mut s, [20], t);
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.rtp_packets_expected, a.rtp_packets_lost, a.rtp_highest_seq), (27, 9, 0x1_0014));
    }

    #[test]
    fn reordering_is_counted_up_to_max_misorder_behind() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        let t = send_a(&mut s, (1..=200).filter(|&q| q != 150), t0);
        // 50 behind, then 100 behind (a duplicate too): reordered, not a restart.
        let t = send_a(&mut s, [150, 100], t);
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.rtp_packets_expected, a.rtp_packets_lost, a.rtp_packets_reordered), (200, 0, 2));
        assert_eq!(a.rtp_highest_seq, 200);
        // 101 behind is a restart (RFC 3550 A.1): a new source from 99.
        send_a(&mut s, [99, 100], t);
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.rtp_packets_expected, a.rtp_packets_lost, a.rtp_packets_reordered), (202, 0, 2));
        assert_eq!(a.rtp_highest_seq, 100);
    }

    #[test]
    fn jitter_is_zero_for_steady_packets() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        let t = send_a(&mut s, 1..=50, t0);
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.jitter_us, a.max_jitter_us), (0, 0));
        // A telephone-event's timestamp is the event's start: left out.
        let mut event = vec![0; 16];
        write_packet(&mut event, 101, false, 51, 0, 7, &[1, 0, 0, 160]).unwrap();
        s.on_rtp(Leg::A, addr(PHONE_A), &mut event, t).unwrap();
        send_a(&mut s, 52..=60, t + ms(20));
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.rtp_packets_in, a.rtp_packets_lost, a.jitter_us, a.max_jitter_us), (60, 0, 0, 0));
    }

    /// Packets every 20 ms (160 ticks at 8 kHz) arriving at 0, 20, 50, 60 and
    /// 80 ms: transit times (arrival - timestamp, in ticks) 0, 0, 80, 0, 0, so
    /// |D| = 0, 80, 80, 0 and by RFC 3550 A.8 (J += (|D| - J) / 16)
    /// J = 0, 5, 9.6875, 9.08203125 ticks of 125 µs: 1211 µs at most, 1135 µs last.
    #[test]
    fn jitter_follows_rfc_3550_a8_in_the_codecs_clock() {
        let arrivals = [0, 20, 50, 60, 80];
        let t0 = Instant::now();
        let mut s = bridged(t0);
        for (i, at) in arrivals.into_iter().enumerate() {
            let i = i as u16;
            s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, i, u32::from(i) * 160, 7), t0 + ms(at)).unwrap();
        }
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.jitter_us, a.max_jitter_us), (1135, 1211));
        // Steady packets from then on: the estimate decays to nothing, the maximum stays.
        send_a(&mut s, 5..300, t0 + ms(100));
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.jitter_us, a.max_jitter_us), (0, 1211));

        // Opus: the same arrivals at 960 ticks a packet give the same microseconds.
        let opus = [(111, Codec::Opus)];
        let mut s = MediaSession::bridge(config(), setup(Some(PHONE_A), &opus), setup(Some(PHONE_B), &opus), t0);
        for (i, at) in arrivals.into_iter().enumerate() {
            let i = i as u16;
            s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(111, i, 5000 + u32::from(i) * 960, 7), t0 + ms(at)).unwrap();
        }
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.jitter_us, a.max_jitter_us), (1135, 1211));
    }

    #[test]
    fn a_new_ssrc_or_a_sequence_restart_starts_a_new_source() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        // 1000..=1049 every 20 ms, 1010 lost.
        let mut t = t0;
        for seq in 1000..1050u16 {
            if seq != 1010 {
                s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, seq, u32::from(seq) * 160, 7), t).unwrap();
            }
            t += ms(20);
        }
        // Another SSRC far away in sequence and timestamp: no loss, no jitter from the jump.
        for i in 0..10u16 {
            s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 7 + i, 999_999 + u32::from(i) * 160, 0x2222), t).unwrap();
            t += ms(20);
        }
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.rtp_packets_expected, a.rtp_packets_lost, a.rtp_highest_seq), (60, 1, 16));
        assert_eq!((a.rtp_packets_reordered, a.jitter_us, a.max_jitter_us), (0, 0, 0));
        // The same SSRC restarting its sequence (a jump by A.1) is a new source too.
        for i in 0..5u16 {
            s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 40000 + i, u32::from(i) * 160, 0x2222), t).unwrap();
            t += ms(20);
        }
        let a = s.stats(Leg::A).unwrap();
        assert_eq!((a.rtp_packets_expected, a.rtp_packets_lost, a.rtp_highest_seq), (65, 1, 40004));
        assert_eq!((a.jitter_us, a.max_jitter_us), (0, 0));
    }

    fn one_way_config() -> SessionConfig {
        SessionConfig { one_way_after: Some(Duration::from_secs(5)), ..config() }
    }

    /// A bridged PCMU call, both phones' addresses known, one-way after 5 s.
    fn one_way_call(t0: Instant) -> MediaSession {
        let (a, b) = (setup(Some(PHONE_A), &[(0, PCMU)]), setup(Some(PHONE_B), &[(0, PCMU)]));
        MediaSession::bridge(one_way_config(), a, b, t0)
    }

    /// A sends every 100 ms from `from` until before `until` (forwarded or not,
    /// by the mode); returns `until`.
    fn a_talks(s: &mut MediaSession, from: Instant, until: Instant) -> Instant {
        let mut t = from;
        let mut seq = 0u16;
        while t < until {
            seq = seq.wrapping_add(1);
            // The sequence numbers do not matter here.
            let _ = s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, seq, u32::from(seq) * 800, 0xa), t);
            t += ms(100);
        }
        until
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn one_way_audio_is_reported_at_the_threshold_and_ends_when_audio_returns() {
        let t0 = Instant::now();
        let mut s = one_way_call(t0);
        let last_b = t0 + ms(500);
        s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 1, 0, 0xb), last_b).unwrap();
        a_talks(&mut s, t0, t0 + secs(5));
        let due = last_b + secs(5);
        assert_eq!(s.poll_timeout(), Some(due));
        assert_eq!(s.handle_timeout(due - Duration::from_nanos(1)), []);
        assert_eq!(s.handle_timeout(due), [MediaEvent::OneWay { silent: Leg::B, silent_for: secs(5) }]);
        // Once; then B's inactivity is next.
        a_talks(&mut s, t0 + secs(5), t0 + secs(7));
        assert_eq!(s.handle_timeout(t0 + secs(7)), []);
        assert_eq!(s.poll_timeout(), Some(last_b + secs(10)));
        // B is heard again: the end is due at once, and said once.
        let back = t0 + secs(7);
        s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 2, 160, 0xb), back).unwrap();
        assert_eq!(s.poll_timeout(), Some(back));
        assert_eq!(s.handle_timeout(back), [MediaEvent::OneWayEnded { leg: Leg::B }]);
        assert_eq!(s.handle_timeout(back + ms(1)), []);
        // And it can happen again, measured from B's last packet.
        a_talks(&mut s, back, back + secs(5));
        assert_eq!(s.poll_timeout(), Some(back + secs(5)));
        assert_eq!(s.handle_timeout(back + secs(5)), [MediaEvent::OneWay { silent: Leg::B, silent_for: secs(5) }]);
    }

    #[test]
    fn a_leg_that_never_sends_is_one_way_after_the_grace() {
        let t0 = Instant::now();
        let config = SessionConfig { start_grace: secs(2), ..one_way_config() };
        let mut s = MediaSession::bridge(
            config,
            setup(Some(PHONE_A), &[(0, PCMU)]),
            setup(Some(PHONE_B), &[(0, PCMU)]),
            t0,
        );
        a_talks(&mut s, t0, t0 + secs(7));
        assert_eq!(s.poll_timeout(), Some(t0 + secs(7)));
        assert_eq!(s.handle_timeout(t0 + ms(6999)), []);
        assert_eq!(s.handle_timeout(t0 + secs(7)), [MediaEvent::OneWay { silent: Leg::B, silent_for: secs(7) }]);
        // A re-INVITE for B re-arms it, with a new grace.
        let updated = t0 + secs(8);
        s.update_leg(Leg::B, params(PHONE_B, &[(0, PCMU)]), updated).unwrap();
        assert_eq!(s.handle_timeout(updated), [MediaEvent::OneWayEnded { leg: Leg::B }]);
        a_talks(&mut s, updated, updated + secs(7));
        assert_eq!(s.poll_timeout(), Some(updated + secs(7)));
        let again = s.handle_timeout(updated + secs(7));
        assert_eq!(again, [MediaEvent::OneWay { silent: Leg::B, silent_for: secs(7) }]);
    }

    #[test]
    fn both_legs_silent_is_not_one_way() {
        let t0 = Instant::now();
        let mut s = one_way_call(t0);
        a_talks(&mut s, t0, t0 + secs(1));
        let last = t0 + ms(900);
        s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(0, 1, 0, 0xb), last).unwrap();
        assert_eq!(s.poll_timeout(), Some(last + secs(10)), "only inactivity is due");
        assert_eq!(s.handle_timeout(last + secs(5)), []);
        assert_eq!(s.handle_timeout(last + secs(6)), []);
        // A starts again while B is still silent: one-way from that packet on.
        let resumed = last + secs(7);
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 100, 16000, 0xa), resumed).unwrap();
        assert_eq!(s.poll_timeout(), Some(resumed));
        assert_eq!(s.handle_timeout(resumed), [MediaEvent::OneWay { silent: Leg::B, silent_for: secs(7) }]);
    }

    #[test]
    fn one_way_is_not_reported_on_hold_or_in_echo() {
        let t0 = Instant::now();
        let mut s = one_way_call(t0);
        a_talks(&mut s, t0, t0 + secs(5));
        assert_eq!(s.handle_timeout(t0 + secs(5)), [MediaEvent::OneWay { silent: Leg::B, silent_for: secs(5) }]);
        // Hold ends the episode, and nothing is reported while A goes on talking.
        let held = t0 + secs(6);
        s.set_mode(Mode::Hold { held: Leg::B }, held).unwrap();
        assert_eq!(s.poll_timeout(), Some(held));
        assert_eq!(s.handle_timeout(held), [MediaEvent::OneWayEnded { leg: Leg::B }]);
        a_talks(&mut s, held, t0 + secs(30));
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.handle_timeout(t0 + secs(30)), []);
        // Resumed: measured afresh from the mode change.
        let resumed = t0 + secs(30);
        s.set_mode(Mode::Bridge, resumed).unwrap();
        a_talks(&mut s, resumed, resumed + secs(5));
        assert_eq!(s.poll_timeout(), Some(resumed + secs(5)));
        let events = s.handle_timeout(resumed + secs(5));
        assert_eq!(events, [MediaEvent::OneWay { silent: Leg::B, silent_for: secs(5) }]);
        // Echo: B is not expected to send.
        let echo_at = resumed + secs(6);
        s.set_mode(Mode::Echo, echo_at).unwrap();
        assert_eq!(s.handle_timeout(echo_at), [MediaEvent::OneWayEnded { leg: Leg::B }]);
        a_talks(&mut s, echo_at, echo_at + secs(9));
        assert_eq!(s.handle_timeout(echo_at + secs(9)), []);
    }

    #[test]
    fn one_way_detection_can_be_turned_off() {
        let t0 = Instant::now();
        for off in [None, Some(Duration::ZERO)] {
            let config = SessionConfig { one_way_after: off, ..one_way_config() };
            let mut s = MediaSession::bridge(
                config,
                setup(Some(PHONE_A), &[(0, PCMU)]),
                setup(Some(PHONE_B), &[(0, PCMU)]),
                t0,
            );
            a_talks(&mut s, t0, t0 + secs(9));
            assert_eq!(s.poll_timeout(), Some(t0 + secs(10)), "B's inactivity only");
            assert_eq!(s.handle_timeout(t0 + secs(9)), []);
        }
        assert_eq!(SessionConfig::default().one_way_after, Some(secs(5)));
    }

    #[test]
    fn malformed_packets_are_counted_never_fatal() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x80],
            vec![0x80, 0],
            vec![0x40; 12],
            vec![0x8f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], // 15 CSRCs, none present
            vec![0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff], // extension overruns
            vec![0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff], // padding overruns
            vec![0x80, 200, 0, 9, 0, 0, 0, 1],           // RTCP whose length overruns
            vec![0x80; MAX_PACKET_LEN + 1],              // oversized
        ];
        let count = inputs.len() as u64;
        for buf in &mut inputs {
            assert_eq!(s.on_rtp(Leg::A, addr(PHONE_A), buf, t0), None);
        }
        assert_eq!(s.stats(Leg::A).unwrap().dropped_malformed, count);
        assert_eq!(s.stats(Leg::A).unwrap().rtp_source, None, "nothing malformed latches");

        // Pseudo-random datagrams on every entry point, both legs.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut buf = [0u8; 200];
        for round in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 200) as usize;
            for (i, b) in buf[..len].iter_mut().enumerate() {
                *b = (state.rotate_left(i as u32 * 5) as u8) ^ (i as u8);
            }
            if round % 2 == 0 {
                buf[0] = 0x80 | (buf[0] & 0x3f);
            }
            let leg = if round % 3 == 0 { Leg::B } else { Leg::A };
            let from = SocketAddr::new([127, 0, 0, 1].into(), 40000 + (state % 3) as u16);
            let now = t0 + ms(u64::from(round));
            let _ = s.on_rtp(leg, from, &mut buf[..len], now);
            let _ = s.on_rtcp(leg, from, &buf[..len], now);
            let _ = s.inject(leg, &mut buf[..len], now);
        }
    }

    #[test]
    fn payload_maps_reject_what_cannot_work() {
        assert!(PayloadMap::new(&[(0, PCMU), (8, PCMA), (101, TE)]).is_ok());
        let text = |entries: &[(u8, Codec)]| PayloadMap::new(entries).unwrap_err().to_string();
        assert_eq!(text(&[(128, PCMU)]), "payload type 128 is not usable: payload types are 0-127");
        assert!(text(&[(72, PCMU)]).contains("RFC 5761"));
        assert_eq!(text(&[(0, PCMU), (0, PCMA)]), "payload type 0 is not usable: it is listed twice");
        let many: Vec<(u8, Codec)> = (0..33).map(|pt| (pt, PCMU)).collect();
        assert_eq!(text(&many), "payload map has 33 entries, more than the 32 allowed");
    }

    #[test]
    fn codecs_from_sdp() {
        assert_eq!(Codec::from_rtpmap("PCMU", 8000), Some(PCMU));
        assert_eq!(Codec::from_rtpmap("pcma", 8000), Some(PCMA));
        assert_eq!(Codec::from_rtpmap("telephone-event", 48000), Some(Codec::TelephoneEvent { clock_rate: 48000 }));
        assert_eq!(Codec::from_rtpmap("opus", 48000), Some(Codec::Opus));
        assert_eq!(Codec::from_rtpmap("PCMU", 16000), None);
        assert_eq!(Codec::from_rtpmap("AMR", 8000), None);
        assert_eq!(Codec::Pcma.static_payload_type(), Some(8));
        assert_eq!(TE.static_payload_type(), None);
    }

    /// The relay path allocates nothing per packet, switch-overs, drops,
    /// telephone-events and in-band keys included (counted by the test
    /// allocator in lib.rs).
    #[test]
    fn on_rtp_allocates_nothing() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        // B listens for tones: it sends key 7 for 100 ms in every 200.
        let mut listening = s.payloads(Leg::B).map(|payloads| params(PHONE_B, payloads.entries())).unwrap();
        listening.inband_dtmf = true;
        s.update_leg(Leg::B, listening, t0).unwrap();
        let tones: Vec<[u8; 160]> = (0..10).map(|n| key_7_frame(0..5, n, crate::g711::linear_to_alaw)).collect();
        let mut keys = [0usize; 2];
        let mut a = rtp(0, 1, 0, 0xa);
        let mut b = rtp(8, 1, 0, 0xb);
        let mut event = vec![0; 16];
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 2];
        let intruder = addr("127.0.0.1:6666");
        // Latch first: the debug line logged then is not on the steady path.
        s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 0, 0, 0xa), t0).unwrap();
        s.on_rtp(Leg::B, addr(PHONE_B), &mut rtp(8, 0, 0, 0xb), t0).unwrap();
        let before = crate::test_alloc::allocations_on_this_thread();
        for i in 0..2000u16 {
            let now = t0 + ms(u64::from(i) * 20);
            let ssrc = if i < 1000 { 0xa } else { 0xaa };
            write_packet(&mut a, 0, false, i, u32::from(i) * 160, ssrc, &[0xd5; 160]).unwrap();
            assert!(s.on_rtp(Leg::A, addr(PHONE_A), &mut a, now).is_some());
            write_packet(&mut b, 8, false, i, u32::from(i) * 160, 0xb, &tones[usize::from(i % 10)]).unwrap();
            assert!(s.on_rtp(Leg::B, addr(PHONE_B), &mut b, now).is_some());
            assert!(s.on_rtp(Leg::A, intruder, &mut a, now).is_none());
            if i % 100 == 0 {
                // Events without an end: each new one reports the one before.
                write_packet(&mut event, 101, false, i, u32::from(i) * 160, 0xa, &[1, 0, 0, 160]).unwrap();
                assert!(s.on_rtp(Leg::A, addr(PHONE_A), &mut event, now).is_some());
                assert!(s.on_rtcp(Leg::B, addr("127.0.0.1:40011"), &rr, now).is_some());
            }
            while let Some(MediaEvent::Digit { leg, .. }) = s.take_digit() {
                keys[leg.index()] += 1;
            }
        }
        assert_eq!(crate::test_alloc::allocations_on_this_thread() - before, 0);
        assert_eq!(keys, [19, 200], "telephone-events from A, tones from B");
        // The counter does see allocations.
        let boxed = std::hint::black_box(Box::new(before));
        assert!(crate::test_alloc::allocations_on_this_thread() > before, "{boxed}");
    }

    /// RFC 3550 A.1's count of sequence number wraps saturates: 2^32 wraps (some
    /// 10^11 packets of one source) would overflow it, and the loss count with it.
    #[test]
    fn sequence_wraps_past_the_cycle_count_do_not_overflow() {
        let t0 = Instant::now();
        let mut s = bridged(t0);
        assert!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 60000, 0, 7), t0).is_some());
        let Some(source) = s.legs[0].as_mut().and_then(|a| a.reception.current.as_mut()) else { panic!("no source") };
        source.cycles = u32::MAX - 1;
        // Steps of 2000 (in order, under MAX_DROPOUT): three more wraps.
        let mut seq = 60000u16;
        for i in 1..=100u32 {
            seq = seq.wrapping_add(2000);
            let now = t0 + ms(u64::from(i) * 20);
            assert!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, seq, i * 160, 7), now).is_some(), "packet {i}");
        }
        let stats = s.stats(Leg::A).unwrap();
        assert_eq!(stats.rtp_packets_in, 101);
        assert!(stats.rtp_packets_expected > u64::from(u32::MAX) << 16, "{stats:?}");
        assert!(stats.rtp_packets_lost <= stats.rtp_packets_expected);
        // A new source starts from zero cycles; the old one's counts are kept.
        assert!(s.on_rtp(Leg::A, addr(PHONE_A), &mut rtp(0, 1, 0, 8), t0 + ms(2020)).is_some());
        let stats = s.stats(Leg::A).unwrap();
        assert_eq!(stats.rtp_highest_seq, 1);
        assert!(stats.rtp_packets_expected > u64::from(u32::MAX) << 16, "{stats:?}");
    }

    /// The drop counters of a leg, summed.
    fn drops(stats: &LegStats) -> u64 {
        stats.dropped_wrong_source
            + stats.dropped_unknown_pt
            + stats.dropped_malformed
            + stats.dropped_by_mode
            + stats.dropped_no_destination
    }

    /// What a peer's SDP may say: any payload types the map accepts (clock
    /// rates of telephone-event included), and addresses that are absent,
    /// unspecified, port 0, port 65535 (no RTCP port above it) or IPv6.
    fn random_params(rng: &mut impl rand::RngExt) -> LegParams {
        const ADDRS: [&str; 8] = [
            PHONE_A,
            PHONE_B,
            "0.0.0.0:4000",
            "127.0.0.1:0",
            "127.0.0.1:65535",
            "[::1]:40000",
            "10.0.0.5:4000",
            "[::]:5000",
        ];
        let mut random_addr = || {
            let i = rng.random_range(0..ADDRS.len() + 2);
            (i < ADDRS.len()).then(|| addr(ADDRS[i]))
        };
        let (remote_rtp, remote_rtcp) = (random_addr(), random_addr());
        let codecs = [
            PCMU,
            PCMA,
            Codec::G722,
            Codec::G729,
            Codec::Opus,
            Codec::ComfortNoise,
            TE,
            Codec::TelephoneEvent { clock_rate: 48000 },
            Codec::TelephoneEvent { clock_rate: 1 },
            Codec::TelephoneEvent { clock_rate: u32::MAX },
        ];
        // Mostly with PCMU, so that the legs have a codec in common.
        let mut entries: Vec<(u8, Codec)> = Vec::new();
        if rng.random_bool(0.8) {
            entries.push((if rng.random_bool(0.5) { 0 } else { rng.random_range(96..=127) }, PCMU));
        }
        for _ in 0..rng.random_range(0..8) {
            let pt = if rng.random_bool(0.5) { rng.random_range(0..=18) } else { rng.random_range(96..=127) };
            if entries.iter().all(|&(p, _)| p != pt) {
                entries.push((pt, codecs[rng.random_range(0..codecs.len())]));
            }
        }
        LegParams { remote_rtp, remote_rtcp, payloads: map(&entries), inband_dtmf: rng.random() }
    }

    fn random_bytes(rng: &mut impl rand::RngExt, buf: &mut Vec<u8>, n: usize) {
        let at = buf.len();
        buf.resize(at + n, 0);
        rng.fill(&mut buf[at..]);
    }

    /// A datagram as a peer or anyone else might send it: garbage of any length
    /// (oversized included), RTP with CSRC counts, extension lengths and padding
    /// that may lie, cut short anywhere, RTCP with any length field, and
    /// telephone-events of any length. RTP mostly continues `stream` (seq, ts,
    /// ssrc), so that packets are accepted, with jumps, wraps and new SSRCs.
    fn random_datagram(rng: &mut impl rand::RngExt, stream: &mut (u16, u32, u32), pts: &[u8], buf: &mut Vec<u8>) {
        buf.clear();
        match rng.random_range(0..10) {
            0 => {
                let len = rng.random_range(0..=64);
                random_bytes(rng, buf, len);
            }
            1 => {
                let len = rng.random_range(0..=MAX_PACKET_LEN + 1);
                random_bytes(rng, buf, len);
            }
            2 => {
                buf.extend([0x80 | rng.random_range(0..32), rng.random_range(192..=223)]);
                let len = rng.random_range(0..=40);
                random_bytes(rng, buf, len);
            }
            _ => {
                let (seq, ts, ssrc) = stream;
                match rng.random_range(0..20) {
                    0 => *seq = rng.random(),
                    1 => *seq = seq.wrapping_sub(rng.random_range(0..200)),
                    2 => *ssrc = rng.random_range(0..4),
                    3 => *ts = rng.random(),
                    _ => *seq = seq.wrapping_add(rng.random_range(1..3000)),
                }
                *ts = ts.wrapping_add(160);
                let pt = match pts {
                    [] => rng.random_range(0..128),
                    _ if rng.random_bool(0.1) => rng.random_range(0..128),
                    _ => pts[rng.random_range(0..pts.len())],
                };
                buf.resize(rtp::RTP_HEADER_LEN, 0);
                write_packet(buf, pt, rng.random_bool(0.1), *seq, *ts, *ssrc, &[]).unwrap();
                if rng.random_bool(0.2) {
                    let count = rng.random_range(0..16);
                    buf[0] |= count;
                    random_bytes(rng, buf, 4 * usize::from(count));
                }
                if rng.random_bool(0.2) {
                    buf[0] |= 0x10;
                    let words = rng.random_range(0..4u16);
                    // The length field mostly tells the truth.
                    let said = if rng.random_bool(0.8) { words } else { rng.random() };
                    buf.extend([0xbe, 0xde]);
                    buf.extend(said.to_be_bytes());
                    random_bytes(rng, buf, 4 * usize::from(words));
                }
                let payload = if rng.random_bool(0.5) { rng.random_range(0..8) } else { 160 };
                random_bytes(rng, buf, payload);
                if rng.random_bool(0.2) {
                    buf[0] |= 0x20;
                    let padding = rng.random_range(1..=4u8);
                    buf.extend((1..padding).map(|_| 0));
                    buf.push(if rng.random_bool(0.8) { padding } else { rng.random() });
                }
                if rng.random_bool(0.1) {
                    buf.truncate(rng.random_range(0..=buf.len()));
                }
            }
        }
    }

    /// Many sessions (bridge and echo, with and without rtcp-mux) fed random
    /// datagrams on their RTP and RTCP sockets from a few sources, with time
    /// going forward by steps of any size (now and then back), and re-INVITEs,
    /// mode changes, prompts and timeouts in between: nothing panics, and each
    /// datagram is either forwarded (a still valid packet, counted out on the
    /// leg it goes to) or dropped and counted once, on the leg it came on.
    #[test]
    fn random_datagrams_sdp_and_timing_never_panic_and_every_drop_is_counted() {
        use rand::rngs::Xoshiro256PlusPlus;
        use rand::{RngExt, SeedableRng};
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x7a4d_e3f0_2545_f491);
        let sources = [PHONE_A, PHONE_B, "127.0.0.1:40001", "127.0.0.1:40011", "127.0.0.1:6666", "[::1]:40000"];
        let mut buf = Vec::with_capacity(MAX_PACKET_LEN + 1);
        let (mut forwarded, mut dropped) = (0u64, 0u64);
        for _ in 0..60 {
            let t0 = Instant::now();
            let mut now = t0;
            let config = SessionConfig {
                rtp_timeout: ms(rng.random_range(1..60_000)),
                start_grace: ms(rng.random_range(0..10_000)),
                relatch_after: rng.random_bool(0.8).then(|| ms(rng.random_range(0..5_000))),
                one_way_after: rng.random_bool(0.8).then(|| ms(rng.random_range(0..10_000))),
            };
            let leg_setup =
                |rng: &mut Xoshiro256PlusPlus| LegSetup { rtcp_mux: rng.random_bool(0.5), params: random_params(rng) };
            let mut s = if rng.random_bool(0.8) {
                let a = leg_setup(&mut rng);
                MediaSession::bridge(config, a, leg_setup(&mut rng), t0)
            } else {
                MediaSession::echo(config, leg_setup(&mut rng), t0)
            };
            let legs: &[Leg] = if s.has_leg(Leg::B) { &[Leg::A, Leg::B] } else { &[Leg::A] };
            let mut streams = [(rng.random(), rng.random(), 1), (rng.random(), rng.random(), 2)];
            for _ in 0..2_000 {
                now = match rng.random_range(0..100) {
                    0 => now + Duration::from_secs(rng.random_range(1..100_000)),
                    1 => now.checked_sub(ms(rng.random_range(0..5_000))).unwrap_or(now),
                    2..=9 => now + ms(rng.random_range(0..10_000)),
                    _ => now + ms(rng.random_range(0..40)),
                };
                let leg = legs[rng.random_range(0..legs.len())];
                match rng.random_range(0..100) {
                    0 => {
                        let _ = s.update_leg(leg, random_params(&mut rng), now);
                    }
                    1 => {
                        let held = legs[rng.random_range(0..legs.len())];
                        let modes = [Mode::Bridge, Mode::Bridge, Mode::Echo, Mode::Hold { held }];
                        let _ = s.set_mode(modes[rng.random_range(0..modes.len())], now);
                    }
                    2 => s.set_injecting(leg, rng.random_bool(0.3)).unwrap(),
                    3 => {
                        let pts: Vec<u8> = s.payloads(leg).unwrap().entries().iter().map(|&(pt, _)| pt).collect();
                        let mut stream = (rng.random(), rng.random(), 9);
                        random_datagram(&mut rng, &mut stream, &pts, &mut buf);
                        let _ = s.inject(leg, &mut buf, now);
                    }
                    4..=9 => {
                        let _ = s.poll_timeout();
                        let _ = s.handle_timeout(now);
                    }
                    _ => {}
                }
                let pts: Vec<u8> = s.payloads(leg).unwrap().entries().iter().map(|&(pt, _)| pt).collect();
                random_datagram(&mut rng, &mut streams[leg.index()], &pts, &mut buf);
                // Mostly the leg's phone, so that packets are accepted.
                let from = match (rng.random_bool(0.8), leg) {
                    (true, Leg::A) => addr(PHONE_A),
                    (true, Leg::B) => addr(PHONE_B),
                    (false, _) => addr(sources[rng.random_range(0..sources.len())]),
                };
                let before = [s.stats(Leg::A), s.stats(Leg::B)];
                let len = buf.len();
                // RTCP arrives on the RTCP socket, or muxed on the RTP one; anything may arrive on either.
                let rtcp_socket = rng.random_bool(if rtp::is_rtcp(&buf) { 0.5 } else { 0.05 });
                let forward =
                    if rtcp_socket { s.on_rtcp(leg, from, &buf, now) } else { s.on_rtp(leg, from, &mut buf, now) };
                let after = [s.stats(Leg::A), s.stats(Leg::B)];
                let (input_before, input_after) = (before[leg.index()].unwrap(), after[leg.index()].unwrap());
                assert_eq!(buf.len(), len);
                match forward {
                    Some(forward) => {
                        forwarded += 1;
                        assert_eq!(drops(&input_after), drops(&input_before), "forwarded and dropped: {buf:02x?}");
                        let out = |stats: Option<LegStats>| stats.map(|st| st.rtp_packets_out + st.rtcp_packets_out);
                        let i = forward.leg.index();
                        assert_eq!(out(after[i]), out(before[i]).map(|n| n + 1), "forwarded uncounted");
                        if rtp::classify(&buf) == rtp::PacketKind::Rtp {
                            let p = RtpPacket::parse(&buf[..]).unwrap();
                            assert!(s.payloads(forward.leg).unwrap().codec(p.payload_type()).is_some());
                        } else {
                            assert_eq!(rtp::check_rtcp(&buf), Ok(()));
                        }
                    }
                    None => {
                        dropped += 1;
                        assert_eq!(drops(&input_after), drops(&input_before) + 1, "not counted once: {buf:02x?}");
                    }
                }
                assert!(input_after.rtp_packets_lost <= input_after.rtp_packets_expected, "{input_after:?}");
            }
        }
        // Both outcomes were exercised, not just drops.
        assert!(forwarded > 10_000 && dropped > 10_000, "{forwarded} forwarded, {dropped} dropped");
    }
}
