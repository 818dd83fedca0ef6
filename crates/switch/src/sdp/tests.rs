use super::*;

/// An SDP body from its lines, CRLF-terminated.
fn body(lines: &[&str]) -> Vec<u8> {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text.into_bytes()
}

fn parse(lines: &[&str]) -> SdpSession {
    match SdpSession::parse(&body(lines)) {
        Ok(sdp) => sdp,
        Err(e) => panic!("{e}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// A Yealink-like desk phone: PCMU, PCMA, G722, telephone-event on 101.
const DESK_PHONE: &[&str] = &[
    "v=0",
    "o=- 20518 0 IN IP4 192.168.1.50",
    "s=SDP data",
    "c=IN IP4 192.168.1.50",
    "t=0 0",
    "m=audio 11780 RTP/AVP 0 8 9 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=ptime:20",
    "a=sendrecv",
];

// A carrier: static payload types only, no rtpmap at all, PCMA preferred.
const CARRIER: &[&str] = &[
    "v=0",
    "o=Sonus_UAC 512 1024 IN IP4 203.0.113.10",
    "s=SIP Media Capabilities",
    "c=IN IP4 203.0.113.20",
    "t=0 0",
    "m=audio 30000 RTP/AVP 8 0 18",
    "a=maxptime:20",
];

fn desk_phone_with(direction: &str, connection: &str, version: &str) -> SdpSession {
    let origin = format!("o=- 20518 {version} IN IP4 192.168.1.50");
    let c = format!("c=IN IP4 {connection}");
    let a = format!("a={direction}");
    let mut lines: Vec<&str> = DESK_PHONE.to_vec();
    lines[1] = &origin;
    lines[3] = &c;
    lines[12] = &a;
    parse(&lines)
}

// ---- parsing real-world offers ----

#[test]
fn desk_phone_offer() {
    let sdp = parse(DESK_PHONE);
    assert_eq!(sdp.origin.session_id, 20518);
    assert_eq!(sdp.origin.session_version, 0);
    assert_eq!(sdp.connection, Some(ip("192.168.1.50")));
    assert_eq!(sdp.media.len(), 1);
    let audio = sdp.audio().unwrap();
    assert_eq!(audio.port, 11780);
    assert_eq!(audio.protocol, Protocol::RtpAvp);
    let names: Vec<(u8, &str)> = audio.codecs.iter().map(|c| (c.payload_type, c.name.as_str())).collect();
    assert_eq!(names, [(0, "PCMU"), (8, "PCMA"), (9, "G722"), (101, "telephone-event")]);
    let te = audio.telephone_event().unwrap();
    assert_eq!((te.payload_type, te.clock_rate, te.fmtp.as_deref()), (101, 8000, Some("0-15")));
    assert_eq!(audio.ptime, Some(20));
    assert_eq!(audio.direction, Direction::SendRecv);
    assert!(!audio.rtcp_mux);
    assert_eq!(audio.rtp_address(), Some(addr("192.168.1.50:11780")));
    assert_eq!(audio.rtcp_address(), Some(addr("192.168.1.50:11781")));
    assert!(!sdp.is_hold());

    let agreed = negotiate(&sdp, Direction::SendRecv).unwrap();
    assert_eq!(agreed.media_index, 0);
    assert_eq!(agreed.audio.codecs, [Codec::pcmu(), Codec::pcma()]);
    assert_eq!(agreed.audio.telephone_event.as_ref().map(|c| c.payload_type), Some(101));
    assert_eq!(agreed.audio.ptime, Some(20));
    assert_eq!(agreed.audio.direction, Direction::SendRecv);
    assert_eq!(agreed.remote_rtp, Some(addr("192.168.1.50:11780")));
}

#[test]
fn carrier_offer_with_static_types_only() {
    let sdp = parse(CARRIER);
    let audio = sdp.audio().unwrap();
    let names: Vec<&str> = audio.codecs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["PCMA", "PCMU", "G729"]);
    assert!(audio.telephone_event().is_none());
    assert_eq!(audio.ptime, None);

    let agreed = negotiate(&sdp, Direction::SendRecv).unwrap();
    // The offerer's order of preference is kept.
    assert_eq!(agreed.audio.codecs, [Codec::pcma(), Codec::pcmu()]);
    assert_eq!(agreed.audio.telephone_event, None);
}

#[test]
fn sendonly_hold_reinvite_is_answered_recvonly() {
    let hold = desk_phone_with("sendonly", "192.168.1.50", "1");
    assert!(hold.is_hold());
    let agreed = negotiate(&hold, Direction::SendRecv).unwrap();
    assert_eq!(agreed.audio.direction, Direction::RecvOnly);
    // Still a real address: the held phone may send nothing, we keep sending to it.
    assert_eq!(agreed.remote_rtp, Some(addr("192.168.1.50:11780")));

    let resume = desk_phone_with("sendrecv", "192.168.1.50", "2");
    assert!(!resume.is_hold());
    assert!(is_resume(&hold, &resume));
    assert!(!is_resume(&resume, &resume));
    assert_eq!(negotiate(&resume, Direction::SendRecv).unwrap().audio.direction, Direction::SendRecv);
}

#[test]
fn old_style_hold_with_zero_address() {
    let hold = desk_phone_with("sendrecv", "0.0.0.0", "1");
    assert!(hold.is_hold());
    assert_eq!(hold.connection, Some(ip("0.0.0.0")));
    let agreed = negotiate(&hold, Direction::SendRecv).unwrap();
    assert_eq!(agreed.remote_rtp, None);
    assert_eq!(agreed.remote_rtcp, None);

    let resume = desk_phone_with("sendrecv", "192.168.1.50", "2");
    assert!(is_resume(&hold, &resume));
    // inactive is a hold too, and resuming into recvonly is not a resume.
    assert!(desk_phone_with("inactive", "192.168.1.50", "3").is_hold());
    assert!(!is_resume(&hold, &desk_phone_with("recvonly", "192.168.1.50", "3")));
}

#[test]
fn audio_and_video_offer_gets_video_rejected_in_place() {
    let offer = parse(&[
        "v=0",
        "o=bob 1 1 IN IP4 10.0.0.2",
        "s=-",
        "c=IN IP4 10.0.0.2",
        "t=0 0",
        "m=video 5002 RTP/AVP 96 97",
        "a=rtpmap:96 H264/90000",
        "a=rtpmap:97 VP8/90000",
        "m=audio 5000 RTP/AVP 0 101",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
    ]);
    assert_eq!(offer.media.len(), 2);
    assert_eq!(offer.audio_index(), Some(1));
    assert_eq!(offer.media[0].codecs.len(), 2);

    let agreed = negotiate(&offer, Direction::SendRecv).unwrap();
    assert_eq!(agreed.media_index, 1);
    let mut leg = LocalSession::new(0x1234_5678, ip("198.51.100.1"));
    let answer = leg.answer(&offer, &agreed, addr("198.51.100.1:40000"));
    let text = answer.to_string();
    let m_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(m_lines, ["m=video 0 RTP/AVP 96 97", "m=audio 40000 RTP/AVP 0 101"]);
    assert!(!text.contains("H264"), "a rejected line is written as its m= line alone:\n{text}");
    assert_eq!(SdpSession::parse(text.as_bytes()).unwrap(), answer);
}

#[test]
fn srtp_offers_are_not_acceptable() {
    let savp = parse(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.3",
        "s=-",
        "c=IN IP4 10.0.0.3",
        "t=0 0",
        "m=audio 6000 RTP/SAVP 0 8",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
    ]);
    assert_eq!(savp.audio().unwrap().protocol, Protocol::RtpSavp);
    assert!(savp.audio().unwrap().protocol.is_secure());
    let refused = negotiate(&savp, Direction::SendRecv).unwrap_err();
    assert_eq!(refused.to_string(), "secure media (RTP/SAVP) not supported");

    let webrtc = parse(&[
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
        "c=IN IP4 0.0.0.0",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-mux",
    ]);
    let audio = webrtc.audio().unwrap();
    assert_eq!(audio.protocol, Protocol::UdpTlsRtpSavpf);
    assert_eq!(audio.codecs[0].channels, 2);
    assert_eq!(
        negotiate(&webrtc, Direction::SendRecv).unwrap_err().to_string(),
        "secure media (UDP/TLS/RTP/SAVPF) not supported"
    );
}

#[test]
fn best_effort_srtp_takes_the_plain_audio_line() {
    // Some phones offer SRTP and plain RTP as two audio lines.
    let offer = parse(&[
        "v=0",
        "o=- 7 7 IN IP4 10.0.0.4",
        "s=-",
        "c=IN IP4 10.0.0.4",
        "t=0 0",
        "m=audio 7000 RTP/SAVP 8",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
        "m=audio 7002 RTP/AVP 8",
    ]);
    let agreed = negotiate(&offer, Direction::SendRecv).unwrap();
    assert_eq!(agreed.media_index, 1);
    assert_eq!(agreed.remote_rtp, Some(addr("10.0.0.4:7002")));
    let answer = LocalSession::new(1, ip("10.0.0.1")).answer(&offer, &agreed, addr("10.0.0.1:41000"));
    assert_eq!(answer.media[0].port, 0);
    assert_eq!(answer.media[0].protocol, Protocol::RtpSavp);
    assert_eq!(answer.media[1].port, 41000);
}

#[test]
fn g729_only_is_not_acceptable() {
    let offer = parse(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.5",
        "s=-",
        "c=IN IP4 10.0.0.5",
        "t=0 0",
        "m=audio 8000 RTP/AVP 18 101",
        "a=rtpmap:18 G729/8000",
        "a=fmtp:18 annexb=no",
        "a=rtpmap:101 telephone-event/8000",
    ]);
    assert_eq!(offer.audio().unwrap().codecs[0].fmtp.as_deref(), Some("annexb=no"));
    let refused = negotiate(&offer, Direction::SendRecv).unwrap_err();
    assert_eq!(refused.0, "no common codec: offered G729/8000; supported PCMU/8000 PCMA/8000");
}

