//! RTP packets without copying: a header view over `&[u8]` that can also rewrite
//! the header in place over `&mut [u8]` (RFC 3550 §5.1), RTP/RTCP demultiplexing
//! on one port (RFC 5761 §4) and RFC 4733 telephone-event payloads.
//!
//! Everything here takes bytes from the network: every parse returns a `Result`
//! naming the fault, and nothing indexes past what it has checked.

/// Length of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;

/// Smallest RTCP packet: a receiver report with no report blocks.
pub const RTCP_MIN_LEN: usize = 8;

/// Why bytes are not a usable RTP or RTCP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("packet of {len} bytes is shorter than the 12-byte RTP header")]
    TooShort { len: usize },
    #[error("RTP version {version}, expected 2")]
    BadVersion { version: u8 },
    #[error("{count} CSRCs need a {needed}-byte header, the packet has {len} bytes")]
    CsrcTruncated { count: u8, needed: usize, len: usize },
    #[error("the header extension needs {needed} bytes, the packet has {len} bytes")]
    ExtensionTruncated { needed: usize, len: usize },
    #[error("padding count {count} does not fit the {available} bytes after the header")]
    BadPadding { count: u8, available: usize },
    #[error("RTCP packet of {len} bytes is shorter than the 8-byte minimum")]
    RtcpTooShort { len: usize },
    #[error("packet type {packet_type} is not RTCP (192-223)")]
    NotRtcp { packet_type: u8 },
    #[error("RTCP length field says {declared} bytes, the packet has {len} bytes")]
    RtcpLengthMismatch { declared: usize, len: usize },
    #[error("telephone-event payload of {len} bytes is shorter than 4 bytes")]
    EventTooShort { len: usize },
}

/// What a datagram on a media port is, from its first two bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    Rtp,
    Rtcp,
    /// Not version 2: STUN (first byte 0-3), DTLS (20-63) or junk (RFC 7983).
    Other,
}

/// Sorts a datagram for rtcp-mux: version 2 with a second byte in 192..=223 is
/// RTCP (RFC 5761 §4: those values are RTCP packet types, and RTP payload types
/// 64-95 that would collide are not used), any other version 2 packet is RTP.
pub fn classify(buf: &[u8]) -> PacketKind {
    match buf {
        [first, second, ..] if first >> 6 == 2 => {
            if is_rtcp_type(*second) {
                PacketKind::Rtcp
            } else {
                PacketKind::Rtp
            }
        }
        _ => PacketKind::Other,
    }
}

/// True if the second byte marks RTCP (RFC 5761 §4), whatever the rest holds.
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.get(1).is_some_and(|b| is_rtcp_type(*b))
}

fn is_rtcp_type(byte: u8) -> bool {
    (192..=223).contains(&byte)
}

/// Checks the first header of a (possibly compound) RTCP packet: version 2, an
/// RTCP packet type, and a length field that fits the datagram. The relay passes
/// RTCP on unchanged, so this is all it needs to know.
pub fn check_rtcp(buf: &[u8]) -> Result<(), RtpError> {
    if buf.len() < RTCP_MIN_LEN {
        return Err(RtpError::RtcpTooShort { len: buf.len() });
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion { version });
    }
    if !is_rtcp_type(buf[1]) {
        return Err(RtpError::NotRtcp { packet_type: buf[1] });
    }
    // Length is in 32-bit words minus one (RFC 3550 §6.4.1).
    let declared = (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1) * 4;
    if declared > buf.len() {
        return Err(RtpError::RtcpLengthMismatch { declared, len: buf.len() });
    }
    Ok(())
}

/// An RTP packet checked once at [`RtpPacket::parse`]; the accessors then read
/// fixed offsets. `B` is `&[u8]` to read, `&mut [u8]` to rewrite in place.
#[derive(Clone, Copy, Debug)]
pub struct RtpPacket<B> {
    buf: B,
    header_len: usize,
    payload_end: usize,
}

