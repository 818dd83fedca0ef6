//! The tokio side: sockets, one task per call, and the handles the B2BUA holds.
//! All decisions are [`MediaSession`]'s; this file moves datagrams and time.
//!
//! Per call, one task waits on the readiness of every socket of both legs, a
//! command channel and one timer. Datagrams are read into one buffer owned by
//! the task and rewritten and sent in place: nothing is allocated per packet.
//! A packet that cannot be sent at once (socket buffer full) is dropped and
//! counted, as RTP tolerates loss better than delay.
//!
//! The task also plays prompts ([`CallMedia::play`]): on a second timer it
//! builds one 20 ms G.711 frame per playing leg in the same buffer and sends it
//! through [`MediaSession::inject`], which keeps the leg's stream continuous.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::MediaError;
use crate::ports::PortAllocator;
use crate::prompt::Prompt;
use crate::rtp::{RTP_HEADER_LEN, write_packet};
use crate::session::{
    Channel, Codec, Forward, Leg, LegParams, LegSetup, LegStats, MAX_PACKET_LEN, MediaEvent, MediaSession, Mode,
    PayloadMap, SessionConfig,
};

/// Datagrams read from one socket before the task looks at its other sockets.
const MAX_BATCH: usize = 64;
/// Commands waiting for a call's task; senders wait when it is full.
const COMMAND_QUEUE: usize = 8;
/// Events waiting for the owner; more are dropped with a warning (there is one
/// inactivity event per leg per silence, so this only fills if nobody reads).
const EVENT_QUEUE: usize = 16;
/// A prompt frame: 20 ms, 160 samples of 8 kHz G.711, one byte each.
const FRAME_MICROS: u64 = 20_000;
const FRAME_SAMPLES: usize = 160;
/// A task woken later than this many frames skips the older ones rather than
/// sending them all at once: a jitter buffer absorbs a short burst, but after
/// a longer stall a gap is better than audio that arrives too late to play.
const MAX_CATCH_UP_FRAMES: u64 = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Where media sockets are bound (`0.0.0.0` for all interfaces).
    pub bind_ip: IpAddr,
    /// The address put in SDP: what phones send media to.
    pub advertise_ip: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    /// See [`SessionConfig`].
    pub rtp_timeout: Duration,
    pub start_grace: Duration,
    pub relatch_after: Option<Duration>,
    pub one_way_after: Option<Duration>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        let session = SessionConfig::default();
        RelayConfig {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            advertise_ip: IpAddr::from([127, 0, 0, 1]),
            port_min: 20000,
            port_max: 29999,
            rtp_timeout: session.rtp_timeout,
            start_grace: session.start_grace,
            relatch_after: session.relatch_after,
            one_way_after: session.one_way_after,
        }
    }
}

impl RelayConfig {
    fn session_config(&self) -> SessionConfig {
        SessionConfig {
            rtp_timeout: self.rtp_timeout,
            start_grace: self.start_grace,
            relatch_after: self.relatch_after,
            one_way_after: self.one_way_after,
        }
    }
}

/// Ports in use, for metrics: `legs_in_use` never exceeds `max_legs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortUsage {
    pub legs_in_use: usize,
    pub ports_in_use: usize,
    pub max_legs: usize,
}

/// The relay: a port range and the calls using it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MediaRelay {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: RelayConfig,
    ports: Mutex<PortAllocator>,
}

impl Shared {
    /// Never held across an `.await`; a panic elsewhere does not lock the relay out.
    fn ports(&self) -> MutexGuard<'_, PortAllocator> {
        self.ports.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MediaRelay {
    pub fn new(config: RelayConfig) -> Result<Self, MediaError> {
        if config.advertise_ip.is_unspecified() {
            return Err(MediaError::InvalidConfig(format!(
                "advertise_ip {} cannot go in SDP: set the address phones should send media to",
                config.advertise_ip
            )));
        }
        if config.bind_ip.is_ipv4() && config.advertise_ip.is_ipv6() {
            return Err(MediaError::InvalidConfig(format!(
                "advertise_ip {} is IPv6 but bind_ip {} is IPv4",
                config.advertise_ip, config.bind_ip
            )));
        }
        if config.rtp_timeout.is_zero() {
            return Err(MediaError::InvalidConfig("rtp_timeout must be more than zero".into()));
        }
        let mut ports = PortAllocator::new(config.port_min, config.port_max)?;
        // A restarted switch does not hand out the ports of its last run first.
        ports.start_at(rand::random::<u32>() as usize);
        Ok(MediaRelay { shared: Arc::new(Shared { config, ports: Mutex::new(ports) }) })
    }

    pub fn config(&self) -> &RelayConfig {
        &self.shared.config
    }

    pub fn port_usage(&self) -> PortUsage {
        let ports = self.shared.ports();
        PortUsage { legs_in_use: ports.legs_in_use(), ports_in_use: ports.ports_in_use(), max_legs: ports.capacity() }
    }

    /// Binds an RTP port (and the RTCP port above it without rtcp-mux) from the
    /// range; ports another process holds are skipped. Call it from inside a tokio
    /// runtime: the sockets are registered with it and the call's task runs there.
    /// Dropping the handle unused gives the ports back.
    pub fn allocate_leg(&self, rtcp_mux: bool) -> Result<LegHandle, MediaError> {
        let runtime = Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        let bind_ip = self.shared.config.bind_ip;
        let (pair, (rtp, rtcp)) = self.shared.ports().allocate(rtcp_mux, |pair| {
            let rtp = bind_udp(bind_ip, pair.rtp)?;
            let rtcp = pair.rtcp.map(|port| bind_udp(bind_ip, port)).transpose()?;
            Ok((rtp, rtcp))
        })?;
        let advertise_ip = self.shared.config.advertise_ip;
        Ok(LegHandle {
            rtp,
            rtcp,
            local_rtp: SocketAddr::new(advertise_ip, pair.rtp),
            local_rtcp: pair.rtcp.map(|port| SocketAddr::new(advertise_ip, port)),
            runtime,
            lease: PortLease { shared: Arc::clone(&self.shared), rtp_port: pair.rtp },
        })
    }

    /// Starts relaying between two legs (A is usually the caller).
    pub fn bridge(&self, a: LegHandle, b: LegHandle, params: BridgeParams) -> CallMedia {
        let session = MediaSession::bridge(
            self.shared.config.session_config(),
            a.setup(params.a),
            b.setup(params.b),
            Instant::now(),
        );
        start_call(session, a, Some(b))
    }

    /// Sends leg A's media back to it: the echo test line.
    pub fn echo(&self, a: LegHandle, params: LegParams) -> CallMedia {
        let session = MediaSession::echo(self.shared.config.session_config(), a.setup(params), Instant::now());
        start_call(session, a, None)
    }
}

/// What signalling knows of both legs when the call is bridged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeParams {
    pub a: LegParams,
    pub b: LegParams,
}

