//! Spoken prompts in one language, and sentences built from them.
//!
//! A language is a directory of clips (`sounds/en/`): sentences, parts of
//! sentences, digits and numbers, each an 8 kHz mono 16-bit WAV file cut at
//! its first and last sound. [`Sounds::load`] reads one such directory once
//! and refuses it, naming every file and path, if any clip the switch says is
//! missing or unreadable. [`Sounds::say`] then joins clips into one prompt
//! ("You are caller number" "three"), with a short gap between two clips and
//! a longer pause where a sentence ends; numbers (up to 9999 in words, above
//! digit by digit) and digit strings are spelt into clips by the pure
//! [`number_words`] and [`digit_words`]. [`queue_announcement`] is what a
//! queue says to a waiting caller.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use media_relay::prompt::{MAX_DURATION, SAMPLE_RATE};
use media_relay::{Prompt, PromptError};

/// Silence between two clips said in a row: the clips have none of their own.
pub const GAP: Duration = Duration::from_millis(80);
/// Silence between two sentences of an announcement; it takes the place of [`GAP`].
pub const SENTENCE_PAUSE: Duration = Duration::from_millis(400);

/// "You are caller number," (a number follows).
pub const QUEUE_POSITION: &str = "queue-position";
/// "Your estimated wait time is," (a number of minutes follows).
pub const QUEUE_WAIT: &str = "queue-wait";
/// "less than," (in "less than one minute").
pub const QUEUE_LESS_THAN: &str = "queue-less-than";
pub const MINUTE: &str = "minute";
pub const MINUTES: &str = "minutes";

/// The clips other than digits and numbers that every language directory
/// must have (`sounds/README.md` has their words).
pub const PHRASES: &[&str] = &[
    "please-hold",
    "goodbye",
    "queue-thank-you",
    "queue-busy",
    QUEUE_POSITION,
    QUEUE_WAIT,
    QUEUE_LESS_THAN,
    MINUTE,
    MINUTES,
    "queue-full",
    "agent-logged-in",
    "agent-logged-out",
    "agent-paused",
    "agent-unpaused",
    "ivr-welcome",
    "ivr-enter-pin",
    "ivr-wrong-pin",
    "ivr-too-many",
    "ivr-enter-reference",
    "ivr-connecting",
];

/// Largest number said in words; above, digit by digit.
pub const MAX_NUMBER_IN_WORDS: u32 = 9999;

/// Most WAV files a language directory may hold, and how deep its folders
/// may go: a directory given by mistake (a whole music library) is refused,
/// not read into memory.
const MAX_FILES: usize = 1000;
const MAX_DEPTH: usize = 4;

/// Every clip a language directory must have: [`PHRASES`], `digits/0` to
/// `digits/9`, and the numbers [`number_words`] uses (`numbers/0` to
/// `numbers/19`, the tens from `numbers/20` to `numbers/90`,
/// `numbers/hundred`, `numbers/thousand`).
pub fn required_clips() -> Vec<String> {
    let mut clips: Vec<String> = PHRASES.iter().map(|&p| p.to_owned()).collect();
    clips.extend((0..10).map(|d| format!("digits/{d}")));
    clips.extend((0..20).chain((20..100).step_by(10)).map(|n| format!("numbers/{n}")));
    clips.extend(["numbers/hundred".to_owned(), "numbers/thousand".to_owned()]);
    clips
}

/// The clips that say `n`: in words up to [`MAX_NUMBER_IN_WORDS`] (125 is
/// `numbers/1 numbers/hundred numbers/20 numbers/5`, 2000 is `numbers/2
/// numbers/thousand`), digit by digit above (`digits/1 digits/0 ...`).
pub fn number_words(n: u32) -> Vec<String> {
    if n > MAX_NUMBER_IN_WORDS {
        return digit_words(&n.to_string());
    }
    if n == 0 {
        return vec!["numbers/0".to_owned()];
    }
    let mut words = Vec::with_capacity(6);
    let (thousands, hundreds, rest) = (n / 1000, n / 100 % 10, n % 100);
    for (count, unit) in [(thousands, "thousand"), (hundreds, "hundred")] {
        if count > 0 {
            words.push(format!("numbers/{count}"));
            words.push(format!("numbers/{unit}"));
        }
    }
    if rest >= 20 {
        words.push(format!("numbers/{}", rest / 10 * 10));
        if rest % 10 > 0 {
            words.push(format!("numbers/{}", rest % 10));
        }
    } else if rest > 0 {
        words.push(format!("numbers/{rest}"));
    }
    words
}

