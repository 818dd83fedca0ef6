//! The media load generator: phones that send 20 ms G.711 packets through the
//! relay and measure what comes out. One place for `benches/media_load.rs`
//! (the figures in docs/media-load.md) and `tests/media_smoke.rs` (CI).
//!
//! A phone is a loopback UDP socket connected to the relay port of its leg.
//! Every 20 ms it sends one RTP packet (version 2, PT 0 = PCMU, a 160-byte
//! payload, sequence number +1 and timestamp +160 each time) whose payload
//! carries a magic, the call, the side, a counter and the send time
//! (CLOCK_REALTIME, ns, read just before the send). Phone `k` of `n` sends at
//! `start + k × 20 ms / n + i × 20 ms` for its `i`-th packet: the phones are
//! spread evenly over the 20 ms, and a late send never moves the next one
//! (drift-free; the lateness is measured).
//!
//! The kernel stamps each datagram a phone receives as it arrives
//! (`SO_TIMESTAMPNS`), so the extra latency, arrival minus send time, is the
//! way from one phone's `send` through the relay to the other phone's socket,
//! and not the time the generator took to read it (reported apart, as the
//! read delay). Per receiving phone: packets received, lost (sent by the
//! phone it hears minus received), reordered (arrived after a later one),
//! duplicated, foreign (another call's or side's: misrouted), latency mean
//! and max, and the RFC 3550 §6.4.1 interarrival jitter estimator run over
//! the transit times (so the generator's own send lateness is not counted).
//!
//! A few threads drive every phone (`media-gen-N`): each owns a share of the
//! phones, sends what is due, reads what has come (a level-triggered epoll
//! over its sockets, polled without waiting: one datagram per ready socket per
//! pass), and sleeps until the next send. Arrivals never wake it, which keeps
//! the generator cheaper than the relay it loads. With [`Plan::tick`] it sleeps
//! at least that long and sends what fell due meanwhile together.
//!
//! [`relay_mode`] runs the generator against a [`MediaRelay`] in this process
//! (its worker threads named `relay-worker-N`), bridged calls of two phones each,
//! and measures the relay's threads' CPU from /proc/self/task and the
//! process's resident memory. Everything is bounded: calls by the caller,
//! time by [`Plan`].

#![allow(dead_code)] // the bench and the smoke test use different parts

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use media_relay::{BridgeParams, Codec, LegParams, LegTotals, MediaRelay, PayloadMap, RelayConfig};

pub const FRAME: Duration = Duration::from_millis(20);
pub const PAYLOAD_LEN: usize = 160;
pub const PACKET_LEN: usize = 12 + PAYLOAD_LEN;
const MAGIC: [u8; 4] = *b"TDML";
/// `SO_TIMESTAMPNS` (the "old" one: a 64-bit `timespec` on 64-bit Linux) and its
/// control message type; the libc crate does not export them for every target.
const SO_TIMESTAMPNS: libc::c_int = 35;
const SCM_TIMESTAMPNS: libc::c_int = SO_TIMESTAMPNS;
/// Histograms: 1 µs buckets up to 10 ms, then 100 µs buckets up to 1 s;
/// anything longer lands in the last.
const FINE_US: u64 = 10_000;
const COARSE_US: u64 = 100;
const HIST_BUCKETS: usize = (FINE_US + (1_000_000 - FINE_US) / COARSE_US) as usize;
/// Packets a generator thread sends before it reads again.
const MAX_BURST: usize = 256;
/// Events taken from epoll per wait.
const MAX_EVENTS: usize = 512;
/// The name the relay's runtime gives its threads, to tell them apart in /proc.
pub const RELAY_THREAD: &str = "relay-worker";
pub const GENERATOR_THREAD: &str = "media-gen";

/// How long a run lasts: the phones send for `warmup + measure`, CPU is read
/// over `measure`, and receiving goes on for `drain` after the last send.
#[derive(Clone, Debug)]
pub struct Plan {
    pub warmup: Duration,
    pub measure: Duration,
    pub drain: Duration,
    /// Generator threads.
    pub threads: usize,
    /// A generator thread sleeps at least this long between sends, and sends
    /// what fell due meanwhile together: zero sends each packet at its time
    /// (the relay sees arrivals spread evenly); a tick of, say, 1 ms makes the
    /// generator cheaper and the arrivals come in bursts.
    pub tick: Duration,
    /// CPUs the generator threads are kept on (none: anywhere).
    pub cpus: Vec<usize>,
}

/// Where [`run`] is, for measurements taken from the calling thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// The warm-up is over; the measured window starts.
    Measuring,
    /// The last packet is due; the window ends.
    Measured,
}

/// A histogram of durations: 1 µs buckets to 10 ms, 100 µs buckets to 1 s.
#[derive(Clone)]
pub struct Hist {
    buckets: Vec<u32>,
    pub count: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for Hist {
    fn default() -> Self {
        // Zeroed memory from the allocator: pages stay untouched (out of RSS) until used.
        Hist { buckets: vec![0; HIST_BUCKETS], count: 0, sum_ns: 0, max_ns: 0 }
    }
}

impl Hist {
    pub fn record(&mut self, ns: u64) {
        let us = ns / 1000;
        let bucket = if us < FINE_US { us } else { FINE_US + (us - FINE_US) / COARSE_US };
        let bucket = usize::try_from(bucket).unwrap_or(usize::MAX).min(HIST_BUCKETS - 1);
        self.buckets[bucket] += 1;
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The value at quantile `q` (0..=1), in µs, to the bucket (1 µs below 10 ms,
    /// 100 µs above); 0 if empty.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                // The top bucket holds everything longer: the max says more.
                let us = i as u64;
                return if i == HIST_BUCKETS - 1 {
                    self.max_us()
                } else if us < FINE_US {
                    us as f64
                } else {
                    (FINE_US + (us - FINE_US) * COARSE_US) as f64
                };
            }
        }
        self.max_us()
    }

