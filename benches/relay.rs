//! The RTP relay path: `MediaSession::on_rtp` for a bridged G.711 call, one
//! 172-byte packet (12-byte header + 20 ms of PCMU) each way per iteration,
//! with latching, continuity and payload-type maps (the legs give
//! telephone-event different payload types, 101 and 96, as phones do). This is
//! the per-packet work of the relay without the socket calls.
//!
//! Then in-band DTMF: the detector alone, per 20 ms frame (160 samples) of
//! audio that alternates key tones and silence, and the same bridge with leg A
//! listening for keys (`LegParams::inband_dtmf`: a G.711 decode and the
//! detector on each of A's packets).
//!
//! cargo bench --bench relay

use std::f32::consts::TAU;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use media_relay::dtmf::InbandDtmf;
use media_relay::g711::linear_to_ulaw;
use media_relay::{Codec, Leg, LegParams, LegSetup, MediaSession, PayloadMap, SessionConfig};

fn leg(remote: &str, dtmf_pt: u8) -> LegSetup {
    LegSetup {
        rtcp_mux: false,
        params: LegParams {
            remote_rtp: Some(remote.parse().unwrap()),
            remote_rtcp: None,
            payloads: PayloadMap::new(&[(0, Codec::Pcmu), (dtmf_pt, Codec::TelephoneEvent { clock_rate: 8000 })]).unwrap(),
            inband_dtmf: false,
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

/// One second of 20 ms frames: keys 1 to 5 for 100 ms each, 100 ms of silence after each.
fn keys_and_silence() -> Vec<[i16; 160]> {
    let keys = [(697.0, 1209.0), (697.0, 1336.0), (697.0, 1477.0), (770.0, 1209.0), (770.0, 1336.0)];
    (0..50)
        .map(|frame| {
            let (row, col) = keys[frame / 10];
            std::array::from_fn(|i| {
                let t = (frame * 160 + i) as f32 / 8000.0;
                let tone = 9000.0 * (TAU * row * t).sin() + 11000.0 * (TAU * col * t).sin();
                if frame % 10 < 5 { tone as i16 } else { 0 }
            })
        })
        .collect()
}

fn relay(c: &mut Criterion) {
    let t0 = Instant::now();
    let a: SocketAddr = "10.0.0.5:4000".parse().unwrap();
    let b: SocketAddr = "10.0.0.6:4002".parse().unwrap();
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Elements(2));
    for listening in [false, true] {
        let mut leg_a = leg("10.0.0.5:4000", 101);
        leg_a.params.inband_dtmf = listening;
        let mut s = MediaSession::bridge(SessionConfig::default(), leg_a, leg("10.0.0.6:4002", 96), t0);
        // Leg A's audio when it listens: keys and silence, as μ-law (else 0xff, μ-law silence, as before).
        let audio: Vec<[u8; 160]> = keys_and_silence().iter().map(|frame| frame.map(linear_to_ulaw)).collect();
        let mut seq = 0u16;
        let mut now = t0;
        let name = if listening { "g711_bridge_both_ways_a_listening_for_keys" } else { "g711_bridge_both_ways" };
        g.bench_function(name, |bench| {
            bench.iter(|| {
                seq = seq.wrapping_add(1);
                now += Duration::from_millis(20);
                let mut pa = packet(seq, 0x1111);
                if listening {
                    pa[12..].copy_from_slice(&audio[usize::from(seq) % audio.len()]);
                }
                let mut pb = packet(seq, 0x2222);
                let fa = s.on_rtp(Leg::A, a, black_box(&mut pa), now);
                let fb = s.on_rtp(Leg::B, b, black_box(&mut pb), now);
                assert!(fa.is_some() && fb.is_some());
                while s.take_digit().is_some() {}
                (fa, fb)
            })
        });
    }
    g.finish();

    // The detector alone, per 20 ms frame: a key held (every window analysed in
    // full, the worst case), silence (no filter runs), and keys then silence.
    let frames = keys_and_silence();
    let held: Vec<[i16; 160]> = frames.iter().filter(|frame| frame.iter().any(|&x| x != 0)).copied().collect();
    let silence = vec![[0i16; 160]; 1];
    let mut g = c.benchmark_group("dtmf");
    g.throughput(Throughput::Elements(1));
    let cases = [
        ("inband_20ms_frame_key_held", &held, true),
        ("inband_20ms_frame_silence", &silence, false),
        ("inband_20ms_frame_keys_and_silence", &frames, true),
    ];
    for (name, frames, heard) in cases {
        let mut detector = InbandDtmf::new();
        let mut next = 0;
        let mut keys = 0u64;
        g.bench_function(name, |bench| {
            bench.iter(|| {
                next = (next + 1) % frames.len();
                keys += u64::from(detector.push(black_box(&frames[next])).is_some());
            })
        });
        assert_eq!(keys > 0, heard, "{name}: keys heard");
    }
    g.finish();
}

criterion_group!(benches, relay);
criterion_main!(benches);
