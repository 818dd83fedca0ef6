//! `sip-transport`: bytes <-> SIP messages.
//!
//! - [`message`]: the zero-copy parser (offsets into the received bytes), with
//!   typed accessors in [`header`]. Why our own parser: `docs/sip-parser.md`.
//! - [`writer`]: building requests and responses.
//! - [`transport`]: sources, targets and the response-routing rule.

pub mod header;
pub mod message;
pub mod transport;
pub mod writer;

pub use header::{CSeq, NameAddr, Params, Uri, Via};
pub use message::{HeaderError, HeaderName, Method, ParseError, SipMessage};
pub use transport::{FlowId, Source, Target, Transport};
pub use writer::MessageWriter;
