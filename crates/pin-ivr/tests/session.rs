//! The IVR session driven with a fake clock: `t0 + ms`, no sleeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pin_ivr::{
    Action, AttemptLimiter, CallContext, Destination, DispatchRules, Failure, IvrConfig, IvrEvent, IvrSession,
    LimiterConfig, Mode, Prompts, Rule, RuleId, Scope, TimeoutKind,
};

const PIN: &str = "4711";

fn play(clips: &[&str]) -> Action {
    Action::Play(clips.iter().map(|clip| clip.to_string()).collect())
}

fn event(event: IvrEvent) -> Action {
    Action::Event(event)
}

/// A session, the tables it is lent, and a clock in milliseconds from `t0`.
struct Run {
    session: IvrSession,
    rules: DispatchRules,
    limiter: AttemptLimiter,
    t0: Instant,
}

impl Run {
    fn new(config: IvrConfig, call: CallContext, rules: DispatchRules) -> (Run, Vec<Action>) {
        Run::with_limiter(config, call, rules, AttemptLimiter::default(), Instant::now())
    }

    fn with_limiter(
        config: IvrConfig,
        call: CallContext,
        rules: DispatchRules,
        limiter: AttemptLimiter,
        t0: Instant,
    ) -> (Run, Vec<Action>) {
        config.validate().unwrap();
        let (session, actions) = IvrSession::new(Arc::new(config), call, t0);
        (Run { session, rules, limiter, t0 }, actions)
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Types every key of `keys` at `ms`, returning all the actions.
    fn keys(&mut self, keys: &str, ms: u64) -> Vec<Action> {
        let now = self.at(ms);
        keys.chars().flat_map(|key| self.session.digit(key, &self.rules, &mut self.limiter, now)).collect()
    }

    fn prompt_end(&mut self, ms: u64) -> Vec<Action> {
        let now = self.at(ms);
        self.session.prompt_finished(now)
    }

    fn timeout(&mut self, ms: u64) -> Vec<Action> {
        let now = self.at(ms);
        self.session.handle_timeout(now)
    }

    fn poll_ms(&self) -> Option<u64> {
        self.session.poll_timeout().map(|at| (at - self.t0).as_millis() as u64)
    }
}

fn support_rules() -> (DispatchRules, RuleId) {
    let mut rules = DispatchRules::default();
    let id = rules.add(Rule::new(PIN, Destination::Queue("support".into())).with_header("X-Room", "r-42")).unwrap();
    (rules, id)
}

fn caller() -> CallContext {
    CallContext::new("+15550100", "+15550199")
}

fn short_pin(length: usize, terminator: Option<char>) -> IvrConfig {
    IvrConfig { mode: Mode::Pin { length, terminator }, ..IvrConfig::pin("main") }
}

fn route_support(rule: RuleId) -> Action {
    Action::Route {
        destination: Destination::Queue("support".into()),
        headers: vec![("X-Room".into(), "r-42".into())],
        contact_ref: None,
        rule: Some(rule),
    }
}

#[test]
fn starts_with_welcome_and_enter_and_no_timer_while_they_play() {
    let (rules, _) = support_rules();
    let (run, actions) = Run::new(IvrConfig::pin("main"), caller(), rules);
    assert_eq!(actions, vec![play(&["ivr-welcome", "ivr-enter-pin"])]);
    assert_eq!(run.poll_ms(), None);
    assert!(!run.session.is_finished());
}

#[test]
fn timers_start_at_the_end_of_the_prompt() {
    let (rules, _) = support_rules();
    let (mut run, _) = Run::new(IvrConfig::pin("main"), caller(), rules);
    assert_eq!(run.timeout(60_000), vec![], "no timer runs while the prompt plays");
    assert_eq!(run.prompt_end(61_000), vec![]);
    assert_eq!(run.poll_ms(), Some(81_000), "overall timeout: 20 s from the prompt's end");
}

#[test]
fn a_digit_during_the_prompt_stops_it_and_is_kept() {
    let (rules, rule) = support_rules();
    let (mut run, _) = Run::new(short_pin(4, Some('#')), caller(), rules);
    assert_eq!(run.keys("4", 1_000), vec![Action::StopPrompt]);
    assert_eq!(run.session.entered_len(), 1);
    assert_eq!(run.poll_ms(), Some(6_000), "inter-digit 5 s (overall 20 s from the barge-in)");
    // The stopped prompt's end is not reported; a stray report changes nothing.
    assert_eq!(run.prompt_end(1_500), vec![]);
    assert_eq!(run.keys("71", 2_000), vec![]);
    let actions = run.keys("1", 3_000);
    assert_eq!(actions, vec![event(IvrEvent::PinAccepted { rule, attempt: 1 }), play(&["ivr-connecting"])]);
}

#[test]
fn a_key_during_the_welcome_stops_the_whole_prompt() {
    let (rules, _) = support_rules();
    let (mut run, _) = Run::new(IvrConfig::pin("main"), caller(), rules);
    assert_eq!(run.keys("*", 500), vec![Action::StopPrompt], "* stops the prompt (and clears nothing)");
    assert_eq!(run.poll_ms(), Some(20_500), "the overall timer starts at the barge-in");
    assert_eq!(run.keys("*", 600), vec![], "no prompt left to stop");
}

#[test]
fn a_terminator_with_nothing_typed_is_ignored_and_does_not_stop_the_prompt() {
    let (rules, _) = support_rules();
    let (mut run, _) = Run::new(IvrConfig::pin("main"), caller(), rules);
    assert_eq!(run.keys("#", 500), vec![]);
    assert_eq!(run.poll_ms(), None, "still prompting");
    assert_eq!(run.prompt_end(3_000), vec![]);
    assert_eq!(run.keys("#", 4_000), vec![]);
    assert_eq!(run.session.failed_attempts(), 0);
}

#[test]
fn the_terminator_ends_a_short_pin() {
    let (rules, rule) = support_rules();
    let (mut run, _) = Run::new(IvrConfig::pin("main"), caller(), rules);
    run.prompt_end(3_000);
    assert_eq!(run.keys(PIN, 4_000), vec![], "10 digits expected: 4 are not complete");
    let actions = run.keys("#", 5_000);
    assert_eq!(actions, vec![event(IvrEvent::PinAccepted { rule, attempt: 1 }), play(&["ivr-connecting"])]);
    assert_eq!(run.poll_ms(), None);
    assert_eq!(run.keys("5", 5_100), vec![], "keys during the closing prompt are ignored");
    assert_eq!(run.prompt_end(6_000), vec![route_support(rule)]);
    assert!(run.session.is_finished());
    assert_eq!(run.keys("1", 7_000), vec![]);
    assert_eq!(run.prompt_end(7_000), vec![]);
}

#[test]
fn exact_length_completes_without_the_terminator() {
    let (rules, rule) = support_rules();
    let (mut run, _) = Run::new(short_pin(4, None), caller(), rules);
    run.prompt_end(3_000);
    assert_eq!(run.keys("#", 3_500), vec![], "no terminator: # is ignored");
    assert_eq!(run.keys("471", 4_000), vec![]);
    let actions = run.keys("1", 4_100);
    assert_eq!(actions, vec![event(IvrEvent::PinAccepted { rule, attempt: 1 }), play(&["ivr-connecting"])]);
    assert_eq!(run.prompt_end(5_000), vec![route_support(rule)]);
}

#[test]
fn a_pin_reaching_the_length_completes_even_with_a_terminator() {
    let (rules, rule) = support_rules();
    let (mut run, _) = Run::new(short_pin(4, Some('#')), caller(), rules);
    run.prompt_end(3_000);
    let actions = run.keys(PIN, 4_000);
    assert_eq!(actions, vec![event(IvrEvent::PinAccepted { rule, attempt: 1 }), play(&["ivr-connecting"])]);
}

#[test]
fn the_inter_digit_timeout_fires_at_5_s_not_before_and_fails_the_attempt() {
    let (rules, rule) = support_rules();
    let (mut run, _) = Run::new(short_pin(4, Some('#')), caller(), rules);
    run.prompt_end(3_000);
    run.keys("47", 4_000);
    assert_eq!(run.poll_ms(), Some(9_000));
    assert_eq!(run.timeout(8_999), vec![], "4.999 s after the last digit: not yet");
    let actions = run.timeout(9_000);
    assert_eq!(
        actions,
        vec![
            event(IvrEvent::Timeout { attempt: 1, kind: TimeoutKind::InterDigit }),
            play(&["ivr-wrong-pin", "ivr-enter-pin"])
        ]
    );
    assert_eq!(run.session.failed_attempts(), 1);
    assert_eq!(run.session.entered_len(), 0, "what was typed is dropped");
    assert_eq!(run.poll_ms(), None);
    run.prompt_end(12_000);
    let actions = run.keys(PIN, 13_000);
    assert_eq!(actions[0], event(IvrEvent::PinAccepted { rule, attempt: 2 }));
}

#[test]
fn a_timeout_is_not_a_failure_for_the_limiter() {
    let (rules, _) = support_rules();
    let (mut run, _) = Run::new(short_pin(4, Some('#')), caller(), rules);
    run.prompt_end(0);
    run.keys("1", 1_000);
    run.timeout(6_000);
    assert_eq!(run.limiter.failures(&caller().caller, run.at(6_000)), 0);
}

#[test]
fn the_overall_timeout_fires_20_s_after_the_prompt_even_while_typing() {
    let (rules, _) = support_rules();
    let (mut run, _) = Run::new(IvrConfig::pin("main"), caller(), rules);
    run.prompt_end(2_000);
    // A digit every 3 s: the inter-digit timer never runs out, 7 digits of 10 by 20 s.
    for ms in [5_000, 8_000, 11_000, 14_000, 17_000, 20_000] {
        assert_eq!(run.keys("1", ms), vec![]);
    }
    assert_eq!(run.poll_ms(), Some(22_000));
    assert_eq!(run.timeout(21_999), vec![]);
    let actions = run.timeout(22_000);
    assert_eq!(
        actions,
        vec![
            event(IvrEvent::Timeout { attempt: 1, kind: TimeoutKind::Overall }),
            play(&["ivr-wrong-pin", "ivr-enter-pin"])
        ]
    );
}

#[test]
fn the_overall_timeout_with_no_key_at_all() {
    let (rules, _) = support_rules();
    let (mut run, _) = Run::new(IvrConfig::pin("main"), caller(), rules);
    run.prompt_end(2_000);
    assert_eq!(run.timeout(21_999), vec![]);
    assert_eq!(run.timeout(22_000)[0], event(IvrEvent::Timeout { attempt: 1, kind: TimeoutKind::Overall }));
}

#[test]
fn a_timer_past_due_runs_before_a_late_key() {
    let (rules, _) = support_rules();
    let (mut run, _) = Run::new(short_pin(4, Some('#')), caller(), rules);
    run.prompt_end(0);
    run.keys("4", 1_000);
    // handle_timeout was not called at 6 s; the key at 7 s finds the attempt over and
    // barges in on the "wrong PIN" prompt as the first digit of the next attempt.
    let actions = run.keys("4", 7_000);
    assert_eq!(
        actions,
        vec![
            event(IvrEvent::Timeout { attempt: 1, kind: TimeoutKind::InterDigit }),
            play(&["ivr-wrong-pin", "ivr-enter-pin"]),
            Action::StopPrompt,
        ]
    );
    assert_eq!(run.session.entered_len(), 1);
}

#[test]
fn star_clears_the_entry_but_not_the_overall_timer() {
    let (rules, rule) = support_rules();
    let (mut run, _) = Run::new(IvrConfig::pin("main"), caller(), rules);
    run.prompt_end(0);
    run.keys("99", 1_000);
    assert_eq!(run.keys("*", 2_000), vec![]);
    assert_eq!(run.session.entered_len(), 0);
    assert_eq!(run.poll_ms(), Some(20_000), "no inter-digit timer until the next digit; overall unchanged");
    let actions = run.keys("4711#", 3_000);
    assert_eq!(actions[0], event(IvrEvent::PinAccepted { rule, attempt: 1 }));
    assert_eq!(run.session.failed_attempts(), 0);
}

#[test]
fn wrong_pins_retry_then_too_many_then_goodbye_then_hangup() {
    let (rules, _) = support_rules();
    let config = IvrConfig { max_attempts: 3, ..IvrConfig::pin("main") };
    let (mut run, _) = Run::new(config, caller(), rules);
    run.prompt_end(1_000);
    for attempt in 1..=2 {
        let ms = attempt as u64 * 10_000;
        let actions = run.keys("0000#", ms);
        assert_eq!(
            actions,
            vec![event(IvrEvent::PinRejected { attempt }), play(&["ivr-wrong-pin", "ivr-enter-pin"])],
            "attempt {attempt}"
        );
        assert_eq!(run.poll_ms(), None);
        run.prompt_end(ms + 3_000);
        assert_eq!(run.poll_ms(), Some(ms + 23_000));
    }
    let actions = run.keys("0000#", 30_000);
    assert_eq!(
        actions,
        vec![
            event(IvrEvent::PinRejected { attempt: 3 }),
            event(IvrEvent::TooManyAttempts { attempts: 3 }),
            play(&["ivr-too-many", "goodbye"]),
        ]
    );
    assert!(!run.session.is_finished(), "hangs up only after the goodbye has played");
    assert_eq!(run.keys("4711#", 31_000), vec![], "keys are ignored now");
    assert_eq!(run.timeout(100_000), vec![]);
    assert_eq!(run.prompt_end(33_000), vec![Action::Hangup]);
    assert!(run.session.is_finished());
    assert_eq!(run.limiter.failures(&caller().caller, run.at(33_000)), 3);
}

#[test]
fn the_last_timeout_too_applies_on_failure() {
    let (rules, _) = support_rules();
    let config = IvrConfig { max_attempts: 1, ..IvrConfig::pin("main") };
    let (mut run, _) = Run::new(config, caller(), rules);
    run.prompt_end(0);
    let actions = run.timeout(20_000);
    assert_eq!(
        actions,
        vec![
            event(IvrEvent::Timeout { attempt: 1, kind: TimeoutKind::Overall }),
            event(IvrEvent::TooManyAttempts { attempts: 1 }),
            play(&["ivr-too-many", "goodbye"]),
        ]
    );
    assert_eq!(run.prompt_end(23_000), vec![Action::Hangup]);
}

#[test]
fn on_failure_routes_to_the_fallback() {
    let (rules, _) = support_rules();
    let operator = Destination::Endpoint("1000".into());
    let config = IvrConfig { max_attempts: 2, on_failure: Failure::Route(operator.clone()), ..IvrConfig::pin("main") };
    let (mut run, _) = Run::new(config, caller(), rules);
    run.prompt_end(0);
    run.keys("1#", 1_000);
    run.prompt_end(3_000);
    let actions = run.keys("2#", 4_000);
    assert_eq!(
        actions,
        vec![
            event(IvrEvent::PinRejected { attempt: 2 }),
            event(IvrEvent::TooManyAttempts { attempts: 2 }),
            play(&["ivr-too-many"]),
        ]
    );
    let actions = run.prompt_end(6_000);
    assert_eq!(actions, vec![Action::Route { destination: operator, headers: vec![], contact_ref: None, rule: None }]);
    assert!(run.session.is_finished());
}

#[test]
fn a_right_pin_routes_to_the_rules_destination_with_its_headers() {
    let mut rules = DispatchRules::default();
    let room = Rule::new("123456", Destination::Uri("sip:conf@media.example.com".into()))
        .with_header("X-Room", "4711")
        .with_header("X-Tenant", "acme");
    let id = rules.add(room).unwrap();
    let (mut run, _) = Run::new(IvrConfig::pin("rooms"), caller(), rules);
    run.prompt_end(0);
    let actions = run.keys("123456#", 1_000);
    assert_eq!(actions, vec![event(IvrEvent::PinAccepted { rule: id, attempt: 1 }), play(&["ivr-connecting"])]);
    assert_eq!(
        run.prompt_end(2_000),
        vec![Action::Route {
            destination: Destination::Uri("sip:conf@media.example.com".into()),
            headers: vec![("X-Room".into(), "4711".into()), ("X-Tenant".into(), "acme".into())],
            contact_ref: None,
            rule: Some(id),
        }]
    );
}

#[test]
fn the_rules_scope_restricts_which_calls_a_pin_opens() {
    let scoped = || {
        let mut rules = DispatchRules::default();
        let id = rules.add(Rule::new(PIN, Destination::Queue("a".into())).in_scope(Scope::trunk("carrier-a"))).unwrap();
        (rules, id)
    };
    let (rules, _) = scoped();
    let (mut on_b, _) = Run::new(IvrConfig::pin("main"), caller().on_trunk("carrier-b"), rules);
    on_b.prompt_end(0);
    assert_eq!(on_b.keys("4711#", 1_000)[0], event(IvrEvent::PinRejected { attempt: 1 }));
    let (rules, id) = scoped();
    let (mut on_a, _) = Run::new(IvrConfig::pin("main"), caller().on_trunk("carrier-a"), rules);
    on_a.prompt_end(0);
    assert_eq!(on_a.keys("4711#", 1_000)[0], event(IvrEvent::PinAccepted { rule: id, attempt: 1 }));
}

#[test]
fn the_limiter_blocks_a_caller_across_sessions_and_forgets_after_the_window() {
    let (rules, rule) = support_rules();
    let limiter =
        AttemptLimiter::new(LimiterConfig { max_failures: 3, window: Duration::from_secs(600), ..Default::default() });
    let t0 = Instant::now();
    let config = IvrConfig { prompts: Prompts::none(), ..IvrConfig::pin("main") };
    // First call: two wrong PINs, then the caller hangs up.
    let (mut first, _) = Run::with_limiter(config.clone(), caller(), rules, limiter, t0);
    first.keys("1#", 1_000);
    first.keys("2#", 2_000);
    let Run { rules, limiter, .. } = first;
    // Second call from the same number: one more wrong PIN (the third), then the right
    // PIN is refused unseen.
    let (mut second, _) = Run::with_limiter(config.clone(), caller(), rules, limiter, t0 + Duration::from_secs(60));
    assert_eq!(second.keys("3#", 1_000), vec![event(IvrEvent::PinRejected { attempt: 1 })]);
    assert_eq!(second.keys("4711#", 2_000), vec![event(IvrEvent::RateLimited), Action::Hangup]);
    assert!(second.session.is_finished());
    let Run { rules, limiter, .. } = second;
    // Another number is not affected.
    let (mut other, _) = Run::with_limiter(
        config.clone(),
        CallContext::new("+15550111", "+15550199"),
        rules,
        limiter,
        t0 + Duration::from_secs(70),
    );
    assert_eq!(other.keys("4711#", 0)[0], event(IvrEvent::PinAccepted { rule, attempt: 1 }));
    let Run { rules, limiter, .. } = other;
    // Just before the first failure ages out (t0 + 1 s + 600 s), still blocked; at it, the
    // caller may try again.
    let (mut early, _) =
        Run::with_limiter(config.clone(), caller(), rules, limiter, t0 + Duration::from_millis(600_999));
    assert_eq!(early.keys("4711#", 0), vec![event(IvrEvent::RateLimited), Action::Hangup]);
    let Run { rules, limiter, .. } = early;
    let (mut later, _) = Run::with_limiter(config, caller(), rules, limiter, t0 + Duration::from_millis(601_000));
    assert_eq!(later.keys("4711#", 0), vec![event(IvrEvent::PinAccepted { rule, attempt: 1 }), route_support(rule)]);
}

#[test]
fn a_rate_limited_caller_hears_too_many_and_goodbye_before_the_hangup() {
    let (rules, _) = support_rules();
    let mut limiter = AttemptLimiter::new(LimiterConfig { max_failures: 1, ..Default::default() });
    let t0 = Instant::now();
    limiter.record_failure(&caller().caller, t0);
    let (mut run, _) = Run::with_limiter(IvrConfig::pin("main"), caller(), rules, limiter, t0);
    run.prompt_end(1_000);
    assert_eq!(run.keys("4711#", 2_000), vec![event(IvrEvent::RateLimited), play(&["ivr-too-many", "goodbye"])]);
    assert_eq!(run.prompt_end(4_000), vec![Action::Hangup]);
    assert_eq!(run.limiter.failures(&caller().caller, run.at(4_000)), 1, "a refused entry is not counted");
}

fn reference_config(min_len: usize, max_len: usize) -> IvrConfig {
    let mut config = IvrConfig::reference("accounts", Destination::Queue("billing".into()));
    if let Mode::Reference { min_len: min, max_len: max, .. } = &mut config.mode {
        *min = min_len;
        *max = max_len;
    }
    config
}

fn route_billing(reference: &str) -> Action {
    Action::Route {
        destination: Destination::Queue("billing".into()),
        headers: vec![],
        contact_ref: Some(reference.into()),
        rule: None,
    }
}

#[test]
fn reference_mode_collects_a_variable_length_number_ended_by_hash() {
    let (run_rules, _) = support_rules();
    let (mut run, actions) = Run::new(reference_config(4, 12), caller(), run_rules);
    assert_eq!(actions, vec![play(&["ivr-welcome", "ivr-enter-reference"])]);
    run.prompt_end(3_000);
    assert_eq!(run.keys("123456", 4_000), vec![]);
    let actions = run.keys("#", 5_000);
    assert_eq!(
        actions,
        vec![event(IvrEvent::ReferenceCollected { reference: "123456".into() }), play(&["ivr-connecting"])]
    );
    assert_eq!(run.prompt_end(6_000), vec![route_billing("123456")]);
}

#[test]
fn reference_mode_enforces_min_and_completes_at_max() {
    let (rules, _) = support_rules();
    let (mut run, _) = Run::new(reference_config(4, 6), caller(), rules);
    run.prompt_end(0);
    let actions = run.keys("123#", 1_000);
    assert_eq!(
        actions,
        vec![
            event(IvrEvent::ReferenceRejected { attempt: 1, len: 3 }),
            play(&["ivr-wrong-pin", "ivr-enter-reference"])
        ]
    );
    run.prompt_end(3_000);
    let actions = run.keys("9876543", 4_000);
    assert_eq!(
        actions,
        vec![event(IvrEvent::ReferenceCollected { reference: "987654".into() }), play(&["ivr-connecting"])],
        "complete at max_len; the extra digit falls on the closing prompt and is ignored"
    );
    assert_eq!(run.prompt_end(5_000), vec![route_billing("987654")]);
    assert_eq!(run.limiter.tracked(), 0, "reference mode does not touch the limiter");
}

#[test]
fn no_prompts_means_timers_at_once_and_routes_at_once() {
    let (rules, rule) = support_rules();
    let config = IvrConfig { prompts: Prompts::none(), ..short_pin(4, Some('#')) };
    let (mut run, actions) = Run::new(config, caller(), rules);
    assert_eq!(actions, vec![]);
    assert_eq!(run.poll_ms(), Some(20_000));
    // A timeout handled late: the next attempt's timer starts when the last one ended.
    assert_eq!(run.timeout(25_000), vec![event(IvrEvent::Timeout { attempt: 1, kind: TimeoutKind::Overall })]);
    assert_eq!(run.poll_ms(), Some(40_000));
    assert_eq!(run.keys(PIN, 26_000), vec![event(IvrEvent::PinAccepted { rule, attempt: 2 }), route_support(rule)]);
    assert!(run.session.is_finished());
}

#[test]
fn a_late_timeout_runs_out_several_attempts_in_order() {
    let (rules, _) = support_rules();
    let config = IvrConfig { prompts: Prompts::none(), max_attempts: 2, ..IvrConfig::pin("main") };
    let (mut run, _) = Run::new(config, caller(), rules);
    let actions = run.timeout(100_000);
    assert_eq!(
        actions,
        vec![
            event(IvrEvent::Timeout { attempt: 1, kind: TimeoutKind::Overall }),
            event(IvrEvent::Timeout { attempt: 2, kind: TimeoutKind::Overall }),
            event(IvrEvent::TooManyAttempts { attempts: 2 }),
            Action::Hangup,
        ]
    );
}

#[test]
fn pins_never_show_in_actions_or_debug_output() {
    let mut rules = DispatchRules::default();
    let secret = "918273645";
    rules.add(Rule::new(secret, Destination::Queue("vip".into()))).unwrap();
    let (mut run, _) = Run::new(IvrConfig::pin("main"), caller(), rules);
    run.prompt_end(0);
    let mut seen = run.keys("918273", 1_000);
    let debug = format!("{:?}", run.session);
    assert!(!debug.contains("918273"), "{debug}");
    assert!(debug.contains("entered: 6"), "{debug}");
    seen.extend(run.keys("645#", 2_000));
    seen.extend(run.prompt_end(3_000));
    seen.extend(run.keys("918273640#", 4_000));
    let text = format!("{seen:?} {:?} {:?}", run.rules, run.rules.list().collect::<Vec<_>>());
    assert!(!text.contains("91827"), "{text}");
}

#[test]
fn keys_that_are_not_dtmf_are_ignored_and_a_to_d_only_stop_prompts() {
    let (rules, _) = support_rules();
    let (mut run, _) = Run::new(IvrConfig::pin("main"), caller(), rules);
    assert_eq!(run.keys("x", 100), vec![]);
    assert_eq!(run.poll_ms(), None, "still prompting");
    assert_eq!(run.keys("A", 200), vec![Action::StopPrompt]);
    assert_eq!(run.keys("BCD", 300), vec![]);
    assert_eq!(run.session.entered_len(), 0);
}

#[test]
fn star_as_terminator_ends_the_entry() {
    let (rules, rule) = support_rules();
    let (mut run, _) = Run::new(short_pin(10, Some('*')), caller(), rules);
    run.prompt_end(0);
    assert_eq!(run.keys("#", 500), vec![], "# does nothing here");
    assert_eq!(run.keys("4711*", 1_000)[0], event(IvrEvent::PinAccepted { rule, attempt: 1 }));
}

#[test]
fn validation_names_the_ivr_and_the_field() {
    let config = short_pin(0, Some('#'));
    assert_eq!(config.validate().unwrap_err().to_string(), r#"ivr "main": pin length must be 1-32 (got 0)"#);
    let config = short_pin(33, Some('#'));
    assert_eq!(config.validate().unwrap_err().to_string(), r#"ivr "main": pin length must be 1-32 (got 33)"#);
    let config = short_pin(4, Some('5'));
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        r#"ivr "main": pin terminator must be '#' or '*' (got '5')"#
    );
    let config = IvrConfig { inter_digit_timeout: Duration::ZERO, ..IvrConfig::pin("main") };
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        r#"ivr "main": inter_digit_timeout must be more than 0 and at most 600s (got 0ns)"#
    );
    let config = IvrConfig { max_attempts: 0, ..IvrConfig::pin("main") };
    assert_eq!(config.validate().unwrap_err().to_string(), r#"ivr "main": max_attempts must be 1-20 (got 0)"#);
    let config =
        IvrConfig { on_failure: Failure::Route(Destination::Uri("http://x".into())), ..IvrConfig::pin("main") };
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        r#"ivr "main": on_failure: destination URI "http://x" is not a sip: or sips: URI"#
    );
    let mut config = IvrConfig::pin("main");
    config.prompts.wrong = Some("../../etc/passwd".into());
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        r#"ivr "main": prompt wrong: clip name "../../etc/passwd" must be a relative path with no empty or '..' step"#
    );
    assert_eq!(
        reference_config(5, 4).validate().unwrap_err().to_string(),
        r#"ivr "accounts": reference min_len must be 1-4, the max_len (got 5)"#
    );
    assert_eq!(
        reference_config(1, 65).validate().unwrap_err().to_string(),
        r#"ivr "accounts": reference max_len must be 1-64 (got 65)"#
    );
    let config = IvrConfig::reference("accounts", Destination::Queue(String::new()));
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        r#"ivr "accounts": reference then: destination queue name is empty"#
    );
    assert_eq!(IvrConfig::pin("").validate().unwrap_err().to_string(), "an ivr has an empty name");
    assert_eq!(IvrConfig::pin("main").validate(), Ok(()));
    assert_eq!(reference_config(1, 64).validate(), Ok(()));
}

#[test]
fn defaults() {
    let config = IvrConfig::pin("main");
    assert_eq!(config.mode, Mode::Pin { length: 10, terminator: Some('#') });
    assert_eq!(config.inter_digit_timeout, Duration::from_secs(5));
    assert_eq!(config.overall_timeout, Duration::from_secs(20));
    assert_eq!(config.max_attempts, 5);
    assert_eq!(config.on_failure, Failure::Hangup);
    let reference = IvrConfig::reference("r", Destination::Queue("q".into()));
    assert_eq!(
        reference.mode,
        Mode::Reference { min_len: 1, max_len: 20, terminator: '#', then: Destination::Queue("q".into()) }
    );
    assert_eq!(reference.prompts.enter.as_deref(), Some("ivr-enter-reference"));
    assert_eq!(
        LimiterConfig::default(),
        LimiterConfig { max_failures: 10, window: Duration::from_secs(600), max_callers: 100_000 }
    );
    assert_eq!(DispatchRules::default().max_rules(), 100_000);
}
