//! `[ivrs.<name>]`, `[[dispatch]]` and `[pin]`: the digit IVRs, the PIN rules
//! that route their callers, and the limit on wrong PINs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use pin_ivr::{Destination, Failure, IvrConfig, LimiterConfig, Mode, Prompts, Rule, Scope};
use serde::Deserialize;
use switch::prompts::Sounds;
use switch::settings::{IvrSettings, QueueExit};
use toml::Spanned;

use super::acd::{Known, RawQueue, exit};
use super::{ConfigError, Source};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawIvr {
    /// `pin` or `reference`.
    mode: String,
    pin_length: usize,
    /// `""`: none.
    terminator: String,
    min_length: usize,
    max_length: usize,
    /// Reference mode: where the caller goes with its reference.
    then: Option<String>,
    inter_digit_timeout_s: u64,
    overall_timeout_s: u64,
    max_attempts: u32,
    /// `hangup` or a destination.
    on_failure: String,
    /// The prompts' language (a folder of `media.sounds`); default `media.language`.
    language: Option<String>,
    /// Clip names instead of the default prompts (`""`: none).
    prompts: RawPrompts,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawPrompts {
    welcome: Option<String>,
    enter: Option<String>,
    wrong: Option<String>,
    too_many: Option<String>,
    goodbye: Option<String>,
    connecting: Option<String>,
}

/// Where the IVRs' prompts come from: the sounds folder and the switch's language.
pub(super) struct Languages<'a> {
    pub dir: &'a std::path::Path,
    pub default: Option<&'a Sounds>,
}

impl Default for RawIvr {
    fn default() -> Self {
        let pin = IvrConfig::pin("");
        let Mode::Pin { length, .. } = pin.mode else { unreachable!("IvrConfig::pin is in PIN mode") };
        RawIvr {
            mode: "pin".into(),
            pin_length: length,
            terminator: "#".into(),
            min_length: 1,
            max_length: 20,
            then: None,
            inter_digit_timeout_s: pin.inter_digit_timeout.as_secs(),
            overall_timeout_s: pin.overall_timeout.as_secs(),
            max_attempts: pin.max_attempts,
            on_failure: "hangup".into(),
            language: None,
            prompts: RawPrompts::default(),
        }
    }
}

/// One PIN rule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pin: String,
    to: String,
    trunk: Option<String>,
    did: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawPin {
    max_failures: u32,
    window_s: u64,
}

impl Default for RawPin {
    fn default() -> Self {
        let limits = LimiterConfig::default();
        RawPin { max_failures: limits.max_failures, window_s: limits.window.as_secs() }
    }
}

