//! The dial plan: for each listener profile, ordered rules that map a dialled
//! number to a destination. The first rule that matches wins; no match is 404.
//!
//! A rule matches a number exactly, by prefix, or by a regular expression with
//! captures; its destination may use what matched through a template:
//! `$0` the whole number, `$1`..`$9` the captures of a pattern, `${rest}` what
//! follows a prefix, `$$` a dollar sign.

use std::time::Duration;

use regex::Regex;

use crate::settings::Profile;

/// How a rule looks at the dialled number.
#[derive(Clone, Debug)]
pub enum NumberMatch {
    Exact(String),
    Prefix(String),
    /// Anchored at both ends when it is compiled (see [`NumberMatch::pattern`]).
    Pattern(Regex),
}

impl NumberMatch {
    /// A pattern that must match the whole number (`^(?:...)$` is added).
    pub fn pattern(re: &str) -> Result<NumberMatch, String> {
        Regex::new(&format!("^(?:{re})$")).map(NumberMatch::Pattern).map_err(|e| format!("bad pattern: {e}"))
    }

    fn captures(&self) -> usize {
        match self {
            NumberMatch::Pattern(re) => re.captures_len() - 1,
            _ => 0,
        }
    }
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
    Rest,
}

/// A destination string with placeholders for what the number matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                text.push(c);
                continue;
            }
            let piece = match chars.next() {
                Some('$') => {
                    text.push('$');
                    continue;
                }
                Some(d @ '0'..='9') => Piece::Group(d as usize - '0' as usize),
                Some('{') => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    if name != "rest" {
                        return Err(format!("unknown placeholder ${{{name}}} in \"{s}\" (known: $0-$9, ${{rest}}, $$)"));
                    }
                    Piece::Rest
                }
                _ => return Err(format!("a lone $ in \"{s}\" (write $$ for a dollar sign)")),
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template(pieces))
    }

    fn expand(&self, groups: &[&str], rest: &str) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Group(i) => out.push_str(groups.get(*i).copied().unwrap_or("")),
                Piece::Rest => out.push_str(rest),
            }
        }
        out
    }

    fn max_group(&self) -> Option<usize> {
        self.0.iter().filter_map(|p| if let Piece::Group(i) = p { Some(*i) } else { None }).max()
    }

    fn uses_rest(&self) -> bool {
        self.0.contains(&Piece::Rest)
    }

    /// Whether the template is plain text (so a reference in it can be checked at load time).
    pub fn literal(&self) -> Option<String> {
        match self.0.as_slice() {
            [] => Some(String::new()),
            [Piece::Text(t)] => Some(t.clone()),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Destination {
    /// Ring every registered contact of the endpoint the template names.
    Endpoint(Template),
    /// Send to a trunk, dialling the number the template makes.
    Trunk { trunk: String, number: Template },
    /// Answer and send the caller's media back.
    Echo,
    /// Wait in an ACD queue for an agent.
    Queue(QueueTarget),
    /// Type a PIN or a reference in this IVR.
    Ivr(String),
    /// Refuse with this status.
    Hangup { status: u16 },
}

/// A queue, and what its callers from this rule bring: a priority (higher is
/// served first) and the skills an agent must have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueTarget {
    pub name: String,
    pub priority: u8,
    pub skills: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub matcher: NumberMatch,
    pub destination: Destination,
    /// How long an endpoint or trunk may ring before the caller gets "no answer".
    pub ring_timeout: Duration,
}

impl Rule {
    /// Checks that the destination uses only what the matcher provides.
    pub fn new(matcher: NumberMatch, destination: Destination, ring_timeout: Duration) -> Result<Rule, String> {
        let template = match &destination {
            Destination::Endpoint(t) | Destination::Trunk { number: t, .. } => Some(t),
            Destination::Echo | Destination::Queue(_) | Destination::Ivr(_) => None,
            Destination::Hangup { status } => {
                if !(400..700).contains(status) {
                    return Err(format!("hangup status must be 400-699 (got {status})"));
                }
                None
            }
        };
        if let Some(t) = template {
            let groups = matcher.captures();
            if let Some(g) = t.max_group().filter(|&g| g > groups) {
                return Err(format!("${g} is used but the match has {groups} capture group(s)"));
            }
            if t.uses_rest() && !matches!(matcher, NumberMatch::Prefix(_)) {
                return Err("${rest} needs a prefix match".to_string());
            }
        }
        Ok(Rule { matcher, destination, ring_timeout })
    }

    /// The groups and rest of `number` if this rule matches it.
    fn matches<'n>(&self, number: &'n str) -> Option<(Vec<&'n str>, &'n str)> {
        match &self.matcher {
            NumberMatch::Exact(e) => (number == e).then(|| (vec![number], "")),
            NumberMatch::Prefix(p) => number.strip_prefix(p.as_str()).map(|rest| (vec![number], rest)),
            NumberMatch::Pattern(re) => {
                let caps = re.captures(number)?;
                Some((caps.iter().map(|m| m.map_or("", |m| m.as_str())).collect(), ""))
            }
        }
    }
}

