//! In-band DTMF: keys pressed on a phone that sends them as tones in the audio,
//! for a caller whose offer has no telephone-event (RFC 4733). The detector
//! reads 8 kHz linear samples, in frames of any length, and allocates nothing.
//!
//! # Windows
//!
//! Samples are cut into windows of 102 samples (12.75 ms) that overlap by half:
//! one is analysed every 51 samples. 102 samples (the length Asterisk and
//! spandsp use) tell the rows apart: they are 73 to 89 Hz from each other, and
//! a tone 73 Hz off a filter's frequency comes through it 22 dB down, where an
//! 80-sample (10 ms) window would let it through only 10 dB down. The half overlap gives the
//! timing a 6.4 ms step, so the duration limits below are sharp.
//!
//! In each window, eight Goertzel filters measure the row tones (697, 770, 852,
//! 941 Hz) and the column tones (1209, 1336, 1477, 1633 Hz). The window holds
//! a key when all of these hold, for the strongest row and the strongest
//! column, in this order:
//!
//! - each is at least -32 dBm0 (the administrations in Q.24 ask for about
//!   -25 dBm0 or less; phones send -6 to -10);
//! - each is 8 dB above the other tones of its group;
//! - twist: the column at most 8 dB above the row (normal twist) and the row at
//!   most 4 dB above the column (reverse twist): limits common in Q.24's
//!   tables, which Asterisk and spandsp use too;
//! - together they carry at least 70% of the window's power, the rest being
//!   noise, speech or music. A tone pair 15 dB above white noise has 97%; a
//!   filter reads a tone 1.5% off its frequency (Q.24's tolerance) up to 1.5 dB
//!   low, which with noise and twist brings a real key down to 72-76%;
//! - the window's two halves are within 2 dB of each other in power: a key is
//!   steady (its two tones' beat moves a half by 1.3 dB at most), while a
//!   window the tone only partly fills, or the onset of a syllable, is not;
//! - second harmonics (speech and music are rich in them, DTMF tones are
//!   pure): the power at twice the column's frequency at least 20 dB below the
//!   column, and at twice the row's at least 10 dB below the row, once what the
//!   column tone leaks into that filter is allowed for. 1394 Hz (twice 697) is
//!   58 Hz from 1336, 1540 is 63 Hz from 1477 and 1704 is 71 Hz from 1633,
//!   which a 102-sample window cannot separate: a column tone up to 1.5% off
//!   comes through those filters at up to 2.6 dB below its own power. That
//!   worst case, computed once per row and column, is the allowance.
//!
//! Over the repository's prompts and music on hold the share check alone stops
//! every window; without it, the harmonic and steadiness checks and the timing
//! below still read no key (see the tests).
//!
//! # Timing
//!
//! A key is reported once, when four windows in a row hold it. Every window
//! that a tone fills holds it, and a tone of 38.25 ms fills four wherever it
//! falls, so every tone of 40 ms is reported; a window the tone fills by less
//! than about four fifths does not, so no tone shorter than about 26 ms is.
//! Measured over the 16 keys and all 51 offsets: never up to 26 ms, always
//! from 36 ms. The same key is reported again only after seven windows in a
//! row without a key: measured, a silence of up to 29 ms within a press is
//! bridged and one of 37 ms or more makes two presses. A different key needs
//! no silence in between. Fast dialling, 50 ms on and 50 ms off, is read in
//! full.
//!
//! # Cost
//!
//! No filter can read more than twice a window's power, so a window too quiet
//! for the level check (silence, most of a call) runs no filter at all. Other
//! windows run the eight tone filters side by side, in SIMD lanes, and the
//! eight second-harmonic filters only when every other check has passed. Per
//! 20 ms frame, about 0.2 µs of silence and 2 µs of a key held (`cargo bench
//! --bench relay -- dtmf`, on a busy machine; README, performance).

use std::f32::consts::PI;
use std::sync::OnceLock;

/// The sample rate the detector reads (G.711's).
pub const SAMPLE_RATE: u32 = 8000;
/// Samples per analysed window.
const WINDOW: usize = 102;
/// Samples between the starts of two windows.
const HOP: usize = WINDOW / 2;
const ROW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COL_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];

