//! G.711 companding: 16-bit linear samples to 8-bit μ-law (PCMU) and A-law
//! (PCMA) and back, code for code as ITU-T G.191's reference `g711.c`.
//!
//! μ-law works on 14 bits of magnitude with a bias of 132 and clips at 32635;
//! A-law on 13 bits. A negative sample's magnitude is its one's complement
//! (-1 codes like 0), as in the reference. The encoders truncate within a step
//! and the decoders return its middle, so a round trip is off by at most half a
//! step. Codes carry the usual inversions: all μ-law bits, A-law's even bits (0x55).

/// μ-law bias: shifts every magnitude so that the segment is its highest bit.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude μ-law encodes; more would overflow with the bias.
const ULAW_CLIP: i32 = 32635;

/// One sample to its μ-law code. Silence (0) is 0xFF.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let sample = i32::from(sample);
    let (sign, magnitude) = if sample < 0 { (0x80, !sample) } else { (0, sample) };
    let magnitude = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // The magnitude is 132..=32767: its highest bit is 7..=14, the segment 0..=7.
    let segment = (31 - magnitude.leading_zeros() as i32) - 7;
    let mantissa = (magnitude >> (segment + 3)) & 0x0F;
    !(sign | (segment << 4) | mantissa) as u8
}

pub fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let segment = (code & 0x70) >> 4;
    let magnitude = (((i32::from(code & 0x0F)) << 3) + ULAW_BIAS) << segment;
    let linear = if code & 0x80 != 0 { ULAW_BIAS - magnitude } else { magnitude - ULAW_BIAS };
    linear as i16
}

/// One sample to its A-law code. Silence (0) is 0xD5.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let sample = i32::from(sample) >> 3;
    let (magnitude, mask) = if sample >= 0 { (sample, 0xD5) } else { (!sample, 0x55) };
    // 0..=0x1F is segment 0, then one segment per bit up to 0xFFF (segment 7).
    let segment = (32 - (magnitude >> 5).leading_zeros() as i32).min(7);
    let mantissa = if segment < 2 { (magnitude >> 1) & 0x0F } else { (magnitude >> segment) & 0x0F };
    ((segment << 4) | mantissa) as u8 ^ mask
}

pub fn alaw_to_linear(code: u8) -> i16 {
    let code = code ^ 0x55;
    let segment = (code & 0x70) >> 4;
    let step = i32::from(code & 0x0F) << 4;
    let magnitude = match segment {
        0 => step + 8,
        1 => step + 0x108,
        _ => (step + 0x108) << (segment - 1),
    };
    (if code & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        // (sample, μ-law, A-law), as G.191's reference code gives them.
        let table: [(i16, u8, u8); 10] = [
            (0, 0xFF, 0xD5),
            (-1, 0x7F, 0x55),
            (1, 0xFF, 0xD5),
            (8, 0xFE, 0xD5),
            (-8, 0x7E, 0x55),
            (100, 0xF2, 0xD3),
            (-100, 0x73, 0x53),
            (1000, 0xCE, 0xFA),
            (i16::MAX, 0x80, 0xAA),
            (i16::MIN, 0x00, 0x2A),
        ];
        for (sample, ulaw, alaw) in table {
            assert_eq!(linear_to_ulaw(sample), ulaw, "μ-law of {sample}");
            assert_eq!(linear_to_alaw(sample), alaw, "A-law of {sample}");
        }
        assert_eq!((ulaw_to_linear(0xFF), ulaw_to_linear(0x80), ulaw_to_linear(0x00)), (0, 32124, -32124));
        assert_eq!((alaw_to_linear(0xD5), alaw_to_linear(0xAA), alaw_to_linear(0x2A)), (8, 32256, -32256));
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            // 0x7F is μ-law's negative zero: it decodes to 0, which encodes as 0xFF.
            if code != 0x7F {
                assert_eq!(linear_to_ulaw(ulaw_to_linear(code)), code, "μ-law {code:#04x}");
            }
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "A-law {code:#04x}");
        }
    }

    /// Every sample comes back within half a step of its segment, and the
    /// codes order like the samples.
    #[test]
    fn every_sample_round_trips_within_half_a_step() {
        let (mut last_ulaw, mut last_alaw) = (i16::MIN, i16::MIN);
        for sample in i16::MIN..=i16::MAX {
            let ulaw = ulaw_to_linear(linear_to_ulaw(sample));
            let alaw = alaw_to_linear(linear_to_alaw(sample));
            let magnitude = i32::from(sample).abs();
            // μ-law steps are 8 << segment on the biased magnitude; beyond the clip, the last code.
            let ulaw_step = 8 << ((31 - (magnitude.min(ULAW_CLIP) + ULAW_BIAS).leading_zeros()) - 7);
            let ulaw_error = (i32::from(ulaw) - i32::from(sample)).abs();
            assert!(ulaw_error <= ulaw_step / 2 || magnitude > ULAW_CLIP, "μ-law {sample} -> {ulaw}");
            // A-law steps are 16 in the first two segments, then doubling.
            let alaw_step = 16 << (32 - ((magnitude >> 3) >> 5).leading_zeros()).saturating_sub(1).min(6);
            let alaw_error = (i32::from(alaw) - i32::from(sample)).abs();
            assert!(alaw_error <= alaw_step / 2, "A-law {sample} -> {alaw} (step {alaw_step})");
            assert!(ulaw >= last_ulaw && alaw >= last_alaw, "monotonic at {sample}");
            (last_ulaw, last_alaw) = (ulaw, alaw);
        }
    }
}