#[test]
fn disabled_audio_is_not_acceptable() {
    let offer = parse(&["v=0", "o=- 1 1 IN IP4 10.0.0.5", "s=-", "t=0 0", "m=audio 0 RTP/AVP 0"]);
    assert_eq!(negotiate(&offer, Direction::SendRecv).unwrap_err().0, "audio stream disabled (port 0)");
}

#[test]
fn bare_lf_line_ends() {
    let text = DESK_PHONE.join("\n");
    let sdp = SdpSession::parse(text.as_bytes()).unwrap();
    assert_eq!(sdp, parse(DESK_PHONE));
}

#[test]
fn quirks_the_sdp_crate_refuses_are_cleaned() {
    // Each of these is refused by the `sdp` crate as it is; phones send them.
    let quirky: [&[&str]; 7] = [
        // no s= line
        &["v=0", "o=- 1 1 IN IP4 10.0.0.6", "c=IN IP4 10.0.0.6", "t=0 0", "m=audio 9000 RTP/AVP 0"],
        // no t= line
        &["v=0", "o=- 1 1 IN IP4 10.0.0.6", "s=-", "c=IN IP4 10.0.0.6", "m=audio 9000 RTP/AVP 0"],
        // c= after t=, session a= before t=
        &[
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.6",
            "s=-",
            "a=sendrecv",
            "t=0 0",
            "c=IN IP4 10.0.0.6",
            "m=audio 9000 RTP/AVP 0",
        ],
        // leading whitespace and trailing junk whitespace
        &["v=0", " o=- 1 1 IN IP4 10.0.0.6", "s=-", "c=IN IP4 10.0.0.6 ", "t=0 0", "m=audio 9000 RTP/AVP 0", "  \t"],
        // a b= line the crate cannot read, a u= that is no URL
        &[
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.6",
            "s=-",
            "u=www.example.com",
            "c=IN IP4 10.0.0.6",
            "b=CT:",
            "t=0 0",
            "m=audio 9000 RTP/AVP 0",
        ],
        // a BFCP line next to the audio (video phones)
        &[
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.6",
            "s=-",
            "c=IN IP4 10.0.0.6",
            "t=0 0",
            "m=audio 9000 RTP/AVP 0",
            "m=application 9002 UDP/BFCP *",
            "a=floorctrl:c-s",
        ],
        // lower-case network type in o= and c=
        &["v=0", "o=- 1 1 in ip4 10.0.0.6", "s=-", "c=in ip4 10.0.0.6", "t=0 0", "m=audio 9000 RTP/AVP 0"],
    ];
    for lines in quirky {
        let raw = String::from_utf8(body(lines)).unwrap();
        let refused_by_crate = SessionDescription::unmarshal(&mut Cursor::new(raw.as_bytes())).is_err();
        assert!(refused_by_crate, "the crate now accepts this, the cleaning may be dropped:\n{raw}");
        let sdp = SdpSession::parse(raw.as_bytes()).unwrap_or_else(|e| panic!("{e}:\n{raw}"));
        let audio = sdp.audio().unwrap();
        assert_eq!((audio.port, audio.connection), (9000, Some(ip("10.0.0.6"))), "{raw}");
        assert_eq!(audio.codecs, [Codec::pcmu()]);
    }

    // The BFCP line is kept, and rejected in the answer with its protocol.
    let sdp = SdpSession::parse(&body(quirky[5])).unwrap();
    assert_eq!(sdp.media[1].protocol, Protocol::Other("UDP/BFCP".to_string()));
    let agreed = negotiate(&sdp, Direction::SendRecv).unwrap();
    let answer = LocalSession::new(1, ip("10.0.0.1")).answer(&sdp, &agreed, addr("10.0.0.1:42000")).to_string();
    assert!(answer.contains("m=application 0 UDP/BFCP *\r\n"), "{answer}");
}

