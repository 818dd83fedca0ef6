//! `dialog-layer`: RFC 3261 transactions (§17) as sans-IO state machines with an
//! explicit clock, dialogs (§12), digest authentication (RFC 8760), the registrar
//! (§10) and the location service, and the guard that slows down password guessing.

pub mod auth;
pub mod dialog;
pub mod guard;
pub mod registrar;
pub mod registration;
pub mod session_timer;
pub mod transaction;
