//! SIP parse throughput: our zero-copy parser against rsip 0.4 on the same
//! messages in the same run (the measurement behind docs/sip-parser.md).
//! "+key" also reads what a transaction layer needs: top Via branch, From tag,
//! Call-ID and CSeq.
//!
//! cargo bench --bench parse

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sip_transport::SipMessage;

/// A trunk INVITE with an SDP offer (PCMU, PCMA, G722, telephone-event): 1026 bytes.
pub const INVITE: &[u8] = b"INVITE sip:+15551230001@198.51.100.20:5080;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK-524287-1---a4fd6d6b8e1a1b2c;rport\r\n\
Max-Forwards: 69\r\n\
Contact: <sip:+15557654321@203.0.113.7:5060;transport=udp>\r\n\
To: <sip:+15551230001@198.51.100.20;user=phone>\r\n\
From: \"Caller Name\" <sip:+15557654321@203.0.113.7;user=phone>;tag=3f2c81a7\r\n\
Call-ID: 5a9f0e5c-3b1d-4c7e-9a44-0d3e8c1f2b6a@203.0.113.7\r\n\
CSeq: 102 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE, PRACK\r\n\
Supported: replaces, timer, 100rel\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
P-Asserted-Identity: <sip:+15557654321@203.0.113.7;user=phone>\r\n\
User-Agent: CarrierSBC/4.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 296\r\n\
\r\n\
v=0\r\n\
o=- 3849201734 3849201734 IN IP4 203.0.113.7\r\n\
s=-\r\n\
c=IN IP4 203.0.113.8\r\n\
t=0 0\r\n\
m=audio 31874 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n\
a=rtcp:31875\r\n";

/// A desk phone's REGISTER with digest credentials: 787 bytes.
pub const REGISTER: &[u8] = b"REGISTER sip:pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.23:5062;branch=z9hG4bK-d8754z-9c2a6b81f0e3d7a4;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:1001@192.168.1.23:5062;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-0004f2a1b2c3>\"\r\n\
To: <sip:1001@pbx.example.com>\r\n\
From: <sip:1001@pbx.example.com>;tag=9fd1b2a4\r\n\
Call-ID: ZTdmYjQ5MGE3ZDE4NzRmOGM0NDY2ZGU0MGQ5YjI5N2Y\r\n\
CSeq: 2 REGISTER\r\n\
Expires: 3600\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
User-Agent: DeskPhone 5.1.3\r\n\
Authorization: Digest username=\"1001\",realm=\"tandem\",nonce=\"0000000000012d8a00000000000004d2a1b2c3d4e5f60718\",uri=\"sip:pbx.example.com\",response=\"7b9d2f4c5a8e1d3b6c0f9e2a4d7b1c8e\",algorithm=MD5,cnonce=\"4f1c2d9e\",qop=auth,nc=00000001\r\n\
Content-Length: 0\r\n\
\r\n";

fn tandem_key_fields(raw: &Bytes) -> usize {
    let m = SipMessage::parse(raw.clone()).unwrap();
    let via = m.top_via().unwrap();
    let from = m.from().unwrap();
    via.branch().unwrap().len() + from.tag().unwrap().len() + m.call_id().unwrap().len() + m.cseq().unwrap().seq as usize
}

fn rsip_key_fields(raw: &[u8]) -> usize {
    use rsip::prelude::*;
    let req = rsip::Request::try_from(raw).unwrap();
    let via = req.via_header().unwrap().typed().unwrap();
    let branch = via.branch().unwrap().to_string();
    let tag = req.from_header().unwrap().tag().unwrap().unwrap().to_string();
    let call_id = req.call_id_header().unwrap().value().to_string();
    let cseq = req.cseq_header().unwrap().typed().unwrap();
    branch.len() + tag.len() + call_id.len() + cseq.seq as usize
}

fn parse(c: &mut Criterion) {
    for (name, msg) in [("invite_sdp", INVITE), ("register", REGISTER)] {
        let raw = Bytes::from_static(msg);
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        g.bench_function("tandem", |b| b.iter(|| SipMessage::parse(black_box(raw.clone())).unwrap()));
        g.bench_function("tandem+key", |b| b.iter(|| tandem_key_fields(black_box(&raw))));
        g.bench_function("rsip-0.4", |b| b.iter(|| rsip::Request::try_from(black_box(msg)).unwrap()));
        g.bench_function("rsip-0.4+key", |b| b.iter(|| rsip_key_fields(black_box(msg))));
        g.finish();
    }
}

criterion_group!(benches, parse);
criterion_main!(benches);
