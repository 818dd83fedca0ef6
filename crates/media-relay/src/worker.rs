//! Relay workers: threads that each own a share of the calls and move their
//! packets. All decisions are [`MediaSession`]'s; a worker moves datagrams and time.
//!
//! A worker waits on one level-triggered epoll set holding every socket of its
//! calls and an eventfd for its inbox (new calls, commands). For each ready
//! socket it reads one datagram into its one buffer, lets the call's session
//! rewrite it in place, and sends it: nothing is allocated per packet, nothing
//! is shared with other workers, no lock is taken. A socket with more waiting
//! is reported again by the next wait, after every other ready socket had its
//! turn, so a flooded port cannot starve the other calls. A packet that cannot
//! be sent at once (socket buffer full) is dropped and counted, as RTP tolerates
//! loss better than delay.
//!
//! Timers (a session's inactivity deadline, prompt frames) sit in one heap per
//! worker; the wait ends at the earliest. Deadlines move later with every packet,
//! so an entry is pushed only when a call's deadline moves earlier, and an entry
//! that fires early finds nothing due and re-arms.
//!
//! Prompts ([`crate::CallMedia::play`]): one 20 ms G.711 frame per playing leg is
//! built in the same buffer and sent through [`MediaSession::inject`], which keeps
//! the leg's stream continuous.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::MediaError;
use crate::driver::{CallStats, PortLease, call_stats};
use crate::stats::{LatencyHistogram, LegTotals, RelayStats};
use crate::sys::{Epoll, EventFd, Events, realtime_ns, recv_stamped};
use crate::prompt::Prompt;
use crate::rtp::{RTP_HEADER_LEN, write_packet};
use crate::session::{Channel, Codec, Forward, Leg, LegParams, MAX_PACKET_LEN, MediaEvent, MediaSession, Mode, PayloadMap};

/// Ready sockets taken from one wait.
const EVENTS_PER_WAIT: usize = 256;
/// The eventfd's token; sockets' tokens are `slot << 2 | socket index`.
const WAKE_TOKEN: u64 = u64::MAX;
/// A prompt frame: 20 ms, 160 samples of 8 kHz G.711, one byte each.
const FRAME_MICROS: u64 = 20_000;
const FRAME_SAMPLES: usize = 160;
/// A worker woken later than this many frames skips the older ones rather than
/// sending them all at once: a jitter buffer absorbs a short burst, but after
/// a longer stall a gap is better than audio that arrives too late to play.
const MAX_CATCH_UP_FRAMES: u64 = 5;

pub(crate) enum Command {
    UpdateLeg { leg: Leg, params: LegParams, reply: oneshot::Sender<Result<(), MediaError>> },
    SetMode { mode: Mode, reply: oneshot::Sender<Result<(), MediaError>> },
    Play { leg: Leg, prompt: Option<Arc<Prompt>>, reply: oneshot::Sender<Result<(), MediaError>> },
    Stats { reply: oneshot::Sender<CallStats> },
    /// Ends the call: its sockets close and its ports go back before the reply.
    Stop { reply: Option<oneshot::Sender<CallStats>> },
    /// The allocations the worker's thread has made so far (tests only).
    #[cfg(test)]
    Allocations { reply: oneshot::Sender<u64> },
}

/// What starts a call on a worker.
pub(crate) struct NewCall {
    pub session: MediaSession,
    pub sockets: CallSockets,
    pub events: mpsc::Sender<MediaEvent>,
}

enum Job {
    Start { call: u64, new: Box<NewCall> },
    Command { call: u64, command: Command },
    Stats { reply: oneshot::Sender<RelayStats> },
    Shutdown,
}

/// Another thread's way to a worker. The inbox is an unbounded queue: a sender
/// (the signalling side) never waits on the packet path.
pub(crate) struct WorkerHandle {
    inbox: std_mpsc::Sender<Job>,
    wake: Arc<EventFd>,
    /// Calls started and not yet ended, for choosing the least loaded worker.
    calls: Arc<AtomicUsize>,
}

impl WorkerHandle {
    /// Starts worker thread `index`.
    pub fn spawn(index: usize) -> io::Result<WorkerHandle> {
        let (inbox, jobs) = std_mpsc::channel();
        let wake = Arc::new(EventFd::new()?);
        let calls = Arc::new(AtomicUsize::new(0));
        let epoll = Epoll::new()?;
        epoll.add(wake.as_fd(), WAKE_TOKEN)?;
        let worker = Worker {
            epoll,
            wake: Arc::clone(&wake),
            jobs,
            load: Arc::clone(&calls),
            calls: Vec::new(),
            free: Vec::new(),
            slots: HashMap::new(),
            timers: BinaryHeap::new(),
            buf: vec![0u8; MAX_PACKET_LEN + 1].into_boxed_slice(),
            ended: LegTotals::default(),
            calls_ended: 0,
            latency: LatencyHistogram::default(),
        };
        std::thread::Builder::new().name(format!("relay-worker-{index}")).spawn(move || worker.run())?;
        Ok(WorkerHandle { inbox, wake, calls })
    }

