//! Counters of the SIP core, read by the metrics endpoint. Plain integers: the
//! core has one owner, so nothing here needs to be atomic.

use std::collections::HashMap;

use sip_transport::Method;

/// Methods counted by name; anything else counts as "other".
pub const COUNTED_METHODS: [&str; 15] = [
    "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE", "PRACK", "SUBSCRIBE", "NOTIFY",
    "REFER", "MESSAGE", "PUBLISH", "other",
];

#[derive(Clone, Debug, Default)]
pub struct CoreStats {
    /// Requests received, indexed like [`COUNTED_METHODS`].
    pub requests_in: [u64; COUNTED_METHODS.len()],
    pub responses_in: u64,
    /// Responses sent, by status code.
    pub responses_out: HashMap<u16, u64>,
    pub dropped_unparseable: u64,
    pub acl_rejected: u64,
    pub overloaded: u64,
    pub challenges: u64,
    pub auth_failures: u64,
    pub auth_bans: u64,
    pub auth_refused: u64,
    pub registrations_ok: u64,
    pub registrations_expired: u64,
    /// Answered calls that had one-way audio (one side silent while the other
    /// sent), each counted once. Calls one-way now: `SipCore::one_way_call_count`.
    pub one_way_calls: u64,
}

impl CoreStats {
    pub fn count_request(&mut self, method: &Method) {
        let name = method.as_str();
        let i = COUNTED_METHODS.iter().position(|m| *m == name).unwrap_or(COUNTED_METHODS.len() - 1);
        self.requests_in[i] += 1;
    }

    pub fn count_response(&mut self, code: u16) {
        *self.responses_out.entry(code).or_default() += 1;
    }
}