/// Amplitude of a 0 dBm0 sine in 16-bit linear: G.711 μ-law's full-scale sine
/// (32 635 after the decoder's scaling by 4) is +3.17 dBm0.
pub const DBM0_AMPLITUDE: f32 = 22_668.0;
/// Each tone at least this loud.
pub const MIN_TONE_DBM0: f32 = -32.0;
/// The strongest tone of each group above the group's other tones by this.
pub const GROUP_PEAK_DB: f32 = 8.0;
/// Row and column together: at least this share of the window's power.
pub const MIN_TONE_SHARE: f32 = 0.7;
/// The window's two halves within this of each other in power.
pub const STEADY_DB: f32 = 2.0;
/// The column (high group) at most this far above the row.
pub const NORMAL_TWIST_DB: f32 = 8.0;
/// The row (low group) at most this far above the column.
pub const REVERSE_TWIST_DB: f32 = 4.0;
/// The column's second harmonic at least this far below it.
pub const COL_HARMONIC_DB: f32 = 20.0;
/// The row's second harmonic, less what the column tone leaks into it, at
/// least this far below the row.
pub const ROW_HARMONIC_DB: f32 = 10.0;
/// Consecutive windows holding a key before it is reported.
pub const PRESENT_WINDOWS: u8 = 4;
/// Consecutive windows without a key before the same key can be reported again.
pub const ABSENT_WINDOWS: u8 = 7;
/// Keys detected and not yet returned, when one call is given enough samples
/// for several (more than 204); more are dropped.
const QUEUE: usize = 4;

/// Why a window holds no key (tests use it to show which check decided).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    Weak,
    NotPeak,
    Twist,
    Share,
    Unsteady,
    Harmonic,
}

/// The Goertzel coefficient of a filter at `hz`.
fn coefficient(hz: f32) -> f32 {
    2.0 * (2.0 * PI * hz / SAMPLE_RATE as f32).cos()
}

/// Goertzel filters run side by side over a window (they are independent, so
/// the compiler runs them in SIMD lanes): |X|² of the window's DFT at each
/// filter's frequency, N² A² / 4 for a sine of amplitude A at it.
fn goertzel<const K: usize>(coefficients: &[f32; K], window: &[f32]) -> [f32; K] {
    let (mut s1, mut s2) = ([0.0f32; K], [0.0f32; K]);
    for &x in window {
        for k in 0..K {
            let s0 = x + coefficients[k] * s1[k] - s2[k];
            s2[k] = s1[k];
            s1[k] = s0;
        }
    }
    std::array::from_fn(|k| s1[k] * s1[k] + s2[k] * s2[k] - coefficients[k] * s1[k] * s2[k])
}

/// The filters, and the thresholds as power ratios: the same for every
/// detector, computed once.
#[derive(Debug)]
struct Tables {
    /// The rows, then the columns.
    tones: [f32; 8],
    /// Twice each row's frequency, then twice each column's.
    harmonics: [f32; 8],
    /// The most a column tone up to 1.5% off its frequency puts through a row's
    /// second-harmonic filter, relative to what it puts through its own filter:
    /// `[row][column]`.
    leak: [[f32; 4]; 4],
    min_power: f32,
    group_peak: f32,
    normal_twist: f32,
    reverse_twist: f32,
    steady: f32,
    col_harmonic: f32,
    row_harmonic: f32,
}

fn db(db: f32) -> f32 {
    10f32.powf(db / 10.0)
}

/// A column tone's frequency may be off by this much (Q.24's tolerance).
const TOLERANCE: f32 = 0.015;

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let both = |times: f32| -> [f32; 8] {
            std::array::from_fn(|i| coefficient(if i < 4 { ROW_HZ[i] } else { COL_HZ[i - 4] } * times))
        };
        let (tones, harmonics) = (both(1.0), both(2.0));
        let leak = std::array::from_fn(|r| {
            std::array::from_fn(|c| {
                let mut worst = 0.0f32;
                for step in -8..=8 {
                    let hz = COL_HZ[c] * (1.0 + TOLERANCE * step as f32 / 8.0);
                    for phase in 0..8 {
                        let phase = PI * phase as f32 / 8.0;
                        let tone: [f32; WINDOW] =
                            std::array::from_fn(|n| (2.0 * PI * hz * n as f32 / SAMPLE_RATE as f32 + phase).cos());
                        let [through, own] = goertzel(&[harmonics[r], tones[4 + c]], &tone);
                        worst = worst.max(through / own);
                    }
                }
                worst
            })
        });
        let min_amplitude = DBM0_AMPLITUDE * 10f32.powf(MIN_TONE_DBM0 / 20.0);
        Tables {
            tones,
            harmonics,
            leak,
            min_power: min_amplitude * min_amplitude / 2.0,
            group_peak: db(GROUP_PEAK_DB),
            normal_twist: db(NORMAL_TWIST_DB),
            reverse_twist: db(REVERSE_TWIST_DB),
            steady: db(-STEADY_DB),
            col_harmonic: db(-COL_HARMONIC_DB),
            row_harmonic: db(-ROW_HARMONIC_DB),
        }
    })
}