    pub fn max_us(&self) -> f64 {
        self.max_ns as f64 / 1000.0
    }

    pub fn mean_us(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum_ns as f64 / self.count as f64 / 1000.0 }
    }

    /// "p50 x, p99 y, p99.9 z, max w µs".
    pub fn summary(&self) -> String {
        format!(
            "p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs (mean {:.1} µs, {} samples)",
            self.quantile_us(0.5),
            self.quantile_us(0.99),
            self.quantile_us(0.999),
            self.max_us(),
            self.mean_us(),
            self.count
        )
    }
}

/// One phone: its socket and what it sent and heard.
pub struct Phone {
    socket: UdpSocket,
    pub call: u32,
    /// 0 = leg A's phone, 1 = leg B's.
    pub side: u8,
    /// The side whose packets this phone should hear: the other (a bridge) or
    /// its own (an echo line).
    pub hears: u8,
    offset: Duration,
    // Sending.
    counter: u32,
    pub sent: u64,
    pub send_errors: u64,
    // Receiving.
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub foreign: u64,
    pub recv_errors: u64,
    /// One more than the highest counter heard (0: nothing yet).
    next_expected: u32,
    /// Bit `i`: counter `next_expected - 1 - i` was heard.
    window: u64,
    lat_sum_ns: u64,
    lat_max_ns: u64,
    /// RFC 3550 §6.4.1's estimate, in ns: as of the last packet (what an RTCP
    /// report would carry), and its mean and maximum over the run (the last
    /// value alone says only how the last few packets went).
    jitter_ns: f64,
    jitter_sum_ns: f64,
    jitter_max_ns: f64,
    jitter_samples: u64,
    last_transit_ns: Option<i64>,
}

impl Phone {
    /// A phone on a loopback socket (a port chosen by the system), not yet
    /// connected: its address goes into the other side's signalling first.
    pub fn bind(call: u32, side: u8, hears: u8) -> io::Result<Phone> {
        let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))?;
        socket.set_nonblocking(true)?;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option of the size given.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_TIMESTAMPNS,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Phone {
            socket,
            call,
            side,
            hears,
            offset: Duration::ZERO,
            counter: 0,
            sent: 0,
            send_errors: 0,
            received: 0,
            duplicates: 0,
            reordered: 0,
            foreign: 0,
            recv_errors: 0,
            next_expected: 0,
            window: 0,
            lat_sum_ns: 0,
            lat_max_ns: 0,
            jitter_ns: 0.0,
            jitter_sum_ns: 0.0,
            jitter_max_ns: 0.0,
            jitter_samples: 0,
            last_transit_ns: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("a bound socket has an address")
    }

    /// Sends to, and hears only from, the relay's port for this phone's leg.
    pub fn connect(&self, relay: SocketAddr) -> io::Result<()> {
        self.socket.connect(relay)
    }

    /// A packet from the phone this one hears: counts it; its latency unless a duplicate.
    fn heard(&mut self, counter: u32, sent_ns: u64, arrival_ns: u64) -> Option<u64> {
        if counter >= self.next_expected {
            let shift = counter - self.next_expected + 1;
            self.window = if shift >= 64 { 0 } else { self.window << shift };
            self.window |= 1;
            self.next_expected = counter.wrapping_add(1);
        } else {
            let back = self.next_expected - 1 - counter;
            if back < 64 {
                if self.window & (1 << back) != 0 {
                    self.duplicates += 1;
                    return None;
                }
                self.window |= 1 << back;
            }
            self.reordered += 1;
        }
        self.received += 1;
        let latency = arrival_ns.saturating_sub(sent_ns);
        self.lat_sum_ns += latency;
        self.lat_max_ns = self.lat_max_ns.max(latency);
        let transit = arrival_ns as i64 - sent_ns as i64;
        if let Some(last) = self.last_transit_ns {
            let d = (transit - last).abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
            self.jitter_sum_ns += self.jitter_ns;
            self.jitter_max_ns = self.jitter_max_ns.max(self.jitter_ns);
            self.jitter_samples += 1;
        }
        self.last_transit_ns = Some(transit);
        Some(latency)
    }
}

/// The phones of a run, already shared out among the generator threads (so
/// nothing the generator keeps per phone is allocated once the run starts).
pub struct PhoneSet {
    threads: Vec<Vec<Phone>>,
    added: usize,
}

impl PhoneSet {
    pub fn new(threads: usize, phones: usize) -> PhoneSet {
        let threads = threads.max(1);
        PhoneSet { threads: (0..threads).map(|_| Vec::with_capacity(phones / threads + 1)).collect(), added: 0 }
    }

    /// Phone `k` (in the order added) goes to thread `k % threads`.
    pub fn add(&mut self, phone: Phone) {
        let n = self.threads.len();
        self.threads[self.added % n].push(phone);
        self.added += 1;
    }

    pub fn len(&self) -> usize {
        self.added
    }

    pub fn iter(&self) -> impl Iterator<Item = &Phone> {
        self.threads.iter().flatten()
    }
}