impl<B: AsRef<[u8]>> RtpPacket<B> {
    /// Checks version, CSRC count, extension length and padding against the length.
    pub fn parse(buf: B) -> Result<Self, RtpError> {
        let bytes = buf.as_ref();
        let len = bytes.len();
        if len < RTP_HEADER_LEN {
            return Err(RtpError::TooShort { len });
        }
        let version = bytes[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion { version });
        }
        let count = bytes[0] & 0x0f;
        let mut header_len = RTP_HEADER_LEN + 4 * usize::from(count);
        if header_len > len {
            return Err(RtpError::CsrcTruncated { count, needed: header_len, len });
        }
        if bytes[0] & 0x10 != 0 {
            // 16-bit profile, 16-bit length in words, then the words (RFC 3550 §5.3.1).
            let needed = header_len + 4;
            if needed > len {
                return Err(RtpError::ExtensionTruncated { needed, len });
            }
            let words = u16::from_be_bytes([bytes[header_len + 2], bytes[header_len + 3]]);
            let needed = needed + 4 * usize::from(words);
            if needed > len {
                return Err(RtpError::ExtensionTruncated { needed, len });
            }
            header_len = needed;
        }
        let mut payload_end = len;
        if bytes[0] & 0x20 != 0 {
            // The last byte counts the padding, itself included.
            let count = bytes[len - 1];
            let available = len - header_len;
            if count == 0 || usize::from(count) > available {
                return Err(RtpError::BadPadding { count, available });
            }
            payload_end = len - usize::from(count);
        }
        Ok(RtpPacket { buf, header_len, payload_end })
    }

    fn bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.bytes()[0] >> 6
    }

    pub fn has_padding(&self) -> bool {
        self.bytes()[0] & 0x20 != 0
    }

    pub fn has_extension(&self) -> bool {
        self.bytes()[0] & 0x10 != 0
    }

    pub fn csrc_count(&self) -> u8 {
        self.bytes()[0] & 0x0f
    }

    pub fn marker(&self) -> bool {
        self.bytes()[1] & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.bytes()[1] & 0x7f
    }

    pub fn sequence(&self) -> u16 {
        let b = self.bytes();
        u16::from_be_bytes([b[2], b[3]])
    }

    pub fn timestamp(&self) -> u32 {
        let b = self.bytes();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }

    pub fn ssrc(&self) -> u32 {
        let b = self.bytes();
        u32::from_be_bytes([b[8], b[9], b[10], b[11]])
    }

    /// The `index`th contributing source, if there is one.
    pub fn csrc(&self, index: usize) -> Option<u32> {
        if index >= usize::from(self.csrc_count()) {
            return None;
        }
        let at = RTP_HEADER_LEN + 4 * index;
        let b = self.bytes();
        Some(u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
    }

    /// The header extension: its profile-defined 16 bits and its data.
    pub fn extension(&self) -> Option<(u16, &[u8])> {
        if !self.has_extension() {
            return None;
        }
        let at = RTP_HEADER_LEN + 4 * usize::from(self.csrc_count());
        let b = self.bytes();
        Some((u16::from_be_bytes([b[at], b[at + 1]]), &b[at + 4..self.header_len]))
    }

    /// Fixed header, CSRCs and extension.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The payload, without padding.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len..self.payload_end]
    }

    pub fn padding_len(&self) -> usize {
        self.bytes().len() - self.payload_end
    }

    /// The whole packet as parsed.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes()
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> RtpPacket<B> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }

    pub fn set_marker(&mut self, marker: bool) {
        let b = self.bytes_mut();
        b[1] = (b[1] & 0x7f) | if marker { 0x80 } else { 0 };
    }

    /// Keeps the marker bit; only the low 7 bits of `pt` are used.
    pub fn set_payload_type(&mut self, pt: u8) {
        let b = self.bytes_mut();
        b[1] = (b[1] & 0x80) | (pt & 0x7f);
    }

    pub fn set_sequence(&mut self, seq: u16) {
        self.bytes_mut()[2..4].copy_from_slice(&seq.to_be_bytes());
    }

    pub fn set_timestamp(&mut self, ts: u32) {
        self.bytes_mut()[4..8].copy_from_slice(&ts.to_be_bytes());
    }

    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.bytes_mut()[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
}

/// An RFC 4733 §2.3 named event (DTMF digits are events 0-15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    /// Set on the last packets of the event (sent three times).
    pub end: bool,
    /// Power level in -dBm0, 0..=63.
    pub volume: u8,
    /// In RTP timestamp units since the event began.
    pub duration: u16,
}