/// The clips that read `digits` back one by one (`digits/2 digits/4`);
/// anything but the ASCII digits (`*`, `#`, spaces, dashes) is skipped.
pub fn digit_words(digits: &str) -> Vec<String> {
    digits.chars().filter(char::is_ascii_digit).map(|d| format!("digits/{d}")).collect()
}

/// One piece of something to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// A clip by name: the file's path in the language directory, without
    /// `.wav` (`queue-position`, `numbers/7`).
    Clip(Cow<'static, str>),
    /// A number, as [`number_words`] spells it.
    Number(u32),
    /// Digits read back one by one, as [`digit_words`] spells them.
    Digits(String),
    /// Silence, in place of the gap between the clips on either side (the
    /// end of a sentence).
    Pause(Duration),
}

impl Part {
    /// A clip by name: `Part::clip("queue-full")`.
    pub fn clip(name: impl Into<Cow<'static, str>>) -> Part {
        Part::Clip(name.into())
    }

    /// The clips this part says, in order; none for a pause.
    pub fn clip_names(&self) -> Vec<String> {
        match self {
            Part::Clip(name) => vec![name.clone().into_owned()],
            Part::Number(n) => number_words(*n),
            Part::Digits(digits) => digit_words(digits),
            Part::Pause(_) => Vec::new(),
        }
    }
}

/// What a queue says to a caller waiting in it: "You are caller number 3.
/// Your estimated wait time is 4 minutes." Either sentence is left out when
/// its figure is `None`. `position` counts from 1. The wait is said in whole
/// minutes rounded up (3 min 1 s is "4 minutes"), "less than 1 minute" under
/// one minute, and in minutes however long it is (95 minutes is "95
/// minutes").
pub fn queue_announcement(position: Option<usize>, wait: Option<Duration>) -> Vec<Part> {
    let mut parts = Vec::with_capacity(8);
    if let Some(position) = position {
        parts.push(Part::clip(QUEUE_POSITION));
        parts.push(Part::Number(u32::try_from(position).unwrap_or(u32::MAX)));
    }
    if let Some(wait) = wait {
        if !parts.is_empty() {
            parts.push(Part::Pause(SENTENCE_PAUSE));
        }
        parts.push(Part::clip(QUEUE_WAIT));
        if wait < Duration::from_secs(60) {
            parts.extend([Part::clip(QUEUE_LESS_THAN), Part::Number(1), Part::clip(MINUTE)]);
        } else {
            let minutes = u32::try_from(wait.as_nanos().div_ceil(60_000_000_000)).unwrap_or(u32::MAX);
            parts.push(Part::Number(minutes));
            parts.push(Part::clip(if minutes == 1 { MINUTE } else { MINUTES }));
        }
    }
    parts
}

/// A language directory could not be loaded, or something could not be said in it.
#[derive(Debug, thiserror::Error)]
pub enum SoundsError {
    #[error("sounds {lang:?}: a language is the name of a directory (\"en\"), not a path")]
    BadLanguage { lang: String },
    #[error("sounds {lang:?}: cannot read {}: {error}", dir.display())]
    Directory {
        lang: String,
        dir: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(
        "sounds {lang:?}: {} holds more than {MAX_FILES} WAV files or folders deeper than {MAX_DEPTH}; \
         is it a language directory?",
        dir.display()
    )]
    TooMany { lang: String, dir: PathBuf },
    #[error("sounds {lang:?}: {} missing: {}", plural(missing.len(), "file"), list_missing(missing))]
    Missing {
        lang: String,
        /// Each clip missing and the file it should be.
        missing: Vec<(String, PathBuf)>,
    },
    #[error("sounds {lang:?}: {}", list_problems(problems))]
    Unreadable { lang: String, problems: Vec<PromptError> },
    #[error("sounds {lang:?}: no clip {name:?} (no file {})", path.display())]
    UnknownClip { lang: String, name: String, path: PathBuf },
    #[error(
        "sounds {lang:?}: what to say lasts more than the {} s a prompt may last: {start} ...",
        MAX_DURATION.as_secs()
    )]
    TooLong {
        lang: String,
        /// The first clips of it.
        start: String,
    },
    #[error("sounds {lang:?}: {problem}")]
    Compose { lang: String, problem: PromptError },
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

