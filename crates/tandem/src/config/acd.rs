//! `[acd]`, `[agents]` and `[queues]`: ACD queues, checked against the
//! endpoints and trunks they name.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use acd_engine::{AcdConfig, AgentConfig, JoinRule, LeaveRule, Member, QueueConfig, StrategyKind};
use serde::Deserialize;
use switch::settings::{AcdSettings, FeatureCodes, QueueCallSettings, QueueExit};
use switch::{EndpointSettings, TrunkSettings};
use toml::Spanned;

use super::{ConfigError, Source};

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAcd {
    /// The queue log (JSON lines), relative to data_dir; "" for none.
    queue_log: Option<String>,
    longest_waiting_across_queues: bool,
    feature_codes: RawFeatureCodes,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawFeatureCodes {
    login: String,
    logout: String,
    pause: String,
    unpause: String,
}

impl Default for RawFeatureCodes {
    fn default() -> Self {
        let codes = FeatureCodes::default();
        RawFeatureCodes { login: codes.login, logout: codes.logout, pause: codes.pause, unpause: codes.unpause }
    }
}

/// `[agents.<endpoint>]`: what an agent brings to every queue.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAgent {
    wrap_up_s: Option<u64>,
    skills: BTreeMap<String, u8>,
}

/// A member: `"1001"` or `{ agent = "1001", penalty = 1 }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawMember {
    Agent(String),
    WithPenalty {
        agent: String,
        #[serde(default)]
        penalty: u32,
    },
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawQueue {
    strategy: String,
    members: Vec<RawMember>,
    answer: bool,
    weight: u32,
    max_callers: Option<u64>,
    max_wait_s: Option<u64>,
    overflow: String,
    join_when_empty: String,
    leave_when_empty: String,
    when_empty: String,
    ring_timeout_s: u64,
    retry_s: u64,
    wrap_up_s: u64,
    ring_in_use: bool,
    tier_wait_s: Option<u64>,
    reject_delay_s: u64,
    busy_delay_s: u64,
    no_answer_delay_s: u64,
    max_no_answer: u32,
    service_level_s: u64,
    announce_every_s: u64,
    announce_position: bool,
    announce_wait: bool,
    ring_progressively_every_s: u64,
    router_timeout_ms: u64,
    router_url: Option<String>,
    fallback: String,
    exit_key: Option<String>,
    exit_to: Option<String>,
}

impl Default for RawQueue {
    fn default() -> Self {
        let q = QueueConfig::default();
        let call = QueueCallSettings::default();
        RawQueue {
            strategy: "round-robin".into(),
            members: Vec::new(),
            answer: call.answer,
            weight: q.weight,
            max_callers: None,
            max_wait_s: None,
            overflow: "hangup".into(),
            join_when_empty: "always".into(),
            leave_when_empty: "never".into(),
            when_empty: "hangup".into(),
            ring_timeout_s: q.ring_timeout.as_secs(),
            retry_s: q.retry.as_secs(),
            wrap_up_s: q.wrap_up.as_secs(),
            ring_in_use: q.ring_in_use,
            tier_wait_s: None,
            reject_delay_s: q.reject_delay.as_secs(),
            busy_delay_s: q.busy_delay.as_secs(),
            no_answer_delay_s: q.no_answer_delay.as_secs(),
            max_no_answer: q.max_no_answer,
            service_level_s: q.service_level.as_secs(),
            announce_every_s: 0,
            announce_position: call.announce_position,
            announce_wait: call.announce_wait,
            ring_progressively_every_s: q.ring_progressively_every.as_secs(),
            router_timeout_ms: q.router_timeout.as_millis() as u64,
            router_url: None,
            exit_key: None,
            exit_to: None,
            fallback: q.fallback.name().into(),
        }
    }
}

/// What `parse` needs besides the raw tables.
pub(super) struct Known<'a> {
    pub endpoints: &'a HashMap<String, EndpointSettings>,
    pub trunks: &'a [TrunkSettings],
}