#[test]
fn other_tolerated_quirks() {
    // Empty s=, NUL padding, Latin-1 in the session name, media-level c= only,
    // an rtpmap with extra spaces, an empty a=fmtp, a=rtcp with an address.
    let mut raw = b"v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=\r\ns=Caf\xe9\r\nt=0 0\r\n".to_vec();
    raw.extend_from_slice(
        b"m=audio 9100 RTP/AVP 8 101\r\nc=IN IP4 10.0.0.7/127\r\na=rtpmap:101  telephone-event/8000\r\n\
          a=fmtp:101\r\na=rtcp:9105 IN IP4 10.0.0.7\r\na=RECVONLY\r\n\0\0",
    );
    let sdp = SdpSession::parse(&raw).unwrap();
    assert_eq!(sdp.connection, None);
    let audio = sdp.audio().unwrap();
    assert_eq!(audio.connection, Some(ip("10.0.0.7")));
    assert_eq!(audio.telephone_event().map(|c| (c.payload_type, c.fmtp.clone())), Some((101, None)));
    assert_eq!(audio.rtcp_port, Some(9105));
    assert_eq!(audio.rtcp_address(), Some(addr("10.0.0.7:9105")));
    assert_eq!(audio.direction, Direction::RecvOnly);
}

#[test]
fn session_level_direction_applies_unless_the_media_says_otherwise() {
    let sdp = parse(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.8",
        "s=-",
        "c=IN IP4 10.0.0.8",
        "t=0 0",
        "a=inactive",
        "m=audio 9200 RTP/AVP 0",
        "m=audio 9202 RTP/AVP 0",
        "a=sendonly",
    ]);
    assert_eq!(sdp.media[0].direction, Direction::Inactive);
    assert_eq!(sdp.media[1].direction, Direction::SendOnly);
}

