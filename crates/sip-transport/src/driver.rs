//! The tokio driver: UDP sockets, TCP and TLS listeners and connections. A thin
//! driver with no SIP logic: bytes in become [`TransportEvent`]s stamped with their
//! [`Source`]; [`TransportLayer::send`] puts bytes on the wire for a [`Target`].
//!
//! Rules it keeps (docs/architecture.md): nothing here blocks the core or panics on
//! network data; every queue and table is bounded and every drop is counted in
//! [`TransportStats`]. The connection table is the only shared map.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};
use tracing::{debug, warn};

use crate::framing::{Frame, StreamFramer};
use crate::transport::{FlowId, Source, Target, Transport};

/// Kernel socket buffers for UDP: bursts of SIP (a REGISTER storm after a restart)
/// must not overflow the default ~200 KB. Best effort: the kernel caps it.
const UDP_SOCKET_BUFFER: usize = 4 << 20;
/// Messages queued for one connection's writer before new ones are dropped.
const WRITE_QUEUE: usize = 128;
/// Read chunk per connection; the framer copies out of it.
const READ_CHUNK: usize = 8192;
/// A peer that does not take our bytes for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection may wait for room to report `FlowClosed`.
const CLOSE_EVENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest UDP payload (IPv6 without jumbograms).
const MAX_DATAGRAM: usize = 65_535;
/// Idle timeouts beyond this are treated as this (keeps deadline arithmetic finite).
const MAX_IDLE: Duration = Duration::from_secs(365 * 24 * 3600);

/// One listening address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    pub transport: Transport,
    pub addr: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Datagrams larger are dropped; stream connections sending larger are closed.
    pub max_message_size: usize,
    /// Required if any listener is TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Open stream connections, inbound and outbound; beyond it new ones are refused.
    pub max_connections: usize,
    /// A stream connection with no traffic either way this long is closed.
    pub idle_timeout: Duration,
    /// Bound of the event channel to the core.
    pub channel_capacity: usize,
}

#[derive(Clone, Debug)]
pub enum TransportEvent {
    /// One datagram or one framed stream message.
    Message { data: Bytes, source: Source },
    /// A stream connection closed; targets naming this flow now fall back to `remote`.
    FlowClosed(FlowId),
}

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Datagrams over `max_message_size`, dropped.
    pub dropped_oversize: u64,
    pub stream_messages_in: u64,
    pub stream_messages_out: u64,
    /// Stream connections open now.
    pub connections_open: u64,
    /// Connections refused at `max_connections`.
    pub connections_refused: u64,
    /// TLS handshakes that failed or timed out.
    pub handshake_failures: u64,
    /// Stream connections closed for bad framing (no Content-Length, too large, ...).
    pub framing_errors: u64,
    /// Messages that could not be sent: socket errors, full writer queues, no route.
    pub send_errors: u64,
    /// Events dropped because the channel to the core was full.
    pub events_dropped: u64,
}

#[derive(Default)]
struct Counters {
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    dropped_oversize: AtomicU64,
    stream_messages_in: AtomicU64,
    stream_messages_out: AtomicU64,
    connections_refused: AtomicU64,
    handshake_failures: AtomicU64,
    framing_errors: AtomicU64,
    send_errors: AtomicU64,
    events_dropped: AtomicU64,
}

fn bump(c: &AtomicU64) -> u64 {
    c.fetch_add(1, Ordering::Relaxed) + 1
}

struct Listener {
    transport: Transport,
    local: SocketAddr,
    /// The socket of a UDP listener, shared by its receive loop and `send`.
    udp: Option<Arc<UdpSocket>>,
}

/// A connection's entry in the table: where to queue bytes for it.
#[derive(Clone)]
struct Conn {
    tx: mpsc::Sender<Bytes>,
}

/// What a connection task needs to know about its flow.
#[derive(Clone, Copy)]
struct FlowInfo {
    flow: FlowId,
    transport: Transport,
    remote: SocketAddr,
    listener: usize,
    local: SocketAddr,
}