/// The ACD settings, and the queue log's file name (relative to data_dir).
pub(super) fn parse(
    src: &Source<'_>,
    acd: &RawAcd,
    agents: &BTreeMap<String, Spanned<RawAgent>>,
    queues: &BTreeMap<String, Spanned<RawQueue>>,
    known: Known<'_>,
) -> Result<(AcdSettings, Option<String>), ConfigError> {
    let secs = Duration::from_secs;
    let mut agent_configs: BTreeMap<String, AgentConfig> = BTreeMap::new();
    for (id, raw) in agents {
        let key = format!("agents.{id}");
        if !known.endpoints.contains_key(id) {
            return Err(src.err(raw, &key, format!("\"{id}\" is not a defined endpoint (every agent is one)")));
        }
        let a = raw.get_ref();
        let skills = a.skills.iter().map(|(name, level)| (name.clone(), *level)).collect();
        agent_configs.insert(id.clone(), AgentConfig { id: id.clone(), wrap_up: a.wrap_up_s.map(secs), skills });
    }

    let mut queue_configs = Vec::new();
    let mut call_settings = HashMap::new();
    for (name, raw) in queues {
        let key = format!("queues.{name}");
        let err = |field: &str, why: String| src.err(raw, &format!("{key}.{field}"), why);
        let q = raw.get_ref();
        let strategy = strategy_of(&q.strategy).map_err(|why| err("strategy", why))?;
        let fallback = strategy_of(&q.fallback).map_err(|why| err("fallback", why))?;
        let mut members = Vec::new();
        for m in &q.members {
            let (agent, penalty) = match m {
                RawMember::Agent(a) => (a.clone(), 0),
                RawMember::WithPenalty { agent, penalty } => (agent.clone(), *penalty),
            };
            if !known.endpoints.contains_key(&agent) {
                return Err(err("members", format!("\"{agent}\" is not a defined endpoint")));
            }
            agent_configs.entry(agent.clone()).or_insert_with(|| AgentConfig::new(&agent));
            members.push(Member { agent, penalty });
        }
        let join_when_empty = match q.join_when_empty.as_str() {
            "always" => JoinRule::Always,
            "unless-none-logged-in" => JoinRule::UnlessNoneLoggedIn,
            "unless-none-available" => JoinRule::UnlessNoneAvailable,
            other => {
                let known = "\"always\", \"unless-none-logged-in\", \"unless-none-available\"";
                return Err(err("join_when_empty", format!("unknown rule \"{other}\" (known: {known})")));
            }
        };
        let leave_when_empty = match q.leave_when_empty.as_str() {
            "never" => LeaveRule::Never,
            "when-none-logged-in" => LeaveRule::WhenNoneLoggedIn,
            "when-none-available" => LeaveRule::WhenNoneAvailable,
            other => {
                let known = "\"never\", \"when-none-logged-in\", \"when-none-available\"";
                return Err(err("leave_when_empty", format!("unknown rule \"{other}\" (known: {known})")));
            }
        };
        match (&q.router_url, strategy == StrategyKind::External) {
            (None, true) => return Err(err("router_url", "the external strategy needs the routing service's URL".into())),
            (Some(_), false) => return Err(err("router_url", "is only for the external strategy".into())),
            (Some(url), true) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(err("router_url", format!("\"{url}\" is not an http:// or https:// URL")));
            }
            _ => {}
        }
        if q.ring_timeout_s == 0 {
            return Err(err("ring_timeout_s", "must be at least 1".into()));
        }
        let positive = |field: &str, v: Option<u64>| match v {
            Some(0) => Err(err(field, "must be at least 1 (leave it out for no limit)".into())),
            v => Ok(v),
        };
        queue_configs.push(QueueConfig {
            name: name.clone(),
            strategy,
            members,
            weight: q.weight,
            max_callers: positive("max_callers", q.max_callers)?.map(|n| n as usize),
            max_wait: positive("max_wait_s", q.max_wait_s)?.map(secs),
            join_when_empty,
            leave_when_empty,
            ring_timeout: secs(q.ring_timeout_s),
            retry: secs(q.retry_s),
            wrap_up: secs(q.wrap_up_s),
            ring_in_use: q.ring_in_use,
            tier_wait: positive("tier_wait_s", q.tier_wait_s)?.map(secs),
            reject_delay: secs(q.reject_delay_s),
            busy_delay: secs(q.busy_delay_s),
            no_answer_delay: secs(q.no_answer_delay_s),
            max_no_answer: q.max_no_answer,
            service_level: secs(q.service_level_s),
            announce_every: Some(q.announce_every_s).filter(|&s| s > 0).map(secs),
            ring_progressively_every: secs(q.ring_progressively_every_s),
            router_timeout: Duration::from_millis(q.router_timeout_ms),
            fallback,
            ..QueueConfig::default()
        });
        let exit = |field: &str, text: &str| exit(text, name, queues, &known).map_err(|why| err(field, why));
        let exit_key = match (&q.exit_key, &q.exit_to) {
            (None, None) => None,
            (Some(k), Some(to)) => {
                let mut keys = k.chars();
                match (keys.next(), keys.next()) {
                    (Some(key), None) if "0123456789*#ABCD".contains(key) => Some((key, exit("exit_to", to)?)),
                    _ => return Err(err("exit_key", format!("\"{k}\" is not one key (0-9, *, #, A-D)"))),
                }
            }
            (Some(_), None) => return Err(err("exit_to", "must be set with exit_key".into())),
            (None, Some(_)) => return Err(err("exit_key", "must be set with exit_to".into())),
        };
        call_settings.insert(
            name.clone(),
            QueueCallSettings {
                answer: q.answer,
                overflow: exit("overflow", &q.overflow)?,
                when_empty: exit("when_empty", &q.when_empty)?,
                announce_position: q.announce_position,
                announce_wait: q.announce_wait,
                router_url: q.router_url.clone(),
                exit_key,
            },
        );
    }

    let f = &acd.feature_codes;
    let feature_codes =
        FeatureCodes { login: f.login.clone(), logout: f.logout.clone(), pause: f.pause.clone(), unpause: f.unpause.clone() };
    let codes = [&feature_codes.login, &feature_codes.logout, &feature_codes.pause, &feature_codes.unpause];
    if codes.iter().any(|c| c.is_empty()) || (1..codes.len()).any(|i| codes[..i].contains(&codes[i])) {
        return Err(ConfigError(format!(
            "{}: acd.feature_codes: login, logout, pause and unpause must be four different, non-empty numbers",
            src.file.display()
        )));
    }

    let engine = AcdConfig {
        queues: queue_configs,
        agents: agent_configs.into_values().collect(),
        longest_waiting_across_queues: acd.longest_waiting_across_queues,
        ..AcdConfig::default()
    };
    engine.validate().map_err(|e| ConfigError(format!("{}: {e}", src.file.display())))?;
    let queue_log = match &acd.queue_log {
        None => Some(DEFAULT_QUEUE_LOG.to_string()),
        Some(p) if p.is_empty() => None,
        Some(p) => Some(p.clone()),
    };
    Ok((AcdSettings { engine, queues: call_settings, feature_codes }, queue_log))
}

