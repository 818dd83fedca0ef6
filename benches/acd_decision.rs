//! The time of one ACD decision with 10,000 agents busy and 100,000 callers waiting
//! (design budget: < 50 µs p99).
//!
//! For each layout and strategy the bench builds the engine, fills it (every agent on
//! a call, `ACD_WAITING` callers waiting), then repeats a cycle of the engine calls
//! that make a decision, timing each one alone with `Instant` around the call and the
//! draining of its actions:
//!
//! - call end: a random agent's call ends (wrap-up 0); the engine picks the caller it
//!   takes next and emits the Offer;
//! - answer: that offer is answered (`OfferResult::Answered`);
//! - join: a new caller joins (every agent busy: it waits);
//! - abandon: a random waiting caller hangs up; another joins in its place (a second
//!   join sample), so the queue stays at `ACD_WAITING`.
//!
//! Layouts: `one`, one queue of all the agents; `multi`, 100 queues of 200 members,
//! each agent in two of them (its own at penalty 0, the next one's overflow at
//! penalty 1), callers spread evenly. For the skills strategy agents have 4 of
//! `ACD_SKILLS` skills (default 10; levels 1-9) and callers need 1 skill (70%) or 2
//! (30%): with 10 skills, 55 distinct sets of required skills.
//!
//! The figures are read, never asserted. The clock is fake: 1 ms passes per step.
//!
//! cargo bench --bench acd_decision
//! (under `cargo test --benches`, without `--bench`, a smoke run: 100 agents, 1,000 waiting)
//! ACD_SAMPLES=20000 ACD_STRATEGIES=longest-idle,skills ACD_LAYOUTS=one cargo bench --bench acd_decision
//!
//! Settings (environment): ACD_SAMPLES cycles measured per layout and strategy (default
//! 20000; each gives 1 call end, 1 answer, 2 joins, 1 abandon), ACD_WARMUP cycles run
//! first and not recorded (500), ACD_AGENTS (10000), ACD_WAITING (100000),
//! ACD_STRATEGIES (comma-separated names; default the eleven that need no router),
//! ACD_LAYOUTS (one,multi), ACD_SKILLS (10).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use acd_engine::{
    AcdConfig, Action, AgentConfig, CallId, CallerInfo, DeviceState, EndedBy, Engine, LeaveReason, Member, OfferResult,
    QueueConfig, StrategyKind,
};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const BUDGET_P99_US: f64 = 50.0;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    One,
    Multi,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::One => "one",
            Layout::Multi => "multi",
        }
    }

    fn queues(self) -> usize {
        match self {
            Layout::One => 1,
            Layout::Multi => 100,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Decision {
    CallEnd,
    Answer,
    Join,
    Abandon,
}

impl Decision {
    const ALL: [Decision; 4] = [Decision::CallEnd, Decision::Answer, Decision::Join, Decision::Abandon];

    fn name(self) -> &'static str {
        match self {
            Decision::CallEnd => "call end -> offer",
            Decision::Answer => "answer",
            Decision::Join => "join (all busy)",
            Decision::Abandon => "abandon",
        }
    }
}

fn config(layout: Layout, strategy: StrategyKind, agents: usize, skill_names: usize, rng: &mut SmallRng) -> AcdConfig {
    let skilled = strategy == StrategyKind::Skills;
    let agent_configs: Vec<AgentConfig> = (0..agents)
        .map(|i| {
            let mut agent = AgentConfig::new(&format!("agent{i:05}"));
            if skilled {
                let mut skills: Vec<usize> = Vec::new();
                while skills.len() < 4 {
                    let s = rng.random_range(0..skill_names);
                    if !skills.contains(&s) {
                        skills.push(s);
                    }
                }
                agent.skills = skills.into_iter().map(|s| (format!("s{s}"), rng.random_range(1..=9u8))).collect();
            }
            agent
        })
        .collect();
    let queues = match layout {
        Layout::One => {
            let members = agent_configs.iter().map(|a| Member::new(&a.id, 0)).collect();
            vec![QueueConfig { name: "q0".to_owned(), strategy, members, ..QueueConfig::default() }]
        }
        Layout::Multi => {
            let n = layout.queues();
            let per_queue = agents.div_ceil(n);
            (0..n)
                .map(|q| {
                    let own = (q * per_queue..((q + 1) * per_queue).min(agents)).map(|i| (i, 0));
                    let previous = (q + n - 1) % n;
                    let overflow = (previous * per_queue..((previous + 1) * per_queue).min(agents)).map(|i| (i, 1));
                    let members =
                        own.chain(overflow).map(|(i, penalty)| Member::new(&agent_configs[i].id, penalty)).collect();
                    QueueConfig { name: format!("q{q}"), strategy, members, ..QueueConfig::default() }
                })
                .collect()
        }
    };
    AcdConfig { queues, agents: agent_configs, seed: Some(1), ..AcdConfig::default() }
}

/// The engine under test and what the bench knows of its calls.
struct Rig {
    engine: Engine,
    layout: Layout,
    skilled: bool,
    skill_names: usize,
    queue_names: Vec<String>,
    t0: Instant,
    step: u64,
    rng: SmallRng,
    next_call: u64,
    /// Waiting callers, for picking one at random; `waiting_at` is each one's index.
    waiting: Vec<CallId>,
    waiting_at: HashMap<CallId, usize>,
    /// Connected calls.
    connected: Vec<CallId>,
    /// Offers seen while draining, reused so the timed path does not allocate for it.
    offers: Vec<(CallId, String)>,
    /// Actions the scenario has no place for (a cancel, an exit, two offers at once).
    unexpected: usize,
    /// Call ends after which the agent found no waiting caller it could take.
    idle_ends: usize,
}

impl Rig {
    fn now(&mut self) -> Instant {
        self.step += 1;
        self.t0 + Duration::from_millis(self.step)
    }

    fn caller_info(&mut self) -> CallerInfo {
        if !self.skilled {
            return CallerInfo::default();
        }
        let first = self.rng.random_range(0..self.skill_names);
        let mut skills = vec![format!("s{first}")];
        if self.rng.random_bool(0.3) {
            let second = (first + self.rng.random_range(1..self.skill_names)) % self.skill_names;
            skills.push(format!("s{second}"));
        }
        CallerInfo { priority: 0, skills }
    }

    /// Takes the engine's actions, keeping the offers; the caller times this.
    fn drain(&mut self) {
        for action in self.engine.drain_actions() {
            match action {
                Action::Offer { call, agent, .. } => self.offers.push((call, agent)),
                Action::Event(_) => {}
                _ => self.unexpected += 1,
            }
        }
    }

    fn add_waiting(&mut self, call: CallId) {
        self.waiting_at.insert(call, self.waiting.len());
        self.waiting.push(call);
    }

    fn remove_waiting(&mut self, call: CallId) {
        let Some(i) = self.waiting_at.remove(&call) else { return };
        self.waiting.swap_remove(i);
        if let Some(&moved) = self.waiting.get(i) {
            self.waiting_at.insert(moved, i);
        }
    }

    /// A new caller joins; returns the time of the engine call and its draining.
    fn join(&mut self) -> Duration {
        let call = CallId(self.next_call);
        self.next_call += 1;
        let queue = self.rng.random_range(0..self.queue_names.len());
        let info = self.caller_info();
        let now = self.now();
        self.offers.clear();
        let start = Instant::now();
        let joined = self.engine.caller_join(call, &self.queue_names[queue], info, now);
        self.drain();
        let elapsed = start.elapsed();
        joined.expect("the bench's queues take every caller");
        self.add_waiting(call);
        elapsed
    }

    /// Answers the offers taken by the last drain (untimed in the fill).
    fn answer_offers(&mut self) -> Vec<Duration> {
        let offers = std::mem::take(&mut self.offers);
        let mut times = Vec::with_capacity(offers.len());
        for (call, agent) in &offers {
            self.remove_waiting(*call);
            let now = self.now();
            let start = Instant::now();
            self.engine.offer_result(*call, agent, OfferResult::Answered, now);
            self.drain();
            times.push(start.elapsed());
            self.connected.push(*call);
        }
        self.offers = offers;
        self.offers.clear();
        times
    }

    /// Every agent on a call and `waiting` callers waiting. The agents' phones show busy
    /// while all the callers join, then free up one by one: each takes one caller, so
    /// ring-all never rings thousands of agents for one caller while filling.
    fn fill(&mut self, agents: usize, waiting: usize) {
        let ids: Vec<String> = (0..agents).map(|i| format!("agent{i:05}")).collect();
        let busy = DeviceState { registered: true, busy: true };
        for id in &ids {
            let now = self.now();
            self.engine.device_state(id, busy, now);
            self.drain();
        }
        for _ in 0..agents + waiting {
            self.join();
        }
        let free = DeviceState { registered: true, busy: false };
        for id in &ids {
            let now = self.now();
            self.offers.clear();
            self.engine.device_state(id, free, now);
            self.drain();
            self.answer_offers();
        }
    }

    /// A new caller joins, timed; an agent left idle (no caller it could take) takes it
    /// at once, and that offer is answered.
    fn join_and_answer(&mut self, record: &mut impl FnMut(Decision, Duration)) {
        record(Decision::Join, self.join());
        for time in self.answer_offers() {
            record(Decision::Answer, time);
        }
    }

    /// One cycle: call end, answer, join, abandon, join.
    fn cycle(&mut self, record: &mut impl FnMut(Decision, Duration)) {
        if !self.connected.is_empty() {
            let i = self.rng.random_range(0..self.connected.len());
            let call = self.connected.swap_remove(i);
            let now = self.now();
            self.offers.clear();
            let start = Instant::now();
            self.engine.call_ended(call, EndedBy::Caller, now);
            self.drain();
            record(Decision::CallEnd, start.elapsed());
            match self.offers.len() {
                0 => self.idle_ends += 1,
                1 => {}
                _ => self.unexpected += 1,
            }
            for time in self.answer_offers() {
                record(Decision::Answer, time);
            }
        }
        self.join_and_answer(record);
        if !self.waiting.is_empty() {
            let i = self.rng.random_range(0..self.waiting.len());
            let call = self.waiting[i];
            let now = self.now();
            self.offers.clear();
            let start = Instant::now();
            self.engine.caller_leave(call, LeaveReason::Abandon, now);
            self.drain();
            record(Decision::Abandon, start.elapsed());
            self.remove_waiting(call);
            if !self.offers.is_empty() {
                self.unexpected += 1;
            }
        }
        self.join_and_answer(record);
    }
}

struct Summary {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn summary(samples: &mut [Duration]) -> Summary {
    samples.sort_unstable();
    let n = samples.len();
    // Nearest rank: the smallest sample with at least p of the samples at or below it.
    let rank = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    Summary { n, p50: rank(0.50), p99: rank(0.99), max: samples[n - 1] }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    // `cargo test --benches` runs this with no `--bench` argument: a small smoke run.
    let bench = std::env::args().any(|a| a == "--bench");
    let (samples, agents, waiting) = if bench { (20_000, 10_000, 100_000) } else { (100, 100, 1_000) };
    let samples = env_or("ACD_SAMPLES", samples).max(1);
    let skill_names = env_or("ACD_SKILLS", 10).max(4);
    let warmup = env_or("ACD_WARMUP", if bench { 500 } else { 10 });
    let agents = env_or("ACD_AGENTS", agents).max(1);
    let waiting = env_or("ACD_WAITING", waiting).max(1);
    let strategies: Vec<StrategyKind> = match std::env::var("ACD_STRATEGIES") {
        Ok(list) => list
            .split(',')
            .map(|name| StrategyKind::from_name(name.trim()).unwrap_or_else(|| panic!("no strategy {name:?}")))
            .collect(),
        Err(_) => StrategyKind::ALL.into_iter().filter(|&s| s != StrategyKind::External).collect(),
    };
    let layouts: Vec<Layout> = match std::env::var("ACD_LAYOUTS") {
        Ok(list) => list
            .split(',')
            .map(|name| match name.trim() {
                "one" => Layout::One,
                "multi" => Layout::Multi,
                other => panic!("no layout {other:?} (one, multi)"),
            })
            .collect(),
        Err(_) => vec![Layout::One, Layout::Multi],
    };
    if strategies.contains(&StrategyKind::External) {
        panic!("the external strategy waits for a router; this bench does not answer for one");
    }

    let started = Instant::now();
    println!(
        "acd_decision: {agents} agents all on calls, {waiting} callers waiting; {samples} cycles per row \
         after {warmup} unrecorded (1 call end, 1 answer, 2 joins, 1 abandon each); times per engine call \
         including draining its actions; skills strategy: {skill_names} skill names"
    );
    println!(
        "{:<6} {:<18} {:<18} {:>7} {:>9} {:>9} {:>9} {:>8}",
        "layout", "strategy", "decision", "n", "p50 us", "p99 us", "max us", "setup s"
    );
    let mut worst: Option<(f64, String)> = None;
    for &layout in &layouts {
        for &strategy in &strategies {
            let setup_started = Instant::now();
            let mut rng = SmallRng::seed_from_u64(42);
            let config = config(layout, strategy, agents, skill_names, &mut rng);
            let engine = Engine::new(config).expect("a valid configuration");
            let mut rig = Rig {
                engine,
                layout,
                skilled: strategy == StrategyKind::Skills,
                skill_names,
                queue_names: (0..layout.queues()).map(|q| format!("q{q}")).collect(),
                t0: Instant::now(),
                step: 0,
                rng,
                next_call: 0,
                waiting: Vec::with_capacity(waiting + 16),
                waiting_at: HashMap::with_capacity(waiting + 16),
                connected: Vec::with_capacity(agents),
                offers: Vec::with_capacity(64),
                unexpected: 0,
                idle_ends: 0,
            };
            rig.fill(agents, waiting);
            let setup = setup_started.elapsed();
            // The scenario's premise, checked in a bench run; a smoke run's few agents
            // with skills may find no caller they can take.
            let (busy, queued) = (rig.engine.connected_calls(), rig.engine.waiting_callers());
            assert!(!bench || (busy, queued) == (agents, waiting), "after the fill: {busy} on calls, {queued} waiting");
            rig.unexpected = 0;
            for _ in 0..warmup {
                rig.cycle(&mut |_, _| {});
            }
            let mut times: HashMap<Decision, Vec<Duration>> = HashMap::new();
            for _ in 0..samples {
                rig.cycle(&mut |decision, time| times.entry(decision).or_default().push(time));
            }
            let (busy, queued) = (rig.engine.connected_calls(), rig.engine.waiting_callers());
            assert!(!bench || (busy, queued) == (agents, waiting), "after the run: {busy} on calls, {queued} waiting");
            assert!(!bench || rig.idle_ends == 0, "{} call ends found no caller to take", rig.idle_ends);
            assert_eq!(rig.unexpected, 0, "{}: the engine did something the scenario does not expect", strategy.name());
            let mut all: Vec<Duration> = Vec::new();
            for (k, decision) in Decision::ALL.into_iter().enumerate() {
                let mut samples = times.remove(&decision).unwrap_or_default();
                all.extend_from_slice(&samples);
                let s = summary(&mut samples);
                if worst.as_ref().is_none_or(|(p99, _)| us(s.p99) > *p99) {
                    let label = format!("{} / {} / {}", rig.layout.name(), strategy.name(), decision.name());
                    worst = Some((us(s.p99), label));
                }
                let setup = if k == 0 { format!("{:.2}", setup.as_secs_f64()) } else { String::new() };
                println!(
                    "{:<6} {:<18} {:<18} {:>7} {:>9.2} {:>9.2} {:>9.1} {:>8}",
                    rig.layout.name(),
                    strategy.name(),
                    decision.name(),
                    s.n,
                    us(s.p50),
                    us(s.p99),
                    us(s.max),
                    setup
                );
            }
            let s = summary(&mut all);
            println!(
                "{:<6} {:<18} {:<18} {:>7} {:>9.2} {:>9.2} {:>9.1}",
                rig.layout.name(),
                strategy.name(),
                "all decisions",
                s.n,
                us(s.p50),
                us(s.p99),
                us(s.max)
            );
        }
    }
    if !bench {
        println!("(a smoke run, far below the budget's scale: `cargo bench --bench acd_decision` for the figures)");
    } else if let Some((p99, label)) = worst {
        let verdict = if p99 < BUDGET_P99_US { "within" } else { "over" };
        println!(
            "highest p99 of one kind of decision: {p99:.2} us ({label}); budget {BUDGET_P99_US} us p99: {verdict}"
        );
    }
    println!("acd_decision: {:.1} s wall in all", started.elapsed().as_secs_f64());
}
