//! Dispatch rules, the constant-time comparison and the attempt limiter.

use std::time::{Duration, Instant};

use pin_ivr::{
    AttemptLimiter, CallContext, Destination, DispatchRules, LimiterConfig, Rule, RuleError, RuleId, Scope,
    constant_time_eq,
};

fn queue(name: &str) -> Destination {
    Destination::Queue(name.into())
}

fn found(rules: &DispatchRules, pin: &str, call: &CallContext) -> Option<RuleId> {
    rules.lookup(pin, call).map(|(id, _)| id)
}

#[test]
fn add_then_lookup_then_remove() {
    let mut rules = DispatchRules::default();
    let call = CallContext::new("+1555", "+1800");
    let id = rules.add(Rule::new("123456", queue("sales"))).unwrap();
    let (got, rule) = rules.lookup("123456", &call).unwrap();
    assert_eq!(got, id);
    assert_eq!(rule.destination, queue("sales"));
    assert_eq!(found(&rules, "12345", &call), None, "a prefix is not the PIN");
    assert_eq!(found(&rules, "1234567", &call), None);
    assert_eq!(found(&rules, "123457", &call), None);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules.remove(id).map(|rule| rule.pin), Some("123456".into()));
    assert_eq!(found(&rules, "123456", &call), None);
    assert!(rules.is_empty());
    assert_eq!(rules.remove(id), None);
    // Ids are not reused.
    let again = rules.add(Rule::new("123456", queue("sales"))).unwrap();
    assert_ne!(again, id);
    assert_eq!(found(&rules, "123456", &call), Some(again));
}

#[test]
fn remove_by_pin_needs_the_exact_scope() {
    let mut rules = DispatchRules::default();
    let call = CallContext::new("+1555", "+1800");
    let id = rules.add(Rule::new("42", queue("a")).in_scope(Scope::did("+1800"))).unwrap();
    assert_eq!(rules.remove_by_pin("42", &Scope::any()), None);
    assert_eq!(rules.remove_by_pin("43", &Scope::did("+1800")), None);
    assert_eq!(found(&rules, "42", &call), Some(id));
    let (removed, rule) = rules.remove_by_pin("42", &Scope::did("+1800")).unwrap();
    assert_eq!((removed, rule.destination), (id, queue("a")));
    assert_eq!(found(&rules, "42", &call), None);
    assert_eq!(rules.get(id), None);
}