fn bind_udp(ip: IpAddr, port: u16) -> io::Result<UdpSocket> {
    let addr = SocketAddr::new(ip, port);
    let socket = StdUdpSocket::bind(addr).map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Gives a leg's ports back to the range when dropped.
#[derive(Debug)]
struct PortLease {
    shared: Arc<Shared>,
    rtp_port: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.shared.ports().release(self.rtp_port);
    }
}

/// Bound sockets of one leg, before the call starts.
#[derive(Debug)]
pub struct LegHandle {
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
    local_rtp: SocketAddr,
    local_rtcp: Option<SocketAddr>,
    runtime: Handle,
    // Declared after the sockets: they close before the ports return to the pool.
    lease: PortLease,
}

impl LegHandle {
    /// The address and port to put in this leg's SDP (`c=` and `m=`).
    pub fn local_rtp(&self) -> SocketAddr {
        self.local_rtp
    }

    /// For `a=rtcp`; `None` with rtcp-mux.
    pub fn local_rtcp(&self) -> Option<SocketAddr> {
        self.local_rtcp
    }

    pub fn rtcp_mux(&self) -> bool {
        self.rtcp.is_none()
    }

    fn setup(&self, params: LegParams) -> LegSetup {
        LegSetup { rtcp_mux: self.rtcp_mux(), params }
    }
}

/// Final or current counters of a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallStats {
    pub a: LegStats,
    /// `None` for an echo call.
    pub b: Option<LegStats>,
}

fn call_stats(session: &MediaSession) -> CallStats {
    CallStats { a: session.stats(Leg::A).unwrap_or_default(), b: session.stats(Leg::B) }
}

enum Command {
    UpdateLeg { leg: Leg, params: LegParams, reply: oneshot::Sender<Result<(), MediaError>> },
    SetMode { mode: Mode, reply: oneshot::Sender<Result<(), MediaError>> },
    Play { leg: Leg, prompt: Option<Arc<Prompt>>, reply: oneshot::Sender<Result<(), MediaError>> },
    Stats { reply: oneshot::Sender<CallStats> },
    Stop,
}

/// The owner's handle on a relayed call. Dropping it stops the call and gives
/// its ports back (shortly after, from the task); [`CallMedia::stop`] does the
/// same and returns once the ports are back.
#[derive(Debug)]
pub struct CallMedia {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<MediaEvent>,
    task: JoinHandle<CallStats>,
    local: [Option<(SocketAddr, Option<SocketAddr>)>; 2],
}

impl CallMedia {
    /// The relay's address for `leg` (what its SDP says); `None` if there is no such leg.
    pub fn local_rtp(&self, leg: Leg) -> Option<SocketAddr> {
        self.local[leg_index(leg)].map(|(rtp, _)| rtp)
    }

    pub fn local_rtcp(&self, leg: Leg) -> Option<SocketAddr> {
        self.local[leg_index(leg)].and_then(|(_, rtcp)| rtcp)
    }

    /// A re-INVITE on `leg`: new remote address hint and payload types.
    pub async fn update_leg(&self, leg: Leg, params: LegParams) -> Result<(), MediaError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::UpdateLeg { leg, params, reply }).await?;
        answer.await.map_err(|_| MediaError::Stopped)?
    }

    pub async fn set_mode(&self, mode: Mode) -> Result<(), MediaError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SetMode { mode, reply }).await?;
        answer.await.map_err(|_| MediaError::Stopped)?
    }

    /// Plays `prompt` to `leg` in a loop, from its start, or stops playing with
    /// `None`. A new prompt replaces the one playing. The leg gets one 20 ms
    /// frame every 20 ms, in PCMU if it negotiated PCMU, else in PCMA, as the
    /// continuation of the stream it receives (see [`MediaSession::inject`]).
    ///
    /// While it plays, the leg hears only the prompt, in any mode: relayed
    /// audio for it is dropped (the leg is still heard by the other). Nothing
    /// stops it but the owner: leaving hold with [`CallMedia::set_mode`] does
    /// not, so the owner calls `play(held, None)` when it resumes the call. Each
    /// frame follows the leg's payload types of the moment (a re-INVITE may
    /// change them); while it has neither PCMU nor PCMA, no frames are sent.
    ///
    /// Errors: [`MediaError::NoSuchLeg`], [`MediaError::NoG711`] (the leg
    /// negotiated neither; what was playing goes on), [`MediaError::Stopped`].
    pub async fn play(&self, leg: Leg, prompt: Option<Arc<Prompt>>) -> Result<(), MediaError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Play { leg, prompt, reply }).await?;
        answer.await.map_err(|_| MediaError::Stopped)?
    }

    pub async fn stats(&self) -> Result<CallStats, MediaError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Stats { reply }).await?;
        answer.await.map_err(|_| MediaError::Stopped)
    }

    /// The next event (inactivity); `None` once the call's task has ended.
    /// Cancel-safe, so it can sit in the owner's `select!`.
    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        self.events.recv().await
    }

    /// Stops relaying; when this returns, the sockets are closed and the ports
    /// are back in the pool. Returns the final counters.
    pub async fn stop(self) -> Result<CallStats, MediaError> {
        // The task may have ended already (socket error); its result is still there.
        let _ = self.commands.send(Command::Stop).await;
        self.task.await.map_err(|_| MediaError::Stopped)
    }

    async fn send(&self, command: Command) -> Result<(), MediaError> {
        self.commands.send(command).await.map_err(|_| MediaError::Stopped)
    }
}