#[test]
fn fax_only_offer_has_no_audio() {
    let err = SdpSession::parse(&body(&[
        "v=0",
        "o=- 1 2 IN IP4 10.0.0.9",
        "s=-",
        "c=IN IP4 10.0.0.9",
        "t=0 0",
        "m=image 9300 udptl t38",
        "a=T38FaxVersion:0",
    ]))
    .unwrap_err();
    assert_eq!(err, SdpError::NoAudio);
    assert_eq!(err.to_string(), "SDP: no audio stream");
    assert_eq!(err.sip_status(), 488);
}

#[test]
fn errors_name_the_fault() {
    let base = ["v=0", "o=- 1 1 IN IP4 10.0.0.9", "s=-", "c=IN IP4 10.0.0.9", "t=0 0", "m=audio 9400 RTP/AVP 0"];
    let with = |index: usize, line: &'static str| {
        let mut lines = base.to_vec();
        lines[index] = line;
        SdpSession::parse(&body(&lines)).unwrap_err().to_string()
    };
    let extra = |line: &'static str| {
        let mut lines = base.to_vec();
        lines.push(line);
        SdpSession::parse(&body(&lines)).unwrap_err().to_string()
    };
    assert_eq!(extra("m=audio 70000 RTP/AVP 0"), "SDP: m=audio line 2: bad port");
    assert_eq!(extra("m=audio x RTP/AVP 0"), "SDP: m=audio line 2: bad port");
    assert_eq!(extra("m=audio 9402 RTP/AVP"), "SDP: m=audio line 2: no formats");
    assert_eq!(extra("m=audio 9402 RTP/AVP 0 200"), "SDP: m=audio line 2: bad payload type \"200\"");
    assert_eq!(extra("m=audio"), "SDP: m=audio line 2: no port");
    assert_eq!(
        extra("c=IN IP4 pbx.example.com"),
        "SDP: m=audio line 1: bad c= line: \"pbx.example.com\" is not an IP address"
    );
    assert_eq!(with(3, "c=IN IP4"), "SDP: session: bad c= line: expected IN IP4 <address>");
    assert_eq!(with(3, "c=ATM NSAP 47.0091"), "SDP: session: bad c= line: expected IN IP4 or IN IP6");
    assert_eq!(with(3, "a=nothing"), "SDP: m=audio line 1: no c= line (neither session nor media level)");
    assert_eq!(with(0, "v=1"), "SDP: bad v= line (only v=0 exists)");
    assert_eq!(with(0, "a=x"), "SDP: missing v=0 line");
    assert_eq!(with(1, "s=-"), "SDP: missing o= line");
    assert_eq!(with(1, "o=- 1 1 IN IP4"), "SDP: bad o= line: expected 6 fields");
    assert_eq!(with(1, "o=- abc 1 IN IP4 10.0.0.9"), "SDP: bad o= line: session id is not a 64-bit number");
    assert_eq!(with(2, "s is missing its equals"), "SDP: line 3: expected <type>=<value>");
    assert_eq!(with(5, "m=video 9400 RTP/AVP 96"), "SDP: no audio stream");
    assert_eq!(SdpSession::parse(b"").unwrap_err(), SdpError::Empty);
    assert_eq!(SdpSession::parse(b"\r\n \r\n").unwrap_err(), SdpError::Empty);
    assert_eq!(SdpSession::parse(b"x=1\r\n").unwrap_err(), SdpError::Missing("v=0"));
    assert_eq!(LocalSession::new(u64::MAX, ip("10.0.0.1")).session_id(), u64::MAX >> 2);
    assert_eq!(
        SdpSession::parse(&vec![b'a'; MAX_SDP_LEN + 1]).unwrap_err(),
        SdpError::TooLarge { len: MAX_SDP_LEN + 1 }
    );
    let many: Vec<&str> =
        base.iter().copied().chain(std::iter::repeat_n("m=audio 9400 RTP/AVP 0", MAX_MEDIA_LINES)).collect();
    assert_eq!(SdpSession::parse(&body(&many)).unwrap_err(), SdpError::TooManyMedia);
    // Control bytes from the body never reach a reason phrase.
    let quoted = extra("m=audio 9402 RTP/AVP 0 \u{1b}[2J");
    assert!(quoted.chars().all(|c| !c.is_control()), "{quoted:?}");
    assert_eq!(SdpError::BadLine { line: 1 }.sip_status(), 400);
}