struct Inner {
    listeners: Vec<Listener>,
    max_message_size: usize,
    max_connections: usize,
    idle_timeout: Duration,
    conns: DashMap<FlowId, Conn>,
    /// The newest open flow to a remote address, for reuse when a target has no flow.
    by_remote: DashMap<(Transport, SocketAddr), FlowId>,
    next_flow: AtomicU64,
    open: AtomicUsize,
    events: mpsc::Sender<TransportEvent>,
    stats: Counters,
    stopping: AtomicBool,
    shutdown: watch::Sender<bool>,
    /// So `send` can spawn connects when called from outside the runtime.
    runtime: tokio::runtime::Handle,
}

/// The transport layer: cheap to clone, all clones drive the same sockets.
#[derive(Clone)]
pub struct TransportLayer {
    inner: Arc<Inner>,
}

impl TransportLayer {
    /// Binds every listener (in order; `Source::listener` is the index) and starts
    /// their tasks. Must be called inside a tokio runtime.
    pub async fn bind(
        listeners: &[ListenerSpec],
        config: TransportConfig,
    ) -> io::Result<(TransportLayer, mpsc::Receiver<TransportEvent>)> {
        let (events, rx) = mpsc::channel(config.channel_capacity.max(1));
        let mut bound = Vec::with_capacity(listeners.len());
        let mut stream_listeners = Vec::new();
        for (i, spec) in listeners.iter().enumerate() {
            let named = |e: io::Error| {
                io::Error::new(
                    e.kind(),
                    format!("cannot bind {} listener {}: {e}", spec.transport, spec.addr),
                )
            };
            match spec.transport {
                Transport::Udp => {
                    let socket = Arc::new(bind_udp(spec.addr).map_err(named)?);
                    let local = socket.local_addr().map_err(named)?;
                    bound.push(Listener {
                        transport: Transport::Udp,
                        local,
                        udp: Some(socket),
                    });
                }
                Transport::Tcp | Transport::Tls => {
                    let acceptor = match (spec.transport, &config.tls) {
                        (Transport::Tls, Some(tls)) => Some(tokio_rustls::TlsAcceptor::from(tls.clone())),
                        (Transport::Tls, None) => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidInput,
                                format!("TLS listener {} needs a TLS certificate configuration", spec.addr),
                            ));
                        }
                        _ => None,
                    };
                    let listener = bind_tcp(spec.addr).map_err(named)?;
                    let local = listener.local_addr().map_err(named)?;
                    bound.push(Listener {
                        transport: spec.transport,
                        local,
                        udp: None,
                    });
                    stream_listeners.push((i, listener, acceptor));
                }
                Transport::Ws | Transport::Wss => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "{} listener {}: WebSocket transports are not supported yet",
                            spec.transport, spec.addr
                        ),
                    ));
                }
            }
        }
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            listeners: bound,
            max_message_size: config.max_message_size,
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
            conns: DashMap::new(),
            by_remote: DashMap::new(),
            next_flow: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            events,
            stats: Counters::default(),
            stopping: AtomicBool::new(false),
            shutdown,
            runtime: tokio::runtime::Handle::current(),
        });
        for (i, l) in inner.listeners.iter().enumerate() {
            if let Some(socket) = &l.udp {
                tokio::spawn(udp_loop(inner.clone(), i, socket.clone()));
            }
            debug!(transport = %l.transport, local = %l.local, "bound");
        }
        for (i, listener, acceptor) in stream_listeners {
            tokio::spawn(accept_loop(inner.clone(), i, listener, acceptor));
        }
        Ok((TransportLayer { inner }, rx))
    }

    /// The bound address of listener `listener` (a port 0 in the spec is resolved).
    /// Panics if `listener` is not an index into the specs given to `bind`.
    pub fn local_addr(&self, listener: usize) -> SocketAddr {
        self.inner.listeners[listener].local
    }

    /// Sends `data` to `target`. Never blocks and never fails loudly: a message that
    /// cannot go out is logged at debug and counted in `send_errors` (SIP retransmits).
    pub fn send(&self, target: Target, data: Bytes) {
        let inner = &self.inner;
        if inner.stopping.load(Ordering::Relaxed) {
            return;
        }
        match target.transport {
            Transport::Udp => inner.send_udp(target, &data),
            Transport::Tcp | Transport::Tls => inner.send_stream(target, data),
            Transport::Ws | Transport::Wss => {
                debug!(remote = %target.remote, transport = %target.transport, "no WebSocket transport yet; message dropped");
                bump(&inner.stats.send_errors);
            }
        }
    }

    pub fn stats(&self) -> TransportStats {
        let s = &self.inner.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            datagrams_in: get(&s.datagrams_in),
            datagrams_out: get(&s.datagrams_out),
            dropped_oversize: get(&s.dropped_oversize),
            stream_messages_in: get(&s.stream_messages_in),
            stream_messages_out: get(&s.stream_messages_out),
            connections_open: self.inner.open.load(Ordering::Relaxed) as u64,
            connections_refused: get(&s.connections_refused),
            handshake_failures: get(&s.handshake_failures),
            framing_errors: get(&s.framing_errors),
            send_errors: get(&s.send_errors),
            events_dropped: get(&s.events_dropped),
        }
    }

    /// Stops accepting and closes every connection. UDP sockets stop receiving; they
    /// are closed when the last clone of the layer is dropped.
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.inner.shutdown.send_replace(true);
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // So [::]:5060 and 0.0.0.0:5060 can both be bound.
        socket.set_only_v6(true)?;
    }
    let _ = socket.set_recv_buffer_size(UDP_SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // A restart must not wait for old connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Resolves when shutdown is requested.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Holds one slot of `max_connections`; released when dropped, however the task ends.
struct Permit(Arc<Inner>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    fn try_permit(self: &Arc<Self>) -> Option<Permit> {
        let max = self.max_connections;
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Permit(self.clone()))
    }

    fn refuse(&self, remote: SocketAddr, transport: Transport) {
        let n = bump(&self.stats.connections_refused);
        // Log the first and then every 1000th, so a flood cannot flood the log.
        if n % 1000 == 1 {
            warn!(%remote, %transport, max = self.max_connections, refused = n, "connection limit reached; refusing connections");
        } else {
            debug!(%remote, %transport, "connection refused: limit reached");
        }
    }

    /// Hands an event to the core without waiting; a full channel drops it (SIP retransmits).
    fn emit(&self, event: TransportEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            let n = bump(&self.stats.events_dropped);
            if n % 1000 == 1 {
                warn!(dropped = n, "event channel to the core is full; dropping messages");
            }
        }
    }

    fn new_flow(&self) -> FlowId {
        FlowId(self.next_flow.fetch_add(1, Ordering::Relaxed))
    }

    /// Enters a connection in the table; returns its writer queue.
    fn register(&self, info: &FlowInfo) -> (mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        self.conns.insert(info.flow, Conn { tx: tx.clone() });
        self.by_remote.insert((info.transport, info.remote), info.flow);
        (tx, rx)
    }

    fn unregister(&self, info: &FlowInfo) {
        self.conns.remove(&info.flow);
        self.by_remote
            .remove_if(&(info.transport, info.remote), |_, f| *f == info.flow);
    }

    fn send_udp(&self, target: Target, data: &[u8]) {
        let v4 = target.remote.is_ipv4();
        let is_udp_of_family = |l: &Listener| l.udp.is_some() && l.local.is_ipv4() == v4;
        // The named listener if it can reach the target, else the first that can.
        let socket = target
            .listener
            .and_then(|i| self.listeners.get(i))
            .filter(|l| is_udp_of_family(l))
            .or_else(|| self.listeners.iter().find(|l| is_udp_of_family(l)))
            .and_then(|l| l.udp.as_ref());
        let Some(socket) = socket else {
            debug!(remote = %target.remote, "no UDP listener of this address family; message dropped");
            bump(&self.stats.send_errors);
            return;
        };
        match socket.try_send_to(data, target.remote) {
            Ok(_) => {
                bump(&self.stats.datagrams_out);
            }
            Err(e) => {
                debug!(remote = %target.remote, error = %e, "UDP send failed; message dropped");
                bump(&self.stats.send_errors);
            }
        }
    }

    fn send_stream(self: &Arc<Self>, target: Target, data: Bytes) {
        // The named flow while open, else the newest open flow to the same address.
        let conn = target
            .flow
            .and_then(|f| self.conns.get(&f).map(|c| c.clone()))
            .or_else(|| {
                let flow = self.by_remote.get(&(target.transport, target.remote)).map(|f| *f)?;
                self.conns.get(&flow).map(|c| c.clone())
            });
        if let Some(conn) = conn {
            if let Err(e) = conn.tx.try_send(data) {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "writer queue full",
                    mpsc::error::TrySendError::Closed(_) => "connection closing",
                };
                debug!(remote = %target.remote, transport = %target.transport, why, "stream send dropped");
                bump(&self.stats.send_errors);
            }
            return;
        }
        match target.transport {
            Transport::Tcp => self.connect_tcp(target, data),
            _ => {
                // Outbound TLS connections come later: only existing inbound flows are used.
                debug!(remote = %target.remote, transport = %target.transport, "no open connection to send on; message dropped");
                bump(&self.stats.send_errors);
            }
        }
    }

    /// Opens a TCP connection for `target` and queues `data` on it. The flow is in
    /// the table before the connect finishes, so later sends queue behind it.
    fn connect_tcp(self: &Arc<Self>, target: Target, data: Bytes) {
        let v4 = target.remote.is_ipv4();
        let is_tcp = |l: &Listener| l.transport == Transport::Tcp;
        // The listener whose index and address stamp messages arriving on this flow.
        let listener = target
            .listener
            .filter(|&i| {
                self.listeners
                    .get(i)
                    .is_some_and(|l| is_tcp(l) && l.local.is_ipv4() == v4)
            })
            .or_else(|| self.listeners.iter().position(|l| is_tcp(l) && l.local.is_ipv4() == v4))
            .or_else(|| self.listeners.iter().position(is_tcp));
        let Some(listener) = listener else {
            debug!(remote = %target.remote, "no TCP listener to attach an outbound connection to; message dropped");
            bump(&self.stats.send_errors);
            return;
        };
        let Some(permit) = self.try_permit() else {
            self.refuse(target.remote, Transport::Tcp);
            bump(&self.stats.send_errors);
            return;
        };
        let info = FlowInfo {
            flow: self.new_flow(),
            transport: Transport::Tcp,
            remote: target.remote,
            listener,
            local: self.listeners[listener].local, // an index checked or found just above
        };
        let (tx, rx) = self.register(&info);
        // Cannot fail: the queue is new and empty.
        let _ = tx.try_send(data);
        let inner = self.clone();
        self.runtime.spawn(async move {
            let mut shutdown = inner.shutdown.subscribe();
            let connected = tokio::select! {
                _ = stopped(&mut shutdown) => None,
                r = timeout(CONNECT_TIMEOUT, TcpStream::connect(info.remote)) => match r {
                    Ok(Ok(stream)) => Some(stream),
                    Ok(Err(e)) => {
                        debug!(remote = %info.remote, error = %e, "TCP connect failed; queued messages dropped");
                        None
                    }
                    Err(_) => {
                        debug!(remote = %info.remote, "TCP connect timed out; queued messages dropped");
                        None
                    }
                },
            };
            let Some(stream) = connected else {
                // The core never saw this flow: no FlowClosed.
                inner.unregister(&info);
                bump(&inner.stats.send_errors);
                return;
            };
            let _ = stream.set_nodelay(true);
            debug!(remote = %info.remote, flow = info.flow.0, "outbound TCP connection open");
            let (r, w) = stream.into_split();
            run_stream(inner, info, r, w, tx, rx, permit).await;
        });
    }
}

