//! RTP ports from the configured range. A leg takes an even RTP port and, without
//! rtcp-mux, the odd port above it for RTCP (RFC 3550 §11). The allocator only
//! keeps the books: binding is the caller's, through the closure given to
//! [`PortAllocator::allocate`], so a port some other process holds is skipped.
//!
//! Allocation goes round the range: a released port is handed out again as late
//! as possible, so stray packets of a finished call do not reach the next one.

use std::io;

use crate::MediaError;

/// At most this many binds are tried for one leg before giving up, so a broken
/// bind address costs a bounded number of system calls, not the whole range.
pub const MAX_BIND_ATTEMPTS: usize = 64;

/// The ports of one leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortPair {
    pub rtp: u16,
    /// `None` with rtcp-mux: RTCP shares the RTP port.
    pub rtcp: Option<u16>,
}

/// One even port and the odd port above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    RtpOnly,
    RtpAndRtcp,
}

#[derive(Debug)]
pub struct PortAllocator {
    min: u16,
    max: u16,
    /// The even port of slot 0.
    first_rtp: u16,
    slots: Vec<Slot>,
    /// Where the next search starts.
    next: usize,
    legs_in_use: usize,
    ports_in_use: usize,
}

impl PortAllocator {
    /// `min..=max` must hold at least one even port with its odd neighbour, so
    /// every slot can serve a leg with or without rtcp-mux.
    pub fn new(min: u16, max: u16) -> Result<Self, MediaError> {
        let invalid = |reason| MediaError::InvalidPortRange { min, max, reason };
        if min == 0 {
            return Err(invalid("port 0 cannot be bound to a fixed number"));
        }
        if min > max {
            return Err(invalid("the first port is above the last"));
        }
        let first_rtp = u32::from(min) + u32::from(min) % 2;
        // Pairs (p, p + 1) with p even and p + 1 <= max.
        let slots = (u32::from(max) + 1).saturating_sub(first_rtp) / 2;
        if slots == 0 {
            return Err(invalid("it holds no even port with the odd port above it"));
        }
        Ok(PortAllocator {
            min,
            max,
            first_rtp: first_rtp as u16,
            slots: vec![Slot::Free; slots as usize],
            next: 0,
            legs_in_use: 0,
            ports_in_use: 0,
        })
    }

    /// Starts the round at slot `offset % capacity` (the driver picks it at
    /// random, so a restarted switch does not reuse the last run's ports first).
    pub fn start_at(&mut self, offset: usize) {
        self.next = offset % self.slots.len();
    }

    /// Takes the next free slot whose `bind` succeeds; a slot whose bind fails is
    /// skipped (left free) and the next one tried, at most [`MAX_BIND_ATTEMPTS`] times.
    pub fn allocate<T>(
        &mut self,
        rtcp_mux: bool,
        mut bind: impl FnMut(PortPair) -> io::Result<T>,
    ) -> Result<(PortPair, T), MediaError> {
        let capacity = self.slots.len();
        if self.legs_in_use >= capacity {
            return Err(MediaError::PortsExhausted { min: self.min, max: self.max, legs: capacity });
        }
        let mut attempts = 0;
        let mut last_failure = None;
        for step in 0..capacity {
            let index = (self.next + step) % capacity;
            if self.slots[index] != Slot::Free {
                continue;
            }
            let rtp = self.rtp_port(index);
            let pair = PortPair { rtp, rtcp: if rtcp_mux { None } else { Some(rtp + 1) } };
            attempts += 1;
            match bind(pair) {
                Ok(bound) => {
                    self.slots[index] = if rtcp_mux { Slot::RtpOnly } else { Slot::RtpAndRtcp };
                    self.legs_in_use += 1;
                    self.ports_in_use += if rtcp_mux { 1 } else { 2 };
                    self.next = (index + 1) % capacity;
                    return Ok((pair, bound));
                }
                Err(error) => {
                    last_failure = Some((rtp, error));
                    if attempts == MAX_BIND_ATTEMPTS {
                        // Move on, so the next leg does not retry the same ports first.
                        self.next = (index + 1) % capacity;
                        break;
                    }
                }
            }
        }
        match last_failure {
            Some((port, source)) => Err(MediaError::Bind { min: self.min, max: self.max, attempts, port, source }),
            None => Err(MediaError::PortsExhausted { min: self.min, max: self.max, legs: capacity }),
        }
    }

    /// Returns a leg's ports to the pool; `false` if `rtp_port` was not allocated.
    pub fn release(&mut self, rtp_port: u16) -> bool {
        let Some(index) = self.slot_of(rtp_port) else {
            return false;
        };
        let freed = match self.slots[index] {
            Slot::Free => return false,
            Slot::RtpOnly => 1,
            Slot::RtpAndRtcp => 2,
        };
        self.slots[index] = Slot::Free;
        self.legs_in_use -= 1;
        self.ports_in_use -= freed;
        true
    }

    pub fn legs_in_use(&self) -> usize {
        self.legs_in_use
    }

    /// Bound sockets: one per rtcp-mux leg, two per other leg.
    pub fn ports_in_use(&self) -> usize {
        self.ports_in_use
    }