/// What a run measured.
pub struct Outcome {
    /// Every phone, ordered by call then side.
    pub phones: Vec<Phone>,
    /// Send time to kernel arrival at the phone that heard it.
    pub latency: Hist,
    /// Kernel arrival to the generator's read: the generator's own delay.
    pub read_delay: Hist,
    /// Actual send time minus the schedule: the generator's pacing.
    pub lateness: Hist,
    /// Datagrams a phone received that were not the generator's packets.
    pub garbage: u64,
    /// From the first send to the last.
    pub sending: Duration,
    /// Packets the schedule held: more than were sent only if the generator
    /// fell so far behind that it gave up on the last ones.
    pub planned: u64,
}

/// One direction of a call: one phone's packets as the other (or itself) heard them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Direction {
    pub call: u32,
    pub from: u8,
    pub to: u8,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicates: u64,
    pub foreign: u64,
    /// RFC 3550 jitter: the estimate's mean over the run, its maximum, its last value.
    pub jitter_mean_us: f64,
    pub jitter_max_us: f64,
    pub jitter_last_us: f64,
    pub latency_mean_us: f64,
    pub latency_max_us: f64,
}

/// Sums over every direction.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicates: u64,
    pub foreign: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
    /// Directions that lost at least one packet.
    pub lossy_directions: usize,
    pub directions: usize,
}

impl Totals {
    pub fn loss_percent(&self) -> f64 {
        100.0 * self.lost as f64 / self.sent.max(1) as f64
    }
}

impl Outcome {
    pub fn directions(&self) -> Vec<Direction> {
        let sent: HashMap<(u32, u8), u64> = self.phones.iter().map(|p| ((p.call, p.side), p.sent)).collect();
        self.phones
            .iter()
            .map(|p| {
                let sent = sent.get(&(p.call, p.hears)).copied().unwrap_or(0);
                Direction {
                    call: p.call,
                    from: p.hears,
                    to: p.side,
                    sent,
                    received: p.received,
                    lost: sent.saturating_sub(p.received),
                    reordered: p.reordered,
                    duplicates: p.duplicates,
                    foreign: p.foreign,
                    jitter_mean_us: p.jitter_sum_ns / p.jitter_samples.max(1) as f64 / 1000.0,
                    jitter_max_us: p.jitter_max_ns / 1000.0,
                    jitter_last_us: p.jitter_ns / 1000.0,
                    latency_mean_us: if p.received == 0 {
                        0.0
                    } else {
                        p.lat_sum_ns as f64 / p.received as f64 / 1000.0
                    },
                    latency_max_us: p.lat_max_ns as f64 / 1000.0,
                }
            })
            .collect()
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for d in self.directions() {
            t.sent += d.sent;
            t.received += d.received;
            t.lost += d.lost;
            t.reordered += d.reordered;
            t.duplicates += d.duplicates;
            t.foreign += d.foreign;
            t.lossy_directions += usize::from(d.lost > 0);
            t.directions += 1;
        }
        for p in &self.phones {
            t.send_errors += p.send_errors;
            t.recv_errors += p.recv_errors;
        }
        t
    }

    /// Per-direction jitter in µs (`pick` one of a direction's figures), sorted.
    pub fn jitters_us(&self, pick: impl Fn(&Direction) -> f64) -> Vec<f64> {
        let mut j: Vec<f64> = self.directions().iter().map(pick).collect();
        j.sort_by(f64::total_cmp);
        j
    }

    /// One line per direction, for a spreadsheet.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "call,from,to,sent,received,lost,reordered,duplicates,foreign,jitter_mean_us,jitter_max_us,jitter_last_us,\
latency_mean_us,latency_max_us\n",
        );
        for d in self.directions() {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.1}\n",
                d.call,
                side_name(d.from),
                side_name(d.to),
                d.sent,
                d.received,
                d.lost,
                d.reordered,
                d.duplicates,
                d.foreign,
                d.jitter_mean_us,
                d.jitter_max_us,
                d.jitter_last_us,
                d.latency_mean_us,
                d.latency_max_us
            ));
        }
        out
    }
}

fn side_name(side: u8) -> &'static str {
    if side == 0 { "A" } else { "B" }
}

/// Runs the phones to `plan` and calls `mark` (on this thread) as the measured
/// window starts and ends. Returns when every thread is done: at most
/// `warmup + measure + 2 × drain` and a little after it starts.
pub fn run(set: PhoneSet, plan: &Plan, mut mark: impl FnMut(Mark)) -> Outcome {
    let total = set.added.max(1) as u32;
    let nthreads = set.threads.len() as u32;
    let start = Instant::now() + Duration::from_millis(100);
    let send_end = start + plan.warmup + plan.measure;
    let drain = plan.drain;
    let tick = plan.tick;
    let mut planned = 0u64;
    let cpus = plan.cpus.clone();
    let handles: Vec<_> = set
        .threads
        .into_iter()
        .enumerate()
        .map(|(t, mut phones)| {
            for (i, phone) in phones.iter_mut().enumerate() {
                // Global index k = i × threads + t, spread over one frame.
                let k = i as u32 * nthreads + t as u32;
                phone.offset = FRAME * k / total;
                // Sends at offset, offset + 20 ms, ... before the end of sending.
                let span = (plan.warmup + plan.measure).saturating_sub(phone.offset);
                planned += span.as_nanos().div_ceil(FRAME.as_nanos()) as u64;
            }
            let cpus = cpus.clone();
            std::thread::Builder::new()
                .name(format!("{GENERATOR_THREAD}-{t}"))
                .spawn(move || generate(phones, start, send_end, drain, tick, &cpus))
                .expect("a generator thread starts")
        })
        .collect();
    sleep_until(start + plan.warmup);
    mark(Mark::Measuring);
    sleep_until(send_end);
    mark(Mark::Measured);
    let mut outcome = Outcome {
        phones: Vec::new(),
        latency: Hist::default(),
        read_delay: Hist::default(),
        lateness: Hist::default(),
        garbage: 0,
        sending: send_end - start,
        planned,
    };
    for handle in handles {
        let w = handle.join().expect("a generator thread panicked");
        outcome.latency.merge(&w.latency);
        outcome.read_delay.merge(&w.read_delay);
        outcome.lateness.merge(&w.lateness);
        outcome.garbage += w.garbage;
        outcome.phones.extend(w.phones);
    }
    outcome.phones.sort_by_key(|p| (p.call, p.side));
    outcome
}

