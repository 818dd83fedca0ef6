//! `media-relay`: RTP and RTCP anchored through Tandem.
//!
//! - [`rtp`]: zero-copy RTP header view and in-place rewriting, RTP/RTCP demux
//!   (RFC 5761), RFC 4733 telephone-events.
//! - [`ports`]: the media port range (even RTP port, RTCP above it unless muxed).
//! - [`session`]: the sans-IO relay state of one call: symmetric latching,
//!   payload-type mapping, stream continuity, modes, inactivity, one-way audio,
//!   counters and receive statistics (loss, jitter). Its module docs state the
//!   rules.
//! - [`g711`]: μ-law and A-law encoding and decoding.
//! - [`dtmf`]: in-band DTMF detection (Goertzel), for legs that send keys as
//!   tones rather than RFC 4733 events.
//! - [`prompt`]: audio to play (music on hold, prompts), loaded from WAV files
//!   and held G.711-encoded.
//! - the driver ([`MediaRelay`], [`LegHandle`], [`CallMedia`]): the port range
//!   and the handles signalling holds.
//! - the workers: threads (one per core by default) that each own a share of the
//!   calls and move their packets, prompt playback included; one level-triggered
//!   epoll set per worker, no lock on the packet path.
//! - [`stats`]: the relay's totals and its latency histogram, for metrics.

mod driver;
mod error;
pub mod dtmf;
pub mod g711;
pub mod ports;
pub mod prompt;
pub mod rtp;
pub mod session;
pub mod stats;
mod sys;
mod worker;

pub use driver::{BridgeParams, CallMedia, CallStats, LegHandle, MediaRelay, PortUsage, RelayConfig};
pub use error::MediaError;
pub use prompt::{Prompt, PromptError};
pub use stats::{LatencyHistogram, LegTotals, RelayStats};
pub use session::{
    Channel, Codec, Forward, Leg, LegParams, LegSetup, LegStats, MediaEvent, MediaSession, Mode, PayloadMap,
    SessionConfig,
};

/// Counts heap allocations per thread, so a test can show a path allocates nothing.
#[cfg(test)]
mod test_alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    struct CountingAllocator;

    fn count() {
        // try_with: the counter may already be gone while a thread exits.
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }

    // SAFETY: every call is passed unchanged to the system allocator.
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count();
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: CountingAllocator = CountingAllocator;

    pub fn allocations_on_this_thread() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }
}
