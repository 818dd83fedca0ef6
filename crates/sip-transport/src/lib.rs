//! `sip-transport`: bytes <-> SIP messages.
//!
//! - [`message`]: the zero-copy parser (offsets into the received bytes), with
//!   typed accessors in [`header`]. Why our own parser: `docs/sip-parser.md`.
//! - [`writer`]: building requests and responses.
//! - [`transport`]: sources, targets and the response-routing rule.
//! - [`framing`]: sans-IO stream framing (RFC 3261 §18.3) and CRLF keep-alives.
//! - [`tls`]: the TLS server configuration and the self-signed default certificate.
//! - [`driver`]: the tokio listeners, connections and connection table.

pub mod driver;
pub mod framing;
pub mod header;
pub mod message;
pub mod tls;
pub mod transport;
pub mod writer;

pub use driver::{ListenerSpec, TransportConfig, TransportEvent, TransportLayer, TransportStats};
pub use framing::{Frame, FramingError, StreamFramer};
pub use header::{CSeq, NameAddr, Params, Uri, Via};
pub use message::{HeaderError, HeaderName, Method, ParseError, SipMessage};
pub use tls::TlsError;
pub use transport::{FlowId, Source, Target, Transport};
pub use writer::MessageWriter;