fn leg_index(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

/// One leg's sockets inside its call's task.
struct LegSockets {
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
    // Last, as in `LegHandle`.
    _lease: PortLease,
}

impl From<LegHandle> for LegSockets {
    fn from(handle: LegHandle) -> Self {
        LegSockets { rtp: handle.rtp, rtcp: handle.rtcp, _lease: handle.lease }
    }
}

struct CallSockets {
    a: LegSockets,
    b: Option<LegSockets>,
    /// Bound to IPv6: IPv4 destinations are sent as IPv4-mapped addresses.
    ipv6: bool,
}

impl CallSockets {
    fn leg(&self, leg: Leg) -> Option<&LegSockets> {
        match leg {
            Leg::A => Some(&self.a),
            Leg::B => self.b.as_ref(),
        }
    }

    fn socket(&self, leg: Leg, channel: Channel) -> Option<&UdpSocket> {
        let sockets = self.leg(leg)?;
        match channel {
            Channel::Rtp => Some(&sockets.rtp),
            Channel::Rtcp => sockets.rtcp.as_ref(),
        }
    }
}

fn start_call(session: MediaSession, a: LegHandle, b: Option<LegHandle>) -> CallMedia {
    let (commands, command_queue) = mpsc::channel(COMMAND_QUEUE);
    let (event_queue, events) = mpsc::channel(EVENT_QUEUE);
    let local = [Some((a.local_rtp, a.local_rtcp)), b.as_ref().map(|b| (b.local_rtp, b.local_rtcp))];
    let runtime = a.runtime.clone();
    let ipv6 = a.rtp.local_addr().is_ok_and(|addr| addr.is_ipv6());
    let sockets = CallSockets { a: a.into(), b: b.map(LegSockets::from), ipv6 };
    let task = runtime.spawn(run_call(session, sockets, command_queue, event_queue));
    CallMedia { commands, events, task, local }
}

async fn run_call(
    mut session: MediaSession,
    sockets: CallSockets,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<MediaEvent>,
) -> CallStats {
    // The call's only packet buffer, one byte longer than the largest packet so
    // that an oversized datagram is seen (and dropped) rather than cut short.
    let mut buf = vec![0u8; MAX_PACKET_LEN + 1];
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    // Prompt frames have their own timer: it fires every 20 ms while one plays.
    let mut playbacks: [Option<Playback>; 2] = [None, None];
    let frame_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(frame_timer);
    loop {
        // Deadlines move later with every packet; the timer is re-armed only when
        // one moves earlier, and a timer that fires early finds nothing due.
        if let Some(deadline) = session.poll_timeout()
            && armed.is_none_or(|at| deadline < at)
        {
            timer.as_mut().reset(tokio::time::Instant::from_std(deadline));
            armed = Some(deadline);
        }
        let next_frame = playbacks.iter().flatten().map(Playback::next_frame_at).min();
        if let Some(at) = next_frame.map(tokio::time::Instant::from_std)
            && frame_timer.deadline() != at
        {
            frame_timer.as_mut().reset(at);
        }
        let (leg, channel, ready) = tokio::select! {
            command = commands.recv() => {
                match command {
                    Some(Command::Stop) | None => break,
                    Some(command) => handle_command(&mut session, &mut playbacks, command),
                }
                continue;
            }
            () = &mut timer, if armed.is_some() => {
                armed = None;
                for event in session.handle_timeout(Instant::now()) {
                    if events.try_send(event).is_err() {
                        tracing::warn!("media event dropped: the call's event queue is full or closed");
                    }
                }
                continue;
            }
            () = &mut frame_timer, if next_frame.is_some() => {
                send_due_frames(&mut session, &sockets, &mut playbacks, &mut buf, Instant::now());
                continue;
            }
            ready = readable(sockets.socket(Leg::A, Channel::Rtp)) => (Leg::A, Channel::Rtp, ready),
            ready = readable(sockets.socket(Leg::A, Channel::Rtcp)) => (Leg::A, Channel::Rtcp, ready),
            ready = readable(sockets.socket(Leg::B, Channel::Rtp)) => (Leg::B, Channel::Rtp, ready),
            ready = readable(sockets.socket(Leg::B, Channel::Rtcp)) => (Leg::B, Channel::Rtcp, ready),
        };
        if let Err(error) = ready {
            tracing::warn!(?leg, ?channel, %error, "media socket failed; the call's relay stops");
            break;
        }
        relay_ready(&mut session, &sockets, leg, channel, &mut buf);
    }
    call_stats(&session)
}

/// Waits until `socket` can be read; never, for a socket the leg does not have.
async fn readable(socket: Option<&UdpSocket>) -> io::Result<()> {
    match socket {
        Some(socket) => socket.readable().await,
        None => std::future::pending().await,
    }
}

fn handle_command(session: &mut MediaSession, playbacks: &mut [Option<Playback>; 2], command: Command) {
    let now = Instant::now();
    // A reply nobody waits for any more is not an error.
    match command {
        Command::UpdateLeg { leg, params, reply } => {
            let _ = reply.send(session.update_leg(leg, params, now));
        }
        Command::SetMode { mode, reply } => {
            let _ = reply.send(session.set_mode(mode, now));
        }
        Command::Play { leg, prompt, reply } => {
            let _ = reply.send(play(session, playbacks, leg, prompt, now));
        }
        Command::Stats { reply } => {
            let _ = reply.send(call_stats(session));
        }
        Command::Stop => {}
    }
}

/// Reads what is waiting on one socket (at most [`MAX_BATCH`] datagrams) and
/// sends each where the session says.
fn relay_ready(session: &mut MediaSession, sockets: &CallSockets, leg: Leg, channel: Channel, buf: &mut [u8]) {
    let Some(input) = sockets.socket(leg, channel) else { return };
    for _ in 0..MAX_BATCH {
        let (len, from) = match input.try_recv_from(buf) {
            Ok(received) => received,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
            Err(error) => {
                // E.g. an ICMP error reported on the socket; the next datagram is fine.
                tracing::debug!(?leg, ?channel, %error, "media receive error");
                continue;
            }
        };
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        let now = Instant::now();
        let packet = &mut buf[..len];
        let forward = match channel {
            Channel::Rtp => session.on_rtp(leg, from, packet, now),
            Channel::Rtcp => session.on_rtcp(leg, from, packet, now),
        };
        let Some(forward) = forward else { continue };
        send(session, sockets, forward, &buf[..len]);
    }
}

/// Sends a packet where the session said; one that cannot go at once is counted.
fn send(session: &mut MediaSession, sockets: &CallSockets, forward: Forward, packet: &[u8]) {
    let output = sockets.socket(forward.leg, forward.channel).or(sockets.socket(forward.leg, Channel::Rtp));
    let Some(output) = output else { return };
    let to = match forward.to {
        SocketAddr::V4(v4) if sockets.ipv6 => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        to => to,
    };
    if output.try_send_to(packet, to).is_err() {
        session.record_send_error(forward.leg);
    }
}

/// A prompt looping to one leg. Frame `n` is due at `started + n * 20 ms` and
/// carries the prompt from byte `n * 160` with timestamp `first_ts + n * 160`:
/// the schedule never drifts, however late the task wakes.
struct Playback {
    prompt: Arc<Prompt>,
    started: Instant,
    /// The next frame to send.
    frame: u64,
    /// Of this playback's own stream, which `inject` rewrites into the leg's.
    ssrc: u32,
    seq: u16,
    first_ts: u32,
}

impl Playback {
    fn new(prompt: Arc<Prompt>, now: Instant) -> Self {
        Playback { prompt, started: now, frame: 0, ssrc: rand::random(), seq: rand::random(), first_ts: rand::random() }
    }

    fn next_frame_at(&self) -> Instant {
        // Saturates after 2.7 years of one prompt, long before an Instant would overflow.
        let frame = u32::try_from(self.frame).unwrap_or(u32::MAX);
        self.started + Duration::from_micros(FRAME_MICROS) * frame
    }

    /// Frames whose time has come by `now`, counted from the first.
    fn frames_due(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started).as_micros();
        u64::try_from(elapsed / u128::from(FRAME_MICROS)).unwrap_or(u64::MAX).saturating_add(1)
    }
}