#[test]
fn a_duplicate_pin_is_refused_in_the_same_scope_and_allowed_in_another() {
    let mut rules = DispatchRules::default();
    let scope = Scope::trunk_and_did("carrier", "+1800");
    let first = rules.add(Rule::new("5555", queue("a")).in_scope(scope.clone())).unwrap();
    let err = rules.add(Rule::new("5555", queue("b")).in_scope(scope.clone())).unwrap_err();
    assert_eq!(err, RuleError::DuplicatePin { scope: scope.clone(), existing: first });
    let message = err.to_string();
    assert_eq!(message, r#"another rule (rule 1) has this PIN for trunk "carrier", DID "+1800""#);
    assert!(!message.contains("5555"));
    rules.add(Rule::new("5555", queue("b")).in_scope(Scope::did("+1800"))).unwrap();
    rules.add(Rule::new("5555", queue("c")).in_scope(Scope::trunk("carrier"))).unwrap();
    rules.add(Rule::new("5555", queue("d"))).unwrap();
    assert_eq!(
        rules.add(Rule::new("5555", queue("e"))).unwrap_err().to_string(),
        "another rule (rule 4) has this PIN for any call"
    );
    assert_eq!(rules.len(), 4);
}

#[test]
fn the_most_specific_scope_wins() {
    let mut rules = DispatchRules::default();
    let any = rules.add(Rule::new("777", queue("any"))).unwrap();
    let trunk = rules.add(Rule::new("777", queue("trunk")).in_scope(Scope::trunk("t1"))).unwrap();
    let did = rules.add(Rule::new("777", queue("did")).in_scope(Scope::did("+1800"))).unwrap();
    let both = rules.add(Rule::new("777", queue("both")).in_scope(Scope::trunk_and_did("t1", "+1800"))).unwrap();
    let on = |rules: &DispatchRules, trunk: Option<&str>, did: &str| {
        let call = CallContext::new("+1555", did);
        let call = match trunk {
            Some(trunk) => call.on_trunk(trunk),
            None => call,
        };
        found(rules, "777", &call)
    };
    assert_eq!(on(&rules, Some("t1"), "+1800"), Some(both));
    assert_eq!(on(&rules, Some("t2"), "+1800"), Some(did));
    assert_eq!(on(&rules, None, "+1800"), Some(did));
    assert_eq!(on(&rules, Some("t1"), "+1900"), Some(trunk));
    assert_eq!(on(&rules, Some("t2"), "+1900"), Some(any));
    assert_eq!(on(&rules, None, "+1900"), Some(any));
    // Without the most specific, the DID rule outranks the trunk rule.
    rules.remove(both);
    assert_eq!(on(&rules, Some("t1"), "+1800"), Some(did));
    rules.remove(did);
    assert_eq!(on(&rules, Some("t1"), "+1800"), Some(trunk));
    rules.remove(trunk);
    assert_eq!(on(&rules, Some("t1"), "+1800"), Some(any));
}

#[test]
fn a_scoped_rule_applies_only_to_its_calls() {
    let mut rules = DispatchRules::default();
    let id = rules.add(Rule::new("31337", queue("vip")).in_scope(Scope::trunk("carrier-a"))).unwrap();
    let call = CallContext::new("+1555", "+1800");
    assert_eq!(found(&rules, "31337", &call), None, "a call from an endpoint has no trunk");
    assert_eq!(found(&rules, "31337", &call.clone().on_trunk("carrier-b")), None);
    assert_eq!(found(&rules, "31337", &call.clone().on_trunk("carrier-a")), Some(id));
    let scope = Scope::trunk_and_did("carrier-a", "+1800");
    assert!(scope.matches(&call.clone().on_trunk("carrier-a")));
    assert!(!scope.matches(&CallContext::new("+1555", "+1801").on_trunk("carrier-a")));
    assert!(Scope::any().matches(&call));
}

#[test]
fn scope_strings_cannot_run_together() {
    // trunk "ab" + DID "c" and trunk "a" + DID "bc" are different scopes.
    let mut rules = DispatchRules::default();
    rules.add(Rule::new("1", queue("x")).in_scope(Scope::trunk_and_did("ab", "c"))).unwrap();
    rules.add(Rule::new("1", queue("y")).in_scope(Scope::trunk_and_did("a", "bc"))).unwrap();
    let call = CallContext::new("+1555", "bc").on_trunk("a");
    assert_eq!(rules.lookup("1", &call).unwrap().1.destination, queue("y"));
}

#[test]
fn bad_pins_are_refused_without_showing_them() {
    let mut rules = DispatchRules::default();
    for (pin, message) in [
        ("", "PIN must be 1-32 digits (got 0)"),
        ("123456789012345678901234567890123", "PIN must be 1-32 digits (got 33)"),
        ("12a4", "PIN must hold only the digits 0-9"),
        ("12#4", "PIN must hold only the digits 0-9"),
        ("١٢٣", "PIN must hold only the digits 0-9"),
    ] {
        let err = rules.add(Rule::new(pin, queue("q"))).unwrap_err();
        assert!(matches!(err, RuleError::BadPin { .. }), "{pin:?}");
        assert_eq!(err.to_string(), message, "{pin:?}");
    }
    assert!(rules.is_empty());
    rules.add(Rule::new("12345678901234567890123456789012", queue("q"))).unwrap();
    let call = CallContext::new("+1555", "+1800");
    assert_eq!(rules.lookup("12a4", &call).map(|(id, _)| id), None);
    assert_eq!(rules.lookup("", &call).map(|(id, _)| id), None);
}

#[test]
fn headers_destinations_and_scopes_are_checked() {
    let mut rules = DispatchRules::default();
    let err = |rules: &mut DispatchRules, rule: Rule| rules.add(rule).unwrap_err().to_string();
    assert_eq!(
        err(&mut rules, Rule::new("1", queue("q")).with_header("X-Room", "1\r\nVia: evil")),
        r#"header "X-Room": the value holds a line break or another control character"#
    );
    assert_eq!(
        err(&mut rules, Rule::new("1", queue("q")).with_header("X Room", "1")),
        r#"header "X Room": the name must be 1-64 token characters (letters, digits, -.!%*_+`'~)"#
    );
    assert_eq!(
        err(&mut rules, Rule::new("1", queue("q")).with_header("call-id", "1")),
        r#"header "call-id": the switch writes this header itself"#
    );
    assert_eq!(
        err(&mut rules, Rule::new("1", queue("q")).with_header("v", "1")),
        r#"header "v": a one-letter name is a compact header form, which the switch writes itself"#
    );
    let many = (0..17).fold(Rule::new("1", queue("q")), |rule, n| rule.with_header(&format!("X-H{n}"), "v"));
    assert_eq!(err(&mut rules, many), "17 headers; a rule may add at most 16");
    assert_eq!(
        err(&mut rules, Rule::new("1", Destination::Uri("http://example.com".into()))),
        r#"destination URI "http://example.com" is not a sip: or sips: URI"#
    );
    assert_eq!(
        err(&mut rules, Rule::new("1", Destination::Uri("sip:".into()))),
        r#"destination URI "sip:" is not a sip: or sips: URI"#
    );
    assert_eq!(
        err(&mut rules, Rule::new("1", Destination::Trunk { trunk: "t".into(), number: "+1 555".into() })),
        r#"destination trunk number "+1 555" holds whitespace or control characters"#
    );
    assert_eq!(
        err(&mut rules, Rule::new("1", Destination::Endpoint(String::new()))),
        "destination endpoint id is empty"
    );
    assert_eq!(
        err(&mut rules, Rule::new("1", queue("q")).in_scope(Scope { trunk: Some(String::new()), did: None })),
        "scope: trunk is empty (leave it out to match every trunk)"
    );
    assert!(rules.is_empty());
    rules.add(Rule::new("1", Destination::Uri("SIPS:room@example.com".into())).with_header("X-Room", "a\tb")).unwrap();
    rules.add(Rule::new("2", Destination::Trunk { trunk: "carrier".into(), number: "+15550100".into() })).unwrap();
}

#[test]
fn the_table_is_bounded() {
    let mut rules = DispatchRules::new(2);
    rules.add(Rule::new("1", queue("q"))).unwrap();
    let two = rules.add(Rule::new("2", queue("q"))).unwrap();
    let err = rules.add(Rule::new("3", queue("q"))).unwrap_err();
    assert_eq!(err, RuleError::Full { max: 2 });
    assert_eq!(err.to_string(), "the dispatch rules are full (2 rules)");
    rules.remove(two);
    rules.add(Rule::new("3", queue("q"))).unwrap();
}

#[test]
fn list_shows_the_rules_in_order_and_debug_hides_pins() {
    let mut rules = DispatchRules::default();
    let a = rules.add(Rule::new("1111", queue("a"))).unwrap();
    let b = rules.add(Rule::new("2222", queue("b")).with_header("X-Room", "9")).unwrap();
    let listed: Vec<(RuleId, &str)> = rules.list().map(|(id, rule)| (id, rule.pin.as_str())).collect();
    assert_eq!(listed, vec![(a, "1111"), (b, "2222")]);
    let debug = format!("{:?} {:?}", rules.get(b).unwrap(), rules);
    assert!(!debug.contains("2222"), "{debug}");
    assert!(debug.contains("<4 digits>"), "{debug}");
}

#[test]
fn two_tables_salt_differently_but_agree() {
    let mut one = DispatchRules::default();
    let mut two = DispatchRules::default();
    one.add(Rule::new("9", queue("q"))).unwrap();
    two.add(Rule::new("9", queue("q"))).unwrap();
    let call = CallContext::new("+1555", "+1800");
    assert!(one.lookup("9", &call).is_some() && two.lookup("9", &call).is_some());
}

#[test]
fn constant_time_eq_compares_bytes() {
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(b"0123456789", b"0123456789"));
    assert!(!constant_time_eq(b"0123456789", b"1123456789"), "first byte");
    assert!(!constant_time_eq(b"0123456789", b"0123456788"), "last byte");
    assert!(!constant_time_eq(b"0123456789", b"012345678"), "shorter");
    assert!(!constant_time_eq(b"", b"0"));
    assert!(!constant_time_eq(&[0x80], &[0x00]), "high bit");
    for bit in 0..8 {
        assert!(!constant_time_eq(&[1 << bit], &[0]), "bit {bit}");
    }
}