    pub fn load(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn start(&self, call: u64, new: NewCall) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.inbox.send(Job::Start { call, new: Box::new(new) }).is_err() {
            // The worker is gone (the relay shut down): the call's sockets close here.
            self.calls.fetch_sub(1, Ordering::Relaxed);
        }
        self.wake.wake();
    }

    /// Hands a command to the call's worker. If the worker or the call is gone,
    /// the command is dropped with its reply sender, which the waiter sees as
    /// [`MediaError::Stopped`].
    pub fn command(&self, call: u64, command: Command) {
        let _ = self.inbox.send(Job::Command { call, command });
        self.wake.wake();
    }

    /// The worker's share of [`RelayStats`].
    pub fn stats(&self, reply: oneshot::Sender<RelayStats>) {
        let _ = self.inbox.send(Job::Stats { reply });
        self.wake.wake();
    }

    pub fn shutdown(&self) {
        let _ = self.inbox.send(Job::Shutdown);
        self.wake.wake();
    }
}

/// One leg's sockets inside a call.
pub(crate) struct LegSockets {
    pub rtp: UdpSocket,
    pub rtcp: Option<UdpSocket>,
    // Last: the sockets close before the ports return to the pool.
    pub _lease: PortLease,
}

pub(crate) struct CallSockets {
    pub a: LegSockets,
    pub b: Option<LegSockets>,
    /// Bound to IPv6: IPv4 destinations are sent as IPv4-mapped addresses.
    pub ipv6: bool,
}

/// Socket index `i` of a call, in token order.
fn socket_of(index: u64) -> (Leg, Channel) {
    match index {
        0 => (Leg::A, Channel::Rtp),
        1 => (Leg::A, Channel::Rtcp),
        2 => (Leg::B, Channel::Rtp),
        _ => (Leg::B, Channel::Rtcp),
    }
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

    /// Every socket with its index (see [`socket_of`]).
    fn all(&self) -> impl Iterator<Item = (u64, &UdpSocket)> {
        (0..4).filter_map(|index| {
            let (leg, channel) = socket_of(index);
            Some((index, self.socket(leg, channel)?))
        })
    }

    /// Sends a packet where the session said; one that cannot go at once is
    /// counted. Whether it went.
    fn send(&self, session: &mut MediaSession, forward: Forward, packet: &[u8]) -> bool {
        let output = self.socket(forward.leg, forward.channel).or(self.socket(forward.leg, Channel::Rtp));
        let Some(output) = output else { return false };
        let to = match forward.to {
            SocketAddr::V4(v4) if self.ipv6 => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
            to => to,
        };
        let sent = output.send_to(packet, to).is_ok();
        if !sent {
            session.record_send_error(forward.leg);
        }
        sent
    }
}

struct ActiveCall {
    id: u64,
    session: MediaSession,
    sockets: CallSockets,
    events: mpsc::Sender<MediaEvent>,
    playbacks: [Option<Playback>; 2],
    /// The earliest deadline with an entry in the worker's timer heap.
    timer_at: Option<Instant>,
}

impl ActiveCall {
    fn next_deadline(&self) -> Option<Instant> {
        let next_frame = self.playbacks.iter().flatten().map(Playback::next_frame_at).min();
        self.session.poll_timeout().into_iter().chain(next_frame).min()
    }
}

struct Worker {
    epoll: Epoll,
    wake: Arc<EventFd>,
    jobs: std_mpsc::Receiver<Job>,
    load: Arc<AtomicUsize>,
    /// Calls by slot; a socket's token names its call's slot.
    calls: Vec<Option<ActiveCall>>,
    free: Vec<usize>,
    /// Slots by call id, for commands.
    slots: HashMap<u64, usize>,
    /// (deadline, slot, call id), earliest first.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// The worker's only packet buffer, one byte longer than the largest packet
    /// so that an oversized datagram is seen (and dropped) rather than cut short.
    buf: Box<[u8]>,
    /// Counters of the calls that ended here.
    ended: LegTotals,
    calls_ended: u64,
    latency: LatencyHistogram,
}