/// The DTMF detector of one stream (module docs).
#[derive(Clone, Debug)]
pub struct InbandDtmf {
    tables: &'static Tables,
    window: [f32; WINDOW],
    filled: usize,
    /// The last window's key (index into `KEYS`, row * 4 + column), and how many
    /// windows in a row had it.
    last: Option<u8>,
    run: u8,
    /// The key reported and not yet released by a silence.
    reported: Option<u8>,
    queue: [char; QUEUE],
    queued: usize,
}

impl Default for InbandDtmf {
    fn default() -> Self {
        InbandDtmf::new()
    }
}

impl InbandDtmf {
    pub fn new() -> Self {
        InbandDtmf {
            tables: tables(),
            window: [0.0; WINDOW],
            filled: 0,
            last: None,
            run: 0,
            reported: None,
            queue: ['\0'; QUEUE],
            queued: 0,
        }
    }

    /// Forgets everything heard so far: the audio in hand, a tone in progress.
    pub fn reset(&mut self) {
        self.filled = 0;
        self.last = None;
        self.run = 0;
        self.reported = None;
        self.queued = 0;
    }

    /// Feeds 8 kHz samples, any number; returns the key whose tone has just
    /// lasted long enough (module docs), once per press. Two keys are at least
    /// 204 samples apart, so given at most that many samples at a time (a 20 ms
    /// frame is 160) every key comes out of the call that completed it; with
    /// more, later keys wait for the next calls (up to four; more are dropped).
    pub fn push(&mut self, samples: &[i16]) -> Option<char> {
        let mut rest = samples;
        while !rest.is_empty() {
            let n = rest.len().min(WINDOW - self.filled);
            for (slot, &x) in self.window[self.filled..self.filled + n].iter_mut().zip(rest) {
                *slot = f32::from(x);
            }
            self.filled += n;
            rest = &rest[n..];
            if self.filled == WINDOW {
                let key = self.classify().ok();
                self.next_window(key);
                self.window.copy_within(HOP.., 0);
                self.filled = WINDOW - HOP;
            }
        }
        if self.queued == 0 {
            return None;
        }
        let key = self.queue[0];
        self.queue.copy_within(1..self.queued, 0);
        self.queued -= 1;
        Some(key)
    }

    /// The timing rules (module docs), after each window.
    fn next_window(&mut self, key: Option<u8>) {
        if key == self.last {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = key;
            self.run = 1;
        }
        match key {
            Some(key) if self.run == PRESENT_WINDOWS && self.reported != Some(key) => {
                self.reported = Some(key);
                if self.queued < QUEUE {
                    self.queue[self.queued] = KEYS[usize::from(key / 4)][usize::from(key % 4)];
                    self.queued += 1;
                }
            }
            None if self.run >= ABSENT_WINDOWS => self.reported = None,
            _ => {}
        }
    }

