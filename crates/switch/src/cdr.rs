//! Call detail records: one JSON line per call attempt, appended to a file
//! by [`crate::records`] (never dropped when the disk fails).

use std::time::{Duration, SystemTime};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    Answered,
    Busy,
    NoAnswer,
    /// The callee declined (603 or another global refusal).
    Rejected,
    Failed,
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HangupBy {
    Caller,
    Callee,
    /// Tandem ended it: timeout, media inactivity, failed session refresh.
    Switch,
}

/// One call attempt, as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cdr {
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    /// Where the dial plan sent it: `endpoint:1002`, `trunk:carrier`, `echo`, `hangup`.
    pub destination: String,
    #[serde(serialize_with = "rfc3339")]
    pub start: SystemTime,
    #[serde(serialize_with = "rfc3339_opt")]
    pub answer: Option<SystemTime>,
    #[serde(serialize_with = "rfc3339")]
    pub end: SystemTime,
    /// Seconds from start to end.
    pub duration_s: f64,
    /// Seconds from answer to end (0 when not answered).
    pub billable_s: f64,
    pub disposition: Disposition,
    /// The final SIP status the caller got, and its reason.
    pub status: u16,
    pub reason: String,
    pub hangup_by: HangupBy,
    /// The reference the caller typed in an IVR (account or customer number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_ref: Option<String>,
}

fn secs_between(from: SystemTime, to: SystemTime) -> f64 {
    // Rounded to milliseconds: what a billing system can use.
    (to.duration_since(from).unwrap_or(Duration::ZERO).as_millis() as f64) / 1000.0
}

impl Cdr {
    /// Fills in the durations from the times.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        call_id: String,
        caller: String,
        callee: String,
        destination: String,
        times: (SystemTime, Option<SystemTime>, SystemTime),
        disposition: Disposition,
        (status, reason): (u16, String),
        hangup_by: HangupBy,
    ) -> Cdr {
        let (start, answer, end) = times;
        Cdr {
            call_id,
            caller,
            callee,
            destination,
            start,
            answer,
            end,
            duration_s: secs_between(start, end),
            billable_s: answer.map_or(0.0, |a| secs_between(a, end)),
            disposition,
            status,
            reason,
            hangup_by,
            contact_ref: None,
        }
    }
}

pub(crate) fn format_time(t: &SystemTime) -> String {
    OffsetDateTime::from(*t).format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(t)),
        None => s.serialize_none(),
    }
}

/// Where calls send their records (a JSON-lines file, see [`crate::records`]).
pub type CdrSink = crate::records::RecordSink<Cdr>;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: SystemTime) -> Cdr {
        Cdr::new(
            "c1@127.0.0.1".into(),
            "1001".into(),
            "1002".into(),
            "endpoint:1002".into(),
            (at, Some(at + Duration::from_millis(4_500)), at + Duration::from_millis(64_250)),
            Disposition::Answered,
            (200, "OK".into()),
            HangupBy::Callee,
        )
    }

    #[test]
    fn a_record_is_one_json_line_with_durations() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_400_000);
        let v: serde_json::Value = serde_json::to_value(sample(at)).unwrap();
        assert_eq!(v["start"], "2026-11-23T02:13:20Z");
        assert_eq!(v["answer"], "2026-11-23T02:13:24.5Z");
        assert_eq!(v["duration_s"], 64.25);
        assert_eq!(v["billable_s"], 59.75);
        assert_eq!(v["disposition"], "answered");
        assert_eq!(v["hangup_by"], "callee");
        let mut missed = sample(at);
        missed.answer = None;
        missed.disposition = Disposition::NoAnswer;
        assert_eq!(serde_json::to_value(&missed).unwrap()["disposition"], "no-answer");
    }

    #[test]
    fn a_failed_write_keeps_the_records_until_it_works() {
        let dir = std::env::temp_dir().join(format!("tandem-cdr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut f = crate::records::JsonLinesFile::new(&dir.join("cdr.jsonl"));
        f.push(&sample(SystemTime::now()));
        f.push(&sample(SystemTime::now()));
        assert!(f.flush().is_err(), "the folder does not exist yet");
        assert_eq!(f.pending(), 2);
        std::fs::create_dir_all(&dir).unwrap();
        f.flush().unwrap();
        assert_eq!((f.pending(), f.written()), (0, 2));
        let text = std::fs::read_to_string(dir.join("cdr.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    }

    #[tokio::test]
    async fn the_writer_task_appends_and_ends_when_the_sinks_are_gone() {
        let dir = std::env::temp_dir().join(format!("tandem-cdr-task-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cdr.jsonl");
        let _ = std::fs::remove_file(&path);
        let (sink, task) = crate::records::spawn_writer(&path, "CDR");
        sink.send(sample(SystemTime::now()));
        sink.clone().send(sample(SystemTime::now()));
        drop(sink);
        task.await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }
}