impl Worker {
    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            let timeout = self.timers.peek().map(|Reverse((at, ..))| at.saturating_duration_since(Instant::now()));
            if let Err(error) = self.epoll.wait(&mut events, timeout) {
                tracing::error!(%error, "relay worker cannot wait for its sockets; its calls stop");
                return;
            }
            let now = Instant::now();
            for index in 0..events.len() {
                match events.token(index) {
                    WAKE_TOKEN => {
                        self.wake.drain();
                        if !self.take_jobs(now) {
                            return;
                        }
                    }
                    token => self.relay(token, now),
                }
            }
            self.fire_timers(now);
        }
    }

    /// Reads one datagram from the socket `token` names and sends it on.
    fn relay(&mut self, token: u64, now: Instant) {
        let Some(Some(call)) = self.calls.get_mut((token >> 2) as usize) else { return };
        let (leg, channel) = socket_of(token & 3);
        let Some(input) = call.sockets.socket(leg, channel) else { return };
        let datagram = match recv_stamped(input, &mut self.buf) {
            Ok(datagram) => datagram,
            // Already read (a slot reused within one wait), or an ICMP error
            // reported on the socket: the next datagram is fine.
            Err(error) => {
                if error.kind() != io::ErrorKind::WouldBlock {
                    tracing::debug!(?leg, ?channel, %error, "media receive error");
                }
                return;
            }
        };
        let from = SocketAddr::new(datagram.from.ip().to_canonical(), datagram.from.port());
        let packet = &mut self.buf[..datagram.len];
        let forward = match channel {
            Channel::Rtp => call.session.on_rtp(leg, from, packet, now),
            Channel::Rtcp => call.session.on_rtcp(leg, from, packet, now),
        };
        while let Some(digit) = call.session.take_digit() {
            if call.events.try_send(digit).is_err() {
                tracing::warn!("media event dropped: the call's event queue is full or closed");
            }
        }
        if let Some(forward) = forward
            && call.sockets.send(&mut call.session, forward, &self.buf[..datagram.len])
            && let Some(arrived) = datagram.arrived_ns
        {
            self.latency.record(realtime_ns().saturating_sub(arrived));
        }
        arm(&mut self.timers, (token >> 2) as usize, call);
    }

    /// Takes every job waiting; `false` once the relay shuts down.
    fn take_jobs(&mut self, now: Instant) -> bool {
        loop {
            match self.jobs.try_recv() {
                Ok(Job::Start { call, new }) => self.start(call, *new),
                Ok(Job::Command { call, command }) => self.command(call, command, now),
                Ok(Job::Stats { reply }) => {
                    let _ = reply.send(self.stats());
                }
                Ok(Job::Shutdown) | Err(std_mpsc::TryRecvError::Disconnected) => return false,
                Err(std_mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    fn start(&mut self, id: u64, new: NewCall) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.calls.push(None);
            self.calls.len() - 1
        });
        for (index, socket) in new.sockets.all() {
            if let Err(error) = self.epoll.add(socket.as_fd(), (slot as u64) << 2 | index) {
                // Only on kernel memory exhaustion; the call is dropped, its owner sees it stopped.
                tracing::error!(%error, "relay worker cannot watch a media socket; the call's media stops");
                self.free.push(slot);
                self.load.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        }
        let mut call = ActiveCall {
            id,
            session: new.session,
            sockets: new.sockets,
            events: new.events,
            playbacks: [None, None],
            timer_at: None,
        };
        arm(&mut self.timers, slot, &mut call);
        self.calls[slot] = Some(call);
        self.slots.insert(id, slot);
    }

    fn command(&mut self, id: u64, command: Command, now: Instant) {
        // A reply nobody waits for any more is not an error.
        #[cfg(test)]
        if let Command::Allocations { reply } = command {
            let _ = reply.send(crate::test_alloc::allocations_on_this_thread());
            return;
        }
        let Some(&slot) = self.slots.get(&id) else { return };
        let Some(call) = self.calls[slot].as_mut() else { return };
        match command {
            Command::UpdateLeg { leg, params, reply } => {
                let _ = reply.send(call.session.update_leg(leg, params, now));
            }
            Command::SetMode { mode, reply } => {
                let _ = reply.send(call.session.set_mode(mode, now));
            }
            Command::Play { leg, prompt, reply } => {
                let _ = reply.send(play(call, leg, prompt, now));
            }
            Command::Stats { reply } => {
                let _ = reply.send(call_stats(&call.session));
            }
            Command::Stop { reply } => {
                let stats = self.end(slot);
                if let Some(reply) = reply {
                    let _ = reply.send(stats);
                }
                return;
            }
            #[cfg(test)]
            Command::Allocations { .. } => unreachable!("answered above"),
        }
        arm(&mut self.timers, slot, call);
    }

    fn stats(&self) -> RelayStats {
        let mut legs = self.ended;
        for call in self.calls.iter().flatten() {
            let stats = call_stats(&call.session);
            legs.add(&stats.a);
            if let Some(b) = &stats.b {
                legs.add(b);
            }
        }
        RelayStats { calls: self.slots.len() as u64, calls_ended: self.calls_ended, legs, latency: self.latency }
    }

    /// Closes a call's sockets (its ports go back to the pool) and returns its counters.
    fn end(&mut self, slot: usize) -> CallStats {
        // Only `command` calls this, with the slot it has just found the call in.
        let call = self.calls[slot].take().expect("a call in the slot");
        for (_, socket) in call.sockets.all() {
            let _ = self.epoll.delete(socket.as_fd());
        }
        self.slots.remove(&call.id);
        self.free.push(slot);
        self.load.fetch_sub(1, Ordering::Relaxed);
        // An ended call's heap entry would stay until its deadline (the RTP
        // timeout); with calls churning, those add up. Sweep them out once they
        // outnumber the live calls' entries.
        if self.timers.len() > 2 * self.slots.len() + 64 {
            let calls = &self.calls;
            self.timers.retain(|&Reverse((at, slot, id))| {
                calls[slot].as_ref().is_some_and(|call| call.id == id && call.timer_at == Some(at))
            });
        }
        let stats = call_stats(&call.session);
        self.ended.add(&stats.a);
        if let Some(b) = &stats.b {
            self.ended.add(b);
        }
        self.calls_ended += 1;
        stats
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot, id))) = self.timers.peek() {
            if at > now {
                return;
            }
            self.timers.pop();
            let Some(Some(call)) = self.calls.get_mut(slot) else { continue };
            // An entry of an ended call, or one superseded by an earlier deadline.
            if call.id != id || call.timer_at != Some(at) {
                continue;
            }
            call.timer_at = None;
            if call.session.poll_timeout().is_some_and(|deadline| deadline <= now) {
                for event in call.session.handle_timeout(now) {
                    if call.events.try_send(event).is_err() {
                        tracing::warn!("media event dropped: the call's event queue is full or closed");
                    }
                }
            }
            send_due_frames(call, &mut self.buf, now);
            arm(&mut self.timers, slot, call);
        }
    }
}

