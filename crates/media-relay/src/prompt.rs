//! Prompts: audio the relay plays to a leg (music on hold, IVR prompts). A
//! prompt is loaded once from an 8 kHz mono 16-bit PCM WAV file and held
//! encoded in both G.711 laws, so that playing it only copies bytes. Share one
//! between calls with an `Arc`. A sentence spoken from clips ("you are caller
//! number", "three") is one prompt too: [`Prompt::sequence`] joins the clips'
//! encoded bytes, with silence between them.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::g711;
use crate::session::Codec;

/// The only sample rate prompts come in: G.711's.
pub const SAMPLE_RATE: u32 = 8000;
/// Longest prompt loaded, so that a wrong file cannot fill the memory: ten
/// minutes is 4.8 MB per law. Music on hold loops; nothing needs longer.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
const MAX_SAMPLES: usize = MAX_DURATION.as_secs() as usize * SAMPLE_RATE as usize;
/// Room for a WAV file's chunks other than the samples (LIST, fact, ...).
const MAX_WAV_OVERHEAD: usize = 64 * 1024;

const FORMAT_PCM: u16 = 1;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// What a prompt file must be, for error messages.
const EXPECTED: &str = "prompts must be 8000 Hz mono 16-bit PCM WAV \
    (sounds/generate.sh makes them; sox IN.wav -r 8000 -c 1 -b 16 OUT.wav converts one)";

/// A prompt could not be loaded: which one, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prompt {file:?}: {problem}")]
pub struct PromptError {
    /// The file, or the name given to audio not read from a file.
    pub file: String,
    pub problem: String,
}

/// Audio ready to play: the same samples as μ-law and as A-law bytes (one per
/// sample, 160 per 20 ms frame).
#[derive(Clone, PartialEq, Eq)]
pub struct Prompt {
    name: String,
    pcmu: Box<[u8]>,
    pcma: Box<[u8]>,
}

impl fmt::Debug for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prompt").field("name", &self.name).field("duration", &self.duration()).finish()
    }
}