/// PCMU if the leg has it, else PCMA: what prompt frames are sent in.
fn prompt_codec(payloads: &PayloadMap) -> Option<(u8, Codec)> {
    [Codec::Pcmu, Codec::Pcma].into_iter().find_map(|codec| Some((payloads.payload_type(codec)?, codec)))
}

fn play(
    session: &mut MediaSession,
    playbacks: &mut [Option<Playback>; 2],
    leg: Leg,
    prompt: Option<Arc<Prompt>>,
    now: Instant,
) -> Result<(), MediaError> {
    let payloads = session.payloads(leg).ok_or(MediaError::NoSuchLeg { leg })?;
    let playing = prompt.is_some();
    if playing && prompt_codec(payloads).is_none() {
        return Err(MediaError::NoG711 { leg });
    }
    session.set_injecting(leg, playing)?;
    playbacks[leg_index(leg)] = prompt.map(|prompt| {
        tracing::debug!(?leg, prompt = prompt.name(), "prompt playing");
        Playback::new(prompt, now)
    });
    Ok(())
}

/// Sends every prompt frame due by `now`, building each in `buf`. Allocates nothing.
fn send_due_frames(
    session: &mut MediaSession,
    sockets: &CallSockets,
    playbacks: &mut [Option<Playback>; 2],
    buf: &mut [u8],
    now: Instant,
) {
    for leg in [Leg::A, Leg::B] {
        let Some(playback) = playbacks[leg_index(leg)].as_mut() else { continue };
        let due = playback.frames_due(now);
        if due > playback.frame + MAX_CATCH_UP_FRAMES {
            let skipped = due - MAX_CATCH_UP_FRAMES - playback.frame;
            tracing::debug!(?leg, skipped, "prompt frames skipped: the call's task woke late");
            playback.frame += skipped;
        }
        while playback.frame < due {
            send_frame(session, sockets, leg, playback, buf, now);
            playback.frame += 1;
        }
    }
}