impl TelephoneEvent {
    pub const LEN: usize = 4;

    /// Reads the first event of a payload (the R bit is ignored, as §2.3 asks).
    pub fn parse(payload: &[u8]) -> Result<Self, RtpError> {
        match payload {
            [event, flags, d0, d1, ..] => Ok(TelephoneEvent {
                event: *event,
                end: flags & 0x80 != 0,
                volume: flags & 0x3f,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => Err(RtpError::EventTooShort { len: payload.len() }),
        }
    }

    pub fn to_bytes(&self) -> [u8; 4] {
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3f);
        let [d0, d1] = self.duration.to_be_bytes();
        [self.event, flags, d0, d1]
    }

    /// The DTMF key for events 0-15 (RFC 4733 §3.2).
    pub fn digit(&self) -> Option<char> {
        b"0123456789*#ABCD".get(usize::from(self.event)).map(|b| char::from(*b))
    }
}

/// Builds a plain RTP packet into `out`; for tests and for generated media.
/// Returns the length written, or `None` if `out` is too small.
pub fn write_packet(
    out: &mut [u8],
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &[u8],
) -> Option<usize> {
    let len = RTP_HEADER_LEN + payload.len();
    let out = out.get_mut(..len)?;
    out[0] = 0x80;
    out[1] = (pt & 0x7f) | if marker { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    out[RTP_HEADER_LEN..].copy_from_slice(payload);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0; RTP_HEADER_LEN + payload.len()];
        write_packet(&mut buf, pt, false, seq, ts, ssrc, payload).unwrap();
        buf
    }

    #[test]
    fn reads_the_fixed_header() {
        let mut buf = packet(8, 0xbeef, 0x0102_0304, 0xdead_beef, b"abcd");
        buf[1] |= 0x80;
        let p = RtpPacket::parse(&buf[..]).unwrap();
        assert_eq!(p.version(), 2);
        assert!(p.marker());
        assert_eq!(p.payload_type(), 8);
        assert_eq!(p.sequence(), 0xbeef);
        assert_eq!(p.timestamp(), 0x0102_0304);
        assert_eq!(p.ssrc(), 0xdead_beef);
        assert_eq!(p.csrc_count(), 0);
        assert_eq!(p.header_len(), 12);
        assert_eq!(p.payload(), b"abcd");
        assert_eq!(p.extension(), None);
        assert_eq!(p.padding_len(), 0);
    }