    /// The key the current window holds (row * 4 + column), or the first check
    /// it fails.
    pub(crate) fn classify(&self) -> Result<u8, Miss> {
        let t = self.tables;
        let window = &self.window;
        // Mean powers: a sine of amplitude A has A² / 2, and its filter gives N² A² / 4.
        let n = WINDOW as f32;
        let energy = |half: &[f32]| half.iter().map(|x| x * x).sum::<f32>();
        let (first, second) = (energy(&window[..HOP]), energy(&window[HOP..]));
        let total = (first + second) / n;
        // No filter reads more than twice the window's power (Cauchy-Schwarz): a
        // quiet window (silence, most of a call) needs no filter.
        if 2.0 * total < t.min_power {
            return Err(Miss::Weak);
        }
        let tones = goertzel(&t.tones, window).map(|p| 2.0 * p / (n * n));
        let strongest = |powers: &[f32]| (1..4).fold(0, |best, i| if powers[i] > powers[best] { i } else { best });
        let (row_powers, col_powers) = tones.split_at(4);
        let (row, col) = (strongest(row_powers), strongest(col_powers));
        let (row_power, col_power) = (row_powers[row], col_powers[col]);
        if row_power < t.min_power || col_power < t.min_power {
            return Err(Miss::Weak);
        }
        let dominates =
            |best: usize, powers: &[f32]| (0..4).all(|i| i == best || powers[i] * t.group_peak <= powers[best]);
        if !dominates(row, row_powers) || !dominates(col, col_powers) {
            return Err(Miss::NotPeak);
        }
        if col_power > row_power * t.normal_twist || row_power > col_power * t.reverse_twist {
            return Err(Miss::Twist);
        }
        if row_power + col_power < MIN_TONE_SHARE * total {
            return Err(Miss::Share);
        }
        if first.min(second) < first.max(second) * t.steady {
            return Err(Miss::Unsteady);
        }
        let harmonics = goertzel(&t.harmonics, window).map(|p| 2.0 * p / (n * n));
        if harmonics[4 + col] > col_power * t.col_harmonic {
            return Err(Miss::Harmonic);
        }
        let explained = col_power * t.leak[row][col];
        if harmonics[row] > row_power * t.row_harmonic + explained {
            return Err(Miss::Harmonic);
        }
        Ok((row * 4 + col) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711::{linear_to_ulaw, ulaw_to_linear};

    /// Deterministic white noise (xorshift, then Box-Muller).
    struct Noise(u64);

    impl Noise {
        fn uniform(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 40) as f32 + 0.5) / (1u64 << 24) as f32
        }

        fn gaussian(&mut self) -> f32 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
        }
    }

    fn amplitude(dbm0: f32) -> f32 {
        DBM0_AMPLITUDE * 10f32.powf(dbm0 / 20.0)
    }

    /// Audio built piece by piece, then sent through μ-law as a phone would.
    struct Signal {
        samples: Vec<f32>,
        noise: Option<(Noise, f32)>,
    }

    impl Signal {
        fn new() -> Self {
            Signal { samples: Vec::new(), noise: None }
        }

        /// White noise under everything, `snr_db` below a tone pair at `low`/`high` dBm0.
        fn with_noise(low: f32, high: f32, snr_db: f32) -> Self {
            let tone_power = (amplitude(low).powi(2) + amplitude(high).powi(2)) / 2.0;
            let sigma = (tone_power / db(snr_db)).sqrt();
            Signal { samples: Vec::new(), noise: Some((Noise(0x9e37_79b9_7f4a_7c15), sigma)) }
        }

        /// The key's tones, each at its level in dBm0, for `ms`, at frequencies
        /// off by `deviation` (0.015 is 1.5% high).
        fn key_at(mut self, key: char, ms: f32, low: f32, high: f32, deviation: f32) -> Self {
            let index = KEYS.iter().flatten().position(|&k| k == key).unwrap();
            let (fr, fc) = (ROW_HZ[index / 4] * (1.0 + deviation), COL_HZ[index % 4] * (1.0 + deviation));
            let (ar, ac) = (amplitude(low), amplitude(high));
            for n in 0..(ms * 8.0).round() as usize {
                let t = n as f32 / SAMPLE_RATE as f32;
                self.samples.push(ar * (2.0 * PI * fr * t).sin() + ac * (2.0 * PI * fc * t + 1.0).sin());
            }
            self
        }

        /// A key as phones send it: the low group at -8 dBm0, the high at -6.
        fn key(self, key: char, ms: f32) -> Self {
            self.key_at(key, ms, -8.0, -6.0, 0.0)
        }

        fn silence(mut self, ms: f32) -> Self {
            self.samples.resize(self.samples.len() + (ms * 8.0).round() as usize, 0.0);
            self
        }

        /// The samples so far, without noise.
        fn clone_samples(&self) -> Vec<i16> {
            Signal { samples: self.samples.clone(), noise: None }.samples()
        }

        fn samples(mut self) -> Vec<i16> {
            let samples = std::mem::take(&mut self.samples);
            samples
                .into_iter()
                .map(|x| {
                    let x = match &mut self.noise {
                        Some((noise, sigma)) => x + *sigma * noise.gaussian(),
                        None => x,
                    };
                    ulaw_to_linear(linear_to_ulaw(x.round().clamp(-32768.0, 32767.0) as i16))
                })
                .collect()
        }
    }

    /// The keys read from `samples`, fed in 20 ms frames.
    fn detect(samples: &[i16]) -> String {
        let mut dtmf = InbandDtmf::new();
        samples.chunks(160).filter_map(|frame| dtmf.push(frame)).collect()
    }

    /// The checks each window of `samples` fails, or its key.
    fn windows(samples: &[i16]) -> Vec<Result<u8, Miss>> {
        let mut dtmf = InbandDtmf::new();
        samples
            .windows(WINDOW)
            .step_by(HOP)
            .map(|w| {
                for (slot, &x) in dtmf.window.iter_mut().zip(w) {
                    *slot = f32::from(x);
                }
                dtmf.classify()
            })
            .collect()
    }

    const ALL_KEYS: &str = "123A456B789C*0#D";

    #[test]
    fn every_key_in_white_noise_at_15_db_snr_is_read_once() {
        let mut signal = Signal::with_noise(-8.0, -6.0, 15.0).silence(100.0);
        for key in ALL_KEYS.chars() {
            signal = signal.key(key, 100.0).silence(100.0);
        }
        assert_eq!(detect(&signal.samples()), ALL_KEYS);
        // Quieter, and 1.5% off frequency either way (Q.24's tolerance): still read.
        for deviation in [-0.015, 0.0, 0.015] {
            let mut signal = Signal::with_noise(-25.0, -23.0, 15.0).silence(60.0);
            for key in ALL_KEYS.chars() {
                signal = signal.key_at(key, 60.0, -25.0, -23.0, deviation).silence(60.0);
            }
            assert_eq!(detect(&signal.samples()), ALL_KEYS, "{deviation} off");
        }
    }

    #[test]
    fn a_tone_counts_from_40_ms_and_never_below_25_ms() {
        // Wherever the tone falls among the windows.
        for offset in 0..HOP {
            let at = |ms: f32| Signal::new().silence(offset as f32 / 8.0).key('5', ms).silence(100.0).samples();
            assert_eq!(detect(&at(40.0)), "5", "40 ms at offset {offset}");
            assert_eq!(detect(&at(25.0)), "", "25 ms at offset {offset}");
            assert_eq!(detect(&at(20.0)), "", "20 ms at offset {offset}");
        }
        // In noise too: noise lowers the tones' share of a window only.
        for key in ALL_KEYS.chars() {
            let short = Signal::with_noise(-8.0, -6.0, 15.0).silence(50.0).key(key, 25.0).silence(50.0);
            assert_eq!(detect(&short.samples()), "", "25 ms of {key}");
        }
    }

    #[test]
    fn twist_beyond_8_db_normal_or_4_db_reverse_is_no_key() {
        let read = |low: f32, high: f32| {
            let signal = Signal::new().silence(20.0).key_at('8', 100.0, low, high, 0.0).silence(100.0);
            (detect(&signal.clone_samples()), windows(&signal.samples())[5])
        };
        // Within the limits.
        assert_eq!(read(-14.0, -7.0).0, "8", "7 dB normal twist");
        assert_eq!(read(-7.0, -10.0).0, "8", "3 dB reverse twist");
        // Beyond: the twist check is what refuses.
        assert_eq!(read(-17.0, -7.0), (String::new(), Err(Miss::Twist)), "10 dB normal twist");
        assert_eq!(read(-7.0, -13.0), (String::new(), Err(Miss::Twist)), "6 dB reverse twist");
        // Every key, at 7 dB normal twist and 3 dB reverse twist, in noise.
        for (low, high) in [(-14.0, -7.0), (-7.0, -10.0)] {
            let mut signal = Signal::with_noise(low, high, 15.0).silence(60.0);
            for key in ALL_KEYS.chars() {
                signal = signal.key_at(key, 60.0, low, high, 0.0).silence(60.0);
            }
            assert_eq!(detect(&signal.samples()), ALL_KEYS, "low {low} dBm0, high {high} dBm0");
        }
    }

    #[test]
    fn fast_dialling_50_ms_on_50_ms_off_is_read_in_full() {
        let keys = "5551234567890*#ABCD99";
        let mut signal = Signal::with_noise(-8.0, -6.0, 15.0);
        for key in keys.chars() {
            signal = signal.key(key, 50.0).silence(50.0);
        }
        assert_eq!(detect(&signal.samples()), keys);
    }

    #[test]
    fn a_dropout_within_a_press_is_not_a_second_press() {
        let pressed = |gap: f32| Signal::new().key('3', 80.0).silence(gap).key('3', 80.0).silence(100.0).samples();
        assert_eq!(detect(&pressed(10.0)), "3");
        assert_eq!(detect(&pressed(20.0)), "3");
        assert_eq!(detect(&pressed(40.0)), "33");
        // Another key needs no gap.
        let changed = Signal::new().key('3', 60.0).key('6', 60.0).key('3', 60.0).silence(60.0).samples();
        assert_eq!(detect(&changed), "363");
    }

    #[test]
    fn tones_below_the_level_limit_are_not_keys() {
        let at = |dbm0: f32| Signal::new().key_at('0', 100.0, dbm0, dbm0, 0.0).silence(50.0).samples();
        assert_eq!(detect(&at(-30.0)), "0");
        assert_eq!(detect(&at(-34.0)), "");
        assert_eq!(windows(&at(-34.0))[3], Err(Miss::Weak));
    }

    #[test]
    fn frames_of_any_length_read_the_same() {
        let mut signal = Signal::with_noise(-8.0, -6.0, 20.0);
        for key in "159#".chars() {
            signal = signal.key(key, 45.0).silence(45.0);
        }
        let samples = signal.samples();
        for frame in [1, 7, 51, 80, 102, 160, 240, 1000] {
            let mut dtmf = InbandDtmf::new();
            let mut keys: String = samples.chunks(frame).filter_map(|chunk| dtmf.push(chunk)).collect();
            // Long frames may finish with keys still waiting.
            keys.extend(std::iter::from_fn(|| dtmf.push(&[])));
            assert_eq!(keys, "159#", "{frame}-sample frames");
        }
    }

    #[test]
    fn reset_forgets_a_tone_in_progress() {
        let tone = Signal::new().key('7', 50.0).samples();
        let (start, end) = tone.split_at(240);
        let mut dtmf = InbandDtmf::new();
        assert_eq!((dtmf.push(start), dtmf.push(end)), (None, Some('7')), "50 ms in two parts");
        dtmf.push(&Signal::new().silence(100.0).samples());
        assert_eq!(dtmf.push(start), None);
        dtmf.reset();
        assert_eq!(dtmf.push(end), None, "20 ms after the reset");
        // A key already reported counts as a new press after a reset.
        let long = Signal::new().key('7', 100.0).samples();
        let mut dtmf = InbandDtmf::new();
        assert_eq!(dtmf.push(&long[..400]), Some('7'));
        dtmf.reset();
        assert_eq!(dtmf.push(&long[400..]), Some('7'));
    }

    /// Speech and music must not read as keys. Every WAV under `sounds/` (music
    /// on hold, every spoken clip), through μ-law as a caller's phone would send
    /// it, at its level and 6 dB louder and quieter.
    #[test]
    fn the_prompts_and_music_on_hold_hold_no_keys() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sounds");
        let mut files = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "wav") {
                    files.push(path);
                }
            }
        }
        files.sort();
        assert!(files.iter().any(|f| f.ends_with("moh.wav")) && files.len() > 50, "{files:?}");
        let mut samples_checked = 0usize;
        // Windows by the first check they fail (Weak ... Harmonic), and windows holding a key.
        let mut stopped = [0usize; 7];
        for file in &files {
            let prompt = crate::Prompt::load(file).unwrap();
            let linear: Vec<i16> =
                prompt.encoded(crate::Codec::Pcmu).unwrap().iter().map(|&c| ulaw_to_linear(c)).collect();
            for gain in [0.5f32, 1.0, 2.0] {
                let scaled: Vec<i16> = linear
                    .iter()
                    .map(|&x| ulaw_to_linear(linear_to_ulaw((f32::from(x) * gain).clamp(-32768.0, 32767.0) as i16)))
                    .collect();
                assert_eq!(detect(&scaled), "", "{} at gain {gain}", file.display());
                for window in windows(&scaled) {
                    stopped[window.map_or_else(|miss| miss as usize, |_| 6)] += 1;
                }
                samples_checked += scaled.len();
            }
        }
        println!(
            "{} files, {:.1} s of audio (each file at -6, 0 and +6 dB): no key. Windows stopped by each check \
             (weak, not a peak, twist, share, unsteady, harmonic), then holding a key: {stopped:?}",
            files.len(),
            samples_checked as f32 / SAMPLE_RATE as f32,
        );
    }
}
