//! The relay's API: the port range, legs, and the handles the B2BUA holds.
//! Packets are moved by the relay's worker threads ([`crate::worker`]); a call
//! lives on one worker, and its handle talks to it through the worker's inbox.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::MediaError;
use crate::ports::PortAllocator;
use crate::prompt::Prompt;
use crate::stats::RelayStats;
use crate::session::{Leg, LegParams, LegSetup, LegStats, MediaEvent, MediaSession, Mode, SessionConfig};
use crate::worker::{CallSockets, Command, LegSockets, NewCall, WorkerHandle};

/// Events waiting for the owner; more are dropped with a warning (there is one
/// inactivity event per leg per silence, so this only fills if nobody reads).
const EVENT_QUEUE: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Where media sockets are bound (`0.0.0.0` for all interfaces).
    pub bind_ip: IpAddr,
    /// The address put in SDP: what phones send media to.
    pub advertise_ip: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    /// Threads moving packets; 0 means one per core.
    pub workers: usize,
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
            workers: 0,
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

    /// The number of worker threads `workers` asks for.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
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

/// The relay: a port range, its worker threads and the calls on them. Cheap to
/// clone; the workers stop when the last clone is dropped (calls still running
/// then end, their ports released).
#[derive(Clone)]
pub struct MediaRelay {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MediaRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRelay").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

struct Shared {
    config: RelayConfig,
    ports: Arc<Ports>,
    workers: Vec<Arc<WorkerHandle>>,
    /// Names calls to their worker.
    next_call: AtomicU64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.shutdown();
        }
    }
}

/// The port books, shared by the API (allocation) and the workers (release).
#[derive(Debug)]
pub(crate) struct Ports(Mutex<PortAllocator>);

impl Ports {
    /// Never held across an `.await`; a panic elsewhere does not lock the relay out.
    fn lock(&self) -> MutexGuard<'_, PortAllocator> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MediaRelay {
    /// Checks the config and starts the worker threads.
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
        let workers = (0..config.worker_count())
            .map(|index| WorkerHandle::spawn(index).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| MediaError::InvalidConfig(format!("cannot start a relay worker: {e}")))?;
        let ports = Arc::new(Ports(Mutex::new(ports)));
        Ok(MediaRelay { shared: Arc::new(Shared { config, ports, workers, next_call: AtomicU64::new(0) }) })
    }

    pub fn config(&self) -> &RelayConfig {
        &self.shared.config
    }

    pub fn port_usage(&self) -> PortUsage {
        let ports = self.shared.ports.lock();
        PortUsage { legs_in_use: ports.legs_in_use(), ports_in_use: ports.ports_in_use(), max_legs: ports.capacity() }
    }

    /// Totals of every call since the relay started, and the latency histogram.
    pub async fn stats(&self) -> RelayStats {
        let mut total = RelayStats::default();
        for worker in &self.shared.workers {
            let (reply, answer) = oneshot::channel();
            worker.stats(reply);
            // A worker that has failed has nothing to add.
            if let Ok(stats) = answer.await {
                total.merge(&stats);
            }
        }
        total
    }

    /// Binds an RTP port (and the RTCP port above it without rtcp-mux) from the
    /// range; ports another process holds are skipped. Dropping the handle
    /// unused gives the ports back.
    pub fn allocate_leg(&self, rtcp_mux: bool) -> Result<LegHandle, MediaError> {
        let bind_ip = self.shared.config.bind_ip;
        let (pair, (rtp, rtcp)) = self.shared.ports.lock().allocate(rtcp_mux, |pair| {
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
            lease: PortLease { ports: Arc::clone(&self.shared.ports), rtp_port: pair.rtp },
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
        self.start_call(session, a, Some(b))
    }

    /// Sends leg A's media back to it: the echo test line.
    pub fn echo(&self, a: LegHandle, params: LegParams) -> CallMedia {
        let session = MediaSession::echo(self.shared.config.session_config(), a.setup(params), Instant::now());
        self.start_call(session, a, None)
    }

    /// Puts the call on the least loaded worker.
    fn start_call(&self, session: MediaSession, a: LegHandle, b: Option<LegHandle>) -> CallMedia {
        let (event_queue, events) = mpsc::channel(EVENT_QUEUE);
        let local = [Some((a.local_rtp, a.local_rtcp)), b.as_ref().map(|b| (b.local_rtp, b.local_rtcp))];
        let ipv6 = a.rtp.local_addr().is_ok_and(|addr| addr.is_ipv6());
        let sockets = CallSockets { a: a.into(), b: b.map(LegSockets::from), ipv6 };
        let id = self.shared.next_call.fetch_add(1, Ordering::Relaxed);
        // new() started worker_count() workers, which is at least one.
        let worker = self.shared.workers.iter().min_by_key(|worker| worker.load()).expect("at least one worker");
        worker.start(id, NewCall { session, sockets, events: event_queue });
        CallMedia { id, worker: Arc::clone(worker), events, local, stopped: false }
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
    let socket = UdpSocket::bind(addr).map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
    socket.set_nonblocking(true)?;
    // Without stamps the relay works the same; its latency histogram stays empty.
    if let Err(error) = crate::sys::enable_arrival_stamps(&socket) {
        tracing::debug!(%error, "no arrival stamps on a media socket");
    }
    Ok(socket)
}

/// Gives a leg's ports back to the range when dropped.
#[derive(Debug)]
pub(crate) struct PortLease {
    ports: Arc<Ports>,
    rtp_port: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.ports.lock().release(self.rtp_port);
    }
}

/// Bound sockets of one leg, before the call starts.
#[derive(Debug)]
pub struct LegHandle {
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
    local_rtp: SocketAddr,
    local_rtcp: Option<SocketAddr>,
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

impl From<LegHandle> for LegSockets {
    fn from(handle: LegHandle) -> Self {
        LegSockets { rtp: handle.rtp, rtcp: handle.rtcp, _lease: handle.lease }
    }
}

/// Final or current counters of a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallStats {
    pub a: LegStats,
    /// `None` for an echo call.
    pub b: Option<LegStats>,
}

pub(crate) fn call_stats(session: &MediaSession) -> CallStats {
    CallStats { a: session.stats(Leg::A).unwrap_or_default(), b: session.stats(Leg::B) }
}

/// The owner's handle on a relayed call. Dropping it stops the call and gives
/// its ports back (shortly after, from the worker); [`CallMedia::stop`] does
/// the same and returns once the ports are back.
pub struct CallMedia {
    id: u64,
    worker: Arc<WorkerHandle>,
    events: mpsc::Receiver<MediaEvent>,
    local: [Option<(SocketAddr, Option<SocketAddr>)>; 2],
    /// `stop` has been sent; dropping need not send it again.
    stopped: bool,
}

impl std::fmt::Debug for CallMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMedia").field("id", &self.id).field("local", &self.local).finish_non_exhaustive()
    }
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        if !self.stopped {
            self.worker.command(self.id, Command::Stop { reply: None });
        }
    }
}