fn send_frame(
    session: &mut MediaSession,
    sockets: &CallSockets,
    leg: Leg,
    playback: &mut Playback,
    buf: &mut [u8],
    now: Instant,
) {
    let Some((pt, codec)) = session.payloads(leg).and_then(prompt_codec) else { return };
    let len = RTP_HEADER_LEN + FRAME_SAMPLES;
    // Timestamps are modulo 2^32, so the frame number may wrap too.
    let ts = playback.first_ts.wrapping_add((playback.frame as u32).wrapping_mul(FRAME_SAMPLES as u32));
    let first = playback.frame == 0;
    if write_packet(buf, pt, first, playback.seq, ts, playback.ssrc, &[]).is_none() {
        return;
    }
    let position = playback.frame.wrapping_mul(FRAME_SAMPLES as u64);
    playback.prompt.fill_looped(codec, position, &mut buf[RTP_HEADER_LEN..len]);
    let Some(forward) = session.inject(leg, &mut buf[..len], now) else { return };
    playback.seq = playback.seq.wrapping_add(1);
    send(session, sockets, forward, &buf[..len]);
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket as PhoneSocket;

    use super::*;
    use crate::rtp::{RtpPacket, write_packet};
    use crate::session::{Codec, PayloadMap};

    /// Each test its own slice of the port range: tests run in parallel.
    fn relay(port_min: u16, port_max: u16, rtp_timeout: Duration) -> MediaRelay {
        MediaRelay::new(RelayConfig {
            port_min,
            port_max,
            rtp_timeout,
            start_grace: Duration::ZERO,
            ..RelayConfig::default()
        })
        .unwrap()
    }

    /// A phone: a blocking loopback socket that gives up after a second.
    fn phone() -> PhoneSocket {
        let socket = PhoneSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        socket
    }

    fn params(remote: Option<SocketAddr>, payloads: &[(u8, Codec)]) -> LegParams {
        LegParams { remote_rtp: remote, remote_rtcp: None, payloads: PayloadMap::new(payloads).unwrap() }
    }

    fn send_rtp(phone: &PhoneSocket, to: SocketAddr, pt: u8, seq: u16, ssrc: u32) {
        let mut buf = [0u8; 12 + 160];
        let len = write_packet(&mut buf, pt, false, seq, u32::from(seq) * 160, ssrc, &[0xd5; 160]).unwrap();
        phone.send_to(&buf[..len], to).unwrap();
    }

    /// (pt, seq, ssrc, from) of the next packet, or a panic after the read timeout.
    fn receive(phone: &PhoneSocket) -> (u8, u16, u32, SocketAddr) {
        let mut buf = [0u8; 2048];
        let (len, from) = phone.recv_from(&mut buf).expect("no packet within the read timeout");
        let packet = RtpPacket::parse(&buf[..len]).unwrap();
        (packet.payload_type(), packet.sequence(), packet.ssrc(), from)
    }

    const PCMU: Codec = Codec::Pcmu;
    const TE: Codec = Codec::TelephoneEvent { clock_rate: 8000 };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_phones_hear_each_other_with_mapped_payload_types() {
        let relay = relay(31000, 31019, Duration::from_secs(30));
        let a_leg = relay.allocate_leg(false).unwrap();
        let b_leg = relay.allocate_leg(true).unwrap();
        let (a_sdp, b_sdp) = (a_leg.local_rtp(), b_leg.local_rtp());
        assert!(a_leg.local_rtcp().is_some() && b_leg.local_rtcp().is_none());
        assert_eq!(a_sdp.port() % 2, 0);
        let (phone_a, phone_b) = (phone(), phone());
        // A advertises its real address; B advertises nothing usable: it is latched.
        let call = relay.bridge(
            a_leg,
            b_leg,
            BridgeParams {
                a: params(Some(phone_a.local_addr().unwrap()), &[(0, PCMU), (101, TE)]),
                b: params(None, &[(0, PCMU), (96, TE)]),
            },
        );
        // B speaks first (latching), then both ways, telephone-event included.
        send_rtp(&phone_b, b_sdp, 0, 1, 0xb);
        assert_eq!(receive(&phone_a), (0, 1, 0xb, a_sdp));
        for seq in 2..6 {
            send_rtp(&phone_a, a_sdp, 101, seq, 0xa);
            assert_eq!(receive(&phone_b), (96, seq, 0xa, b_sdp));
            send_rtp(&phone_b, b_sdp, 0, seq, 0xb);
            assert_eq!(receive(&phone_a), (0, seq, 0xb, a_sdp));
        }
        // RTCP from A's RTCP port reaches B on its muxed port.
        let rtcp_a =
            PhoneSocket::bind(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), phone_a.local_addr().unwrap().port() + 1));
        if let Ok(rtcp_a) = rtcp_a {
            let rr = [0x80, 201, 0, 1, 0, 0, 0, 0xa];
            rtcp_a.send_to(&rr, call.local_rtcp(Leg::A).unwrap()).unwrap();
            let mut buf = [0u8; 64];
            let (len, from) = phone_b.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..len], from), (&rr[..], b_sdp));
        }

        let stats = call.stats().await.unwrap();
        let b = stats.b.unwrap();
        assert_eq!(stats.a.rtp_packets_in, 4);
        assert_eq!(b.rtp_packets_in, 5);
        assert_eq!(b.rtp_source, Some(phone_b.local_addr().unwrap()));
        assert_eq!(stats.a.rtp_packets_out, 5);
        let stopped = call.stop().await.unwrap();
        assert_eq!(stopped.a.rtp_packets_in, 4);
        assert_eq!(relay.port_usage().legs_in_use, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn echo_returns_the_callers_packets() {
        let relay = relay(31020, 31029, Duration::from_secs(30));
        let leg = relay.allocate_leg(true).unwrap();
        let local = leg.local_rtp();
        let caller = phone();
        let call = relay.echo(leg, params(Some(caller.local_addr().unwrap()), &[(8, Codec::Pcma)]));
        for seq in 100..110 {
            send_rtp(&caller, local, 8, seq, 0x1234);
            let (pt, got_seq, ssrc, from) = receive(&caller);
            assert_eq!((pt, got_seq, from), (8, seq, local));
            assert_ne!(ssrc, 0x1234);
        }
        assert!(matches!(call.set_mode(Mode::Bridge).await, Err(MediaError::NoLegB { .. })));
        let stats = call.stop().await.unwrap();
        assert_eq!((stats.a.rtp_packets_in, stats.a.rtp_packets_out, stats.b), (10, 10, None));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silence_raises_an_inactivity_event() {
        let relay = relay(31030, 31039, Duration::from_millis(200));
        let (a_leg, b_leg) = (relay.allocate_leg(true).unwrap(), relay.allocate_leg(true).unwrap());
        let a_sdp = a_leg.local_rtp();
        let (phone_a, phone_b) = (phone(), phone());
        let started = Instant::now();
        let mut call = relay.bridge(
            a_leg,
            b_leg,
            BridgeParams {
                a: params(Some(phone_a.local_addr().unwrap()), &[(0, PCMU)]),
                b: params(Some(phone_b.local_addr().unwrap()), &[(0, PCMU)]),
            },
        );
        send_rtp(&phone_a, a_sdp, 0, 1, 1);
        receive(&phone_b);
        // B never sends, then A stops: both legs go silent.
        let mut silent = Vec::new();
        while silent.len() < 2 {
            let event = tokio::time::timeout(Duration::from_secs(2), call.next_event()).await.expect("no event in 2 s");
            let Some(MediaEvent::Inactive { leg, silent_for }) = event else { panic!("event channel closed") };
            assert!(silent_for >= Duration::from_millis(200), "{silent_for:?}");
            silent.push(leg);
        }
        silent.sort_by_key(|leg| leg_index(*leg));
        assert_eq!(silent, [Leg::A, Leg::B]);
        assert!(started.elapsed() >= Duration::from_millis(200));
        call.stop().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ports_return_to_the_pool() {
        let relay = relay(31040, 31047, Duration::from_secs(30));
        assert_eq!(relay.port_usage(), PortUsage { legs_in_use: 0, ports_in_use: 0, max_legs: 4 });
        // After stop.
        let call = relay.echo(relay.allocate_leg(false).unwrap(), LegParams::default());
        assert_eq!(relay.port_usage().ports_in_use, 2);
        call.stop().await.unwrap();
        assert_eq!(relay.port_usage().legs_in_use, 0);
        // An unused leg, dropped.
        drop(relay.allocate_leg(true).unwrap());
        assert_eq!(relay.port_usage().legs_in_use, 0);
        // A call handle dropped: the task ends on its own, soon.
        let call = relay.bridge(
            relay.allocate_leg(true).unwrap(),
            relay.allocate_leg(false).unwrap(),
            BridgeParams::default(),
        );
        assert_eq!(relay.port_usage().ports_in_use, 3);
        drop(call);
        for _ in 0..200 {
            if relay.port_usage().legs_in_use == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(relay.port_usage().legs_in_use, 0);
        // The ports are bindable again.
        let legs: Vec<LegHandle> = (0..4).map(|_| relay.allocate_leg(false).unwrap()).collect();
        assert_eq!(legs.len(), 4);
    }

    #[tokio::test]
    async fn exhaustion_names_the_range_and_taken_ports_are_skipped() {
        // Another process (here: a plain socket) holds the first RTP port.
        let squatter = PhoneSocket::bind("127.0.0.1:31050").unwrap();
        let relay = relay(31050, 31053, Duration::from_secs(30));
        let leg = relay.allocate_leg(true).unwrap();
        assert_eq!(leg.local_rtp().port(), 31052);
        let error = relay.allocate_leg(true).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("media port range 31050-31053"), "{text}");
        drop(leg);
        drop(squatter);
        assert!(relay.allocate_leg(false).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hold_and_reinvite_through_the_handle() {
        let relay = relay(31060, 31069, Duration::from_secs(30));
        let (a_leg, b_leg) = (relay.allocate_leg(true).unwrap(), relay.allocate_leg(true).unwrap());
        let (a_sdp, b_sdp) = (a_leg.local_rtp(), b_leg.local_rtp());
        let (phone_a, phone_b) = (phone(), phone());
        let call = relay.bridge(
            a_leg,
            b_leg,
            BridgeParams {
                a: params(Some(phone_a.local_addr().unwrap()), &[(0, PCMU)]),
                b: params(Some(phone_b.local_addr().unwrap()), &[(0, PCMU)]),
            },
        );
        send_rtp(&phone_a, a_sdp, 0, 1, 0xa);
        assert_eq!(receive(&phone_b).1, 1);
        call.set_mode(Mode::Hold { held: Leg::B }).await.unwrap();
        send_rtp(&phone_a, a_sdp, 0, 2, 0xa);
        for _ in 0..200 {
            if call.stats().await.unwrap().a.dropped_by_mode == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        call.set_mode(Mode::Bridge).await.unwrap();
        // A re-INVITE: A's phone renumbers PCMU and restarts its stream.
        call.update_leg(Leg::A, params(Some(phone_a.local_addr().unwrap()), &[(0, PCMU), (101, TE)])).await.unwrap();
        send_rtp(&phone_a, a_sdp, 0, 5000, 0xaaa);
        assert_eq!(receive(&phone_b), (0, 2, 0xa, b_sdp), "the held packet never came; B's stream goes on");
        let stats = call.stop().await.unwrap();
        assert_eq!(stats.a.dropped_by_mode, 1);
        assert!(matches!(call_error_after_stop(&relay).await, MediaError::Stopped));
    }

    async fn call_error_after_stop(relay: &MediaRelay) -> MediaError {
        let call = relay.echo(relay.allocate_leg(true).unwrap(), LegParams::default());
        call.commands.send(Command::Stop).await.unwrap();
        // Wait until the task is gone, then talk to it.
        for _ in 0..200 {
            if call.task.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        call.stats().await.unwrap_err()
    }

    /// Receives on a non-blocking phone socket, letting the relay task run in
    /// between (everything is on this thread); gives up after a bounded wait.
    async fn receive_here(phone: &PhoneSocket, buf: &mut [u8]) -> usize {
        for _ in 0..10_000 {
            match phone.recv(buf) {
                Ok(len) => return len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => tokio::task::yield_now().await,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no packet came through the relay");
    }

    /// The whole packet path, driver included, allocates nothing: the relay task
    /// runs on this thread, whose allocations the test allocator counts.
    #[tokio::test(flavor = "current_thread")]
    async fn relaying_allocates_nothing() {
        let relay = relay(31080, 31089, Duration::from_secs(30));
        let (a_leg, b_leg) = (relay.allocate_leg(true).unwrap(), relay.allocate_leg(false).unwrap());
        let (a_sdp, b_sdp) = (a_leg.local_rtp(), b_leg.local_rtp());
        let (phone_a, phone_b) = (phone(), phone());
        phone_a.set_nonblocking(true).unwrap();
        phone_b.set_nonblocking(true).unwrap();
        let call = relay.bridge(
            a_leg,
            b_leg,
            BridgeParams {
                a: params(Some(phone_a.local_addr().unwrap()), &[(0, PCMU)]),
                b: params(Some(phone_b.local_addr().unwrap()), &[(8, Codec::Pcma), (0, PCMU)]),
            },
        );
        let mut packet = [0u8; 172];
        let mut received = [0u8; 2048];
        // Warm up: the task starts, both sources latch.
        for (seq, phone, to) in [(0, &phone_a, a_sdp), (0, &phone_b, b_sdp)] {
            let len = write_packet(&mut packet, 0, false, seq, 0, 7, &[0xd5; 160]).unwrap();
            phone.send_to(&packet[..len], to).unwrap();
            let other = if std::ptr::eq(phone, &phone_a) { &phone_b } else { &phone_a };
            receive_here(other, &mut received).await;
        }
        let before = crate::test_alloc::allocations_on_this_thread();
        for seq in 1..500u16 {
            let len = write_packet(&mut packet, 0, false, seq, u32::from(seq) * 160, 7, &[0xd5; 160]).unwrap();
            phone_a.send_to(&packet[..len], a_sdp).unwrap();
            assert_eq!(receive_here(&phone_b, &mut received).await, len);
            phone_b.send_to(&packet[..len], b_sdp).unwrap();
            assert_eq!(receive_here(&phone_a, &mut received).await, len);
        }
        assert_eq!(crate::test_alloc::allocations_on_this_thread() - before, 0);
        call.stop().await.unwrap();
    }

    #[test]
    fn bad_configs_are_named() {
        let text = |config: RelayConfig| MediaRelay::new(config).unwrap_err().to_string();
        assert!(
            text(RelayConfig { advertise_ip: IpAddr::from([0, 0, 0, 0]), ..RelayConfig::default() })
                .contains("advertise_ip 0.0.0.0")
        );
        assert!(
            text(RelayConfig { port_min: 30000, port_max: 20000, ..RelayConfig::default() })
                .starts_with("invalid media port range 30000-20000")
        );
        assert!(text(RelayConfig { rtp_timeout: Duration::ZERO, ..RelayConfig::default() }).contains("rtp_timeout"));
    }

    #[test]
    fn allocating_outside_a_runtime_is_an_error() {
        let relay = relay(31070, 31073, Duration::from_secs(30));
        assert!(matches!(relay.allocate_leg(true), Err(MediaError::NoRuntime)));
        assert_eq!(relay.port_usage().legs_in_use, 0);
    }

    /// 1000 samples: frames (160) do not divide it, so the loop wraps inside a frame.
    fn test_prompt() -> Arc<Prompt> {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 % 2000 - 1000) * 16).collect();
        Arc::new(Prompt::from_samples("test prompt", &samples).unwrap())
    }

    /// The 160 bytes of frame `n`, taken from the prompt repeated end to end.
    fn expected_frame(prompt: &Prompt, codec: Codec, n: usize) -> Vec<u8> {
        prompt.encoded(codec).unwrap().iter().copied().cycle().skip(n * 160).take(160).collect()
    }

    /// A phone that does not block the runtime while it waits.
    async fn async_phone() -> tokio::net::UdpSocket {
        tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    #[derive(Debug)]
    struct Heard {
        pt: u8,
        marker: bool,
        seq: u16,
        ts: u32,
        ssrc: u32,
        payload: Vec<u8>,
        at: Instant,
    }

    fn heard(buf: &[u8]) -> Heard {
        let packet = RtpPacket::parse(buf).unwrap();
        Heard {
            pt: packet.payload_type(),
            marker: packet.marker(),
            seq: packet.sequence(),
            ts: packet.timestamp(),
            ssrc: packet.ssrc(),
            payload: packet.payload().to_vec(),
            at: Instant::now(),
        }
    }

    /// The next packet, or `None` after `wait`.
    async fn listen(phone: &tokio::net::UdpSocket, wait: Duration) -> Option<Heard> {
        let mut buf = [0u8; 2048];
        let len = tokio::time::timeout(wait, phone.recv(&mut buf)).await.ok()?.unwrap();
        Some(heard(&buf[..len]))
    }

    /// Checks that `next` continues the prompt's stream after `last`.
    fn assert_next_frame(last: &Heard, next: &Heard) {
        assert_eq!(next.seq, last.seq.wrapping_add(1), "{next:?}");
        assert_eq!(next.ts, last.ts.wrapping_add(160), "{next:?}");
        assert_eq!((next.ssrc, next.pt, next.marker), (last.ssrc, last.pt, false));
    }

    /// Music on hold: B is held, hears the prompt looped at 50 packets a second
    /// in its preferred codec, continuing its stream, until the owner stops it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_prompt_loops_to_the_held_leg_every_20_ms_until_stopped() {
        let relay = relay(31100, 31109, Duration::from_secs(30));
        let (a_leg, b_leg) = (relay.allocate_leg(true).unwrap(), relay.allocate_leg(true).unwrap());
        let a_sdp = a_leg.local_rtp();
        let (phone_a, phone_b) = (async_phone().await, async_phone().await);
        let call = relay.bridge(
            a_leg,
            b_leg,
            BridgeParams {
                a: params(Some(phone_a.local_addr().unwrap()), &[(0, PCMU)]),
                // PCMA listed first; PCMU is still what prompts are sent in.
                b: params(Some(phone_b.local_addr().unwrap()), &[(8, Codec::Pcma), (0, PCMU), (101, TE)]),
            },
        );
        let mut packet = [0u8; 172];
        let len = write_packet(&mut packet, 0, false, 7, 7 * 160, 0xa, &[0xff; 160]).unwrap();
        phone_a.send_to(&packet[..len], a_sdp).await.unwrap();
        let before = listen(&phone_b, Duration::from_secs(1)).await.expect("A's packet never reached B");
        assert_eq!((before.seq, before.ssrc), (7, 0xa));

        call.set_mode(Mode::Hold { held: Leg::B }).await.unwrap();
        let prompt = test_prompt();
        call.play(Leg::B, Some(Arc::clone(&prompt))).await.unwrap();
        let first = listen(&phone_b, Duration::from_secs(1)).await.expect("no prompt within a second");
        // The stream B hears goes on: same SSRC, next sequence number.
        assert_eq!((first.pt, first.seq, first.ssrc, first.marker), (0, 8, 0xa, true));
        assert_eq!(first.payload, expected_frame(&prompt, PCMU, 0));
        let window_end = first.at + Duration::from_secs(1);
        let mut in_window = 1;
        let mut last = first;
        let mut frame = 1;
        while let Some(next) = listen(&phone_b, window_end.saturating_duration_since(Instant::now())).await {
            assert_next_frame(&last, &next);
            assert_eq!(next.payload, expected_frame(&prompt, PCMU, frame), "frame {frame}");
            (last, frame, in_window) = (next, frame + 1, in_window + 1);
        }
        assert!((40..=60).contains(&in_window), "{in_window} packets in one second, not about 50");

        call.play(Leg::B, None).await.unwrap();
        let sent = call.stats().await.unwrap().b.unwrap().rtp_packets_out;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(call.stats().await.unwrap().b.unwrap().rtp_packets_out, sent, "frames sent after the stop");
        // A's packet, then every frame sent before the stop, and nothing more.
        while 1 + frame < sent as usize {
            let next = listen(&phone_b, Duration::from_secs(1)).await.expect("a frame sent never came");
            assert_next_frame(&last, &next);
            assert_eq!(next.payload, expected_frame(&prompt, PCMU, frame), "frame {frame}");
            (last, frame) = (next, frame + 1);
        }
        assert!(listen(&phone_b, Duration::from_millis(100)).await.is_none(), "more than was sent");

        // Off hold, A is heard again, still on the same stream.
        call.set_mode(Mode::Bridge).await.unwrap();
        let len = write_packet(&mut packet, 0, false, 8, 8 * 160, 0xa, &[0xff; 160]).unwrap();
        phone_a.send_to(&packet[..len], a_sdp).await.unwrap();
        let after = listen(&phone_b, Duration::from_secs(1)).await.expect("A's packet never reached B");
        assert_eq!((after.seq, after.ssrc, after.marker), (last.seq.wrapping_add(1), 0xa, true));
        let stats = call.stop().await.unwrap().b.unwrap();
        assert_eq!((stats.rtp_packets_out, stats.send_errors), (sent + 1, 0));
    }

    /// A prompt to an echo line in A-law, the leg's only G.711; what the caller
    /// says meanwhile is not echoed over it. Legs that cannot play are refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_prompt_replaces_the_echo_in_pcma_and_impossible_plays_are_refused() {
        let relay = relay(31110, 31119, Duration::from_secs(30));
        let leg = relay.allocate_leg(true).unwrap();
        let local = leg.local_rtp();
        let caller = async_phone().await;
        let call = relay.echo(leg, params(Some(caller.local_addr().unwrap()), &[(8, Codec::Pcma), (101, TE)]));
        let prompt = test_prompt();
        call.play(Leg::A, Some(Arc::clone(&prompt))).await.unwrap();
        let mut packet = [0u8; 172];
        let mut last: Option<Heard> = None;
        for frame in 0..15 {
            if frame % 5 == 0 {
                // The caller talks; its echo would be A-law silence (0xd5).
                let len = write_packet(&mut packet, 8, false, frame, 0, 0xc, &[0xd5; 160]).unwrap();
                caller.send_to(&packet[..len], local).await.unwrap();
            }
            let next = listen(&caller, Duration::from_secs(1)).await.expect("no prompt frame within a second");
            assert_eq!(next.pt, 8);
            assert_eq!(next.payload, expected_frame(&prompt, Codec::Pcma, usize::from(frame)), "frame {frame}");
            match &last {
                Some(last) => assert_next_frame(last, &next),
                None => assert!(next.marker),
            }
            last = Some(next);
        }
        assert!(matches!(call.play(Leg::B, Some(Arc::clone(&prompt))).await, Err(MediaError::NoSuchLeg { .. })));
        call.play(Leg::A, None).await.unwrap();
        assert_eq!(call.stats().await.unwrap().a.dropped_by_mode, 3);

        let g729_only = relay.echo(relay.allocate_leg(true).unwrap(), params(None, &[(18, Codec::G729)]));
        let error = g729_only.play(Leg::A, Some(prompt)).await.unwrap_err();
        assert!(matches!(error, MediaError::NoG711 { leg: Leg::A }));
        assert_eq!(error.to_string(), "leg A negotiated neither PCMU nor PCMA: a prompt cannot be played to it");
        g729_only.stop().await.unwrap();
        call.stop().await.unwrap();
    }

    /// Playing allocates nothing per frame, in the driver or in the session: the
    /// call's task runs on this thread, whose allocations the test allocator counts.
    #[tokio::test(flavor = "current_thread")]
    async fn playing_allocates_nothing() {
        let relay = relay(31120, 31129, Duration::from_secs(30));
        let leg = relay.allocate_leg(true).unwrap();
        let caller = async_phone().await;
        let call = relay.echo(leg, params(Some(caller.local_addr().unwrap()), &[(0, PCMU)]));
        call.play(Leg::A, Some(test_prompt())).await.unwrap();
        let mut buf = [0u8; 2048];
        let mut receive = async || {
            tokio::time::timeout(Duration::from_secs(1), caller.recv(&mut buf)).await.expect("no frame").unwrap()
        };
        // Warm up: the first frames, the timer armed.
        for _ in 0..3 {
            receive().await;
        }
        let before = crate::test_alloc::allocations_on_this_thread();
        for _ in 0..25 {
            assert_eq!(receive().await, 172);
        }
        assert_eq!(crate::test_alloc::allocations_on_this_thread() - before, 0);
        call.stop().await.unwrap();
    }
}