/// The queue log's file in data_dir when `acd.queue_log` is not set.
const DEFAULT_QUEUE_LOG: &str = "queue_log.jsonl";

fn strategy_of(name: &str) -> Result<StrategyKind, String> {
    StrategyKind::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = StrategyKind::ALL.iter().map(|s| s.name()).collect();
        format!("unknown strategy \"{name}\" (known: {})", known.join(", "))
    })
}

/// `hangup`, `queue:<name>`, `endpoint:<id>` or `trunk:<name>:<number>`.
/// `hangup`, `queue:<name>`, `endpoint:<id>`, `trunk:<name>:<number>` or
/// `uri:sip:<user>@<ip>[:port]`, checked against what is defined; `this_queue`
/// (a queue's own name) is refused.
pub(super) fn exit(
    text: &str,
    this_queue: &str,
    queues: &BTreeMap<String, Spanned<RawQueue>>,
    known: &Known<'_>,
) -> Result<QueueExit, String> {
    let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
    match (kind, rest) {
        ("hangup", "") => Ok(QueueExit::Hangup),
        ("queue", name) if name == this_queue => Err(format!("\"{text}\" is this queue itself")),
        ("queue", name) if queues.contains_key(name) => Ok(QueueExit::Queue(name.to_string())),
        ("uri", uri) => {
            let parsed = sip_transport::header::Uri::parse(uri).map_err(|e| format!("\"{uri}\": {e}"))?;
            if parsed.scheme != "sip" || parsed.host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_err() {
                return Err(format!("\"{uri}\" must be a sip: URI with an IP address (names are not resolved)"));
            }
            Ok(QueueExit::Uri(uri.to_string()))
        }
        ("queue", name) => Err(format!("queue \"{name}\" is not a defined queue")),
        ("endpoint", id) if known.endpoints.contains_key(id) => Ok(QueueExit::Endpoint(id.to_string())),
        ("endpoint", id) => Err(format!("endpoint \"{id}\" is not a defined endpoint")),
        ("trunk", rest) => {
            let (trunk, number) = rest.split_once(':').unwrap_or((rest, ""));
            if !known.trunks.iter().any(|t| t.name == trunk) {
                return Err(format!("trunk \"{trunk}\" is not a defined trunk"));
            }
            if number.is_empty() {
                return Err(format!("\"{text}\" needs the number to dial: trunk:{trunk}:<number>"));
            }
            Ok(QueueExit::Trunk { trunk: trunk.to_string(), number: number.to_string() })
        }
        _ => Err(format!(
            "\"{text}\" is not a destination (hangup, queue:<name>, endpoint:<id>, trunk:<name>:<number>, uri:<sip URI>)"
        )),
    }
}