impl Prompt {
    /// Reads and encodes a WAV file; refuses anything but 8 kHz mono 16-bit PCM.
    pub fn load(path: impl AsRef<Path>) -> Result<Prompt, PromptError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let error = |problem: String| PromptError { file: name.clone(), problem };
        let size = std::fs::metadata(path).map_err(|e| error(format!("cannot read it: {e}")))?.len();
        if size > (MAX_SAMPLES * 2 + MAX_WAV_OVERHEAD) as u64 {
            return Err(error(format!(
                "the file is {size} bytes, too long for a prompt (at most {} s)",
                MAX_DURATION.as_secs()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
        Prompt::from_wav(name, &bytes)
    }

    /// A WAV file already in memory; `name` says where it came from in errors and logs.
    pub fn from_wav(name: impl Into<String>, bytes: &[u8]) -> Result<Prompt, PromptError> {
        let name = name.into();
        match pcm_samples(bytes) {
            Ok(data) => {
                // Little-endian 16-bit samples, whole (pcm_samples checked the length).
                let samples: Vec<i16> = data.chunks_exact(2).map(|s| i16::from_le_bytes([s[0], s[1]])).collect();
                Prompt::from_samples(name, &samples)
            }
            Err(problem) => Err(PromptError { file: name, problem }),
        }
    }

    /// 8 kHz linear samples (generated audio, tests).
    pub fn from_samples(name: impl Into<String>, samples: &[i16]) -> Result<Prompt, PromptError> {
        let name = name.into();
        if let Some(problem) = length_problem(samples.len() as u128) {
            return Err(PromptError { file: name, problem });
        }
        Ok(Prompt {
            name,
            pcmu: samples.iter().map(|&s| g711::linear_to_ulaw(s)).collect(),
            pcma: samples.iter().map(|&s| g711::linear_to_alaw(s)).collect(),
        })
    }

    /// `duration` of silence (to the sample below), for a pause in a
    /// [`sequence`](Prompt::sequence); an error if that is no sample at all or
    /// longer than [`MAX_DURATION`].
    pub fn silence(name: impl Into<String>, duration: Duration) -> Result<Prompt, PromptError> {
        let name = name.into();
        let samples = samples_in(duration);
        if let Some(problem) = length_problem(samples) {
            return Err(PromptError { file: name, problem });
        }
        // length_problem bounds it by MAX_SAMPLES.
        let samples = samples as usize;
        Ok(Prompt {
            name,
            pcmu: vec![g711::linear_to_ulaw(0); samples].into(),
            pcma: vec![g711::linear_to_alaw(0); samples].into(),
        })
    }

    /// The parts one after the other, with no gap: see [`sequence`](Prompt::sequence).
    pub fn concat(name: impl Into<String>, parts: &[&Prompt]) -> Result<Prompt, PromptError> {
        Prompt::sequence(name, parts, Duration::ZERO)
    }

    /// One prompt made of `parts` played one after the other, with `gap` of
    /// silence (to the sample below) between each two: a sentence built from
    /// clips ("you are caller number", "three"). Copies the encoded bytes, so
    /// costs no encoding. An error, naming `name`, if there are no parts or if
    /// the whole would last longer than [`MAX_DURATION`]; nothing is allocated
    /// then.
    pub fn sequence(name: impl Into<String>, parts: &[&Prompt], gap: Duration) -> Result<Prompt, PromptError> {
        let name = name.into();
        if parts.is_empty() {
            return Err(PromptError { file: name, problem: "no parts to join".to_owned() });
        }
        let gap = samples_in(gap);
        let gaps = gap.saturating_mul(parts.len() as u128 - 1);
        let total = parts.iter().fold(gaps, |sum, part| sum.saturating_add(part.samples() as u128));
        if let Some(problem) = length_problem(total) {
            let problem = format!("{} parts and the gaps between them: {problem}", parts.len());
            return Err(PromptError { file: name, problem });
        }
        // length_problem bounds both by MAX_SAMPLES.
        let (total, gap) = (total as usize, gap as usize);
        let join = |codec: Codec, silence: u8| -> Box<[u8]> {
            let mut out = Vec::with_capacity(total);
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    out.resize(out.len() + gap, silence);
                }
                out.extend_from_slice(part.encoded(codec).unwrap_or_default());
            }
            out.into_boxed_slice()
        };
        Ok(Prompt {
            name,
            pcmu: join(Codec::Pcmu, g711::linear_to_ulaw(0)),
            pcma: join(Codec::Pcma, g711::linear_to_alaw(0)),
        })
    }

    /// The file it was loaded from, or the name it was given.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn samples(&self) -> usize {
        self.pcmu.len()
    }

    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.samples() as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
    }

    /// The encoded audio for PCMU or PCMA; `None` for any other codec.
    pub fn encoded(&self, codec: Codec) -> Option<&[u8]> {
        match codec {
            Codec::Pcmu => Some(&self.pcmu),
            Codec::Pcma => Some(&self.pcma),
            _ => None,
        }
    }

    /// Fills `out` with the encoded bytes found `position` bytes into the prompt
    /// repeated without end (it loops). False, and `out` untouched, for a codec
    /// other than PCMU or PCMA. Allocates nothing.
    pub fn fill_looped(&self, codec: Codec, position: u64, out: &mut [u8]) -> bool {
        let Some(audio) = self.encoded(codec) else { return false };
        // Never empty: constructors refuse a prompt without samples.
        let mut from = (position % audio.len() as u64) as usize;
        let mut filled = 0;
        while filled < out.len() {
            let n = (audio.len() - from).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&audio[from..from + n]);
            filled += n;
            from = 0;
        }
        true
    }
}

/// How many samples `duration` holds, to the sample below.
fn samples_in(duration: Duration) -> u128 {
    // At most about 1.5e32: no overflow.
    duration.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000
}

/// What is wrong with a prompt of `samples` samples: none, or too many.
fn length_problem(samples: u128) -> Option<String> {
    if samples == 0 {
        Some("it has no audio (no samples)".to_owned())
    } else if samples > MAX_SAMPLES as u128 {
        Some(format!(
            "{} s of audio, longer than the {} s a prompt may last",
            samples / u128::from(SAMPLE_RATE),
            MAX_DURATION.as_secs()
        ))
    } else {
        None
    }
}