pub(super) fn parse(
    src: &Source<'_>,
    ivrs: &BTreeMap<String, Spanned<RawIvr>>,
    rules: &[Spanned<RawRule>],
    pin: &RawPin,
    queues: &BTreeMap<String, Spanned<RawQueue>>,
    known: &Known<'_>,
    languages: &Languages<'_>,
) -> Result<IvrSettings, ConfigError> {
    let destination = |text: &str| -> Result<Destination, String> {
        match exit(text, "", queues, known)? {
            QueueExit::Queue(name) => Ok(Destination::Queue(name)),
            QueueExit::Endpoint(id) => Ok(Destination::Endpoint(id)),
            QueueExit::Trunk { trunk, number } => Ok(Destination::Trunk { trunk, number }),
            QueueExit::Uri(uri) => Ok(Destination::Uri(uri)),
            QueueExit::Hangup => Err("\"hangup\" is not a place to send a caller".into()),
        }
    };
    let mut configs = HashMap::new();
    let mut own_sounds = HashMap::new();
    for (name, raw) in ivrs {
        let err = |field: &str, why: String| src.err(raw, &format!("ivrs.{name}.{field}"), why);
        let r = raw.get_ref();
        let mode = match r.mode.as_str() {
            "pin" => {
                let mut keys = r.terminator.chars();
                let terminator = match (keys.next(), keys.next()) {
                    (None, _) => None,
                    (Some(key), None) => Some(key),
                    _ => return Err(err("terminator", format!("\"{}\" is not one key", r.terminator))),
                };
                Mode::Pin { length: r.pin_length, terminator }
            }
            "reference" => {
                let Some(then) = &r.then else {
                    return Err(err("then", "a reference IVR needs the destination its callers go to".into()));
                };
                let then = destination(then).map_err(|why| err("then", why))?;
                Mode::Reference { min_len: r.min_length, max_len: r.max_length, terminator: '#', then }
            }
            other => return Err(err("mode", format!("unknown mode \"{other}\" (known: \"pin\", \"reference\")"))),
        };
        let on_failure = match r.on_failure.as_str() {
            "hangup" => Failure::Hangup,
            text => Failure::Route(destination(text).map_err(|why| err("on_failure", why))?),
        };
        let base = match &mode {
            Mode::Pin { .. } => IvrConfig::pin(name),
            Mode::Reference { then, .. } => IvrConfig::reference(name, then.clone()),
        };
        let p = &r.prompts;
        let pick = |set: &Option<String>, default: Option<String>| match set {
            Some(clip) if clip.is_empty() => None,
            Some(clip) => Some(clip.clone()),
            None => default,
        };
        let prompts = Prompts {
            welcome: pick(&p.welcome, base.prompts.welcome.clone()),
            enter: pick(&p.enter, base.prompts.enter.clone()),
            wrong: pick(&p.wrong, base.prompts.wrong.clone()),
            too_many: pick(&p.too_many, base.prompts.too_many.clone()),
            goodbye: pick(&p.goodbye, base.prompts.goodbye.clone()),
            connecting: pick(&p.connecting, base.prompts.connecting.clone()),
        };
        let config = IvrConfig {
            mode,
            prompts,
            inter_digit_timeout: Duration::from_secs(r.inter_digit_timeout_s),
            overall_timeout: Duration::from_secs(r.overall_timeout_s),
            max_attempts: r.max_attempts,
            on_failure,
            ..base
        };
        config.validate().map_err(|e| src.err(raw, &format!("ivrs.{name}"), e))?;
        // Its prompts must exist in its language (when there are prompts at all).
        let sounds = match &r.language {
            Some(lang) => {
                let loaded = Sounds::load(languages.dir, lang).map_err(|e| err("language", e.to_string()))?;
                Some(&**own_sounds.entry(name.clone()).or_insert(Arc::new(loaded)))
            }
            None => languages.default,
        };
        if let Some(sounds) = sounds {
            let p = &config.prompts;
            let clips = [&p.welcome, &p.enter, &p.wrong, &p.too_many, &p.goodbye, &p.connecting];
            if let Some(missing) = clips.into_iter().flatten().find(|clip| sounds.get(clip).is_none()) {
                return Err(err("prompts", format!("no clip \"{missing}\" in {}", sounds.dir().display())));
            }
        }
        configs.insert(name.clone(), Arc::new(config));
    }

    let mut table = pin_ivr::DispatchRules::default();
    let mut parsed = Vec::new();
    for (i, raw) in rules.iter().enumerate() {
        let key = format!("dispatch[{i}]");
        let err = |why: String| src.err(raw, &key, why);
        let r = raw.get_ref();
        if let Some(trunk) = r.trunk.as_ref().filter(|t| !known.trunks.iter().any(|k| &k.name == *t)) {
            return Err(err(format!("trunk \"{trunk}\" is not a defined trunk")));
        }
        let mut rule = Rule::new(&r.pin, destination(&r.to).map_err(|why| err(format!("to: {why}")))?)
            .in_scope(Scope { trunk: r.trunk.clone(), did: r.did.clone() });
        for (name, value) in &r.headers {
            rule = rule.with_header(name, value);
        }
        // The same checks (and duplicate PINs in one scope) as rules added at run time.
        table.add(rule.clone()).map_err(|e| err(e.to_string()))?;
        parsed.push(rule);
    }
    let limiter = LimiterConfig {
        max_failures: pin.max_failures,
        window: Duration::from_secs(pin.window_s),
        ..LimiterConfig::default()
    };
    limiter.validate().map_err(|e| ConfigError(format!("{}: pin: {e}", src.file.display())))?;
    Ok(IvrSettings { ivrs: configs, rules: parsed, limiter, sounds: own_sounds })
}