/// Keeps the calling thread on `cpus` (nothing for none).
pub fn pin_to(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; the calls only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        let rc = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "sched_setaffinity {cpus:?}: {}", io::Error::last_os_error());
    }
}

fn sleep_until(at: Instant) {
    if let Some(left) = at.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

fn realtime_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// One generator thread's result.
struct Worker {
    phones: Vec<Phone>,
    latency: Hist,
    read_delay: Hist,
    lateness: Hist,
    garbage: u64,
}

/// An epoll instance, closed on drop.
struct Epoll(libc::c_int);

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// One thread's phones: sends every packet scheduled before `send_end` (a
/// thread still sending `drain` after it gives up on the rest, which are not
/// counted as sent), then reads for `drain` after its last send.
fn generate(
    phones: Vec<Phone>,
    start: Instant,
    send_end: Instant,
    drain: Duration,
    tick: Duration,
    cpus: &[usize],
) -> Worker {
    let mut w =
        Worker { phones, latency: Hist::default(), read_delay: Hist::default(), lateness: Hist::default(), garbage: 0 };
    pin_to(cpus);
    // Wake for a send on time: a thread's default timer slack is 50 µs.
    // SAFETY: plain system calls on descriptors this thread owns.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    // SAFETY: as above.
    let epoll = Epoll(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) });
    assert!(epoll.0 >= 0, "epoll_create1: {}", io::Error::last_os_error());
    for (i, phone) in w.phones.iter().enumerate() {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
        let rc = unsafe { libc::epoll_ctl(epoll.0, libc::EPOLL_CTL_ADD, phone.socket.as_raw_fd(), &mut event) };
        assert_eq!(rc, 0, "epoll_ctl: {}", io::Error::last_os_error());
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    let mut packet = [0xffu8; PACKET_LEN];
    let mut buf = [0u8; 2048];
    let mut control = [0u64; 8];
    // The next phone to send (phones are in offset order) and its round.
    let (mut next, mut round) = (0usize, 0u32);
    let n = w.phones.len();
    let (mut sending, mut last_send) = (true, start);
    loop {
        // Everything due, each packet stamped just before it goes; a thread
        // that fell behind reads between bursts, so its phones' sockets do not
        // overflow while it catches up.
        let (mut due, mut sent) = (None, 0);
        while sending && sent < MAX_BURST {
            let Some(phone) = w.phones.get(next) else { break };
            let at = start + phone.offset + FRAME * round;
            let now = Instant::now();
            if at >= send_end || now >= send_end + drain {
                sending = false;
                break;
            }
            if at > now {
                due = Some(at);
                break;
            }
            sent += 1;
            last_send = now;
            send(&mut w.phones[next], &mut packet);
            w.lateness.record((now - at).as_nanos() as u64);
            next += 1;
            if next == n {
                (next, round) = (0, round + 1);
            }
        }
        // Still behind: the burst ended before reaching a packet not yet due.
        let behind = sending && sent == MAX_BURST && due.is_none();
        // What has come meanwhile, without waiting: arrivals never wake the
        // thread (the kernel stamped them), so it wakes only to send.
        loop {
            // SAFETY: `events` has room for MAX_EVENTS entries.
            let ready = unsafe { libc::epoll_wait(epoll.0, events.as_mut_ptr(), MAX_EVENTS as libc::c_int, 0) };
            for event in &events[..ready.max(0) as usize] {
                receive(&mut w, event.u64 as usize, &mut buf, &mut control);
            }
            if ready < MAX_EVENTS as libc::c_int {
                break;
            }
        }
        let now = Instant::now();
        let end = last_send + drain;
        if !sending && now >= end {
            break;
        }
        if behind {
            continue;
        }
        // The next send, but not before a tick has passed: with a tick, the
        // packets due meanwhile go together. Once sending is over, every
        // millisecond until `drain` after the last send, to read the last packets.
        match due {
            Some(at) if sending => sleep_until(at.max(now + tick)),
            _ => sleep_until((now + Duration::from_millis(1)).min(end)),
        }
    }
    w
}

fn send(phone: &mut Phone, packet: &mut [u8; PACKET_LEN]) {
    let counter = phone.counter;
    let id = phone.call << 1 | u32::from(phone.side);
    packet[0] = 0x80;
    packet[1] = 0;
    packet[2..4].copy_from_slice(&(counter as u16).to_be_bytes());
    packet[4..8].copy_from_slice(&counter.wrapping_mul(PAYLOAD_LEN as u32).to_be_bytes());
    packet[8..12].copy_from_slice(&(0x5444_0000 ^ id).to_be_bytes());
    packet[12..16].copy_from_slice(&MAGIC);
    packet[16..20].copy_from_slice(&phone.call.to_be_bytes());
    packet[20] = phone.side;
    packet[24..28].copy_from_slice(&counter.to_be_bytes());
    packet[28..36].copy_from_slice(&realtime_ns().to_be_bytes());
    phone.counter += 1;
    match phone.socket.send(&packet[..]) {
        Ok(_) => phone.sent += 1,
        Err(_) => phone.send_errors += 1,
    }
}