async fn udp_loop(inner: Arc<Inner>, listener: usize, socket: Arc<UdpSocket>) {
    let local = inner.listeners[listener].local; // `bind` spawned this loop for that index
    let max = inner.max_message_size;
    // One byte more than allowed: a datagram that fills it is oversize. No datagram
    // exceeds 64 KiB, so neither does the buffer.
    let mut buf = vec![0u8; max.min(MAX_DATAGRAM) + 1];
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let received = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, remote) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends can surface here; they are not fatal.
                debug!(%local, error = %e, "UDP receive error");
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
                ) {
                    tokio::time::sleep(Duration::from_millis(10)).await; // no busy loop on a persistent error
                }
                continue;
            }
        };
        if n > max {
            bump(&inner.stats.dropped_oversize);
            debug!(%remote, %local, max, "oversize datagram dropped");
            continue;
        }
        bump(&inner.stats.datagrams_in);
        let d = &buf[..n];
        if d.iter().all(|&c| c == b'\r' || c == b'\n') {
            continue; // keep-alive (or empty)
        }
        let source = Source {
            transport: Transport::Udp,
            remote,
            local,
            listener,
            flow: None,
        };
        inner.emit(TransportEvent::Message {
            data: Bytes::copy_from_slice(d),
            source,
        });
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: usize, socket: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    let Listener { transport, local, .. } = inner.listeners[listener]; // an index `bind` spawned this for
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = socket.accept() => r,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                warn!(%local, %transport, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = inner.try_permit() else {
            inner.refuse(remote, transport);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let info = FlowInfo {
            flow: inner.new_flow(),
            transport,
            remote,
            listener,
            local,
        };
        let inner = inner.clone();
        match &tls {
            None => {
                tokio::spawn(async move {
                    let (tx, rx) = inner.register(&info);
                    debug!(%remote, flow = info.flow.0, "TCP connection accepted");
                    let (r, w) = stream.into_split();
                    run_stream(inner, info, r, w, tx, rx, permit).await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let stream = match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            debug!(%remote, error = %e, "TLS handshake failed");
                            bump(&inner.stats.handshake_failures);
                            return;
                        }
                        Err(_) => {
                            debug!(%remote, "TLS handshake timed out");
                            bump(&inner.stats.handshake_failures);
                            return;
                        }
                    };
                    let (tx, rx) = inner.register(&info);
                    debug!(%remote, flow = info.flow.0, "TLS connection accepted");
                    let (r, w) = tokio::io::split(stream);
                    run_stream(inner, info, r, w, tx, rx, permit).await;
                });
            }
        }
    }
}