// ---- negotiation ----

#[test]
fn answer_direction_follows_rfc3264_table() {
    use Direction::*;
    // (offered, our wish, answered)
    let table = [
        (SendRecv, SendRecv, SendRecv),
        (SendOnly, SendRecv, RecvOnly),
        (RecvOnly, SendRecv, SendOnly),
        (Inactive, SendRecv, Inactive),
        // We hold, sending music on hold.
        (SendRecv, SendOnly, SendOnly),
        (SendOnly, SendOnly, Inactive),
        (RecvOnly, SendOnly, SendOnly),
        (Inactive, SendOnly, Inactive),
        // We hold, sending nothing.
        (SendRecv, Inactive, Inactive),
        (SendOnly, Inactive, Inactive),
        (RecvOnly, Inactive, Inactive),
        (Inactive, Inactive, Inactive),
        // We only listen (e.g. a recording leg).
        (SendRecv, RecvOnly, RecvOnly),
        (SendOnly, RecvOnly, RecvOnly),
        (RecvOnly, RecvOnly, Inactive),
        (Inactive, RecvOnly, Inactive),
    ];
    for (offered, wish, answered) in table {
        assert_eq!(answer_direction(offered, wish), answered, "{offered:?} offered, we wish {wish:?}");
        // And through a parsed offer.
        let offer = desk_phone_with(offered.as_str(), "192.168.1.50", "1");
        assert_eq!(negotiate(&offer, wish).unwrap().audio.direction, answered);
    }
    // A sendonly offer is never answered sendrecv, whatever we wish.
    for wish in [SendRecv, SendOnly, RecvOnly, Inactive] {
        assert_ne!(answer_direction(SendOnly, wish), SendRecv);
    }
}