/// The sample bytes of an 8 kHz mono 16-bit PCM WAV file, or what is wrong with it.
fn pcm_samples(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(format!("not a WAV file (no RIFF/WAVE header); {EXPECTED}"));
    }
    let mut format: Option<WavFormat> = None;
    let mut at = 12;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 8) else {
            return Err(format!("truncated: {} stray bytes after the last chunk", bytes.len() - at));
        };
        let id = String::from_utf8_lossy(&header[..4]).into_owned();
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let body_at = at + 8;
        let Some(body) = bytes.get(body_at..body_at.saturating_add(size)) else {
            return Err(format!("truncated: chunk {id:?} says {size} bytes but only {} follow", bytes.len() - body_at));
        };
        match &header[..4] {
            b"fmt " => format = Some(WavFormat::parse(body)?),
            b"data" => {
                let Some(format) = format else {
                    return Err("the data chunk comes before the fmt chunk".to_owned());
                };
                format.check()?;
                if !size.is_multiple_of(2) {
                    return Err(format!("the data chunk has an odd number of bytes ({size}) for 16-bit samples"));
                }
                return Ok(body);
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body_at + size + (size & 1);
    }
    Err(if format.is_none() { "no fmt chunk" } else { "no data chunk" }.to_owned())
}

/// The fields of a WAV `fmt ` chunk that say what the samples are.
#[derive(Clone, Copy, Debug)]
struct WavFormat {
    tag: u16,
    channels: u16,
    sample_rate: u32,
    bits: u16,
}

impl WavFormat {
    fn parse(body: &[u8]) -> Result<WavFormat, String> {
        if body.len() < 16 {
            return Err(format!("the fmt chunk is {} bytes, less than the 16 of PCM", body.len()));
        }
        let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
        let mut tag = u16_at(0);
        // WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of the sub-format GUID.
        if tag == FORMAT_EXTENSIBLE && body.len() >= 26 {
            tag = u16_at(24);
        }
        Ok(WavFormat {
            tag,
            channels: u16_at(2),
            sample_rate: u32::from_le_bytes([body[4], body[5], body[6], body[7]]),
            bits: u16_at(14),
        })
    }