/// Reads one datagram from a ready phone (epoll is level-triggered: another
/// waiting one is reported again).
fn receive(w: &mut Worker, index: usize, buf: &mut [u8; 2048], control: &mut [u64; 8]) {
    let Some(phone) = w.phones.get_mut(index) else { return };
    let (len, stamp) = match recv_stamped(&phone.socket, buf, control) {
        Ok(received) => received,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
        Err(_) => {
            // E.g. ECONNREFUSED: an ICMP error for an earlier send.
            phone.recv_errors += 1;
            return;
        }
    };
    let read = realtime_ns();
    let arrival = stamp.unwrap_or(read);
    let packet = &buf[..len];
    if len != PACKET_LEN || packet[0] & 0xc0 != 0x80 || packet[12..16] != MAGIC {
        w.garbage += 1;
        return;
    }
    let call = u32::from_be_bytes(packet[16..20].try_into().unwrap());
    let side = packet[20];
    let counter = u32::from_be_bytes(packet[24..28].try_into().unwrap());
    let sent = u64::from_be_bytes(packet[28..36].try_into().unwrap());
    if call != phone.call || side != phone.hears {
        phone.foreign += 1;
        return;
    }
    if let Some(latency) = phone.heard(counter, sent, arrival) {
        w.latency.record(latency);
        w.read_delay.record(read.saturating_sub(arrival));
    }
}

/// `recvmsg` with the kernel's arrival time (CLOCK_REALTIME, ns) when it gives one.
fn recv_stamped(socket: &UdpSocket, buf: &mut [u8], control: &mut [u64; 8]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(control) as _;
    // SAFETY: as above.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsgs.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

// ---- /proc ----

/// CPU time of every thread of a process (`"self"` or a pid), by thread id:
/// (name, ns). From schedstat (ns) where the kernel has it, else stat (ticks).
pub fn threads_cpu(pid: &str) -> HashMap<u32, (String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return HashMap::new() };
    dir.flatten()
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let path = e.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?.trim().to_string();
            let ns = std::fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .or_else(|| stat_ticks(&std::fs::read_to_string(path.join("stat")).ok()?).map(|t| t * 10_000_000))?;
            Some((tid, (name, ns)))
        })
        .collect()
}

/// utime + stime from a /proc stat line, in USER_HZ (100 Hz) ticks.
fn stat_ticks(stat: &str) -> Option<u64> {
    let (_, after) = stat.rsplit_once(')')?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the line; `f` starts at field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU used between two [`threads_cpu`] readings by the threads whose name
/// starts with `prefix` (all of them for ""); a thread born meanwhile counts from 0.
pub fn cpu_between(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
    prefix: &str,
) -> Duration {
    let ns: u64 = after
        .iter()
        .filter(|(_, (name, _))| name.starts_with(prefix))
        .map(|(tid, (_, ns))| ns.saturating_sub(before.get(tid).map_or(0, |b| b.1)))
        .sum();
    Duration::from_nanos(ns)
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time of every thread on the machine, by (pid, tid), in ns (schedstat).
/// The tick-sampled totals of /proc/stat miss most of this load's short bursts
/// (a core that sleeps between ticks is never sampled busy), so the machine's
/// busy time is the sum over its threads; kernel threads (ksoftirqd) included.
/// Each with its name.
pub fn all_threads_cpu() -> HashMap<(u32, u32), (String, u64)> {
    let mut out = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else { continue };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let ns = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            if let Some(ns) = ns {
                let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string();
                out.insert((pid, tid), (name, ns));
            }
        }
    }
    out
}

/// The kernel's UDP counters (whole machine): receive-buffer drops, send-buffer
/// drops, and all receive errors.
pub fn udp_drops() -> [u64; 3] {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return [0; 3] };
    let table: HashMap<&str, u64> = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter_map(|(n, v)| Some((n, v.parse().ok()?)))
        .collect();
    ["RcvbufErrors", "SndbufErrors", "InErrors"].map(|k| table.get(k).copied().unwrap_or(0))
}

/// What /proc says at one moment.
#[derive(Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub switch_threads: HashMap<u32, (String, u64)>,
    pub own_threads: HashMap<u32, (String, u64)>,
    pub machine: HashMap<(u32, u32), (String, u64)>,
    /// The switch's process id (ours in relay mode).
    pub switch_pid: u32,
    pub udp: [u64; 3],
    pub rss_kib: u64,
}

/// Reads /proc for the switch (`pid`, or `"self"` when the relay runs here) and for us.
pub fn snapshot(pid: &str) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        switch_threads: threads_cpu(pid),
        own_threads: if pid == "self" { HashMap::new() } else { threads_cpu("self") },
        machine: all_threads_cpu(),
        switch_pid: if pid == "self" { std::process::id() } else { pid.parse().unwrap_or(0) },
        udp: udp_drops(),
        rss_kib: rss_kib(pid),
    }
}

// ---- relay mode ----