#[test]
fn rtcp_mux_is_taken_when_offered() {
    let offer = parse(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.1.1",
        "s=-",
        "c=IN IP4 10.0.1.1",
        "t=0 0",
        "m=audio 9500 RTP/AVP 0",
        "a=rtcp:9501",
        "a=rtcp-mux",
    ]);
    let agreed = negotiate(&offer, Direction::SendRecv).unwrap();
    assert!(agreed.audio.rtcp_mux);
    assert_eq!(agreed.remote_rtcp, Some(addr("10.0.1.1:9500")));
    let answer = LocalSession::new(9, ip("10.0.1.2")).answer(&offer, &agreed, addr("10.0.1.2:43000"));
    assert!(answer.to_string().contains("a=rtcp-mux\r\n"));
    // Not offered: not answered.
    let plain = negotiate(&parse(DESK_PHONE), Direction::SendRecv).unwrap();
    assert!(!plain.audio.rtcp_mux);
}

#[test]
fn two_legs_with_different_telephone_event_types() {
    // Leg A (caller) offers telephone-event on 101.
    let offer_a = parse(DESK_PHONE);
    let agreed_a = negotiate(&offer_a, Direction::SendRecv).unwrap();

    // Tandem offers leg B what A can do, with A's payload types.
    let mut leg_b = LocalSession::new(0xb, ip("198.51.100.1"));
    let offer_b = leg_b.offer(addr("198.51.100.1:40002"), &agreed_a.audio);
    let offer_b_text = offer_b.to_string();
    assert!(offer_b_text.contains("m=audio 40002 RTP/AVP 0 8 101\r\n"), "{offer_b_text}");

    // B answers PCMA only, and telephone-event on 96 (it should have kept 101; some don't).
    let answer_b = parse(&[
        "v=0",
        "o=callee 77 1 IN IP4 10.9.9.9",
        "s=-",
        "c=IN IP4 10.9.9.9",
        "t=0 0",
        "m=audio 20000 RTP/AVP 8 96",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:96 telephone-event/8000",
        "a=fmtp:96 0-16",
        "a=sendrecv",
    ]);
    let agreed_b = read_answer(&offer_b, &answer_b).unwrap();
    assert_eq!(agreed_b.audio.codecs, [Codec::pcma()]);
    assert_eq!(agreed_b.audio.telephone_event.as_ref().map(|c| c.payload_type), Some(96));
    assert_eq!(agreed_b.remote_rtp, Some(addr("10.9.9.9:20000")));

    // A's answer carries only what B took, with A's payload types.
    let final_a = AudioAgreement { audio: agreed_a.audio.restricted_to(&agreed_b.audio).unwrap(), ..agreed_a };
    let mut leg_a = LocalSession::new(0xa, ip("198.51.100.1"));
    let answer_a = leg_a.answer(&offer_a, &final_a, addr("198.51.100.1:40000")).to_string();
    assert!(answer_a.contains("m=audio 40000 RTP/AVP 8 101\r\n"), "{answer_a}");
    assert!(answer_a.contains("a=rtpmap:101 telephone-event/8000\r\n"), "{answer_a}");
    assert!(answer_a.contains("a=fmtp:101 0-15\r\n"), "{answer_a}");

    let map = PayloadTypeMap::between(&final_a.audio, &agreed_b.audio);
    assert_eq!(map.pairs(), [(8, 8), (101, 96)]);
    assert_eq!(map.a_to_b(101), Some(96));
    assert_eq!(map.b_to_a(96), Some(101));
    assert_eq!(map.a_to_b(8), Some(8));
    assert_eq!(map.a_to_b(0), None);
    assert!(!map.is_identity());
}

#[test]
fn answers_that_cannot_be_used() {
    let mut leg = LocalSession::new(5, ip("10.0.2.1"));
    let offer = leg.offer(addr("10.0.2.1:44000"), &AudioParams::tandem_default());
    let answer = |m: &'static str| {
        let sdp = parse(&["v=0", "o=- 1 1 IN IP4 10.0.2.2", "s=-", "c=IN IP4 10.0.2.2", "t=0 0", m]);
        read_answer(&offer, &sdp).map(|a| a.audio.codecs)
    };
    assert_eq!(answer("m=audio 0 RTP/AVP 0").unwrap_err().0, "the answer rejects the audio stream");
    assert_eq!(answer("m=audio 5 RTP/AVP 18").unwrap_err().0, "the answer has no codec we offered");
    assert_eq!(answer("m=audio 5 RTP/SAVP 0").unwrap_err().0, "the answer changes the protocol to RTP/SAVP");
    assert_eq!(answer("m=audio 5 RTP/AVP 0").unwrap(), [Codec::pcmu()]);

    let pcmu_only = AudioParams { codecs: vec![Codec::pcmu()], ..AudioParams::tandem_default() };
    let pcma_only = AudioParams { codecs: vec![Codec::pcma()], ..AudioParams::tandem_default() };
    assert!(pcmu_only.restricted_to(&pcma_only).is_err());
}