/// Why a connection ended.
enum Close {
    Eof,
    Shutdown,
    Idle,
    WriteFailed,
    ReadError(io::Error),
    Framing(crate::framing::FramingError),
}

/// Runs one registered connection: reads and frames here, writes in a companion
/// task fed by `rx`. Ends on EOF, error, idle timeout or shutdown, then leaves the
/// table and reports `FlowClosed`.
async fn run_stream<R, W>(
    inner: Arc<Inner>,
    info: FlowInfo,
    mut reader: R,
    writer: W,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    permit: Permit,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    // Milliseconds after `started` of the last write, so writes also count as traffic.
    let last_write = Arc::new(AtomicU64::new(0));
    let mut writer_task = tokio::spawn(write_loop(inner.clone(), info, writer, rx, last_write.clone(), started));
    let source = Source {
        transport: info.transport,
        remote: info.remote,
        local: info.local,
        listener: info.listener,
        flow: Some(info.flow),
    };
    let idle = inner.idle_timeout.min(MAX_IDLE);
    let mut framer = StreamFramer::new(inner.max_message_size);
    let mut buf = vec![0u8; READ_CHUNK.min(inner.max_message_size.saturating_add(1))];
    let mut last_read = started;
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let mut shutdown = inner.shutdown.subscribe();

    let reason = 'conn: loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break Close::Shutdown,
            // The writer only ends early when a write failed or timed out.
            _ = &mut writer_task => break Close::WriteFailed,
            _ = &mut idle_timer => {
                let wrote = started + Duration::from_millis(last_write.load(Ordering::Relaxed));
                let last = last_read.max(wrote);
                if last.elapsed() >= idle {
                    break Close::Idle;
                }
                idle_timer.as_mut().reset(last + idle);
            }
            r = reader.read(&mut buf) => {
                let n = match r {
                    Ok(0) => break Close::Eof,
                    Ok(n) => n,
                    Err(e) => break Close::ReadError(e),
                };
                last_read = Instant::now();
                // Frames before a bad one are still delivered, then the error closes.
                let pushed = framer.push(&buf[..n]);
                loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Message(data))) => {
                            bump(&inner.stats.stream_messages_in);
                            inner.emit(TransportEvent::Message { data, source });
                        }
                        Ok(Some(Frame::Ping)) => {
                            // RFC 5626 §3.5.1 pong; if the queue is full the peer has bigger problems.
                            let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                        }
                        Ok(None) => break,
                        Err(e) => break 'conn Close::Framing(e),
                    }
                }
                if let Err(e) = pushed {
                    break Close::Framing(e);
                }
            }
        }
    };

    inner.unregister(&info);
    drop(tx);
    if let Close::Eof = reason {
        // The peer finished sending: let the writer flush what is queued (it ends once
        // the queue is empty and every sender is gone), within a bound.
        let _ = timeout(WRITE_TIMEOUT, &mut writer_task).await;
    }
    writer_task.abort();
    let remote = info.remote;
    let flow = info.flow.0;
    match reason {
        Close::Eof => debug!(%remote, flow, "connection closed by peer"),
        Close::Shutdown => debug!(%remote, flow, "connection closed: shutting down"),
        Close::Idle => debug!(%remote, flow, idle_secs = idle.as_secs_f32(), "connection closed: idle"),
        Close::WriteFailed => debug!(%remote, flow, "connection closed: write failed"),
        Close::ReadError(e) => debug!(%remote, flow, error = %e, "connection closed: read error"),
        Close::Framing(e) => {
            let n = bump(&inner.stats.framing_errors);
            // A hostile peer can repeat this at will: log the first and every 1000th loudly.
            if n % 1000 == 1 {
                warn!(%remote, flow, transport = %info.transport, error = %e, total = n, "connection closed: bad framing");
            } else {
                debug!(%remote, flow, transport = %info.transport, error = %e, "connection closed: bad framing");
            }
        }
    }
    drop(permit);
    if inner.stopping.load(Ordering::Relaxed) {
        return;
    }
    // This task is ending anyway, so it may wait a little for room: the core must
    // learn of every closed flow it may hold.
    let closed = inner
        .events
        .send_timeout(TransportEvent::FlowClosed(info.flow), CLOSE_EVENT_TIMEOUT)
        .await;
    if let Err(mpsc::error::SendTimeoutError::Timeout(_)) = closed {
        bump(&inner.stats.events_dropped);
        warn!(%remote, flow, "event channel to the core stayed full; FlowClosed dropped");
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    inner: Arc<Inner>,
    info: FlowInfo,
    mut w: W,
    mut rx: mpsc::Receiver<Bytes>,
    last_write: Arc<AtomicU64>,
    started: Instant,
) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let msg = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            m = rx.recv() => match m {
                Some(m) => m,
                None => break, // connection closed: everything queued is written
            },
        };
        // Flush too: TLS may hold written bytes in its buffer.
        let written = timeout(WRITE_TIMEOUT, async {
            w.write_all(&msg).await?;
            w.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {
                if msg.as_ref() != b"\r\n" {
                    bump(&inner.stats.stream_messages_out);
                }
                last_write.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                debug!(remote = %info.remote, flow = info.flow.0, error = %e, "stream write failed");
                bump(&inner.stats.send_errors);
                return;
            }
            Err(_) => {
                debug!(remote = %info.remote, flow = info.flow.0, "stream write timed out");
                bump(&inner.stats.send_errors);
                return;
            }
        }
    }
    let _ = timeout(Duration::from_secs(1), w.shutdown()).await;
}

#[cfg(test)]
mod tests;
