//! The RTP relay path: `MediaSession::on_rtp` for a bridged G.711 call, one
//! 172-byte packet (12-byte header + 20 ms of PCMU) each way per iteration,
//! with latching, continuity and payload-type maps (the legs give
//! telephone-event different payload types, 101 and 96, as phones do). This is
//! the per-packet work of the relay without the socket calls.
//!
//! cargo bench --bench relay

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use media_relay::{Codec, Leg, LegParams, LegSetup, MediaSession, PayloadMap, SessionConfig};

fn leg(remote: &str, dtmf_pt: u8) -> LegSetup {
    LegSetup {
        rtcp_mux: false,
        params: LegParams {
            remote_rtp: Some(remote.parse().unwrap()),
            remote_rtcp: None,
            payloads: PayloadMap::new(&[(0, Codec::Pcmu), (dtmf_pt, Codec::TelephoneEvent { clock_rate: 8000 })]).unwrap(),
        },
    }
}

fn packet(seq: u16, ssrc: u32) -> [u8; 172] {
    let mut p = [0xffu8; 172];
    p[0] = 0x80;
    p[1] = 0;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

fn relay(c: &mut Criterion) {
    let t0 = Instant::now();
    let a: SocketAddr = "10.0.0.5:4000".parse().unwrap();
    let b: SocketAddr = "10.0.0.6:4002".parse().unwrap();
    let mut s = MediaSession::bridge(SessionConfig::default(), leg("10.0.0.5:4000", 101), leg("10.0.0.6:4002", 96), t0);
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Elements(2));
    let mut seq = 0u16;
    let mut now = t0;
    g.bench_function("g711_bridge_both_ways", |bench| {
        bench.iter(|| {
            seq = seq.wrapping_add(1);
            now += Duration::from_millis(20);
            let mut pa = packet(seq, 0x1111);
            let mut pb = packet(seq, 0x2222);
            let fa = s.on_rtp(Leg::A, a, black_box(&mut pa), now);
            let fb = s.on_rtp(Leg::B, b, black_box(&mut pb), now);
            assert!(fa.is_some() && fb.is_some());
            (fa, fb)
        })
    });
    g.finish();
}

criterion_group!(benches, relay);
criterion_main!(benches);