    /// Every way this differs from 8 kHz mono 16-bit PCM, in one message.
    fn check(self) -> Result<(), String> {
        let mut wrong = Vec::new();
        if self.tag != FORMAT_PCM {
            wrong.push(match self.tag {
                3 => "the samples are floating point".to_owned(),
                6 => "the samples are A-law".to_owned(),
                7 => "the samples are μ-law".to_owned(),
                tag => format!("the samples are in format {tag:#06x}, not PCM"),
            });
        }
        if self.sample_rate != SAMPLE_RATE {
            wrong.push(format!("the sample rate is {} Hz", self.sample_rate));
        }
        if self.channels != 1 {
            wrong.push(format!("it has {} channels", self.channels));
        }
        if self.bits != 16 {
            wrong.push(format!("the samples are {}-bit", self.bits));
        }
        if wrong.is_empty() { Ok(()) } else { Err(format!("{}; {EXPECTED}", wrong.join(", "))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAV file as sox writes one, with a chunk before `fmt ` to skip.
    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(4 + 8 + 3 + 1 + 8 + 16 + 8 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVE");
        out.extend_from_slice(b"LIST");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(b"abc\0"); // 3 bytes and the pad byte
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(channels * bits / 8)).to_le_bytes());
        out.extend_from_slice(&(channels * bits / 8).to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn le(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn problem(bytes: &[u8]) -> String {
        Prompt::from_wav("test.wav", bytes).unwrap_err().to_string()
    }

    #[test]
    fn a_wav_file_is_encoded_in_both_laws() {
        let samples = [0, -1, 1000, i16::MAX, i16::MIN];
        let prompt = Prompt::from_wav("test.wav", &wav(1, 1, 8000, 16, &le(&samples))).unwrap();
        assert_eq!(prompt.samples(), 5);
        assert_eq!(prompt.encoded(Codec::Pcmu).unwrap(), [0xFF, 0x7F, 0xCE, 0x80, 0x00]);
        assert_eq!(prompt.encoded(Codec::Pcma).unwrap(), [0xD5, 0x55, 0xFA, 0xAA, 0x2A]);
        assert_eq!(prompt.encoded(Codec::G722), None);
        assert_eq!(prompt.name(), "test.wav");
        let long = Prompt::from_samples("8000", &[0; 8000]).unwrap();
        assert_eq!(long.duration(), Duration::from_secs(1));
    }

    #[test]
    fn other_formats_are_refused_saying_what_is_wrong() {
        let data = le(&[0; 8]);
        let text = problem(&wav(1, 2, 44100, 16, &data));
        assert!(
            text.starts_with(
                "prompt \"test.wav\": the sample rate is 44100 Hz, it has 2 channels; \
                 prompts must be 8000 Hz mono 16-bit PCM WAV"
            ),
            "{text}"
        );
        assert!(problem(&wav(1, 1, 8000, 8, &data)).contains(": the samples are 8-bit;"));
        assert!(
            problem(&wav(3, 1, 8000, 32, &data)).contains(": the samples are floating point, the samples are 32-bit;")
        );
        assert!(problem(&wav(7, 1, 8000, 8, &data)).contains("μ-law"));
        assert!(problem(&wav(1, 1, 8000, 16, &[0; 3])).contains("odd number of bytes (3)"));
        assert!(problem(&wav(1, 1, 8000, 16, &[])).ends_with(": it has no audio (no samples)"));
        assert!(problem(b"ID3\x03 an mp3").contains("not a WAV file"));
        let mut truncated = wav(1, 1, 8000, 16, &data);
        truncated.truncate(truncated.len() - 4);
        assert!(problem(&truncated).contains("chunk \"data\" says 16 bytes but only 12 follow"));
        // A RIFF header and nothing else.
        assert_eq!(problem(b"RIFF\x04\0\0\0WAVE"), "prompt \"test.wav\": no fmt chunk");
    }

    #[test]
    fn extensible_pcm_is_pcm() {
        let mut file = wav(1, 1, 8000, 16, &le(&[0, 0]));
        // Rewrite the fmt chunk as WAVE_FORMAT_EXTENSIBLE with the PCM sub-format.
        let fmt_at = file.windows(4).position(|w| w == b"fmt ").unwrap();
        let mut extensible = file[fmt_at + 8..fmt_at + 24].to_vec();
        extensible[0..2].copy_from_slice(&FORMAT_EXTENSIBLE.to_le_bytes());
        extensible.extend_from_slice(&[22, 0, 16, 0, 4, 0, 0, 0, 1, 0]);
        extensible.extend_from_slice(&[0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71]);
        file.splice(fmt_at + 4..fmt_at + 24, [40u32.to_le_bytes().to_vec(), extensible].concat());
        assert_eq!(Prompt::from_wav("x", &file).unwrap().samples(), 2);
    }

    #[test]
    fn missing_files_are_named() {
        let error = Prompt::load("/nonexistent/moh.wav").unwrap_err();
        assert_eq!(error.file, "/nonexistent/moh.wav");
        assert!(error.to_string().starts_with("prompt \"/nonexistent/moh.wav\": cannot read it: "), "{error}");
    }

    /// The sounds the switch ships load, and music on hold is long enough to loop.
    #[test]
    fn the_shipped_sounds_load() {
        let sounds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sounds");
        let moh = Prompt::load(sounds.join("moh.wav")).unwrap();
        assert!(moh.duration() >= Duration::from_secs(20), "{moh:?}");
        // Every WAV file, in the language folders and theirs too.
        let (mut folders, mut loaded) = (vec![sounds], 0);
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "wav") {
                    Prompt::load(&path).unwrap();
                    loaded += 1;
                }
            }
        }
        assert!(loaded > 50, "{loaded} files");
    }

    #[test]
    fn silence_lasts_what_it_is_asked_to() {
        let pause = Prompt::silence("pause", Duration::from_millis(250)).unwrap();
        assert_eq!((pause.samples(), pause.duration(), pause.name()), (2000, Duration::from_millis(250), "pause"));
        assert!(pause.encoded(Codec::Pcmu).unwrap().iter().all(|&b| b == 0xFF));
        assert!(pause.encoded(Codec::Pcma).unwrap().iter().all(|&b| b == 0xD5));
        // 100 µs is less than one sample (125 µs).
        assert!(Prompt::silence("x", Duration::from_micros(100)).unwrap_err().problem.contains("no audio"));
        let error = Prompt::silence("long", MAX_DURATION + Duration::from_secs(1)).unwrap_err();
        assert_eq!(error.to_string(), "prompt \"long\": 601 s of audio, longer than the 600 s a prompt may last");
        assert!(Prompt::silence("x", Duration::MAX).is_err());
    }

    #[test]
    fn a_sequence_is_its_parts_in_order_with_gaps_between() {
        let one = Prompt::from_samples("one", &[1000; 3]).unwrap();
        let two = Prompt::from_samples("two", &[-1000; 2]).unwrap();
        let three = Prompt::from_samples("three", &[i16::MAX]).unwrap();
        // One millisecond: 8 samples.
        let joined = Prompt::sequence("one two three", &[&one, &two, &three], Duration::from_millis(1)).unwrap();
        assert_eq!(joined.name(), "one two three");
        assert_eq!(joined.samples(), 3 + 8 + 2 + 8 + 1);
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let silence = Prompt::silence("", Duration::from_millis(1)).unwrap();
            let expected = [&one, &silence, &two, &silence, &three]
                .iter()
                .flat_map(|p| p.encoded(codec).unwrap().to_vec())
                .collect::<Vec<u8>>();
            assert_eq!(joined.encoded(codec).unwrap(), expected, "{codec:?}");
        }
        let concat = Prompt::concat("two one", &[&two, &one]).unwrap();
        assert_eq!(concat.encoded(Codec::Pcmu).unwrap(), [0x4E, 0x4E, 0xCE, 0xCE, 0xCE]);
        assert_eq!(Prompt::concat("alone", &[&two]).unwrap().encoded(Codec::Pcma), two.encoded(Codec::Pcma));
        assert_eq!(Prompt::concat("none", &[]).unwrap_err().to_string(), "prompt \"none\": no parts to join");
    }