    /// The most legs the range can hold at once.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn range(&self) -> (u16, u16) {
        (self.min, self.max)
    }

    fn rtp_port(&self, index: usize) -> u16 {
        // index < capacity, so the port is within min..=max - 1.
        self.first_rtp + 2 * index as u16
    }

    fn slot_of(&self, rtp_port: u16) -> Option<usize> {
        let offset = rtp_port.checked_sub(self.first_rtp)?;
        let index = usize::from(offset / 2);
        (offset % 2 == 0 && index < self.slots.len()).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(pair: PortPair) -> io::Result<PortPair> {
        Ok(pair)
    }

    #[test]
    fn even_rtp_ports_with_rtcp_above_unless_muxed() {
        let mut ports = PortAllocator::new(20000, 20009).unwrap();
        assert_eq!(ports.capacity(), 5);
        let (pair, _) = ports.allocate(false, ok).unwrap();
        assert_eq!(pair, PortPair { rtp: 20000, rtcp: Some(20001) });
        let (pair, _) = ports.allocate(true, ok).unwrap();
        assert_eq!(pair, PortPair { rtp: 20002, rtcp: None });
        assert_eq!(ports.legs_in_use(), 2);
        assert_eq!(ports.ports_in_use(), 3);
    }

    #[test]
    fn odd_bounds_stay_inside_the_range() {
        let mut ports = PortAllocator::new(30001, 30006).unwrap();
        assert_eq!(ports.capacity(), 2, "30002/30003 and 30004/30005; 30006 has no odd neighbour");
        let mut seen = Vec::new();
        while let Ok((pair, _)) = ports.allocate(false, ok) {
            seen.push(pair);
        }
        assert_eq!(seen, [PortPair { rtp: 30002, rtcp: Some(30003) }, PortPair { rtp: 30004, rtcp: Some(30005) }]);
        let top = PortAllocator::new(65534, 65535).unwrap();
        assert_eq!(top.capacity(), 1);
    }

    #[test]
    fn invalid_ranges_are_named() {
        for (min, max) in [(0, 100), (20010, 20000), (20001, 20002), (20000, 20000), (65535, 65535)] {
            let error = PortAllocator::new(min, max).unwrap_err();
            assert!(error.to_string().starts_with(&format!("invalid media port range {min}-{max}: ")), "{error}");
        }
    }

    #[test]
    fn exhaustion_names_the_range() {
        let mut ports = PortAllocator::new(40000, 40003).unwrap();
        ports.allocate(false, ok).unwrap();
        ports.allocate(true, ok).unwrap();
        let error = ports.allocate(true, ok).unwrap_err();
        assert_eq!(error.to_string(), "media port range 40000-40003 exhausted: all 2 legs are in use");
    }

    #[test]
    fn release_returns_ports_to_the_pool() {
        let mut ports = PortAllocator::new(40000, 40003).unwrap();
        let (a, _) = ports.allocate(false, ok).unwrap();
        let (b, _) = ports.allocate(true, ok).unwrap();
        assert!(ports.release(a.rtp));
        assert_eq!((ports.legs_in_use(), ports.ports_in_use()), (1, 1));
        assert!(!ports.release(a.rtp), "double release");
        assert!(!ports.release(40001), "an RTCP port is not a leg");
        assert!(!ports.release(39998));
        assert!(!ports.release(40004));
        assert!(ports.release(b.rtp));
        assert_eq!((ports.legs_in_use(), ports.ports_in_use()), (0, 0));
        assert!(ports.allocate(false, ok).is_ok());
    }

    #[test]
    fn a_released_port_is_reused_last() {
        let mut ports = PortAllocator::new(40000, 40007).unwrap();
        let (first, _) = ports.allocate(true, ok).unwrap();
        ports.release(first.rtp);
        let order: Vec<u16> = (0..4).map(|_| ports.allocate(true, ok).unwrap().0.rtp).collect();
        assert_eq!(order, [40002, 40004, 40006, 40000]);
    }

    #[test]
    fn a_port_that_fails_to_bind_is_skipped() {
        let mut ports = PortAllocator::new(40000, 40007).unwrap();
        let mut tried = Vec::new();
        let (pair, ()) = ports
            .allocate(false, |pair| {
                tried.push(pair.rtp);
                if pair.rtp == 40000 { Err(io::Error::from(io::ErrorKind::AddrInUse)) } else { Ok(()) }
            })
            .unwrap();
        assert_eq!(tried, [40000, 40002]);
        assert_eq!(pair.rtp, 40002);
        assert_eq!(ports.legs_in_use(), 1);
        // The skipped port stayed free: a later leg can have it.
        ports.start_at(0);
        assert_eq!(ports.allocate(false, ok).unwrap().0.rtp, 40000);
    }

    #[test]
    fn binds_are_bounded_and_the_failure_named() {
        let mut ports = PortAllocator::new(10000, 59999).unwrap();
        let mut attempts = 0;
        let error = ports
            .allocate(true, |_| -> io::Result<()> {
                attempts += 1;
                Err(io::Error::from(io::ErrorKind::AddrNotAvailable))
            })
            .unwrap_err();
        assert_eq!(attempts, MAX_BIND_ATTEMPTS);
        let text = error.to_string();
        assert!(
            text.starts_with("media port range 10000-59999: no free port could be bound after 64 attempts"),
            "{text}"
        );
        assert_eq!(ports.legs_in_use(), 0);
    }
}
