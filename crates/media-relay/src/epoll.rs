//! The two kernel objects a relay worker waits on: a level-triggered epoll set
//! of its calls' sockets, and an eventfd that wakes it for commands.
//!
//! Why not mio (tokio's poller): it is edge-triggered only, so a reader must read
//! until `WouldBlock` to be told again: one wasted `recvfrom` for every packet,
//! as a leg's packets come one at a time. Level-triggered, one read per readiness
//! is enough; a socket with more waiting is simply reported again.

use std::io;
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