impl CallMedia {
    /// The relay's address for `leg` (what its SDP says); `None` if there is no such leg.
    pub fn local_rtp(&self, leg: Leg) -> Option<SocketAddr> {
        self.local[leg.index()].map(|(rtp, _)| rtp)
    }

    pub fn local_rtcp(&self, leg: Leg) -> Option<SocketAddr> {
        self.local[leg.index()].and_then(|(_, rtcp)| rtcp)
    }

    /// A re-INVITE on `leg`: new remote address hint and payload types.
    pub async fn update_leg(&self, leg: Leg, params: LegParams) -> Result<(), MediaError> {
        self.ask(|reply| Command::UpdateLeg { leg, params, reply }).await?
    }

    pub async fn set_mode(&self, mode: Mode) -> Result<(), MediaError> {
        self.ask(|reply| Command::SetMode { mode, reply }).await?
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
        self.ask(|reply| Command::Play { leg, prompt, reply }).await?
    }

    pub async fn stats(&self) -> Result<CallStats, MediaError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// The next event (inactivity); `None` once the call has ended.
    /// Cancel-safe, so it can sit in the owner's `select!`.
    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        self.events.recv().await
    }

    /// Stops relaying; when this returns, the sockets are closed and the ports
    /// are back in the pool. Returns the final counters.
    pub async fn stop(mut self) -> Result<CallStats, MediaError> {
        self.stopped = true;
        self.ask(|reply| Command::Stop { reply: Some(reply) }).await
    }

    /// Sends a command to the call's worker and waits for its reply; a call
    /// that has ended (or a relay shut down) drops the command unanswered.
    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, MediaError> {
        let (reply, answer) = oneshot::channel();
        self.worker.command(self.id, command(reply));
        answer.await.map_err(|_| MediaError::Stopped)
    }
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
        LegParams { remote_rtp: remote, payloads: PayloadMap::new(payloads).unwrap(), ..LegParams::default() }
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
        silent.sort_by_key(|leg| leg.index());
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
        // The worker takes commands in order: the call is gone when the next comes.
        call.worker.command(call.id, Command::Stop { reply: None });
        call.stats().await.unwrap_err()
    }

    /// The allocations the worker running `call` has made so far.
    async fn worker_allocations(call: &CallMedia) -> u64 {
        call.ask(|reply| Command::Allocations { reply }).await.unwrap()
    }

    /// The whole packet path, worker included, allocates nothing: the worker's
    /// thread counts its allocations (the test allocator), read before and after.
    /// Leg A listens for in-band keys, so its audio is decoded and analysed too.
    #[tokio::test]
    async fn relaying_allocates_nothing() {
        let relay = relay(31080, 31089, Duration::from_secs(30));
        let (a_leg, b_leg) = (relay.allocate_leg(true).unwrap(), relay.allocate_leg(false).unwrap());
        let (a_sdp, b_sdp) = (a_leg.local_rtp(), b_leg.local_rtp());
        let (phone_a, phone_b) = (phone(), phone());
        let call = relay.bridge(
            a_leg,
            b_leg,
            BridgeParams {
                a: LegParams { inband_dtmf: true, ..params(Some(phone_a.local_addr().unwrap()), &[(0, PCMU)]) },
                b: params(Some(phone_b.local_addr().unwrap()), &[(8, Codec::Pcma), (0, PCMU)]),
            },
        );
        let mut packet = [0u8; 172];
        let mut received = [0u8; 2048];
        // Warm up: the call starts, both sources latch.
        for seq in 0..3u16 {
            let len = write_packet(&mut packet, 0, false, seq, 0, 7, &[0xd5; 160]).unwrap();
            phone_a.send_to(&packet[..len], a_sdp).unwrap();
            phone_b.recv(&mut received).unwrap();
            phone_b.send_to(&packet[..len], b_sdp).unwrap();
            phone_a.recv(&mut received).unwrap();
        }
        let before = worker_allocations(&call).await;
        for seq in 3..500u16 {
            let len = write_packet(&mut packet, 0, false, seq, u32::from(seq) * 160, 7, &[0xd5; 160]).unwrap();
            phone_a.send_to(&packet[..len], a_sdp).unwrap();
            assert_eq!(phone_b.recv(&mut received).unwrap(), len);
            phone_b.send_to(&packet[..len], b_sdp).unwrap();
            assert_eq!(phone_a.recv(&mut received).unwrap(), len);
        }
        assert_eq!(worker_allocations(&call).await - before, 0);
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

    /// A stranger floods the latched port of one call: that call is not
    /// hijacked (its listener hears only its phone), the flood is counted, and
    /// another call on the same worker relays every packet meanwhile.
    #[tokio::test]
    async fn a_flood_from_a_stranger_neither_hijacks_nor_starves() {
        let relay = MediaRelay::new(RelayConfig {
            port_min: 31130,
            port_max: 31149,
            workers: 1,
            rtp_timeout: Duration::from_secs(30),
            ..RelayConfig::default()
        })
        .unwrap();
        let bridged = |phones: &(PhoneSocket, PhoneSocket)| {
            let (a_leg, b_leg) = (relay.allocate_leg(true).unwrap(), relay.allocate_leg(true).unwrap());
            relay.bridge(
                a_leg,
                b_leg,
                BridgeParams {
                    a: params(Some(phones.0.local_addr().unwrap()), &[(0, PCMU)]),
                    b: params(Some(phones.1.local_addr().unwrap()), &[(0, PCMU)]),
                },
            )
        };
        let (attacked_phones, other_phones) = ((phone(), phone()), (phone(), phone()));
        let (attacked, other) = (bridged(&attacked_phones), bridged(&other_phones));
        let attacked_a = attacked.local_rtp(Leg::A).unwrap();
        // The attacked call latches its phone first.
        send_rtp(&attacked_phones.0, attacked_a, 0, 1, 0xa);
        assert_eq!(receive(&attacked_phones.1).2, 0xa);

        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        let (flooding, sent) = (AtomicBool::new(true), AtomicU32::new(0));
        let flood_sent = std::thread::scope(|scope| {
            let flood = scope.spawn(|| {
                let stranger = phone();
                // Bounded: until the calls below are done, at most 200,000 packets.
                while flooding.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < 200_000 {
                    send_rtp(&stranger, attacked_a, 0, sent.load(Ordering::Relaxed) as u16, 0xbad);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                sent.load(Ordering::Relaxed)
            });
            // The flood is under way (on a busy machine its thread may start late)...
            let end = std::time::Instant::now() + Duration::from_secs(10);
            while sent.load(Ordering::Relaxed) < 1000 && std::time::Instant::now() < end {
                std::thread::yield_now();
            }
            // ...while both calls talk: 200 packets each way on the other call,
            // and the attacked phone keeps talking too.
            let other_a = other.local_rtp(Leg::A).unwrap();
            let other_b = other.local_rtp(Leg::B).unwrap();
            for seq in 0..200u16 {
                send_rtp(&other_phones.0, other_a, 0, seq, 0x1);
                assert_eq!(receive(&other_phones.1).1, seq, "the other call, A to B");
                send_rtp(&other_phones.1, other_b, 0, seq, 0x2);
                assert_eq!(receive(&other_phones.0).1, seq, "the other call, B to A");
                send_rtp(&attacked_phones.0, attacked_a, 0, 2 + seq, 0xa);
            }
            flooding.store(false, std::sync::atomic::Ordering::Relaxed);
            flood.join().unwrap()
        });
        assert!(flood_sent > 1000, "the flood sent only {flood_sent} packets");
        // What reached the attacked call's B phone came from its A phone alone.
        attacked_phones.1.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut heard = 0;
        let mut buf = [0u8; 2048];
        while let Ok(len) = attacked_phones.1.recv(&mut buf) {
            assert_eq!(RtpPacket::parse(&buf[..len]).unwrap().ssrc(), 0xa, "the stranger was relayed");
            heard += 1;
        }
        assert!(heard > 0, "the attacked call's own packets stopped");
        let a = attacked.stop().await.unwrap().a;
        assert!(a.dropped_wrong_source > 0, "{a:?}");
        assert_eq!(a.rtp_source, Some(attacked_phones.0.local_addr().unwrap()));
        assert_eq!(a.relatches, 0);
        let other = other.stop().await.unwrap();
        assert_eq!((other.a.rtp_packets_in, other.b.unwrap().rtp_packets_in), (200, 200));
        // The relay's totals show the flood, and time every packet relayed.
        let totals = relay.stats().await;
        assert_eq!((totals.calls, totals.calls_ended), (0, 2));
        assert_eq!(totals.legs.dropped_wrong_source, a.dropped_wrong_source);
        assert_eq!(totals.legs.rtp_packets_in, a.rtp_packets_in + 400);
        assert_eq!(totals.latency.count(), totals.legs.rtp_packets_out);
        assert!(totals.latency.max_ns > 0);
    }

    /// Legs, calls and their commands need no runtime; dropping the relay stops
    /// its workers, which end the calls still running and free their ports.
    #[test]
    fn a_relay_needs_no_runtime_and_dropping_it_ends_its_calls() {
        let relay = relay(31070, 31073, Duration::from_secs(30));
        let leg = relay.allocate_leg(true).unwrap();
        let port = leg.local_rtp().port();
        let caller = phone();
        let call = relay.echo(leg, params(Some(caller.local_addr().unwrap()), &[(0, PCMU)]));
        send_rtp(&caller, call.local_rtp(Leg::A).unwrap(), 0, 1, 0x1);
        assert_eq!(receive(&caller).1, 1);
        drop(relay);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(matches!(runtime.block_on(call.stats()), Err(MediaError::Stopped)));
        // The worker closes the socket as it ends; bounded wait for that thread.
        let freed = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(5));
            PhoneSocket::bind(("127.0.0.1", port)).is_ok()
        });
        assert!(freed, "port {port} still bound after the relay was dropped");
    }

    /// 1000 samples: frames (160) do not divide it, so the loop wraps inside a frame.
    fn test_prompt() -> Arc<Prompt> {
        // In i32: i * 37 passes i16::MAX; the samples themselves are within -16000..16000.
        let samples: Vec<i16> = (0..1000i32).map(|i| ((i * 37 % 2000 - 1000) * 16) as i16).collect();
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

    /// Playing allocates nothing per frame, in the worker or in the session.
    #[tokio::test]
    async fn playing_allocates_nothing() {
        let relay = relay(31120, 31129, Duration::from_secs(30));
        let leg = relay.allocate_leg(true).unwrap();
        let caller = phone();
        let call = relay.echo(leg, params(Some(caller.local_addr().unwrap()), &[(0, PCMU)]));
        call.play(Leg::A, Some(test_prompt())).await.unwrap();
        let mut buf = [0u8; 2048];
        // Warm up: the first frames, the timer armed.
        for _ in 0..3 {
            caller.recv(&mut buf).unwrap();
        }
        let before = worker_allocations(&call).await;
        for _ in 0..25 {
            assert_eq!(caller.recv(&mut buf).unwrap(), 172);
        }
        assert_eq!(worker_allocations(&call).await - before, 0);
        call.stop().await.unwrap();
    }
}