#[test]
fn answer_to_our_hold_offer() {
    // We hold leg B (sendonly); B answers recvonly: we only send.
    let mut leg = LocalSession::new(6, ip("10.0.3.1"));
    let hold = AudioParams { direction: Direction::SendOnly, ..AudioParams::tandem_default() };
    let offer = leg.offer(addr("10.0.3.1:45000"), &hold);
    let answer = parse(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.3.2",
        "s=-",
        "c=IN IP4 10.0.3.2",
        "t=0 0",
        "m=audio 5 RTP/AVP 0",
        "a=recvonly",
    ]);
    assert_eq!(read_answer(&offer, &answer).unwrap().audio.direction, Direction::SendOnly);
}

// ---- writing ----

#[test]
fn origin_version_grows_only_when_our_sdp_changes() {
    let mut leg = LocalSession::new(0xdead_beef_0000, ip("192.0.2.1"));
    let relay = addr("192.0.2.1:46000");
    let audio = AudioParams::tandem_default();

    let first = leg.offer(relay, &audio);
    let id = first.origin.session_id;
    assert_eq!(id, 0xdead_beef_0000);
    assert_eq!(first.origin.session_version, 1);
    assert!(first.to_string().starts_with(&format!("v=0\r\no=tandem {id} 1 IN IP4 192.0.2.1\r\n")));

    // A session refresh with nothing new keeps the version (RFC 3264 §8 allows it; carriers like it).
    assert_eq!(leg.offer(relay, &audio).origin.session_version, 1);

    // Hold: a changed offer.
    let hold = AudioParams { direction: Direction::SendOnly, ..audio.clone() };
    assert_eq!(leg.offer(relay, &hold).origin.session_version, 2);
    // Resume.
    let resumed = leg.offer(relay, &audio);
    assert_eq!(resumed.origin.session_version, 3);
    assert_eq!(resumed.origin.session_id, id);

    // Answers: unchanged keeps the version, changed bumps it.
    let offer = parse(DESK_PHONE);
    let agreed = negotiate(&offer, Direction::SendRecv).unwrap();
    let a1 = leg.answer(&offer, &agreed, relay);
    let a2 = leg.answer(&offer, &agreed, relay);
    assert_eq!(a1.origin.session_version, 4);
    assert_eq!(a2.origin.session_version, 4);
    let moved = leg.answer(&offer, &agreed, addr("192.0.2.1:46002"));
    assert_eq!(moved.origin.session_version, 5);
    assert_eq!(leg.version(), 5);
    assert_eq!(leg.session_id(), id);
    assert_eq!(leg.last_sent(), Some(&moved));
}

#[test]
fn reoffer_keeps_the_m_lines_of_the_session() {
    let offer = parse(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.4.1",
        "s=-",
        "c=IN IP4 10.0.4.1",
        "t=0 0",
        "m=audio 5000 RTP/AVP 0",
        "m=video 5002 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
    ]);
    let agreed = negotiate(&offer, Direction::SendRecv).unwrap();
    let mut leg = LocalSession::new(3, ip("10.0.4.9"));
    leg.answer(&offer, &agreed, addr("10.0.4.9:47000"));
    let hold = AudioParams { direction: Direction::SendOnly, ..agreed.audio.clone() };
    let reoffer = leg.offer(addr("10.0.4.9:47000"), &hold).to_string();
    let m_lines: Vec<&str> = reoffer.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(m_lines, ["m=audio 47000 RTP/AVP 0", "m=video 0 RTP/AVP 96"]);
    assert!(reoffer.contains("a=sendonly\r\n"));
}