fn list_missing(missing: &[(String, PathBuf)]) -> String {
    let list: Vec<String> = missing.iter().map(|(name, path)| format!("{name:?} ({})", path.display())).collect();
    list.join(", ")
}

fn list_problems(problems: &[PromptError]) -> String {
    let list: Vec<String> = problems.iter().map(PromptError::to_string).collect();
    list.join("; ")
}

/// The clips of one language, loaded once and shared between calls.
pub struct Sounds {
    lang: String,
    dir: PathBuf,
    clips: HashMap<String, Arc<Prompt>>,
    gap: Arc<Prompt>,
}

impl fmt::Debug for Sounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sounds")
            .field("lang", &self.lang)
            .field("dir", &self.dir)
            .field("clips", &self.clips.len())
            .finish()
    }
}

impl Sounds {
    /// Loads every `.wav` file under `dir/lang` (`sounds/en`), subfolders
    /// included, each under its path without `.wav` (`numbers/7`). An error
    /// lists every clip of [`required_clips`] that is missing, with the path
    /// it should have, or every file that is not 8 kHz mono 16-bit PCM.
    pub fn load(dir: &Path, lang: &str) -> Result<Sounds, SoundsError> {
        if lang.is_empty() || lang == "." || lang == ".." || lang.contains(['/', '\\']) {
            return Err(SoundsError::BadLanguage { lang: lang.to_owned() });
        }
        let dir = dir.join(lang);
        let files = wav_files(&dir).map_err(|error| match error {
            WalkError::Io(dir, error) => SoundsError::Directory { lang: lang.to_owned(), dir, error },
            WalkError::TooMany => SoundsError::TooMany { lang: lang.to_owned(), dir: dir.clone() },
        })?;
        let missing: Vec<(String, PathBuf)> = required_clips()
            .into_iter()
            .filter(|name| !files.iter().any(|(found, _)| found == name))
            .map(|name| {
                let path = dir.join(format!("{name}.wav"));
                (name, path)
            })
            .collect();
        if !missing.is_empty() {
            return Err(SoundsError::Missing { lang: lang.to_owned(), missing });
        }
        let mut clips = HashMap::with_capacity(files.len());
        let mut problems = Vec::new();
        for (name, path) in files {
            match Prompt::load(&path) {
                Ok(prompt) => {
                    clips.insert(name, Arc::new(prompt));
                }
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(SoundsError::Unreadable { lang: lang.to_owned(), problems });
        }
        let gap =
            Prompt::silence("gap", GAP).map_err(|problem| SoundsError::Compose { lang: lang.to_owned(), problem })?;
        Ok(Sounds { lang: lang.to_owned(), dir, clips, gap: Arc::new(gap) })
    }

    /// The language ("en").
    pub fn lang(&self) -> &str {
        &self.lang
    }

    /// The directory it was loaded from (`sounds/en`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A clip by name (`queue-full`, `numbers/7`).
    pub fn get(&self, name: &str) -> Option<Arc<Prompt>> {
        self.clips.get(name).cloned()
    }

    /// Every clip's name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.clips.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// One prompt saying `parts` in order: [`GAP`] between two clips, a
    /// pause's silence in its place. A single clip is returned as loaded,
    /// not copied. An error names a clip this language lacks, or says that
    /// the whole would outlast a prompt's bound (checked as the parts are
    /// spelt, before anything is copied).
    pub fn say(&self, parts: &[Part]) -> Result<Arc<Prompt>, SoundsError> {
        enum Piece {
            Clip(Arc<Prompt>),
            Pause(Prompt),
        }
        let compose_error = |problem: PromptError| SoundsError::Compose { lang: self.lang.clone(), problem };
        let bound = MAX_DURATION.as_micros() as u64 * u64::from(SAMPLE_RATE) / 1_000_000;
        let mut pieces = Vec::new();
        let mut words = Vec::new();
        let (mut samples, mut after_clip) = (0u64, false);
        for part in parts {
            if let Part::Pause(pause) = part {
                after_clip = false;
                // Less than a sample is no pause: the clips around it are joined without a gap.
                if pause.as_nanos() * u128::from(SAMPLE_RATE) >= 1_000_000_000 {
                    let silence = Prompt::silence("pause", *pause).map_err(compose_error)?;
                    samples += silence.samples() as u64;
                    words.push(format!("({} ms)", pause.as_millis()));
                    pieces.push(Piece::Pause(silence));
                }
                if samples > bound {
                    return Err(self.too_long(&words));
                }
            }
            for name in part.clip_names() {
                let Some(clip) = self.clips.get(&name) else {
                    let path = self.dir.join(format!("{name}.wav"));
                    return Err(SoundsError::UnknownClip { lang: self.lang.clone(), name, path });
                };
                if after_clip {
                    samples += self.gap.samples() as u64;
                    pieces.push(Piece::Clip(self.gap.clone()));
                }
                samples += clip.samples() as u64;
                pieces.push(Piece::Clip(clip.clone()));
                words.push(name);
                after_clip = true;
                if samples > bound {
                    return Err(self.too_long(&words));
                }
            }
        }
        if let [Piece::Clip(clip)] = pieces.as_slice() {
            return Ok(clip.clone());
        }
        let refs: Vec<&Prompt> = pieces
            .iter()
            .map(|piece| match piece {
                Piece::Clip(clip) => clip.as_ref(),
                Piece::Pause(pause) => pause,
            })
            .collect();
        let name = format!("{}: {}", self.lang, words.join(" "));
        Prompt::concat(name, &refs).map(Arc::new).map_err(compose_error)
    }

    fn too_long(&self, words: &[String]) -> SoundsError {
        let start: Vec<&str> = words.iter().take(8).map(String::as_str).collect();
        SoundsError::TooLong { lang: self.lang.clone(), start: start.join(" ") }
    }
}

enum WalkError {
    Io(PathBuf, std::io::Error),
    TooMany,
}

/// Every `*.wav` file under `dir`, as (name, path): the name is its path
/// from `dir` with `/` between folders and without the extension. Sorted.
fn wav_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, WalkError> {
    let mut files = Vec::new();
    let mut folders = vec![(dir.to_path_buf(), String::new(), 0)];
    while let Some((folder, prefix, depth)) = folders.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|e| WalkError::Io(folder.clone(), e))?;
        for entry in entries {
            let path = entry.map_err(|e| WalkError::Io(folder.clone(), e))?.path();
            let Some(file_name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            // Follows symbolic links; MAX_DEPTH stops a loop of them.
            let metadata = std::fs::metadata(&path).map_err(|e| WalkError::Io(path.clone(), e))?;
            if metadata.is_dir() {
                if depth == MAX_DEPTH {
                    return Err(WalkError::TooMany);
                }
                folders.push((path, format!("{prefix}{file_name}/"), depth + 1));
            } else if let Some(stem) = file_name.strip_suffix(".wav") {
                if files.len() == MAX_FILES {
                    return Err(WalkError::TooMany);
                }
                files.push((format!("{prefix}{stem}"), path));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use media_relay::session::Codec;
    use std::sync::OnceLock;

    fn sounds_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sounds")
    }

    /// The English sounds the switch ships, loaded once for all the tests.
    fn en() -> &'static Sounds {
        static SOUNDS: OnceLock<Sounds> = OnceLock::new();
        SOUNDS.get_or_init(|| Sounds::load(&sounds_dir(), "en").unwrap())
    }

    fn names(parts: &[Part]) -> Vec<String> {
        parts.iter().flat_map(Part::clip_names).collect()
    }

    fn strs(words: &[String]) -> Vec<&str> {
        words.iter().map(String::as_str).collect()
    }

    #[test]
    fn numbers_in_words() {
        let cases: &[(u32, &[&str])] = &[
            (0, &["0"]),
            (1, &["1"]),
            (9, &["9"]),
            (10, &["10"]),
            (13, &["13"]),
            (19, &["19"]),
            (20, &["20"]),
            (21, &["20", "1"]),
            (45, &["40", "5"]),
            (99, &["90", "9"]),
            (100, &["1", "hundred"]),
            (101, &["1", "hundred", "1"]),
            (110, &["1", "hundred", "10"]),
            (115, &["1", "hundred", "15"]),
            (120, &["1", "hundred", "20"]),
            (125, &["1", "hundred", "20", "5"]),
            (999, &["9", "hundred", "90", "9"]),
            (1000, &["1", "thousand"]),
            (1001, &["1", "thousand", "1"]),
            (1011, &["1", "thousand", "11"]),
            (1100, &["1", "thousand", "1", "hundred"]),
            (1999, &["1", "thousand", "9", "hundred", "90", "9"]),
            (2000, &["2", "thousand"]),
            (2020, &["2", "thousand", "20"]),
            (7305, &["7", "thousand", "3", "hundred", "5"]),
            (9999, &["9", "thousand", "9", "hundred", "90", "9"]),
        ];
        for &(n, expected) in cases {
            let expected: Vec<String> = expected.iter().map(|w| format!("numbers/{w}")).collect();
            assert_eq!(number_words(n), expected, "{n}");
        }
        assert_eq!(number_words(10_000), ["digits/1", "digits/0", "digits/0", "digits/0", "digits/0"]);
        assert_eq!(number_words(u32::MAX).len(), 10);
        assert_eq!(strs(&number_words(123_456))[..2], ["digits/1", "digits/2"]);
    }

    /// Every number to 9999: its words read back to itself, follow the
    /// grammar, and are clips every language must have.
    #[test]
    fn every_number_to_9999_reads_back_to_itself() {
        let required = required_clips();
        for n in 0..=MAX_NUMBER_IN_WORDS {
            let words = number_words(n);
            assert!(!words.is_empty() && words.len() <= 6, "{n}: {words:?}");
            let (mut total, mut current, mut last_unit) = (0, 0, u32::MAX);
            for (i, word) in words.iter().enumerate() {
                assert!(required.contains(word), "{n}: {word}");
                match word.strip_prefix("numbers/").unwrap() {
                    unit @ ("thousand" | "hundred") => {
                        let value = if unit == "thousand" { 1000 } else { 100 };
                        // After a single digit, and thousands before hundreds.
                        assert!((1..=9).contains(&current) && value < last_unit, "{n}: {words:?}");
                        total += current * value;
                        (current, last_unit) = (0, value);
                    }
                    digits => {
                        let value: u32 = digits.parse().unwrap();
                        // Units after tens only; never two tens, never a unit after a unit.
                        assert!(current == 0 || (current % 10 == 0 && current >= 20 && value < 10), "{n}: {words:?}");
                        assert!(value != 0 || (n == 0 && i == 0), "{n}: {words:?}");
                        current += value;
                    }
                }
            }
            assert_eq!(total + current, n, "{words:?}");
        }
    }

    #[test]
    fn digits_one_by_one() {
        let all: Vec<String> = (0..10).map(|d| format!("digits/{d}")).collect();
        assert_eq!(digit_words("0123456789"), all);
        assert_eq!(digit_words("07#"), ["digits/0", "digits/7"]);
        assert_eq!(digit_words("*1 2-3٣"), ["digits/1", "digits/2", "digits/3"]);
        assert!(digit_words("").is_empty());
        assert_eq!(names(&[Part::Digits("42".into())]), ["digits/4", "digits/2"]);
    }

    #[test]
    fn queue_announcements() {
        let minutes = |m: u64| Some(Duration::from_secs(m * 60));
        let cases: &[(Option<usize>, Option<Duration>, &[&str])] = &[
            (Some(3), minutes(4), &["queue-position", "numbers/3", "queue-wait", "numbers/4", "minutes"]),
            // Rounded up.
            (None, Some(Duration::from_secs(3 * 60 + 1)), &["queue-wait", "numbers/4", "minutes"]),
            (None, Some(Duration::from_millis(60_001)), &["queue-wait", "numbers/2", "minutes"]),
            (None, minutes(1), &["queue-wait", "numbers/1", "minute"]),
            (None, Some(Duration::from_secs(59)), &["queue-wait", "queue-less-than", "numbers/1", "minute"]),
            (None, Some(Duration::ZERO), &["queue-wait", "queue-less-than", "numbers/1", "minute"]),
            (None, minutes(95), &["queue-wait", "numbers/90", "numbers/5", "minutes"]),
            (None, minutes(600), &["queue-wait", "numbers/6", "numbers/hundred", "minutes"]),
            (Some(1), None, &["queue-position", "numbers/1"]),
            (Some(21), None, &["queue-position", "numbers/20", "numbers/1"]),
            (None, None, &[]),
        ];
        for &(position, wait, expected) in cases {
            let parts = queue_announcement(position, wait);
            assert_eq!(strs(&names(&parts)), expected, "{position:?} {wait:?}");
        }
        // The sentences are apart; huge figures are said, not panicked over.
        let parts = queue_announcement(Some(2), minutes(2));
        assert_eq!(parts[2], Part::Pause(SENTENCE_PAUSE));
        assert_eq!(parts.iter().filter(|p| matches!(p, Part::Pause(_))).count(), 1);
        let huge = queue_announcement(Some(usize::MAX), Some(Duration::MAX));
        assert_eq!(huge[1], Part::Number(u32::MAX));
        assert_eq!(huge[4], Part::Number(u32::MAX));
    }

    #[test]
    fn the_shipped_language_has_every_clip() {
        let sounds = en();
        assert_eq!((sounds.lang(), sounds.dir().ends_with("sounds/en")), ("en", true));
        for name in required_clips() {
            let clip = sounds.get(&name).unwrap_or_else(|| panic!("{name}"));
            assert!(
                clip.duration() > Duration::from_millis(200) && clip.duration() < Duration::from_secs(5),
                "{clip:?}"
            );
        }
        assert!(sounds.get("moh").is_none() && sounds.get("nothing").is_none());
        assert!(sounds.names().len() >= required_clips().len());
        assert!(sounds.names().is_sorted());
    }

    /// The announcement lasts its clips, an 80 ms gap between two clips and
    /// the pause between the sentences; its audio is the clips in order.
    #[test]
    fn a_composed_announcement_is_its_clips_and_gaps() {
        let sounds = en();
        let parts = queue_announcement(Some(3), Some(Duration::from_secs(4 * 60)));
        let prompt = sounds.say(&parts).unwrap();
        let clips: Vec<Arc<Prompt>> = names(&parts).iter().map(|n| sounds.get(n).unwrap()).collect();
        let gap = GAP.as_millis() as usize * 8;
        // "queue-position numbers/3" (pause) "queue-wait numbers/4 minutes": three gaps.
        let expected = clips.iter().map(|c| c.samples()).sum::<usize>() + 3 * gap + 400 * 8;
        assert_eq!(prompt.samples(), expected);
        assert_eq!(prompt.name(), "en: queue-position numbers/3 (400 ms) queue-wait numbers/4 minutes");
        let audio = prompt.encoded(Codec::Pcmu).unwrap();
        let silence = Prompt::silence("", Duration::from_secs(1)).unwrap();
        let silence = silence.encoded(Codec::Pcmu).unwrap();
        let mut at = 0;
        for (i, clip) in clips.iter().enumerate() {
            let silent = match i {
                0 => 0,
                2 => 400 * 8,
                _ => gap,
            };
            assert_eq!(&audio[at..at + silent], &silence[..silent], "before clip {i}");
            at += silent;
            let bytes = clip.encoded(Codec::Pcmu).unwrap();
            assert_eq!(&audio[at..at + bytes.len()], bytes, "clip {i}");
            at += bytes.len();
        }
        assert_eq!(at, audio.len());
        // The other law too.
        let wait = sounds.get("queue-wait").unwrap();
        let pcma = prompt.encoded(Codec::Pcma).unwrap();
        let from = clips[0].samples() + gap + clips[1].samples() + 400 * 8;
        assert_eq!(&pcma[from..from + wait.samples()], wait.encoded(Codec::Pcma).unwrap());
    }

    #[test]
    fn saying_one_clip_shares_it_and_pauses_replace_gaps() {
        let sounds = en();
        let full = sounds.get("queue-full").unwrap();
        assert!(Arc::ptr_eq(&sounds.say(&[Part::clip("queue-full")]).unwrap(), &full));
        let seven = sounds.get("digits/7").unwrap().samples();
        let said = sounds.say(&[Part::Digits("77".into())]).unwrap();
        assert_eq!(said.samples(), 2 * seven + 640);
        // A pause shorter than a sample joins the clips with nothing between them.
        let parts = [Part::Number(7), Part::Pause(Duration::from_nanos(1)), Part::Number(7)];
        assert_eq!(sounds.say(&parts).unwrap().samples(), 2 * seven);
        let parts = [Part::Pause(Duration::from_millis(100)), Part::Number(7), Part::Pause(Duration::from_millis(10))];
        assert_eq!(sounds.say(&parts).unwrap().samples(), 800 + seven + 80);
    }

    #[test]
    fn what_cannot_be_said_is_an_error_naming_it() {
        let sounds = en();
        let error = sounds.say(&[Part::clip("queue-position"), Part::clip("welcome-sales")]).unwrap_err();
        assert!(matches!(&error, SoundsError::UnknownClip { name, .. } if name == "welcome-sales"));
        let text = error.to_string();
        assert!(text.starts_with("sounds \"en\": no clip \"welcome-sales\" (no file "), "{text}");
        assert!(text.ends_with("sounds/en/welcome-sales.wav)"), "{text}");
        // 5000 digits (about 40 minutes) outlast a prompt; refused before anything is copied.
        let error = sounds.say(&[Part::Digits("1".repeat(5000))]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "sounds \"en\": what to say lasts more than the 600 s a prompt may last: \
             digits/1 digits/1 digits/1 digits/1 digits/1 digits/1 digits/1 digits/1 ..."
        );
        let error = sounds.say(&[Part::Pause(Duration::MAX)]).unwrap_err();
        assert!(error.to_string().contains("longer than the 600 s"), "{error}");
        assert!(sounds.say(&[]).unwrap_err().to_string().contains("no parts to join"));
    }

    /// A scratch copy of `sounds/en` to damage; removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let root = std::env::temp_dir().join(format!("tandem-sounds-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            let from = sounds_dir().join("en");
            for (name, path) in wav_files(&from).ok().unwrap() {
                let to = root.join("en").join(format!("{name}.wav"));
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(path, to).unwrap();
            }
            Scratch(root)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn missing_clips_are_listed_with_their_paths() {
        let scratch = Scratch::new("missing");
        let en = scratch.0.join("en");
        std::fs::remove_file(en.join("queue-full.wav")).unwrap();
        std::fs::remove_file(en.join("numbers/thousand.wav")).unwrap();
        let error = Sounds::load(&scratch.0, "en").unwrap_err();
        let SoundsError::Missing { missing, .. } = &error else { panic!("{error}") };
        assert_eq!(
            missing,
            &[
                ("queue-full".to_owned(), en.join("queue-full.wav")),
                ("numbers/thousand".to_owned(), en.join("numbers/thousand.wav"))
            ]
        );
        assert_eq!(
            error.to_string(),
            format!(
                "sounds \"en\": 2 files missing: \"queue-full\" ({}), \"numbers/thousand\" ({})",
                en.join("queue-full.wav").display(),
                en.join("numbers/thousand.wav").display()
            )
        );
    }

    #[test]
    fn own_recordings_load_and_bad_ones_are_named() {
        let scratch = Scratch::new("own");
        let en = scratch.0.join("en");
        // An extra clip, in a folder of its own, loads under its name.
        std::fs::create_dir_all(en.join("support")).unwrap();
        std::fs::copy(en.join("goodbye.wav"), en.join("support/welcome.wav")).unwrap();
        std::fs::write(en.join("README.txt"), "not a clip").unwrap();
        let sounds = Sounds::load(&scratch.0, "en").unwrap();
        let (welcome, goodbye) = (sounds.get("support/welcome").unwrap(), sounds.get("goodbye").unwrap());
        assert_eq!(welcome.encoded(Codec::Pcmu), goodbye.encoded(Codec::Pcmu));
        assert!(sounds.names().contains(&"support/welcome"));
        // Two files in another format: both named.
        std::fs::write(en.join("goodbye.wav"), b"ID3 an mp3").unwrap();
        std::fs::write(en.join("digits/3.wav"), b"").unwrap();
        let error = Sounds::load(&scratch.0, "en").unwrap_err();
        let SoundsError::Unreadable { problems, .. } = &error else { panic!("{error}") };
        assert_eq!(problems.len(), 2, "{error}");
        let text = error.to_string();
        assert!(
            text.contains("digits/3.wav\": not a WAV file") && text.contains("goodbye.wav\": not a WAV file"),
            "{text}"
        );
    }

    #[test]
    fn a_language_that_is_not_there_is_named() {
        let error = Sounds::load(&sounds_dir(), "xx").unwrap_err();
        assert!(matches!(error, SoundsError::Directory { .. }), "{error}");
        let text = error.to_string();
        assert!(text.starts_with("sounds \"xx\": cannot read ") && text.contains("sounds/xx: "), "{text}");
        for lang in ["", "..", "../sounds/en", "en/"] {
            let error = Sounds::load(&sounds_dir(), lang).unwrap_err();
            assert!(matches!(error, SoundsError::BadLanguage { .. }), "{lang:?}: {error}");
        }
    }
}