    #[test]
    fn csrcs_extension_and_padding_bound_the_payload() {
        let mut buf = vec![0xb2, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]; // V=2 P X CC=2
        buf.extend_from_slice(&[0, 0, 0, 0x11, 0, 0, 0, 0x22]); // CSRCs
        buf.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        buf.extend_from_slice(b"pay");
        buf.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let p = RtpPacket::parse(&buf[..]).unwrap();
        assert_eq!(p.csrc_count(), 2);
        assert_eq!(p.csrc(0), Some(0x11));
        assert_eq!(p.csrc(1), Some(0x22));
        assert_eq!(p.csrc(2), None);
        assert_eq!(p.extension(), Some((0xbede, &[1u8, 2, 3, 4][..])));
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.payload(), b"pay");
        assert_eq!(p.padding_len(), 3);
    }

    #[test]
    fn errors_name_the_fault() {
        for len in 0..RTP_HEADER_LEN {
            assert_eq!(RtpPacket::parse(&[0x80u8; 12][..len]).unwrap_err(), RtpError::TooShort { len });
        }
        let mut v1 = packet(0, 1, 1, 1, b"");
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1[..]).unwrap_err(), RtpError::BadVersion { version: 1 });

        let mut csrc = packet(0, 1, 1, 1, b"1234");
        csrc[0] |= 0x03;
        assert_eq!(RtpPacket::parse(&csrc[..]).unwrap_err(), RtpError::CsrcTruncated { count: 3, needed: 24, len: 16 });

        let mut ext = packet(0, 1, 1, 1, &[0xbe, 0xde, 0, 2, 0, 0, 0, 0]);
        ext[0] |= 0x10;
        assert_eq!(RtpPacket::parse(&ext[..]).unwrap_err(), RtpError::ExtensionTruncated { needed: 24, len: 20 });
        let mut ext_head = packet(0, 1, 1, 1, &[0xbe]);
        ext_head[0] |= 0x10;
        assert_eq!(RtpPacket::parse(&ext_head[..]).unwrap_err(), RtpError::ExtensionTruncated { needed: 16, len: 13 });

        let mut pad0 = packet(0, 1, 1, 1, &[1, 2, 0]);
        pad0[0] |= 0x20;
        assert_eq!(RtpPacket::parse(&pad0[..]).unwrap_err(), RtpError::BadPadding { count: 0, available: 3 });
        let mut pad_big = packet(0, 1, 1, 1, &[1, 2, 9]);
        pad_big[0] |= 0x20;
        assert_eq!(RtpPacket::parse(&pad_big[..]).unwrap_err(), RtpError::BadPadding { count: 9, available: 3 });
        assert!(RtpError::BadPadding { count: 9, available: 3 }.to_string().contains("padding count 9"));
    }

    #[test]
    fn rewrites_in_place_keeping_the_rest() {
        let mut buf = packet(0, 7, 160, 42, b"voice");
        buf[1] |= 0x80;
        let mut p = RtpPacket::parse(&mut buf[..]).unwrap();
        p.set_payload_type(96);
        assert!(p.marker(), "marker kept when the payload type changes");
        p.set_marker(false);
        p.set_sequence(65535);
        p.set_timestamp(u32::MAX);
        p.set_ssrc(0x0102_0304);
        assert_eq!(p.payload_type(), 96);
        assert!(!p.marker());
        p.set_marker(true);
        assert_eq!(p.payload_type(), 96);
        let p = RtpPacket::parse(&buf[..]).unwrap();
        assert_eq!((p.sequence(), p.timestamp(), p.ssrc()), (65535, u32::MAX, 0x0102_0304));
        assert_eq!(p.payload(), b"voice");
    }

    #[test]
    fn demultiplexes_rtp_and_rtcp() {
        let rtp = packet(0, 1, 1, 1, b"x");
        assert_eq!(classify(&rtp), PacketKind::Rtp);
        assert!(!is_rtcp(&rtp));
        let mut marked_dynamic = packet(101, 1, 1, 1, b"x");
        marked_dynamic[1] |= 0x80; // 229: still RTP
        assert_eq!(classify(&marked_dynamic), PacketKind::Rtp);
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
        assert_eq!(classify(&rr), PacketKind::Rtcp);
        assert!(is_rtcp(&rr));
        assert_eq!(classify(&[0x80, 192]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x80, 223]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x80, 191]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, 224]), PacketKind::Rtp);
        assert_eq!(classify(&[0x00, 0x01, 0, 0]), PacketKind::Other, "STUN binding request");
        assert_eq!(classify(&[22, 0xfe, 0xfd]), PacketKind::Other, "DTLS handshake");
        assert_eq!(classify(&[0x80]), PacketKind::Other);
        assert_eq!(classify(&[]), PacketKind::Other);
        assert!(!is_rtcp(&[200]));
    }

    #[test]
    fn checks_rtcp_headers() {
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
        assert_eq!(check_rtcp(&rr), Ok(()));
        assert_eq!(check_rtcp(&rr[..7]), Err(RtpError::RtcpTooShort { len: 7 }));
        assert_eq!(check_rtcp(&[0x40, 201, 0, 1, 0, 0, 0, 9]), Err(RtpError::BadVersion { version: 1 }));
        assert_eq!(check_rtcp(&[0x80, 0, 0, 1, 0, 0, 0, 9]), Err(RtpError::NotRtcp { packet_type: 0 }));
        assert_eq!(
            check_rtcp(&[0x80, 200, 0, 6, 0, 0, 0, 9]),
            Err(RtpError::RtcpLengthMismatch { declared: 28, len: 8 })
        );
    }

    #[test]
    fn telephone_events() {
        // '5', end bit, volume 10, duration 800.
        let e = TelephoneEvent::parse(&[5, 0x8a, 0x03, 0x20]).unwrap();
        assert_eq!(e, TelephoneEvent { event: 5, end: true, volume: 10, duration: 800 });
        assert_eq!(e.digit(), Some('5'));
        assert_eq!(e.to_bytes(), [5, 0x8a, 0x03, 0x20]);
        // The reserved bit is ignored.
        assert_eq!(TelephoneEvent::parse(&[11, 0x40 | 7, 0, 160]).unwrap().volume, 7);
        assert_eq!(TelephoneEvent::parse(&[11, 0, 0, 0]).unwrap().digit(), Some('#'));
        assert_eq!(TelephoneEvent::parse(&[15, 0, 0, 0]).unwrap().digit(), Some('D'));
        assert_eq!(TelephoneEvent::parse(&[16, 0, 0, 0]).unwrap().digit(), None);
        for len in 0..4 {
            assert_eq!(TelephoneEvent::parse(&[0; 4][..len]), Err(RtpError::EventTooShort { len }));
        }
    }

    #[test]
    fn write_packet_refuses_a_short_buffer() {
        assert_eq!(write_packet(&mut [0; 13], 0, false, 1, 1, 1, b"ab"), None);
        assert_eq!(write_packet(&mut [0; 14], 0, false, 1, 1, 1, b"ab"), Some(14));
    }

    /// Truncations of valid packets and pseudo-random bytes: errors, never panics.
    #[test]
    fn hostile_bytes_never_panic() {
        let mut full = vec![0xbf, 0xe5, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        full.extend_from_slice(&[0u8; 60]);
        full.extend_from_slice(&[0xbe, 0xde, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 4]);
        for len in 0..=full.len() {
            let _ = RtpPacket::parse(&full[..len])
                .map(|p| (p.payload().len(), p.extension().map(|(profile, data)| (profile, data.len())), p.csrc(14)));
            let _ = check_rtcp(&full[..len]);
            let _ = classify(&full[..len]);
            let _ = TelephoneEvent::parse(&full[..len]);
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut buf = [0u8; 64];
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 65) as usize;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (state >> (i % 8 * 8)) as u8 ^ i as u8;
            }
            buf[0] = 0x80 | (buf[0] & 0x3f); // mostly version 2, to reach the deeper checks
            if let Ok(mut p) = RtpPacket::parse(&mut buf[..len]) {
                let _ = (p.payload(), p.extension(), p.csrc(3), p.padding_len());
                p.set_sequence(1);
                p.set_payload_type(200);
            }
            let _ = check_rtcp(&buf[..len]);
        }
    }

    /// Seeded random headers whose CSRC count, extension length and padding
    /// count may lie, cut at any length: parse names the fault, or returns a
    /// view whose header, payload and padding add up to the packet.
    #[test]
    fn random_headers_parse_to_parts_that_add_up() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0x4733_3550_5761_0002);
        let mut buf = [0u8; 300];
        let mut parsed = 0;
        for _ in 0..50_000 {
            rng.fill(&mut buf[..]);
            buf[0] = 0x80 | (buf[0] & 0x3f);
            if rng.random_bool(0.5) {
                // A short extension, so that some packets with one parse.
                let at = RTP_HEADER_LEN + 4 * usize::from(buf[0] & 0x0f);
                buf[at + 2..at + 4].copy_from_slice(&rng.random_range(0..8u16).to_be_bytes());
            }
            let len = rng.random_range(0..=buf.len());
            let Ok(p) = RtpPacket::parse(&buf[..len]) else { continue };
            parsed += 1;
            assert_eq!(p.header_len() + p.payload().len() + p.padding_len(), len);
            let csrcs = usize::from(p.csrc_count());
            assert_eq!(p.csrc(csrcs), None);
            assert!(csrcs == 0 || p.csrc(csrcs - 1).is_some());
            let fixed = RTP_HEADER_LEN + 4 * csrcs;
            match p.extension() {
                Some((_, data)) => assert_eq!(p.header_len(), fixed + 4 + data.len()),
                None => assert_eq!(p.header_len(), fixed),
            }
            if p.has_padding() {
                assert_eq!(p.padding_len(), usize::from(buf[len - 1]));
            }
            let _ = TelephoneEvent::parse(p.payload());
        }
        assert!(parsed > 1_000, "{parsed} of the packets parsed");
    }
}
