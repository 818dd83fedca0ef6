//! The bridge between the sans-IO core and a call's media: one task per call
//! owns its [`CallMedia`], applies the core's commands in order and reports
//! media events back. The core never waits on media.

use std::sync::Arc;

use media_relay::{CallMedia, Leg, LegParams, MediaEvent, Mode, Prompt};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Calls are numbered by the core.
pub type CallKey = u64;

/// What a call's media task reports: an event, or `None` when the media ended
/// on its own (a socket failed).
pub type MediaReport = (CallKey, Option<MediaEvent>);

#[derive(Debug)]
pub(crate) enum MediaCommand {
    /// New remote address hint and payload types of a leg (an SDP changed).
    UpdateLeg(Leg, LegParams),
    SetMode(Mode),
    /// Loop a prompt to a leg (`None` stops it).
    Play(Leg, Option<Arc<Prompt>>),
}

/// The core's handle on a call's media. Dropping it stops the media and gives
/// the ports back.
#[derive(Debug)]
pub(crate) struct MediaControl {
    commands: mpsc::UnboundedSender<MediaCommand>,
}

impl MediaControl {
    pub fn send(&self, command: MediaCommand) {
        // The task ends only when this handle is dropped or the media failed,
        // and a failure is reported to the core, which then ends the call.
        let _ = self.commands.send(command);
    }
}

/// Runs the call's media until the control is dropped, forwarding its events.
/// `call_id` names the call in the log.
pub(crate) fn spawn_media_task(
    call: CallKey,
    call_id: String,
    mut media: CallMedia,
    reports: mpsc::UnboundedSender<MediaReport>,
) -> MediaControl {
    let (commands, mut incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                event = media.next_event() => {
                    let ended = event.is_none();
                    if reports.send((call, event)).is_err() || ended {
                        break;
                    }
                }
                command = incoming.recv() => {
                    let result = match command {
                        Some(MediaCommand::UpdateLeg(leg, params)) => media.update_leg(leg, params).await,
                        Some(MediaCommand::SetMode(mode)) => media.set_mode(mode).await,
                        Some(MediaCommand::Play(leg, prompt)) => media.play(leg, prompt).await,
                        None => break,
                    };
                    if let Err(e) = result {
                        warn!(call_id, error = %e, "media command failed");
                    }
                }
            }
        }
        match media.stop().await {
            Ok(stats) => {
                let b = stats.b.unwrap_or_default();
                info!(
                    call_id,
                    a_rtp_in = stats.a.rtp_packets_in,
                    a_rtp_out = stats.a.rtp_packets_out,
                    a_lost = stats.a.rtp_packets_lost,
                    a_jitter_us = stats.a.jitter_us,
                    b_rtp_in = b.rtp_packets_in,
                    b_rtp_out = b.rtp_packets_out,
                    b_lost = b.rtp_packets_lost,
                    b_jitter_us = b.jitter_us,
                    dropped_wrong_source = stats.a.dropped_wrong_source + b.dropped_wrong_source,
                    "call media stopped"
                );
            }
            Err(e) => debug!(call_id, error = %e, "call media had already stopped"),
        }
    });
    MediaControl { commands }
}