/// Makes sure the heap has an entry for the call's next deadline.
fn arm(timers: &mut BinaryHeap<Reverse<(Instant, usize, u64)>>, slot: usize, call: &mut ActiveCall) {
    if let Some(deadline) = call.next_deadline()
        && call.timer_at.is_none_or(|at| deadline < at)
    {
        timers.push(Reverse((deadline, slot, call.id)));
        call.timer_at = Some(deadline);
    }
}

/// A prompt looping to one leg. Frame `n` is due at `started + n * 20 ms` and
/// carries the prompt from byte `n * 160` with timestamp `first_ts + n * 160`:
/// the schedule never drifts, however late the worker wakes.
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

fn play(call: &mut ActiveCall, leg: Leg, prompt: Option<Arc<Prompt>>, now: Instant) -> Result<(), MediaError> {
    let payloads = call.session.payloads(leg).ok_or(MediaError::NoSuchLeg { leg })?;
    let playing = prompt.is_some();
    if playing && prompt_codec(payloads).is_none() {
        return Err(MediaError::NoG711 { leg });
    }
    call.session.set_injecting(leg, playing)?;
    call.playbacks[leg.index()] = prompt.map(|prompt| {
        tracing::debug!(?leg, prompt = prompt.name(), "prompt playing");
        Playback::new(prompt, now)
    });
    Ok(())
}

/// Sends every prompt frame due by `now`, building each in `buf`. Allocates nothing.
fn send_due_frames(call: &mut ActiveCall, buf: &mut [u8], now: Instant) {
    for leg in [Leg::A, Leg::B] {
        let Some(playback) = call.playbacks[leg.index()].as_mut() else { continue };
        let due = playback.frames_due(now);
        if due > playback.frame + MAX_CATCH_UP_FRAMES {
            let skipped = due - MAX_CATCH_UP_FRAMES - playback.frame;
            tracing::debug!(?leg, skipped, "prompt frames skipped: the worker woke late");
            playback.frame += skipped;
        }
        while playback.frame < due {
            send_frame(&mut call.session, &call.sockets, leg, playback, buf, now);
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
    sockets.send(session, forward, &buf[..len]);
}