    #[test]
    fn a_sequence_longer_than_a_prompt_may_last_is_refused() {
        let half = Prompt::silence("half", MAX_DURATION / 2).unwrap();
        let full = Prompt::concat("full", &[&half, &half]).unwrap();
        assert_eq!(full.duration(), MAX_DURATION);
        let gap = Duration::from_micros(125); // one sample
        let error = Prompt::sequence("too long", &[&half, &half], gap).unwrap_err();
        assert_eq!(error.file, "too long");
        assert_eq!(
            error.problem,
            "2 parts and the gaps between them: 600 s of audio, longer than the 600 s a prompt may last"
        );
        assert!(Prompt::concat("x", &[&full, &one_sample()]).is_err());
        // Gaps that would overflow any count of samples.
        let error = Prompt::sequence("x", &[&one_sample(), &one_sample(), &one_sample()], Duration::MAX).unwrap_err();
        assert!(error.problem.contains("longer than the 600 s"), "{error}");
    }

    fn one_sample() -> Prompt {
        Prompt::from_samples("1", &[0]).unwrap()
    }

    #[test]
    fn looping_wraps_inside_a_frame() {
        let prompt = Prompt::from_samples("ramp", &[0, 100, 1000]).unwrap();
        let ulaw = prompt.encoded(Codec::Pcmu).unwrap().to_vec();
        let mut out = [0u8; 7];
        assert!(prompt.fill_looped(Codec::Pcmu, 2, &mut out));
        assert_eq!(out, [ulaw[2], ulaw[0], ulaw[1], ulaw[2], ulaw[0], ulaw[1], ulaw[2]]);
        assert!(prompt.fill_looped(Codec::Pcma, u64::MAX, &mut out[..1]));
        assert!(!prompt.fill_looped(Codec::Opus, 0, &mut out));
    }

    /// Cut, corrupted and random files, chunk sizes up to u32::MAX included:
    /// a prompt or an error naming the file, never a panic.
    #[test]
    fn damaged_wav_files_are_errors_not_panics() {
        use rand::{RngExt, SeedableRng};
        let good = wav(1, 1, 8000, 16, &le(&[0, 1000, -1000, 5, i16::MIN, i16::MAX]));
        let check = |bytes: &[u8]| match Prompt::from_wav("bad.wav", bytes) {
            Ok(prompt) => assert!(prompt.samples() > 0),
            Err(error) => assert!(error.file == "bad.wav" && !error.problem.is_empty(), "{error:?}"),
        };
        for len in 0..good.len() {
            assert!(Prompt::from_wav("cut.wav", &good[..len]).is_err(), "cut at {len}");
        }
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0x5249_4646_5741_5645);
        let mut file = Vec::new();
        for _ in 0..20_000 {
            file.clear();
            file.extend_from_slice(&good);
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..file.len());
                match rng.random_range(0..3) {
                    // A chunk size (or any 4 bytes) made huge, or anything.
                    0 if at + 4 <= file.len() => file[at..at + 4].copy_from_slice(&rng.random::<u32>().to_le_bytes()),
                    1 if at + 4 <= file.len() => file[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes()),
                    _ => file[at] = rng.random(),
                }
            }
            let len = if rng.random_bool(0.5) { file.len() } else { rng.random_range(0..=file.len()) };
            check(&file[..len]);
            // Random chunks after a valid RIFF header.
            file.clear();
            file.extend_from_slice(&good[..12]);
            for _ in 0..rng.random_range(0..64) {
                file.push(rng.random());
            }
            check(&file);
        }
    }
}
