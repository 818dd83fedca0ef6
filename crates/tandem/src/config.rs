//! `conf/tandem.toml`: parsing, defaults and validation. Unknown keys and bad
//! values are errors that name the file, the line and the key path, e.g.
//! `conf/tandem.toml:12: sip.t1_ms: must be between 1 and 60000 (got 0)`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dialog_layer::auth::{Algorithm, DigestConfig};
use dialog_layer::guard::GuardConfig;
use dialog_layer::registrar::RegistrarConfig;
use dialog_layer::session_timer::SessionTimerConfig;
use dialog_layer::transaction::TimerConfig;
use ipnet::IpNet;
use serde::Deserialize;
use sip_transport::Transport;
use sip_transport::driver::ListenerSpec;
use switch::dialplan::{DialPlan, Destination, NumberMatch, QueueTarget, Rule, Template};
use switch::{CoreSettings, Credentials, EndpointSettings, Gateway, ListenerInfo, Profile, TrunkRegister, TrunkSettings};
use media_relay::{Prompt, RelayConfig};
use toml::Spanned;

mod acd;
mod ivr;

/// A configuration error, already worded for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Everything the binary needs, validated.
#[derive(Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub log_level: String,
    pub log_json: bool,
    pub max_message_size: usize,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Listeners in the order `core.listeners` describes them.
    pub listeners: Vec<ListenerSpec>,
    pub core: CoreSettings,
    /// Endpoints still using their demo password (`demo<ext>`).
    pub demo_endpoints: Vec<String>,
    pub media: RelayConfig,
    /// Played to a held party; `None` when there is none.
    pub music_on_hold: Option<Arc<Prompt>>,
    /// The queue log (JSON lines), in data_dir; `None` when off.
    pub queue_log: Option<PathBuf>,
    /// Prompts in `media.language`; `None` when the default folder is absent.
    pub sounds: Option<Arc<switch::prompts::Sounds>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Raw {
    general: General,
    log: Log,
    sip: Sip,
    tls: Tls,
    profiles: Profiles,
    registrar: Registrar,
    auth: Auth,
    endpoints: BTreeMap<String, Spanned<Endpoint>>,
    trunks: BTreeMap<String, Spanned<Trunk>>,
    dialplan: RawDialPlan,
    media: Media,
    acd: acd::RawAcd,
    agents: BTreeMap<String, Spanned<acd::RawAgent>>,
    queues: BTreeMap<String, Spanned<acd::RawQueue>>,
    ivrs: BTreeMap<String, Spanned<ivr::RawIvr>>,
    dispatch: Vec<Spanned<ivr::RawRule>>,
    pin: ivr::RawPin,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Media {
    bind: IpAddr,
    advertise: Spanned<IpAddr>,
    port_min: Spanned<u64>,
    port_max: Spanned<u64>,
    rtp_timeout_s: Spanned<u64>,
    /// Relay threads; 0: one per core.
    workers: Spanned<u64>,
    /// 0: off.
    one_way_audio_s: Spanned<u64>,
    /// Empty: no music on hold.
    music_on_hold: Option<Spanned<String>>,
    /// Where the language folders of prompts are.
    sounds: Option<Spanned<String>>,
    language: Spanned<String>,
}

impl Default for Media {
    fn default() -> Self {
        Media {
            bind: IpAddr::from([127, 0, 0, 1]),
            advertise: unspanned(IpAddr::from([127, 0, 0, 1])),
            port_min: unspanned(20000),
            port_max: unspanned(29999),
            rtp_timeout_s: unspanned(60),
            workers: unspanned(0),
            one_way_audio_s: unspanned(5),
            music_on_hold: None,
            sounds: None,
            language: unspanned("en".into()),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawDialPlan {
    internal: Vec<Spanned<RawRule>>,
    external: Vec<Spanned<RawRule>>,
}

/// One dial plan rule: one way to match, one destination.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    exact: Option<String>,
    prefix: Option<String>,
    pattern: Option<String>,
    endpoint: Option<String>,
    trunk: Option<String>,
    /// For a trunk: the number to dial there (default: the dialled number).
    number: Option<String>,
    echo: Option<bool>,
    queue: Option<String>,
    ivr: Option<String>,
    /// For a queue: the callers' priority and required skills.
    priority: Option<u8>,
    skills: Option<Vec<String>>,
    hangup: Option<u16>,
    ring_timeout_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct General {
    data_dir: PathBuf,
}

impl Default for General {
    fn default() -> Self {
        General { data_dir: "data".into() }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Log {
    level: String,
    format: Spanned<String>,
}

impl Default for Log {
    fn default() -> Self {
        Log { level: "info".into(), format: unspanned("text".into()) }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Sip {
    realm: String,
    user_agent: String,
    max_message_size: Spanned<u64>,
    t1_ms: Spanned<u64>,
    t2_ms: Spanned<u64>,
    t4_ms: Spanned<u64>,
    max_transactions: Spanned<u64>,
    session_expires_s: Spanned<u64>,
    min_se_s: Spanned<u64>,
}

impl Default for Sip {
    fn default() -> Self {
        Sip {
            realm: "tandem".into(),
            user_agent: "Tandem".into(),
            max_message_size: unspanned(65536),
            t1_ms: unspanned(500),
            t2_ms: unspanned(4000),
            t4_ms: unspanned(5000),
            max_transactions: unspanned(1_000_000),
            session_expires_s: unspanned(1800),
            min_se_s: unspanned(90),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Tls {
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Profiles {
    internal: Listeners,
    external: Listeners,
}

impl Default for Profiles {
    fn default() -> Self {
        let addrs = |port: u16| vec![SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))];
        Profiles {
            internal: Listeners { udp: addrs(5060), tcp: addrs(5060), tls: addrs(5061) },
            external: Listeners { udp: addrs(5080), tcp: addrs(5080), tls: Vec::new() },
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Listeners {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    tls: Vec<SocketAddr>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Registrar {
    min_expires: Spanned<u64>,
    max_expires: Spanned<u64>,
    default_expires: Spanned<u64>,
    max_contacts: Spanned<u64>,
}

impl Default for Registrar {
    fn default() -> Self {
        Registrar {
            min_expires: unspanned(60),
            max_expires: unspanned(3600),
            default_expires: unspanned(3600),
            max_contacts: unspanned(10),
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Auth {
    algorithms: Spanned<Vec<String>>,
    nonce_lifetime_s: Spanned<u64>,
    max_tracked_nonces: Spanned<u64>,
    free_failures: Spanned<u64>,
    delay_step_ms: Spanned<u64>,
    max_delay_ms: Spanned<u64>,
    ban_after: Spanned<u64>,
    window_s: Spanned<u64>,
    ban_s: Spanned<u64>,
    max_tracked_sources: Spanned<u64>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            // MD5 only by default: clients that predate RFC 8760 (SIPp 3.6, baresip 1.0)
            // fail on any SHA-256 challenge instead of skipping it.
            algorithms: unspanned(vec!["MD5".into()]),
            nonce_lifetime_s: unspanned(300),
            max_tracked_nonces: unspanned(1_000_000),
            free_failures: unspanned(3),
            delay_step_ms: unspanned(500),
            max_delay_ms: unspanned(4000),
            ban_after: unspanned(10),
            window_s: unspanned(60),
            ban_s: unspanned(300),
            max_tracked_sources: unspanned(100_000),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Endpoint {
    password: Option<String>,
    password_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Trunk {
    networks: Vec<IpNet>,
    /// The carrier's side, `host[:port]`: where calls and REGISTERs go.
    gateway: Option<Spanned<String>>,
    transport: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    register: Option<Spanned<bool>>,
    register_user: Option<Spanned<String>>,
    register_expires_s: Option<Spanned<u64>>,
    register_retry_min_s: Option<Spanned<u64>>,
    register_retry_max_s: Option<Spanned<u64>>,
    from_user: Option<Spanned<String>>,
}

/// Expiry a trunk asks its carrier for, unless `register_expires_s` says otherwise.
const TRUNK_REGISTER_EXPIRES_S: u64 = 3600;
/// First wait after a failed trunk registration, doubled up to the maximum.
const TRUNK_RETRY_MIN_S: u64 = 30;
const TRUNK_RETRY_MAX_S: u64 = 600;

fn unspanned<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

/// Turns byte offsets into `file:line:` prefixes.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text.as_bytes()[..offset.min(self.text.len())].iter().filter(|&&c| c == b'\n').count() + 1
    }

    fn err<T>(&self, value: &Spanned<T>, path: &str, why: impl Display) -> ConfigError {
        ConfigError(format!("{}:{}: {path}: {why}", self.file.display(), self.line(value.span().start)))
    }

    /// A number within bounds; the error names the key and the bounds.
    fn range(&self, value: &Spanned<u64>, path: &str, lo: u64, hi: u64) -> Result<u64, ConfigError> {
        let v = *value.get_ref();
        if v < lo || v > hi {
            return Err(self.err(value, path, format!("must be between {lo} and {hi} (got {v})")));
        }
        Ok(v)
    }
}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| Source { file: path, text }.line(s.start)).unwrap_or(1);
        // toml's message starts with its own "TOML parse error at line..." block; keep its last lines.
        let msg = e.message().trim().to_string();
        ConfigError(format!("{}:{line}: {msg}", path.display()))
    })?;
    let src = Source { file: path, text };

    let format = raw.log.format.get_ref().as_str();
    if !matches!(format, "text" | "json") {
        return Err(src.err(&raw.log.format, "log.format", format!("must be \"text\" or \"json\" (got \"{format}\")")));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
        return Err(ConfigError(format!("{}: log.level: {e}", path.display())));
    }

    let sip = &raw.sip;
    let max_message_size = src.range(&sip.max_message_size, "sip.max_message_size", 1500, 1 << 20)? as usize;
    let t1 = src.range(&sip.t1_ms, "sip.t1_ms", 1, 60_000)?;
    let t2 = src.range(&sip.t2_ms, "sip.t2_ms", t1, 600_000)?;
    let t4 = src.range(&sip.t4_ms, "sip.t4_ms", 1, 600_000)?;
    let max_transactions = src.range(&sip.max_transactions, "sip.max_transactions", 1, 100_000_000)? as usize;
    // RFC 4028 §5: Min-SE is at least 90 s.
    let min_se = src.range(&sip.min_se_s, "sip.min_se_s", 90, 86_400)?;
    let session_expires = src.range(&sip.session_expires_s, "sip.session_expires_s", min_se, 86_400)?;
    if sip.realm.is_empty() || sip.realm.contains(['"', '\\', '\r', '\n']) {
        return Err(ConfigError(format!("{}: sip.realm: must be non-empty, without quotes, backslashes or line breaks", path.display())));
    }
    if sip.user_agent.contains(['\r', '\n']) {
        return Err(ConfigError(format!("{}: sip.user_agent: must not contain line breaks", path.display())));
    }

    let reg = &raw.registrar;
    let min_expires = src.range(&reg.min_expires, "registrar.min_expires", 1, 86_400)?;
    let max_expires = src.range(&reg.max_expires, "registrar.max_expires", min_expires, 86_400 * 7)?;
    let default_expires = src.range(&reg.default_expires, "registrar.default_expires", min_expires, max_expires)?;
    let max_contacts = src.range(&reg.max_contacts, "registrar.max_contacts", 1, 1000)? as usize;

    let auth = &raw.auth;
    let mut algorithms = Vec::new();
    for name in auth.algorithms.get_ref() {
        match Algorithm::parse(name) {
            Some(a) if !algorithms.contains(&a) => algorithms.push(a),
            Some(_) => return Err(src.err(&auth.algorithms, "auth.algorithms", format!("\"{name}\" is listed twice"))),
            None => {
                return Err(src.err(&auth.algorithms, "auth.algorithms", format!("unknown algorithm \"{name}\" (known: \"SHA-256\", \"MD5\")")));
            }
        }
    }
    if algorithms.is_empty() {
        return Err(src.err(&auth.algorithms, "auth.algorithms", "must name at least one algorithm"));
    }
    let secs = |v: u64| Duration::from_secs(v);
    let millis = |v: u64| Duration::from_millis(v);
    let digest = DigestConfig {
        realm: sip.realm.clone(),
        nonce_lifetime: secs(src.range(&auth.nonce_lifetime_s, "auth.nonce_lifetime_s", 10, 86_400)?),
        algorithms,
        max_tracked_nonces: src.range(&auth.max_tracked_nonces, "auth.max_tracked_nonces", 1, 100_000_000)? as usize,
    };
    let free_failures = src.range(&auth.free_failures, "auth.free_failures", 0, 1000)? as u32;
    let guard = GuardConfig {
        free_failures,
        delay_step: millis(src.range(&auth.delay_step_ms, "auth.delay_step_ms", 0, 60_000)?),
        max_delay: millis(src.range(&auth.max_delay_ms, "auth.max_delay_ms", 0, 60_000)?),
        ban_after: src.range(&auth.ban_after, "auth.ban_after", free_failures.max(1) as u64, 1_000_000)? as u32,
        window: secs(src.range(&auth.window_s, "auth.window_s", 1, 86_400)?),
        ban_for: secs(src.range(&auth.ban_s, "auth.ban_s", 1, 86_400 * 30)?),
        max_tracked: src.range(&auth.max_tracked_sources, "auth.max_tracked_sources", 1, 100_000_000)? as usize,
    };

    let tls_cert = raw.tls.cert.as_ref().map(|c| c.get_ref().clone());
    let tls_key = raw.tls.key.as_ref().map(|k| k.get_ref().clone());
    match (&raw.tls.cert, &raw.tls.key) {
        (Some(c), None) => return Err(src.err(c, "tls.key", "must be set when tls.cert is")),
        (None, Some(k)) => return Err(src.err(k, "tls.cert", "must be set when tls.key is")),
        _ => {}
    }

    let mut listeners = Vec::new();
    let mut infos = Vec::new();
    for (profile, l) in [(Profile::Internal, &raw.profiles.internal), (Profile::External, &raw.profiles.external)] {
        for (transport, addrs) in [(Transport::Udp, &l.udp), (Transport::Tcp, &l.tcp), (Transport::Tls, &l.tls)] {
            for &addr in addrs {
                let key = format!("profiles.{}.{}", profile.as_str(), transport.as_str().to_ascii_lowercase());
                // Port 0 ("any free port") never collides.
                let same = |i: &&ListenerInfo| {
                    addr.port() != 0 && i.addr == addr && i.transport.is_reliable() == transport.is_reliable()
                };
                if let Some(other) = infos.iter().find(same) {
                    return Err(ConfigError(format!(
                        "{}: {key}: {addr} is already used by the {} {} listener",
                        path.display(),
                        other.profile.as_str(),
                        other.transport
                    )));
                }
                listeners.push(ListenerSpec { transport, addr });
                infos.push(ListenerInfo { profile, transport, addr });
            }
        }
    }
    if listeners.is_empty() {
        return Err(ConfigError(format!("{}: profiles: no listener configured", path.display())));
    }

    let mut endpoints = HashMap::new();
    let mut demo_endpoints = Vec::new();
    for (id, ep) in &raw.endpoints {
        let key = format!("endpoints.{id}");
        if !is_sip_user(id) {
            return Err(src.err(ep, &key, "is not a valid SIP user name"));
        }
        let password = match (&ep.get_ref().password, &ep.get_ref().password_env) {
            (Some(p), None) => p.clone(),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| src.err(ep, &format!("{key}.password_env"), format!("environment variable {var} is not set")))?,
            _ => return Err(src.err(ep, &key, "needs exactly one of password or password_env")),
        };
        if password.is_empty() {
            return Err(src.err(ep, &format!("{key}.password"), "must not be empty"));
        }
        if password == format!("demo{id}") {
            demo_endpoints.push(id.clone());
        }
        endpoints.insert(id.clone(), EndpointSettings { password });
    }

    let mut trunks = Vec::new();
    for (name, t) in &raw.trunks {
        trunks.push(trunk_settings(&src, name, t, &infos)?);
    }

    let m = &raw.media;
    if m.advertise.get_ref().is_unspecified() {
        return Err(src.err(&m.advertise, "media.advertise", "must be an address phones can send to, not 0.0.0.0 or ::"));
    }
    let port_min = src.range(&m.port_min, "media.port_min", 1024, 65534)?;
    let port_max = src.range(&m.port_max, "media.port_max", port_min + 1, 65535)?;
    let media = RelayConfig {
        bind_ip: m.bind,
        advertise_ip: *m.advertise.get_ref(),
        port_min: port_min as u16,
        port_max: port_max as u16,
        rtp_timeout: secs(src.range(&m.rtp_timeout_s, "media.rtp_timeout_s", 5, 3600)?),
        workers: src.range(&m.workers, "media.workers", 0, 256)? as usize,
        one_way_after: Some(src.range(&m.one_way_audio_s, "media.one_way_audio_s", 0, 600)?)
            .filter(|&s| s > 0)
            .map(secs),
        ..RelayConfig::default()
    };
    // Paths are relative to the working directory, like data_dir. The default
    // file may be absent (a binary installed without sounds); a named one may not.
    let music_on_hold = match &m.music_on_hold {
        None => Prompt::load(DEFAULT_MUSIC_ON_HOLD).ok().map(Arc::new),
        Some(p) if p.get_ref().is_empty() => None,
        Some(p) => Some(Arc::new(Prompt::load(p.get_ref()).map_err(|e| src.err(p, "media.music_on_hold", e.to_string()))?)),
    };

    // Like music on hold: the default folder may be absent, a named one may not.
    let language = m.language.get_ref();
    let sounds = match &m.sounds {
        None => switch::prompts::Sounds::load(Path::new(DEFAULT_SOUNDS), language).ok().map(Arc::new),
        Some(dir) => Some(Arc::new(
            switch::prompts::Sounds::load(Path::new(dir.get_ref()), language)
                .map_err(|e| src.err(dir, "media.sounds", e.to_string()))?,
        )),
    };
    let known = acd::Known { endpoints: &endpoints, trunks: &trunks };
    let sounds_dir = Path::new(m.sounds.as_ref().map_or(DEFAULT_SOUNDS, |d| d.get_ref().as_str()));
    let languages = ivr::Languages { dir: sounds_dir, default: sounds.as_deref() };
    let ivr = ivr::parse(&src, &raw.ivrs, &raw.dispatch, &raw.pin, &raw.queues, &known, &languages)?;
    let (acd, queue_log) = acd::parse(&src, &raw.acd, &raw.agents, &raw.queues, known)?;
    let targets = Targets {
        endpoints: &endpoints,
        trunks: &trunks,
        queues: raw.queues.keys().map(String::as_str).collect(),
        ivrs: raw.ivrs.keys().map(String::as_str).collect(),
    };
    let dialplan = DialPlan {
        internal: dialplan_rules(&src, "dialplan.internal", &raw.dialplan.internal, &targets)?,
        external: dialplan_rules(&src, "dialplan.external", &raw.dialplan.external, &targets)?,
    };
    let queue_log = queue_log.map(|file| raw.general.data_dir.join(file));

    Ok(Config {
        data_dir: raw.general.data_dir,
        log_level: raw.log.level,
        log_json: format == "json",
        max_message_size,
        tls_cert,
        tls_key,
        listeners,
        core: CoreSettings {
            user_agent: sip.user_agent.clone(),
            session_timer: SessionTimerConfig { session_expires: session_expires as u32, min_se: min_se as u32 },
            listeners: infos,
            endpoints,
            trunks,
            timers: TimerConfig { t1: millis(t1), t2: millis(t2), t4: millis(t4) },
            max_transactions,
            digest,
            guard,
            registrar: RegistrarConfig {
                min_expires: min_expires as u32,
                max_expires: max_expires as u32,
                default_expires: default_expires as u32,
                max_contacts,
            },
            dialplan,
            acd,
            ivr,
        },
        demo_endpoints,
        media,
        music_on_hold,
        queue_log,
        sounds,
    })
}

/// Prompts' folder when `media.sounds` is not set.
const DEFAULT_SOUNDS: &str = "sounds";

/// Music on hold when `media.music_on_hold` is not set.
const DEFAULT_MUSIC_ON_HOLD: &str = "sounds/moh.wav";

/// A user part for a SIP URI that needs no escaping.
fn is_sip_user(user: &str) -> bool {
    !user.is_empty() && user.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&c))
}

/// One `[trunks.NAME]` table: its networks and, optionally, its carrier side.
fn trunk_settings(
    src: &Source<'_>,
    name: &str,
    spanned: &Spanned<Trunk>,
    listeners: &[ListenerInfo],
) -> Result<TrunkSettings, ConfigError> {
    let key = |k: &str| format!("trunks.{name}.{k}");
    let t = spanned.get_ref();
    if t.networks.is_empty() {
        return Err(src.err(spanned, &key("networks"), "must list at least one network"));
    }
    // A key that means nothing without another (transport without gateway,
    // register_* without register) is an error: a silent no-op would hide a typo.
    let needs = |value: Option<Range<usize>>, k: &str, what: &str| match value {
        Some(span) => Err(ConfigError(format!("{}:{}: {}: {what}", src.file.display(), src.line(span.start), key(k)))),
        None => Ok(()),
    };

    let gateway = match &t.gateway {
        Some(g) => {
            let transport = match &t.transport {
                Some(v) => match v.get_ref().as_str() {
                    "udp" => Transport::Udp,
                    "tcp" => Transport::Tcp,
                    "tls" => Transport::Tls,
                    other => {
                        return Err(src.err(
                            v,
                            &key("transport"),
                            format!("must be \"udp\", \"tcp\" or \"tls\" (got \"{other}\")"),
                        ));
                    }
                },
                None => Transport::Udp,
            };
            let addr = resolve_gateway(g.get_ref(), transport).map_err(|why| src.err(g, &key("gateway"), why))?;
            let fits = |l: &ListenerInfo| l.transport == transport && l.addr.is_ipv4() == addr.is_ipv4();
            if !listeners.iter().any(fits) {
                let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
                let why = format!(
                    "{addr} needs a {} listener on {family} to send from",
                    transport.as_str().to_ascii_lowercase()
                );
                return Err(src.err(g, &key("gateway"), why));
            }
            Some(Gateway { domain: g.get_ref().clone(), addr, transport })
        }
        None => {
            needs(t.transport.as_ref().map(Spanned::span), "transport", "is only for a gateway")?;
            None
        }
    };

    let password = match (&t.password, &t.password_env) {
        (Some(p), None) => Some((p.get_ref().clone(), p, "password")),
        (None, Some(var)) => {
            let value = std::env::var(var.get_ref()).map_err(|_| {
                src.err(var, &key("password_env"), format!("environment variable {} is not set", var.get_ref()))
            })?;
            Some((value, var, "password_env"))
        }
        (Some(_), Some(var)) => {
            return Err(src.err(var, &key("password_env"), "needs at most one of password or password_env"));
        }
        (None, None) => None,
    };
    let credentials = match (&t.username, password) {
        (Some(user), Some((password, at, which))) => {
            let u = user.get_ref();
            if u.is_empty() || u.contains(['"', '\\', '\r', '\n']) {
                return Err(src.err(
                    user,
                    &key("username"),
                    "must be non-empty, without quotes, backslashes or line breaks",
                ));
            }
            if password.is_empty() {
                return Err(src.err(at, &key(which), "must not be empty"));
            }
            Some(Credentials { username: u.clone(), password })
        }
        (Some(user), None) => return Err(src.err(user, &key("username"), "needs password or password_env")),
        (None, Some((_, at, which))) => return Err(src.err(at, &key(which), "needs username")),
        (None, None) => None,
    };

    let user_part = |v: &Option<Spanned<String>>, k: &str| -> Result<Option<String>, ConfigError> {
        match v {
            Some(u) if !is_sip_user(u.get_ref()) => Err(src.err(u, &key(k), "is not a valid SIP user name")),
            Some(u) => Ok(Some(u.get_ref().clone())),
            None => Ok(None),
        }
    };
    let from_user = user_part(&t.from_user, "from_user")?;
    let register_user = user_part(&t.register_user, "register_user")?;

    let register = match &t.register {
        Some(r) if *r.get_ref() => {
            let (Some(_), Some(credentials)) = (&gateway, &credentials) else {
                let missing: Vec<&str> = [
                    (gateway.is_none(), "gateway"),
                    (t.username.is_none(), "username"),
                    (t.password.is_none() && t.password_env.is_none(), "password (or password_env)"),
                ]
                .into_iter()
                .filter_map(|(missing, what)| missing.then_some(what))
                .collect();
                let list = match missing.split_last() {
                    Some((last, [])) => last.to_string(),
                    Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                    None => String::new(),
                };
                return Err(src.err(r, &key("register"), format!("needs {list}")));
            };
            let user = match register_user {
                Some(u) => u,
                None if is_sip_user(&credentials.username) => credentials.username.clone(),
                None => {
                    return Err(src.err(r, &key("register_user"), "must be set: username is not a valid SIP user name"));
                }
            };
            let seconds = |v: &Option<Spanned<u64>>, k: &str, default: u64, lo: u64, hi: u64| match v {
                Some(v) => src.range(v, &key(k), lo, hi),
                None => Ok(default.clamp(lo, hi)),
            };
            let expires = seconds(&t.register_expires_s, "register_expires_s", TRUNK_REGISTER_EXPIRES_S, 60, 86_400)?;
            let retry_min = seconds(&t.register_retry_min_s, "register_retry_min_s", TRUNK_RETRY_MIN_S, 1, 3600)?;
            let retry_max =
                seconds(&t.register_retry_max_s, "register_retry_max_s", TRUNK_RETRY_MAX_S, retry_min, 86_400)?;
            Some(TrunkRegister {
                user,
                expires: expires as u32,
                retry_min: Duration::from_secs(retry_min),
                retry_max: Duration::from_secs(retry_max),
            })
        }
        _ => {
            let only = "is only for register = true";
            needs(t.register_user.as_ref().map(Spanned::span), "register_user", only)?;
            needs(t.register_expires_s.as_ref().map(Spanned::span), "register_expires_s", only)?;
            needs(t.register_retry_min_s.as_ref().map(Spanned::span), "register_retry_min_s", only)?;
            needs(t.register_retry_max_s.as_ref().map(Spanned::span), "register_retry_max_s", only)?;
            None
        }
    };

    Ok(TrunkSettings {
        name: name.to_string(),
        networks: t.networks.clone(),
        gateway,
        credentials,
        register,
        from_user,
    })
}

/// `host[:port]` (an IPv6 address in brackets) to the address requests go to,
/// resolved now. The port defaults to 5060, 5061 over TLS.
fn resolve_gateway(gateway: &str, transport: Transport) -> Result<SocketAddr, String> {
    let default_port = if transport == Transport::Tls { 5061 } else { 5060 };
    if let Ok(addr) = gateway.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = match gateway.rsplit_once(':') {
        // A bare IPv6 address has colons but no brackets.
        _ if gateway.starts_with('[') && gateway.ends_with(']') => (&gateway[1..gateway.len() - 1], None),
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (gateway, None),
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("\"{gateway}\": the port must be 1-65535"))?,
        None => default_port,
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || ".-_:".contains(c);
    if host.is_empty() || !host.chars().all(valid) {
        return Err(format!("\"{gateway}\" is not host[:port] (IPv6 in brackets)"));
    }
    use std::net::ToSocketAddrs;
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| format!("\"{host}\" has no address")),
        Err(e) => Err(format!("\"{host}\" does not resolve ({e})")),
    }
}

/// Ring timeout of a rule that names none.
const DEFAULT_RING_TIMEOUT_S: u64 = 30;

/// What dial plan rules may send calls to.
struct Targets<'a> {
    endpoints: &'a HashMap<String, EndpointSettings>,
    trunks: &'a [TrunkSettings],
    queues: Vec<&'a str>,
    ivrs: Vec<&'a str>,
}

fn dialplan_rules(src: &Source<'_>, path: &str, raw: &[Spanned<RawRule>], targets: &Targets<'_>) -> Result<Vec<Rule>, ConfigError> {
    let Targets { endpoints, trunks, queues, ivrs } = targets;
    let mut rules = Vec::new();
    for (i, spanned) in raw.iter().enumerate() {
        let key = format!("{path}[{i}]");
        let err = |why: String| src.err(spanned, &key, why);
        let r = spanned.get_ref();
        let matcher = match (&r.exact, &r.prefix, &r.pattern) {
            (Some(e), None, None) => NumberMatch::Exact(e.clone()),
            (None, Some(p), None) => NumberMatch::Prefix(p.clone()),
            (None, None, Some(p)) => NumberMatch::pattern(p).map_err(err)?,
            _ => return Err(err("needs exactly one of exact, prefix or pattern".into())),
        };
        let template = |t: &str| Template::parse(t).map_err(err);
        let destination = match (&r.endpoint, &r.trunk, r.echo, r.hangup) {
            _ if [r.queue.is_some(), r.ivr.is_some(), r.endpoint.is_some(), r.trunk.is_some(), r.echo.is_some(), r.hangup.is_some()]
                .into_iter()
                .filter(|&set| set)
                .count()
                != 1 =>
            {
                return Err(err("needs exactly one of endpoint, trunk, queue, ivr, echo = true or hangup".into()));
            }
            (None, None, None, None) if let Some(name) = &r.ivr => {
                if !ivrs.contains(&name.as_str()) {
                    return Err(err(format!("ivr \"{name}\" is not a defined IVR")));
                }
                Destination::Ivr(name.clone())
            }
            (None, None, None, None) if let Some(name) = &r.queue => {
                if !queues.contains(&name.as_str()) {
                    return Err(err(format!("queue \"{name}\" is not a defined queue")));
                }
                let (priority, skills) = (r.priority.unwrap_or(0), r.skills.clone().unwrap_or_default());
                Destination::Queue(QueueTarget { name: name.clone(), priority, skills })
            }
            (Some(e), None, None, None) => {
                let t = template(e)?;
                if let Some(id) = t.literal().filter(|id| !endpoints.contains_key(id)) {
                    return Err(err(format!("endpoint \"{id}\" is not a defined endpoint")));
                }
                Destination::Endpoint(t)
            }
            (None, Some(name), None, None) => {
                if !trunks.iter().any(|t| t.name == *name) {
                    return Err(err(format!("trunk \"{name}\" is not a defined trunk")));
                }
                Destination::Trunk { trunk: name.clone(), number: template(r.number.as_deref().unwrap_or("$0"))? }
            }
            (None, None, Some(true), None) => Destination::Echo,
            (None, None, None, Some(status)) => Destination::Hangup { status },
            _ => return Err(err("needs exactly one of endpoint, trunk, queue, ivr, echo = true or hangup".into())),
        };
        if (r.priority.is_some() || r.skills.is_some()) && !matches!(destination, Destination::Queue(_)) {
            return Err(err("priority and skills are only for a queue destination".into()));
        }
        if r.number.is_some() && !matches!(destination, Destination::Trunk { .. }) {
            return Err(err("number is only for a trunk destination".into()));
        }
        let ring = Duration::from_secs(r.ring_timeout_s.unwrap_or(DEFAULT_RING_TIMEOUT_S));
        rules.push(Rule::new(matcher, destination, ring).map_err(err)?);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("t.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn the_default_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tandem.toml");
        let c = load(&path).unwrap();
        assert_eq!(c.core.endpoints.len(), 10);
        assert_eq!(c.demo_endpoints.len(), 10);
        assert!(c.core.trunk_for("127.0.0.1".parse().unwrap()).is_some());
        assert!(c.core.trunk_for("::1".parse().unwrap()).is_some());
        assert!(c.listeners.iter().any(|l| l.transport == Transport::Tls));
        let demo = c.core.trunk("demo-trunk").unwrap();
        assert_eq!(demo.gateway.as_ref().map(|g| g.addr), Some("127.0.0.1:5090".parse().unwrap()));
        assert!(demo.register.is_none());
    }

    #[test]
    fn a_trunk_with_a_gateway_and_a_registration_loads() {
        let c = parse(
            Path::new("t.toml"),
            "[trunks.carrier]\nnetworks = [\"192.0.2.0/24\"]\ngateway = \"127.0.0.1:5090\"\ntransport = \"tcp\"\n\
username = \"acct77\"\npassword = \"s3cret\"\nregister = true\nregister_user = \"4420001\"\nregister_expires_s = 600\n\
register_retry_min_s = 1\nfrom_user = \"4420001\"\n\
[trunks.plain]\nnetworks = [\"198.51.100.0/24\"]\ngateway = \"localhost\"\nusername = \"acct\"\npassword_env = \"PATH\"\nregister = true\n\
[trunks.v6]\nnetworks = [\"::1/128\"]\ngateway = \"[::1]\"\ntransport = \"tls\"\n",
        )
        .unwrap();
        let t = c.core.trunk("carrier").unwrap();
        let g = t.gateway.as_ref().unwrap();
        assert_eq!(
            (g.domain.as_str(), g.addr, g.transport),
            ("127.0.0.1:5090", "127.0.0.1:5090".parse().unwrap(), Transport::Tcp)
        );
        let creds = t.credentials.as_ref().unwrap();
        assert_eq!((creds.username.as_str(), creds.password.as_str()), ("acct77", "s3cret"));
        let r = t.register.as_ref().unwrap();
        assert_eq!(
            (r.user.as_str(), r.expires, r.retry_min, r.retry_max),
            ("4420001", 600, Duration::from_secs(1), Duration::from_secs(600))
        );
        assert_eq!(t.from_user.as_deref(), Some("4420001"));
        // The defaults: UDP to port 5060, the username registers for an hour.
        let t = c.core.trunk("plain").unwrap();
        let g = t.gateway.as_ref().unwrap();
        assert_eq!((g.domain.as_str(), g.addr.port(), g.transport), ("localhost", 5060, Transport::Udp));
        assert!(g.addr.ip().is_loopback());
        assert_eq!(t.credentials.as_ref().unwrap().password, std::env::var("PATH").unwrap());
        let r = t.register.as_ref().unwrap();
        assert_eq!((r.user.as_str(), r.expires, r.retry_min), ("acct", 3600, Duration::from_secs(30)));
        assert_eq!(t.from_user, None);
        let t = c.core.trunk("v6").unwrap();
        assert_eq!(t.gateway.as_ref().unwrap().addr, "[::1]:5061".parse().unwrap());
        assert!(t.credentials.is_none() && t.register.is_none());
    }

    #[test]
    fn trunk_keys_are_checked() {
        let trunk = |keys: &str| err(&format!("[trunks.c]\nnetworks = [\"192.0.2.0/24\"]\n{keys}"));
        let e = trunk("gateway = \"nowhere.invalid\"\n");
        assert!(e.starts_with("t.toml:3: trunks.c.gateway: \"nowhere.invalid\" does not resolve"), "{e}");
        assert_eq!(
            trunk("gateway = \"sip:carrier\"\n"),
            "t.toml:3: trunks.c.gateway: \"sip:carrier\": the port must be 1-65535"
        );
        assert_eq!(
            trunk("gateway = \"carrier example\"\n"),
            "t.toml:3: trunks.c.gateway: \"carrier example\" is not host[:port] (IPv6 in brackets)"
        );
        assert_eq!(
            trunk("gateway = \"127.0.0.1\"\ntransport = \"sctp\"\n"),
            "t.toml:4: trunks.c.transport: must be \"udp\", \"tcp\" or \"tls\" (got \"sctp\")"
        );
        assert_eq!(trunk("transport = \"tcp\"\n"), "t.toml:3: trunks.c.transport: is only for a gateway");
        assert_eq!(
            err(
                "[profiles.internal]\nudp = [\"127.0.0.1:5060\"]\n[profiles.external]\n[trunks.c]\nnetworks = [\"192.0.2.0/24\"]\ngateway = \"127.0.0.1:5090\"\ntransport = \"tcp\"\n"
            ),
            "t.toml:6: trunks.c.gateway: 127.0.0.1:5090 needs a tcp listener on IPv4 to send from"
        );
        assert_eq!(trunk("username = \"acct\"\n"), "t.toml:3: trunks.c.username: needs password or password_env");
        assert_eq!(trunk("password = \"pw\"\n"), "t.toml:3: trunks.c.password: needs username");
        assert_eq!(
            trunk("username = \"acct\"\npassword = \"pw\"\npassword_env = \"PATH\"\n"),
            "t.toml:5: trunks.c.password_env: needs at most one of password or password_env"
        );
        assert_eq!(
            trunk("username = \"acct\"\npassword_env = \"TANDEM_TEST_UNSET_VAR\"\n"),
            "t.toml:4: trunks.c.password_env: environment variable TANDEM_TEST_UNSET_VAR is not set"
        );
        assert_eq!(trunk("username = \"acct\"\npassword = \"\"\n"), "t.toml:4: trunks.c.password: must not be empty");
        assert_eq!(
            trunk("username = \"a\\\"b\"\npassword = \"pw\"\n"),
            "t.toml:3: trunks.c.username: must be non-empty, without quotes, backslashes or line breaks"
        );
        assert_eq!(
            trunk("register = true\n"),
            "t.toml:3: trunks.c.register: needs gateway, username and password (or password_env)"
        );
        assert_eq!(
            trunk("gateway = \"127.0.0.1\"\nusername = \"acct\"\nregister = true\n"),
            "t.toml:4: trunks.c.username: needs password or password_env"
        );
        assert_eq!(
            trunk("username = \"acct\"\npassword = \"pw\"\nregister = true\n"),
            "t.toml:5: trunks.c.register: needs gateway"
        );
        let registering = "gateway = \"127.0.0.1\"\nusername = \"acct\"\npassword = \"pw\"\nregister = true\n";
        assert_eq!(
            trunk(&format!("{registering}register_expires_s = 30\n")),
            "t.toml:7: trunks.c.register_expires_s: must be between 60 and 86400 (got 30)"
        );
        assert_eq!(
            trunk(&format!("{registering}register_retry_min_s = 60\nregister_retry_max_s = 10\n")),
            "t.toml:8: trunks.c.register_retry_max_s: must be between 60 and 86400 (got 10)"
        );
        assert_eq!(
            trunk("username = \"acct@carrier\"\npassword = \"pw\"\ngateway = \"127.0.0.1\"\nregister = true\n"),
            "t.toml:6: trunks.c.register_user: must be set: username is not a valid SIP user name"
        );
        assert_eq!(
            trunk("register_user = \"4420001\"\n"),
            "t.toml:3: trunks.c.register_user: is only for register = true"
        );
        assert_eq!(
            trunk("register = false\nregister_expires_s = 600\n"),
            "t.toml:4: trunks.c.register_expires_s: is only for register = true"
        );
        assert_eq!(trunk("from_user = \"a b\"\n"), "t.toml:3: trunks.c.from_user: is not a valid SIP user name");
        let e = trunk("gatway = \"127.0.0.1\"\n");
        assert!(e.starts_with("t.toml:") && e.contains("gatway"), "{e}");
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c = parse(Path::new("t.toml"), "").unwrap();
        assert_eq!(c.core.timers, TimerConfig::default());
        assert_eq!(c.listeners.len(), 10);
    }

    #[test]
    fn one_way_audio_detection_is_configured_in_seconds() {
        let one_way = |text: &str| parse(Path::new("t.toml"), text).unwrap().media.one_way_after;
        assert_eq!(one_way(""), Some(Duration::from_secs(5)));
        assert_eq!(one_way("[media]\none_way_audio_s = 12\n"), Some(Duration::from_secs(12)));
        assert_eq!(one_way("[media]\none_way_audio_s = 0\n"), None, "0 turns it off");
        assert_eq!(
            err("[media]\none_way_audio_s = 601\n"),
            "t.toml:2: media.one_way_audio_s: must be between 0 and 600 (got 601)"
        );
        let c = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tandem.toml")).unwrap();
        assert_eq!(c.media.one_way_after, Some(Duration::from_secs(5)));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        assert_eq!(err("[sip]\nrealm = \"x\"\nt1_ms = 0\n"), "t.toml:3: sip.t1_ms: must be between 1 and 60000 (got 0)");
        let e = err("[sip]\nt1_msec = 5\n");
        assert!(e.starts_with("t.toml:2:") && e.contains("t1_msec"), "{e}");
        let e = err("[profiles.internal]\nudp = [\"127.0.0.1\"]\n");
        assert!(e.starts_with("t.toml:2:"), "{e}");
        let e = err("[trunks.carrier]\nnetworks = [\"10.0.0.0/33\"]\n");
        assert!(e.starts_with("t.toml:2:"), "{e}");
        assert_eq!(
            err("[auth]\nalgorithms = [\"SHA-512\"]\n"),
            "t.toml:2: auth.algorithms: unknown algorithm \"SHA-512\" (known: \"SHA-256\", \"MD5\")"
        );
        assert_eq!(err("[endpoints]\n2001 = {}\n"), "t.toml:2: endpoints.2001: needs exactly one of password or password_env");
        assert_eq!(
            err("[endpoints]\n2001 = { password_env = \"TANDEM_TEST_UNSET_VAR\" }\n"),
            "t.toml:2: endpoints.2001.password_env: environment variable TANDEM_TEST_UNSET_VAR is not set"
        );
        assert_eq!(err("[tls]\ncert = \"a.pem\"\n"), "t.toml:2: tls.key: must be set when tls.cert is");
        let e = err("[profiles.internal]\nudp = [\"127.0.0.1:5060\"]\n[profiles.external]\nudp = [\"127.0.0.1:5060\"]\ntcp = []\n");
        assert!(e.contains("profiles.external.udp: 127.0.0.1:5060 is already used by the internal UDP listener"), "{e}");
        assert_eq!(err("[media]\nworkers = 1000\n"), "t.toml:2: media.workers: must be between 0 and 256 (got 1000)");
        assert_eq!(err("[media]\nport_min = 30000\nport_max = 20000\n"), "t.toml:3: media.port_max: must be between 30001 and 65535 (got 20000)");
        assert_eq!(err("[media]\nadvertise = \"0.0.0.0\"\n"), "t.toml:2: media.advertise: must be an address phones can send to, not 0.0.0.0 or ::");
        let e = err("[media]\nmusic_on_hold = \"nowhere.wav\"\n");
        assert!(e.starts_with("t.toml:2: media.music_on_hold: ") && e.contains("nowhere.wav"), "{e}");
        assert_eq!(err("[log]\nformat = \"xml\"\n"), "t.toml:2: log.format: must be \"text\" or \"json\" (got \"xml\")");
    }

    #[test]
    fn dialplan_rules_are_checked() {
        assert_eq!(
            err("[endpoints]\n1001 = { password = \"p\" }\n[[dialplan.internal]]\nexact = \"6000\"\necho = true\n[[dialplan.internal]]\nexact = \"7\"\nendpoint = \"2002\"\n"),
            "t.toml:6: dialplan.internal[1]: endpoint \"2002\" is not a defined endpoint"
        );
        assert!(err("[[dialplan.external]]\nprefix = \"0\"\ntrunk = \"nowhere\"\n").contains("dialplan.external[0]: trunk \"nowhere\" is not a defined trunk"));
        assert!(err("[[dialplan.internal]]\nexact = \"1\"\nprefix = \"2\"\necho = true\n").contains("needs exactly one of exact, prefix or pattern"));
        assert!(err("[[dialplan.internal]]\nexact = \"1\"\n").contains("needs exactly one of endpoint, trunk, queue, ivr, echo = true or hangup"));
        assert!(err("[[dialplan.internal]]\nexact = \"1\"\nendpoint = \"$1\"\n").contains("$1 is used but the match has 0 capture group(s)"));
        assert!(err("[[dialplan.internal]]\npattern = \"(\"\necho = true\n").contains("bad pattern"));
        assert!(err("[[dialplan.internal]]\nexact = \"1\"\nhangup = 200\n").contains("hangup status must be 400-699"));
        let c = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tandem.toml")).unwrap();
        use switch::dialplan::Route;
        assert_eq!(c.core.dialplan.route(Profile::Internal, "6000"), Some(Route::Echo));
        assert!(matches!(c.core.dialplan.route(Profile::Internal, "1002"), Some(Route::Endpoint { id, .. }) if id == "1002"));
        assert!(matches!(c.core.dialplan.route(Profile::Internal, "0015551230001"), Some(Route::Trunk { number, .. }) if number == "0015551230001"));
        assert_eq!(c.core.dialplan.route(Profile::External, "6000"), Some(Route::Echo));
        assert_eq!(c.core.dialplan.route(Profile::Internal, "5555"), None);
    }

    #[test]
    fn the_default_queue_answers_5000_on_both_profiles() {
        let c = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tandem.toml")).unwrap();
        use switch::dialplan::Route;
        for profile in [Profile::Internal, Profile::External] {
            let support = switch::dialplan::QueueTarget { name: "support".into(), ..Default::default() };
            assert_eq!(c.core.dialplan.route(profile, "5000"), Some(Route::Queue(support)));
        }
        let q = &c.core.acd.engine.queues[0];
        assert_eq!(q.name, "support");
        assert_eq!(q.strategy, acd_engine::StrategyKind::RoundRobin);
        let members: Vec<&str> = q.members.iter().map(|m| m.agent.as_str()).collect();
        assert_eq!(members, ["1001", "1002", "1003"]);
        assert_eq!((q.wrap_up, q.ring_timeout), (Duration::ZERO, Duration::from_secs(15)));
        assert!(c.queue_log.as_ref().is_some_and(|p| p.ends_with("queue_log.jsonl")));
        assert_eq!(c.core.acd.feature_codes.logout, "*46");
    }

    #[test]
    fn ivr_keys_and_pin_rules_are_checked() {
        let ep = "[endpoints]\n1004 = { password = \"p\" }\n[ivrs.pin]\n";
        let rule = |body: &str| err(&format!("{ep}[[dispatch]]\n{body}\n"));
        let twice = rule("pin = \"1234\"\nto = \"endpoint:1004\"\n[[dispatch]]\npin = \"1234\"\nto = \"endpoint:1004\"");
        assert!(twice.contains("dispatch[1]: another rule (rule 1) has this PIN for any call"), "{twice}");
        assert!(!twice.contains("1234"), "a PIN is not repeated in errors: {twice}");
        assert!(rule("pin = \"12a4\"\nto = \"endpoint:1004\"").contains("dispatch[0]"));
        assert!(rule("pin = \"1234\"\nto = \"endpoint:9999\"").contains("endpoint \"9999\" is not a defined endpoint"));
        assert!(rule("pin = \"1234\"\nto = \"uri:sip:room@meet.example\"").contains("with an IP address"));
        assert!(rule("pin = \"1234\"\nto = \"hangup\"").contains("not a place to send a caller"));
        assert!(err(&format!("{ep}mode = \"menu\"\n")).contains("ivrs.pin.mode: unknown mode \"menu\""));
        assert!(err("[ivrs.r]\nmode = \"reference\"\n").contains("ivrs.r.then: a reference IVR needs"));
        assert!(err(&format!("{ep}pin_length = 0\n")).contains("pin length must be"));
        assert!(err(&format!("{ep}prompts = {{ welcome = \"nope\" }}\n")).contains("ivrs.pin.prompts: no clip \"nope\""));
        assert!(err(&format!("{ep}language = \"xx\"\n")).contains("ivrs.pin.language: "));
        let quiet = parse(Path::new("t.toml"), &format!("{ep}prompts = {{ welcome = \"\", goodbye = \"queue-thank-you\" }}\n")).unwrap();
        let prompts = &quiet.core.ivr.ivrs["pin"].prompts;
        assert_eq!((prompts.welcome.as_deref(), prompts.goodbye.as_deref()), (None, Some("queue-thank-you")));
        assert_eq!(prompts.enter.as_deref(), Some("ivr-enter-pin"), "the others keep their default");
        assert!(err("[[dialplan.internal]]\nexact = \"7\"\nivr = \"nope\"\n").contains("ivr \"nope\" is not a defined IVR"));
        let c = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tandem.toml")).unwrap();
        assert_eq!(c.core.ivr.rules.len(), 2);
        assert!(c.core.ivr.ivrs.contains_key("pin") && c.core.ivr.ivrs.contains_key("reference"));
        for profile in [Profile::Internal, Profile::External] {
            assert_eq!(c.core.dialplan.route(profile, "7000"), Some(switch::dialplan::Route::Ivr { name: "pin".into() }));
            assert_eq!(c.core.dialplan.route(profile, "7100"), Some(switch::dialplan::Route::Ivr { name: "reference".into() }));
        }
    }

    #[test]
    fn queue_keys_are_checked() {
        let ep = "[endpoints]\n1001 = { password = \"p\" }\n[trunks.t]\nnetworks = [\"10.0.0.0/8\"]\n";
        let q = |body: &str| err(&format!("{ep}[queues.q]\n{body}\n"));
        assert!(q("members = [\"2002\"]").contains("queues.q.members: \"2002\" is not a defined endpoint"), "{}", q("members = [\"2002\"]"));
        assert!(q("strategy = \"fastest\"").contains("queues.q.strategy: unknown strategy \"fastest\" (known: ring-all, "));
        assert!(q("overflow = \"queue:q\"").contains("queues.q.overflow: \"queue:q\" is this queue itself"));
        assert!(q("overflow = \"queue:other\"").contains("queue \"other\" is not a defined queue"));
        assert!(q("overflow = \"trunk:t\"").contains("needs the number to dial: trunk:t:<number>"));
        assert!(q("when_empty = \"voicemail\"").contains("queues.q.when_empty: \"voicemail\" is not a destination"));
        assert!(q("join_when_empty = \"sometimes\"").contains("unknown rule \"sometimes\""));
        assert!(q("ring_timeout_s = 0").contains("queues.q.ring_timeout_s: must be at least 1"));
        assert!(q("max_wait_s = 0").contains("queues.q.max_wait_s: must be at least 1"));
        assert!(q("colour = \"blue\"").contains("unknown field `colour`"));
        assert!(err(&format!("{ep}[agents.2002]\n")).contains("agents.2002: \"2002\" is not a defined endpoint"));
        assert!(err(&format!("{ep}[agents.1001]\nskills = {{ french = 12 }}\n[queues.q]\nmembers = [\"1001\"]\n")).contains("skill \"french\" has level 12"));
        assert!(err("[[dialplan.internal]]\nexact = \"5\"\nqueue = \"nope\"\n").contains("queue \"nope\" is not a defined queue"));
        assert!(err("[[dialplan.internal]]\nexact = \"5\"\necho = true\npriority = 3\n").contains("only for a queue destination"));
        assert!(q("exit_key = \"**\"\nexit_to = \"hangup\"").contains("queues.q.exit_key: \"**\" is not one key"));
        assert!(q("exit_key = \"*\"").contains("queues.q.exit_to: must be set with exit_key"));
        assert!(q("strategy = \"external\"").contains("queues.q.router_url: the external strategy needs the routing service's URL"));
        assert!(q("router_url = \"http://x\"").contains("is only for the external strategy"));
        assert!(err("[acd]\nfeature_codes = { login = \"*45\", logout = \"*45\" }\n").contains("four different, non-empty numbers"));
        // A member with a penalty, an agent's skills and wrap-up.
        let c = parse(
            Path::new("t.toml"),
            &format!("{ep}[agents.1001]\nwrap_up_s = 7\nskills = {{ french = 5 }}\n[queues.q]\nmembers = [{{ agent = \"1001\", penalty = 2 }}]\nanswer = false\n"),
        )
        .unwrap();
        let engine = &c.core.acd.engine;
        assert_eq!(engine.queues[0].members[0].penalty, 2);
        assert_eq!(engine.agents[0].wrap_up, Some(Duration::from_secs(7)));
        assert_eq!(engine.agents[0].skills, [("french".to_string(), 5)]);
        assert!(!c.core.acd.queues["q"].answer);
        let c = parse(
            Path::new("t.toml"),
            &format!("{ep}[queues.q]\n[[dialplan.external]]\nexact = \"5\"\nqueue = \"q\"\npriority = 7\nskills = [\"french\"]\n"),
        )
        .unwrap();
        let target = switch::dialplan::QueueTarget { name: "q".into(), priority: 7, skills: vec!["french".into()] };
        assert_eq!(c.core.dialplan.route(Profile::External, "5"), Some(switch::dialplan::Route::Queue(target)));
    }
}
