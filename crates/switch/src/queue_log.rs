//! The queue log: one JSON line per queue event, like Asterisk's queue_log
//! (enter, offer, no-answer, connect, complete, abandon, exit, pause, login...).

use std::time::{Duration, Instant, SystemTime};

use acd_engine::{EndedBy, EventKind, ExitReason, QueueEvent};
use serde::Serialize;

/// Where queue events go (a JSON-lines file, see [`crate::records`]).
pub type QueueLogSink = crate::records::RecordSink<QueueLogLine>;

/// One event, as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueLogLine {
    #[serde(serialize_with = "crate::cdr::rfc3339")]
    pub time: SystemTime,
    /// `enter`, `offer`, `no-answer`, `reject`, `busy`, `failed`, `offer-withdrawn`,
    /// `connect`, `complete`, `abandon`, `exit-key`, `exit`, `pause`, `unpause`,
    /// `login`, `logout`, `router-fallback`.
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The caller's Call-ID, as in the CDR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// Seconds the caller had waited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_s: Option<f64>,
    /// Seconds the agent's phone rang.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub talk_s: Option<f64>,
    /// `agent` or `caller` (complete); the exit reason; the pause reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl QueueLogLine {
    /// The engine's event, at wall-clock time (its `at` is read against `now`).
    pub fn new(event: &QueueEvent, call_id: Option<String>, now: Instant) -> QueueLogLine {
        let time = SystemTime::now() - now.saturating_duration_since(event.at);
        let mut line = QueueLogLine {
            time,
            event: "",
            queue: event.queue.clone(),
            call_id,
            agent: event.agent.clone(),
            position: None,
            wait_s: None,
            ring_s: None,
            talk_s: None,
            reason: None,
        };
        let s = |d: &Duration| Some((d.as_millis() as f64) / 1000.0);
        line.event = match &event.kind {
            EventKind::Enter { position, .. } => {
                line.position = Some(*position);
                "enter"
            }
            EventKind::Offer { waited, .. } => {
                line.wait_s = s(waited);
                "offer"
            }
            EventKind::NoAnswer { rang } => {
                line.ring_s = s(rang);
                "no-answer"
            }
            EventKind::Reject { rang } => {
                line.ring_s = s(rang);
                "reject"
            }
            EventKind::Busy => "busy",
            EventKind::Failed => "failed",
            EventKind::OfferWithdrawn => "offer-withdrawn",
            EventKind::Connect { waited, rang } => {
                (line.wait_s, line.ring_s) = (s(waited), s(rang));
                "connect"
            }
            EventKind::Complete { by, waited, talk } => {
                (line.wait_s, line.talk_s) = (s(waited), s(talk));
                line.reason = Some(match by {
                    EndedBy::Agent => "agent".into(),
                    EndedBy::Caller => "caller".into(),
                });
                "complete"
            }
            EventKind::Abandon { position, waited } => {
                (line.position, line.wait_s) = (Some(*position), s(waited));
                "abandon"
            }
            EventKind::ExitKey { position, waited } => {
                (line.position, line.wait_s) = (Some(*position), s(waited));
                "exit-key"
            }
            EventKind::Exit { reason, position, waited } => {
                (line.position, line.wait_s) = (Some(*position), s(waited));
                line.reason = Some(
                    match reason {
                        ExitReason::MaxWait => "max-wait",
                        ExitReason::Empty => "empty",
                        ExitReason::QueueRemoved => "queue-removed",
                    }
                    .into(),
                );
                "exit"
            }
            EventKind::Pause { reason } => {
                line.reason = Some(reason.clone());
                "pause"
            }
            EventKind::Unpause => "unpause",
            EventKind::Login => "login",
            EventKind::Logout => "logout",
            EventKind::RouterFallback => "router-fallback",
        };
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acd_engine::CallId;

    #[test]
    fn an_event_is_one_json_line_naming_what_happened() {
        let now = Instant::now();
        let event = QueueEvent {
            at: now,
            queue: Some("support".into()),
            call: Some(CallId(7)),
            agent: Some("1001".into()),
            kind: EventKind::Complete { by: EndedBy::Caller, waited: Duration::from_millis(12_500), talk: Duration::from_secs(61) },
        };
        let v = serde_json::to_value(QueueLogLine::new(&event, Some("abc@host".into()), now)).unwrap();
        assert_eq!(v["event"], "complete");
        assert_eq!(v["queue"], "support");
        assert_eq!(v["call_id"], "abc@host");
        assert_eq!(v["agent"], "1001");
        assert_eq!(v["wait_s"], 12.5);
        assert_eq!(v["talk_s"], 61.0);
        assert_eq!(v["reason"], "caller");
        assert!(v.get("position").is_none(), "absent fields are left out: {v}");
        let login = QueueEvent { at: now, queue: None, call: None, agent: Some("1002".into()), kind: EventKind::Login };
        let v = serde_json::to_value(QueueLogLine::new(&login, None, now)).unwrap();
        assert_eq!((v["event"].as_str(), v["agent"].as_str()), (Some("login"), Some("1002")));
    }
}
