//! The `echo` destination: answer, and send the caller's own media back (a
//! media test line). One leg, no B2BUA; the state the SIP core keeps per call.

use std::time::SystemTime;

use dialog_layer::dialog::{Dialog, DialogId};
use media_relay::{CallMedia, MediaEvent};
use sip_transport::Target;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::sdp::LocalSession;

/// What a call's media task reports: an event, or `None` when the media ended
/// on its own (a socket failed).
pub type MediaReport = (DialogId, Option<MediaEvent>);

pub(crate) struct EchoCall {
    pub dialog: Dialog,
    pub sdp: LocalSession,
    /// Our media address as the SDP gives it.
    pub local_rtp: std::net::SocketAddr,
    /// Dropping it (or sending) stops the media task, which releases the ports.
    pub media_stop: oneshot::Sender<()>,
    /// Where in-dialog requests to the caller go, and our Via for them.
    pub target: Target,
    pub via: String,
    pub caller: String,
    pub callee: String,
    pub start: SystemTime,
}

/// Runs the call's media until it is stopped, forwarding its events to the core.
pub(crate) fn spawn_media_task(call: DialogId, mut media: CallMedia, reports: mpsc::UnboundedSender<MediaReport>) -> oneshot::Sender<()> {
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                event = media.next_event() => {
                    let ended = event.is_none();
                    if reports.send((call.clone(), event)).is_err() || ended {
                        break;
                    }
                }
                _ = &mut stopped => break,
            }
        }
        if let Ok(stats) = media.stop().await {
            info!(
                call_id = %call.call_id,
                rtp_in = stats.a.rtp_packets_in,
                rtp_out = stats.a.rtp_packets_out,
                dropped_wrong_source = stats.a.dropped_wrong_source,
                "call media stopped"
            );
        }
    });
    stop
}