/// A run against a relay in this process.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    pub calls: usize,
    /// The relay's worker threads.
    pub workers: usize,
    pub rtcp_mux: bool,
    pub port_min: u16,
    pub port_max: u16,
    /// CPUs the relay's threads are kept on (none: anywhere).
    pub cpus: Vec<usize>,
}

/// A run's figures; [`Report::print`] says them.
pub struct Report {
    pub title: String,
    pub calls: usize,
    pub plan: Plan,
    pub outcome: Outcome,
    /// The measured window: CPU of the switch (its relay threads in relay
    /// mode, the whole process in switch mode), of the generator, the machine.
    pub window: Duration,
    pub switch_cpu: Duration,
    pub switch_cpu_label: String,
    pub generator_cpu: Duration,
    pub other_own_cpu: Duration,
    /// Every thread on the machine, ours and the switch's included.
    pub machine_cpu: Duration,
    /// The other threads on the machine that took the most CPU over the window.
    pub others_top: Vec<(String, Duration)>,
    pub udp: [u64; 3],
    /// Resident memory (KiB): before the calls were set up, after, once the
    /// media flowed (at the window's start), and at the window's end.
    pub rss_before: u64,
    pub rss_setup: u64,
    pub rss_measuring: u64,
    pub rss_end: u64,
    /// The relay's own counters summed over every leg (relay mode).
    pub relay: Option<LegTotals>,
}

pub fn pcmu_params(remote: SocketAddr) -> LegParams {
    LegParams {
        remote_rtp: Some(remote),
        remote_rtcp: None,
        payloads: PayloadMap::new(&[(0, Codec::Pcmu)]).expect("PT 0 is valid"),
        inband_dtmf: false,
    }
}

/// `options.calls` bridged calls through a relay in this process, two phones
/// each, run to `plan`.
pub fn relay_mode(options: &RelayOptions, plan: &Plan) -> Report {
    // Only to wait on the calls' handles; the relay moves packets on its own threads.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let mut phones = PhoneSet::new(plan.threads, options.calls * 2);
    for call in 0..options.calls as u32 {
        for side in [0, 1] {
            phones.add(Phone::bind(call, side, 1 - side).expect("a phone binds a loopback port"));
        }
    }
    let rss_before = rss_kib("self");
    let config =
        RelayConfig { port_min: options.port_min, port_max: options.port_max, workers: options.workers.max(1), ..RelayConfig::default() };
    // Started from a thread pinned to the relay's CPUs: its workers inherit them.
    let relay = std::thread::scope(|scope| {
        scope.spawn(|| {
            pin_to(&options.cpus);
            MediaRelay::new(config)
        })
        .join()
        .expect("the relay starts")
    })
    .expect("a valid relay configuration");
    // The phones' addresses by (call, side), for the relay's SDP hints.
    let addrs: HashMap<(u32, u8), SocketAddr> = phones.iter().map(|p| ((p.call, p.side), p.local_addr())).collect();
    let (calls, relay_addrs) = runtime.block_on(async {
        let mut calls = Vec::with_capacity(options.calls);
        let mut relay_addrs = HashMap::with_capacity(options.calls * 2);
        for call in 0..options.calls as u32 {
            let a = relay.allocate_leg(options.rtcp_mux).expect("a relay port for leg A");
            let b = relay.allocate_leg(options.rtcp_mux).expect("a relay port for leg B");
            relay_addrs.insert((call, 0u8), a.local_rtp());
            relay_addrs.insert((call, 1u8), b.local_rtp());
            let params = BridgeParams { a: pcmu_params(addrs[&(call, 0)]), b: pcmu_params(addrs[&(call, 1)]) };
            calls.push(relay.bridge(a, b, params));
        }
        (calls, relay_addrs)
    });
    for phone in phones.iter() {
        phone.connect(relay_addrs[&(phone.call, phone.side)]).expect("connect a phone to its relay port");
    }
    drop(relay_addrs);
    drop(addrs);
    let rss_setup = rss_kib("self");
    let mut marks: Vec<Snapshot> = Vec::with_capacity(2);
    let outcome = run(phones, plan, |_| marks.push(snapshot("self")));
    // Every leg's counters, summed by the relay itself once the calls ended.
    let counters = runtime.block_on(async {
        for call in calls {
            call.stop().await.expect("the call stops cleanly");
        }
        relay.stats().await.legs
    });
    drop(runtime);
    let on = |cpus: &[usize]| if cpus.is_empty() { String::new() } else { format!(" on CPU {cpus:?}") };
    let title = format!(
        "media_load relay mode: {} bridged calls (two phones each, {}), relay {} worker thread(s){}, \
generator {} thread(s){}",
        options.calls,
        if options.rtcp_mux { "rtcp-mux: one port per leg" } else { "RTP + RTCP ports per leg" },
        options.workers.max(1),
        on(&options.cpus),
        plan.threads.max(1),
        on(&plan.cpus)
    );
    Report::new(
        title,
        options.calls,
        plan.clone(),
        outcome,
        &marks,
        rss_before,
        rss_setup,
        Some(counters),
        RELAY_THREAD,
    )
}