#[test]
fn written_sdp_reads_back_the_same() {
    let mut leg = LocalSession::new(42, ip("192.0.2.7"));
    let default_offer = leg.offer(addr("192.0.2.7:48000"), &AudioParams::tandem_default());
    let text = default_offer.to_string();
    assert_eq!(
        text,
        "v=0\r\no=tandem 42 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n\
         m=audio 48000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    );

    let mut written = vec![default_offer];
    // Answers to every sample offer, in every direction we may wish, and over IPv6.
    let offers = [parse(DESK_PHONE), parse(CARRIER), desk_phone_with("sendonly", "0.0.0.0", "1")];
    for offer in &offers {
        for wish in [Direction::SendRecv, Direction::SendOnly, Direction::Inactive] {
            let agreed = negotiate(offer, wish).unwrap();
            written.push(leg.answer(offer, &agreed, addr("192.0.2.7:48002")));
            written.push(leg.answer(offer, &agreed, addr("[2001:db8::7]:48004")));
        }
    }
    let mux = AudioParams { rtcp_mux: true, ptime: None, telephone_event: None, ..AudioParams::tandem_default() };
    written.push(leg.offer(addr("192.0.2.7:48006"), &mux));
    for sdp in written {
        let text = sdp.to_string();
        assert_eq!(SdpSession::parse(text.as_bytes()).as_ref(), Ok(&sdp), "{text}");
    }
    // A parsed foreign SDP writes back to the same model too.
    let foreign = parse(DESK_PHONE);
    assert_eq!(SdpSession::parse(foreign.to_string().as_bytes()).unwrap(), foreign);
}

#[test]
fn same_version_means_unchanged() {
    let a = desk_phone_with("sendrecv", "192.168.1.50", "4");
    let b = desk_phone_with("sendonly", "192.168.1.50", "4");
    let c = desk_phone_with("sendonly", "192.168.1.50", "5");
    assert!(b.same_version_as(&a));
    assert!(!c.same_version_as(&b));
}

// ---- hostile input ----

/// xorshift64*: a fixed sequence, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Whatever the body, parsing, negotiating and writing return errors, never panic,
/// and what we write reads back.
fn exercise(input: &[u8]) {
    let Ok(offer) = SdpSession::parse(input) else { return };
    let _ = offer.is_hold();
    let _ = is_resume(&offer, &offer);
    let mut leg = LocalSession::new(u64::MAX, ip("192.0.2.9"));
    if let Ok(agreed) = negotiate(&offer, Direction::SendRecv) {
        let answer = leg.answer(&offer, &agreed, addr("192.0.2.9:65535"));
        let text = answer.to_string();
        assert_eq!(SdpSession::parse(text.as_bytes()).as_ref(), Ok(&answer), "{text}");
        let _ = PayloadTypeMap::between(&agreed.audio, &agreed.audio);
    }
    let ours = leg.offer(addr("192.0.2.9:1"), &AudioParams::tandem_default());
    let _ = read_answer(&ours, &offer);
}

#[test]
fn truncated_and_garbled_bodies_do_not_panic() {
    let samples: Vec<Vec<u8>> = vec![
        body(DESK_PHONE),
        body(CARRIER),
        body(&[
            "v=0",
            "o=- 1 1 IN IP6 2001:db8::1",
            "s=-",
            "c=IN IP6 2001:db8::1",
            "t=0 0",
            "m=video 1 RTP/AVP 96",
            "m=audio 65535 RTP/AVP 0 101",
            "a=rtcp-mux",
            "a=rtpmap:101 telephone-event/8000/1",
            "m=application 9 UDP/BFCP *",
        ]),
    ];
    // Every truncation.
    for sample in &samples {
        for end in 0..=sample.len() {
            exercise(&sample[..end]);
        }
    }
    // Random mutations: flips, junk bytes, cut and repeated ranges, lines swapped.
    let junk: &[&[u8]] = &[
        b"=",
        b"\r",
        b"\n",
        b" ",
        b"/",
        b":",
        b"\0",
        b"\xff\xfe",
        b"m=",
        b"a=rtpmap:",
        b"99999999999999999999",
        b"-1",
        b"\xe2\x82",
    ];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..20_000 {
        let mut input = samples[round % samples.len()].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(input.len() + 1);
            match rng.below(5) {
                0 if at < input.len() => input[at] ^= 1 << rng.below(8),
                1 => {
                    let piece = junk[rng.below(junk.len())];
                    input.splice(at..at, piece.iter().copied());
                }
                2 => {
                    let end = (at + rng.below(16)).min(input.len());
                    input.drain(at..end);
                }
                3 => {
                    let end = (at + rng.below(32)).min(input.len());
                    let copy = input[at..end].to_vec();
                    input.splice(at..at, copy);
                }
                _ => {
                    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
                    let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(i, j);
                    input = lines.join(&b'\n');
                }
            }
        }
        exercise(&input);
    }
    // Pure noise.
    for _ in 0..2_000 {
        let noise: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        exercise(&noise);
    }
}
