//! What a relay worker asks of the kernel that std does not offer: a
//! level-triggered epoll set of its calls' sockets, an eventfd that wakes it for
//! commands, and reading a datagram with the time it arrived.
//!
//! Why not mio (tokio's poller): it is edge-triggered only, so a reader must read
//! until `WouldBlock` to be told again: one wasted `recvfrom` for every packet,
//! as a leg's packets come one at a time. Level-triggered, one read per readiness
//! is enough; a socket with more waiting is simply reported again.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        // SAFETY: no pointers; the result is checked before it is owned.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(Epoll { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Watches `fd` for input, reported with `token` until [`Epoll::delete`] or
    /// until the descriptor is closed.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: both descriptors are open for the call; `event` outlives it.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut event) };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: both descriptors are open; the event may be null for DEL (Linux >= 2.6.9).
        let rc =
            unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd.as_raw_fd(), std::ptr::null_mut()) };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Waits until something is ready or `timeout` passes (`None`: no limit),
    /// then fills `events`. The timeout is rounded up to the next millisecond,
    /// so a wait never ends before its deadline.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let millis = match timeout {
            None => -1,
            Some(timeout) => i32::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
        };
        let capacity = i32::try_from(events.buf.len()).unwrap_or(i32::MAX);
        // SAFETY: the kernel writes at most `capacity` events into the buffer.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.buf.as_mut_ptr(), capacity, millis) };
        if n < 0 {
            events.len = 0;
            let error = io::Error::last_os_error();
            // A signal is not a failure: the caller loops and waits again.
            return if error.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(error) };
        }
        events.len = n as usize;
        Ok(())
    }
}

/// Room for the events of one wait; more ready sockets are reported by the next.
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    pub fn with_capacity(capacity: usize) -> Self {
        Events { buf: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)], len: 0 }
    }

    /// The tokens of the ready descriptors, by index (no borrow of `self`
    /// outlives the call, so the caller can act on each as it goes).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn token(&self, index: usize) -> u64 {
        self.buf[index].u64
    }
}

/// A counter another thread increments to wake the worker.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: no pointers; the result is checked before it is owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer. It can only fail if the counter
        // would overflow, and then the worker has a wake-up pending anyway.
        unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Resets the counter, so the level-triggered epoll stops reporting it.
    pub fn drain(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer; empty (EAGAIN) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Asks the kernel to stamp each datagram the socket receives with its arrival
/// time (`SO_TIMESTAMPNS`, CLOCK_REALTIME), read by [`recv_stamped`].
pub fn enable_arrival_stamps(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value is a live c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// One datagram read by [`recv_stamped`].
pub struct Datagram {
    pub len: usize,
    pub from: SocketAddr,
    /// Arrival, in nanoseconds since the Unix epoch (CLOCK_REALTIME), if stamped.
    pub arrived_ns: Option<u64>,
}

/// Reads one datagram into `buf` (without blocking) with its arrival stamp:
/// one `recvmsg`, the same single system call as `recv_from`.
pub fn recv_stamped(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut addr = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    // Room for one SCM_TIMESTAMPNS (a timespec and its header), 8-byte aligned.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_mut_ptr().cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    // SAFETY: every pointer in `msg` points into a live buffer of the length given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `msg_namelen` bytes of the address.
    let from = unsafe { socket_addr(addr.as_ptr(), msg.msg_namelen) }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram from a non-IP address"))?;
    let mut arrived_ns = None;
    // SAFETY: the CMSG_* walk stays within `msg_controllen`, which the kernel set.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                // No stamp for a clock before 1970 or after 2554, rather than an overflow.
                let (secs, nanos) = (u64::try_from(ts.tv_sec).ok(), u64::try_from(ts.tv_nsec).ok());
                arrived_ns = secs.and_then(|s| s.checked_mul(1_000_000_000)?.checked_add(nanos?));
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    // n <= buf.len(): without MSG_TRUNC in the flags, recvmsg returns the bytes it copied.
    Ok(Datagram { len: n as usize, from, arrived_ns })
}

/// # Safety
/// `addr` points to `len` initialised bytes of a socket address.
unsafe fn socket_addr(addr: *const libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    // SAFETY (all reads): the family says which struct the bytes are, and `len` covers it.
    unsafe {
        match i32::from((*addr).ss_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                let v4 = &*addr.cast::<libc::sockaddr_in>();
                let ip = u32::from_be(v4.sin_addr.s_addr);
                Some(SocketAddr::V4(SocketAddrV4::new(ip.into(), u16::from_be(v4.sin_port))))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                let v6 = &*addr.cast::<libc::sockaddr_in6>();
                let ip = v6.sin6_addr.s6_addr.into();
                let port = u16::from_be(v6.sin6_port);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, port, v6.sin6_flowinfo, v6.sin6_scope_id)))
            }
            _ => None,
        }
    }
}

/// Now, in nanoseconds since the Unix epoch: the clock arrival stamps use.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