impl Report {
    /// From the two snapshots [`run`]'s marks took. `switch_prefix`: the
    /// switch's threads to count ("" for all of another process's).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        title: String,
        calls: usize,
        plan: Plan,
        outcome: Outcome,
        marks: &[Snapshot],
        rss_before: u64,
        rss_setup: u64,
        relay: Option<LegTotals>,
        switch_prefix: &str,
    ) -> Report {
        let (start, end) = (&marks[0], &marks[1]);
        let in_process = start.own_threads.is_empty();
        let own = |s: &Snapshot| if in_process { s.switch_threads.clone() } else { s.own_threads.clone() };
        let (own_start, own_end) = (own(start), own(end));
        let generator_cpu = cpu_between(&own_start, &own_end, GENERATOR_THREAD);
        let switch_cpu = cpu_between(&start.switch_threads, &end.switch_threads, switch_prefix);
        let all_own = cpu_between(&own_start, &own_end, "");
        let other_own_cpu =
            all_own.saturating_sub(generator_cpu + if in_process { switch_cpu } else { Duration::ZERO });
        let used = |k: &(u32, u32), ns: u64| ns.saturating_sub(start.machine.get(k).map_or(0, |(_, b)| *b));
        let machine_ns: u64 = end.machine.iter().map(|(k, (_, ns))| used(k, *ns)).sum();
        // What else ran, by thread name (kernel threads are threads too: ksoftirqd/0).
        let mut others: HashMap<&str, u64> = HashMap::new();
        for (k, (name, ns)) in &end.machine {
            if k.0 != std::process::id() && k.0 != end.switch_pid {
                *others.entry(name.as_str()).or_default() += used(k, *ns);
            }
        }
        let mut others_top: Vec<(String, Duration)> = others
            .into_iter()
            .filter(|(_, ns)| *ns > 0)
            .map(|(n, ns)| (n.to_string(), Duration::from_nanos(ns)))
            .collect();
        others_top.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
        others_top.truncate(3);
        let mut udp = [0u64; 3];
        for (i, u) in udp.iter_mut().enumerate() {
            *u = end.udp[i].saturating_sub(start.udp[i]);
        }
        Report {
            title,
            calls,
            plan,
            outcome,
            window: end.at - start.at,
            switch_cpu,
            switch_cpu_label: if switch_prefix.is_empty() {
                "the switch process".to_string()
            } else {
                format!("the relay's threads ({switch_prefix})")
            },
            generator_cpu,
            other_own_cpu,
            machine_cpu: Duration::from_nanos(machine_ns),
            others_top,
            udp,
            rss_before,
            rss_setup,
            rss_measuring: start.rss_kib,
            rss_end: end.rss_kib,
            relay,
        }
    }

    pub fn totals(&self) -> Totals {
        self.outcome.totals()
    }

    /// CPU of every other process (and kernel thread) over the window: noise,
    /// and kernel work done outside our threads (ksoftirqd).
    pub fn others_cpu(&self) -> Duration {
        let ours = self.switch_cpu + self.generator_cpu + self.other_own_cpu;
        self.machine_cpu.saturating_sub(ours)
    }

    /// The switch's share of one core over the window.
    pub fn switch_cores(&self) -> f64 {
        self.switch_cpu.as_secs_f64() / self.window.as_secs_f64()
    }

    /// Bridged calls (two legs: 100 packets a second in, 100 out) one core of
    /// the switch's CPU would carry at this packet rate: the packets actually
    /// sent (fewer than planned if the generator fell far behind) per core
    /// used. An echo call is half of one.
    pub fn calls_per_core(&self) -> f64 {
        let per_s = self.totals().sent as f64 / self.outcome.sending.as_secs_f64();
        per_s / 100.0 / self.switch_cores().max(1e-9)
    }

    /// Resident memory per call once media flows, KiB.
    pub fn rss_per_call_kib(&self) -> f64 {
        self.rss_measuring.saturating_sub(self.rss_before) as f64 / self.calls.max(1) as f64
    }

    pub fn text(&self) -> String {
        let t = self.totals();
        let o = &self.outcome;
        let at = |v: &[f64], q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
        let (means, maxes) = (o.jitters_us(|d| d.jitter_mean_us), o.jitters_us(|d| d.jitter_max_us));
        let worst = o.directions().into_iter().max_by_key(|d| d.lost).unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let window = self.window.as_secs_f64();
        let packets_per_s = t.sent as f64 / o.sending.as_secs_f64();
        let switch_us_per_packet = self.switch_cpu.as_secs_f64() * 1e6 / (packets_per_s * window).max(1.0);
        let mut lines = vec![
            format!(
                "{}; {:.0} s of media ({:.1} s warm-up, {:.1} s measured, {:.1} s drain); generator tick {} µs; loopback",
                self.title,
                o.sending.as_secs_f64(),
                self.plan.warmup.as_secs_f64(),
                self.plan.measure.as_secs_f64(),
                self.plan.drain.as_secs_f64(),
                self.plan.tick.as_micros()
            ),
            format!(
                "  packets: {} sent of {} planned ({:.0}/s into the relay), {} received, {} lost ({:.4}%), {} reordered, {} duplicated, \
{} misrouted, {} not ours; generator send errors {}, receive errors {}",
                t.sent,
                o.planned,
                packets_per_s,
                t.received,
                t.lost,
                t.loss_percent(),
                t.reordered,
                t.duplicates,
                t.foreign,
                o.garbage,
                t.send_errors,
                t.recv_errors
            ),
            format!(
                "  per call: {} of {} directions lost packets; the worst, call {} {}->{}, lost {} of {} ({:.3}%)",
                t.lossy_directions,
                t.directions,
                worst.call,
                side_name(worst.from),
                side_name(worst.to),
                worst.lost,
                worst.sent,
                100.0 * worst.lost as f64 / worst.sent.max(1) as f64
            ),
            format!("  extra latency (send -> kernel arrival at the phone that hears it): {}", o.latency.summary()),
            format!(
                "  jitter (RFC 3550 estimator over transit times): its mean over the run, per direction, median \
{:.1} µs, p99 {:.1} µs; its highest in any direction {:.1} µs",
                at(&means, 0.5),
                at(&means, 0.99),
                at(&maxes, 1.0)
            ),
            format!(
                "  CPU over the {window:.1} s window: {} {:.2} s = {:.1}% of a core, {:.2} µs per packet relayed, \
{:.4}% of a core per call: {:.0} bridged calls' worth of packets (100/s) per core at this load",
                self.switch_cpu_label,
                self.switch_cpu.as_secs_f64(),
                100.0 * self.switch_cores(),
                switch_us_per_packet,
                100.0 * self.switch_cores() / self.calls.max(1) as f64,
                self.calls_per_core()
            ),
            format!(
                "  on the same {cores:.0} cores: the generator {:.2} s ({:.1}% of a core), our other threads {:.2} s, \
everything else on the machine {:.2} s (the most: {}); the machine was {:.0}% busy",
                self.generator_cpu.as_secs_f64(),
                100.0 * self.generator_cpu.as_secs_f64() / window,
                self.other_own_cpu.as_secs_f64(),
                self.others_cpu().as_secs_f64(),
                self.others_top
                    .iter()
                    .map(|(n, d)| format!("{n} {:.2} s", d.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(", "),
                100.0 * self.machine_cpu.as_secs_f64() / (window * cores)
            ),
            format!(
                "  resident memory: {:.1} MiB before the calls, {:.1} MiB set up, {:.1} MiB with media flowing \
({:.1} KiB per call), {:.1} MiB at the end",
                self.rss_before as f64 / 1024.0,
                self.rss_setup as f64 / 1024.0,
                self.rss_measuring as f64 / 1024.0,
                self.rss_per_call_kib(),
                self.rss_end as f64 / 1024.0
            ),
            format!(
                "  kernel UDP drops over the window (whole machine): receive buffer {}, send buffer {}",
                self.udp[0], self.udp[1]
            ),
            format!(
                "  generator: send lateness {}; read delay p99 {:.0} µs, max {:.0} µs",
                o.lateness.summary(),
                o.read_delay.quantile_us(0.99),
                o.read_delay.max_us()
            ),
        ];
        if o.lateness.quantile_us(0.99) > 1000.0 {
            lines.push(format!(
                "  NOTE: the generator fell behind its schedule (send lateness p99 {:.1} ms): the machine is \
saturated, and the load offered was less even than planned",
                o.lateness.quantile_us(0.99) / 1000.0
            ));
        }
        if let Some(r) = &self.relay {
            lines.push(format!(
                "  the relay's counters: {} RTP in, {} out, {} send errors, {} dropped, {} relatches, {} stream changes",
                r.rtp_packets_in,
                r.rtp_packets_out,
                r.send_errors,
                r.dropped(),
                r.relatches,
                r.stream_changes
            ));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    // A bench built for checking has cfg(test) without the test harness: no tests, nothing used.
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn histogram_quantiles_fine_and_coarse() {
        let mut h = Hist::default();
        for us in 1..=100u64 {
            h.record(us * 1000 + 500);
        }
        assert_eq!((h.quantile_us(0.5), h.quantile_us(0.99), h.max_us()), (50.0, 99.0, 100.5));
        let mut slow = Hist::default();
        slow.record(25_049_000); // 25.049 ms: the 100 µs bucket from 25.0 ms
        slow.record(2_000_000_000); // beyond 1 s: the max says it
        assert_eq!(slow.quantile_us(0.5), 25_000.0);
        assert_eq!(slow.quantile_us(1.0), 2_000_000.0);
        h.merge(&slow);
        assert_eq!(h.count, 102);
    }

    #[test]
    fn a_phone_counts_reordered_duplicated_and_missing_packets() {
        let mut p = Phone::bind(7, 1, 0).unwrap();
        let ms = 1_000_000;
        // 0, 1, 3, 2 (late), 2 again (duplicate), 5 (4 lost), 200 (a jump), 5 again (too old to tell).
        for (counter, sent, arrival) in [(0, 0, 10), (1, 20, 31), (3, 60, 70), (2, 40, 75), (2, 40, 76)] {
            p.heard(counter, sent * ms, arrival * ms);
        }
        assert_eq!((p.received, p.reordered, p.duplicates), (4, 1, 1));
        for (counter, t) in [(5, 100), (200, 4000), (5, 4001)] {
            p.heard(counter, t * ms, (t + 10) * ms);
        }
        assert_eq!((p.received, p.reordered, p.duplicates), (7, 2, 1));
        assert_eq!(p.lat_max_ns, 35 * ms);
        // RFC 3550 §6.4.1: J += (|D| - J) / 16, D the change in transit time.
        let mut j = 0.0f64;
        let (mut last, mut highest) = (10.0f64, 0.0f64);
        // The duplicate is not counted; the rest arrive 10 ms after they left.
        for transit in [11.0, 10.0, 35.0, 10.0, 10.0, 10.0] {
            j += ((transit - last).abs() - j) / 16.0;
            highest = highest.max(j);
            last = transit;
        }
        assert!((p.jitter_ns / ms as f64 - j).abs() < 1e-6, "{} vs {j}", p.jitter_ns / ms as f64);
        // Six estimates after the first packet; the highest after the way back from 35 ms to 10.
        assert_eq!(p.jitter_samples, 6);
        assert!((p.jitter_max_ns / ms as f64 - highest).abs() < 1e-6, "{} vs {highest}", p.jitter_max_ns);
    }
}