/// Where a call goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Endpoint { id: String, ring_timeout: Duration },
    Trunk { trunk: String, number: String, ring_timeout: Duration },
    Echo,
    Queue(QueueTarget),
    Ivr { name: String },
    Hangup { status: u16 },
}

#[derive(Clone, Debug, Default)]
pub struct DialPlan {
    pub internal: Vec<Rule>,
    pub external: Vec<Rule>,
}

impl DialPlan {
    /// The route for a number dialled on a profile; `None` is 404.
    pub fn route(&self, profile: Profile, number: &str) -> Option<Route> {
        let rules = match profile {
            Profile::Internal => &self.internal,
            Profile::External => &self.external,
        };
        rules.iter().find_map(|rule| {
            let (groups, rest) = rule.matches(number)?;
            Some(match &rule.destination {
                Destination::Endpoint(t) => Route::Endpoint { id: t.expand(&groups, rest), ring_timeout: rule.ring_timeout },
                Destination::Trunk { trunk, number } => Route::Trunk {
                    trunk: trunk.clone(),
                    number: number.expand(&groups, rest),
                    ring_timeout: rule.ring_timeout,
                },
                Destination::Echo => Route::Echo,
                Destination::Queue(target) => Route::Queue(target.clone()),
                Destination::Ivr(name) => Route::Ivr { name: name.clone() },
                Destination::Hangup { status } => Route::Hangup { status: *status },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: Duration = Duration::from_secs(30);

    fn plan() -> DialPlan {
        let t = |s: &str| Template::parse(s).unwrap();
        DialPlan {
            internal: vec![
                Rule::new(NumberMatch::Exact("6000".into()), Destination::Echo, RING).unwrap(),
                Rule::new(NumberMatch::Exact("666".into()), Destination::Hangup { status: 486 }, RING).unwrap(),
                Rule::new(NumberMatch::pattern("(10(?:0[1-9]|10))").unwrap(), Destination::Endpoint(t("$1")), RING).unwrap(),
                Rule::new(
                    NumberMatch::Prefix("9".into()),
                    Destination::Trunk { trunk: "carrier".into(), number: t("+1${rest}") },
                    Duration::from_secs(60),
                )
                .unwrap(),
            ],
            external: vec![
                Rule::new(NumberMatch::pattern(r"\+1555123(\d{4})").unwrap(), Destination::Endpoint(t("1$1")), RING).unwrap(),
            ],
        }
    }

    #[test]
    fn first_matching_rule_wins_and_templates_expand() {
        let p = plan();
        assert_eq!(p.route(Profile::Internal, "6000"), Some(Route::Echo));
        assert_eq!(p.route(Profile::Internal, "666"), Some(Route::Hangup { status: 486 }));
        assert_eq!(p.route(Profile::Internal, "1007"), Some(Route::Endpoint { id: "1007".into(), ring_timeout: RING }));
        assert_eq!(p.route(Profile::Internal, "1011"), None, "patterns match the whole number");
        assert_eq!(p.route(Profile::Internal, "10070"), None);
        assert_eq!(
            p.route(Profile::Internal, "95551230001"),
            Some(Route::Trunk { trunk: "carrier".into(), number: "+15551230001".into(), ring_timeout: Duration::from_secs(60) })
        );
        // Profiles have their own rules.
        assert_eq!(p.route(Profile::External, "6000"), None);
        assert_eq!(p.route(Profile::External, "+15551230001"), Some(Route::Endpoint { id: "10001".into(), ring_timeout: RING }));
    }

    #[test]
    fn templates_are_checked_against_the_match() {
        let t = |s: &str| Template::parse(s).unwrap();
        assert!(Rule::new(NumberMatch::Exact("1".into()), Destination::Endpoint(t("$1")), RING).unwrap_err().contains("$1 is used"));
        assert!(Rule::new(NumberMatch::Exact("1".into()), Destination::Endpoint(t("${rest}")), RING).is_err());
        assert!(Rule::new(NumberMatch::Exact("1".into()), Destination::Hangup { status: 200 }, RING).is_err());
        assert!(Template::parse("${other}").unwrap_err().contains("unknown placeholder"));
        assert!(Template::parse("a$").is_err());
        assert_eq!(Template::parse("$$5").unwrap().literal(), Some("$5".into()));
        assert_eq!(Template::parse("1001").unwrap().literal(), Some("1001".into()));
        assert_eq!(Template::parse("$1").unwrap().literal(), None);
        assert!(NumberMatch::pattern("(").is_err());
    }
}