fn limiter(max_failures: u32, window_secs: u64, max_callers: usize) -> AttemptLimiter {
    let config = LimiterConfig { max_failures, window: Duration::from_secs(window_secs), max_callers };
    config.validate().unwrap();
    AttemptLimiter::new(config)
}

#[test]
fn the_limiter_blocks_at_n_failures_and_forgets_each_after_the_window() {
    let t0 = Instant::now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);
    let mut limiter = limiter(3, 600, 100);
    limiter.record_failure("+1555", at(0));
    limiter.record_failure("+1555", at(10));
    assert!(!limiter.is_blocked("+1555", at(20)));
    limiter.record_failure("+1555", at(20));
    assert!(limiter.is_blocked("+1555", at(20)));
    assert!(!limiter.is_blocked("+1666", at(20)), "per caller");
    assert!(limiter.is_blocked("+1555", t0 + Duration::from_millis(599_999)));
    assert!(!limiter.is_blocked("+1555", at(600)), "the failure at 0 s no longer counts at 600 s");
    assert_eq!(limiter.failures("+1555", at(600)), 2);
    limiter.record_failure("+1555", at(600));
    assert!(limiter.is_blocked("+1555", at(600)), "sliding: 10 s, 20 s and 600 s count");
    assert_eq!(limiter.failures("+1555", at(620)), 1);
    assert_eq!(limiter.failures("+1555", at(1_200)), 0);
    limiter.prune(at(1_200));
    assert_eq!(limiter.tracked(), 0);
}

