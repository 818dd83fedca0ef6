//! `switch`: the SIP core service (request dispatch, profiles and ACLs, the
//! registrar and authentication glue) and, as calls arrive, the B2BUA.

pub mod cdr;
pub mod core;
pub mod dialplan;
pub mod media;
pub mod prompts;
pub mod queue_log;
pub mod records;
pub mod sdp;
pub mod settings;
pub mod stats;
pub mod trunk_registration;

pub use crate::core::SipCore;
pub use settings::{
    CoreSettings, Credentials, EndpointSettings, Gateway, ListenerInfo, Profile, TrunkRegister, TrunkSettings,
};