#[test]
fn the_limiter_forgets_the_oldest_caller_when_full() {
    let t0 = Instant::now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);
    let mut limiter = limiter(1, 600, 2);
    limiter.record_failure("a", at(0));
    limiter.record_failure("b", at(1));
    limiter.record_failure("a", at(2));
    limiter.record_failure("c", at(3));
    assert_eq!(limiter.tracked(), 2);
    assert!(limiter.is_blocked("a", at(3)));
    assert!(!limiter.is_blocked("b", at(3)), "b's last failure was the oldest");
    assert!(limiter.is_blocked("c", at(3)));
    // Callers whose failures aged out are dropped before anyone is evicted.
    limiter.record_failure("d", at(602));
    assert_eq!(limiter.tracked(), 2);
    assert!(limiter.is_blocked("c", at(602)));
    assert!(limiter.is_blocked("d", at(602)));
    assert!(limiter.forget("d"));
    assert!(!limiter.forget("d"));
    assert!(!limiter.is_blocked("d", at(602)));
}

#[test]
fn the_limiter_keys_on_at_most_128_bytes_of_the_number() {
    let t0 = Instant::now();
    let mut limiter = limiter(1, 600, 10);
    let long = "9".repeat(200);
    limiter.record_failure(&long, t0);
    assert!(limiter.is_blocked(&"9".repeat(128), t0));
    assert!(limiter.is_blocked(&format!("{}x", "9".repeat(128)), t0));
    let wide = "é".repeat(100);
    limiter.record_failure(&wide, t0);
    assert!(limiter.is_blocked(&wide, t0));
}

#[test]
fn limiter_config_is_checked() {
    let bad = |config: LimiterConfig| config.validate().unwrap_err().to_string();
    let base = LimiterConfig::default();
    assert_eq!(
        bad(LimiterConfig { max_failures: 0, ..base.clone() }),
        "ivr attempt limiter: max_failures must be 1-1000 (got 0)"
    );
    assert_eq!(
        bad(LimiterConfig { window: Duration::ZERO, ..base.clone() }),
        "ivr attempt limiter: window must be more than 0"
    );
    assert_eq!(bad(LimiterConfig { max_callers: 0, ..base }), "ivr attempt limiter: max_callers must be at least 1");
}
