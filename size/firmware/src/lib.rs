//! The platform both firmwares share: a fake peripheral block whose registers are read and
//! written with volatile accesses (so the optimiser can assume nothing about the network, the
//! clock or the random numbers), a busy-polling executor, and the panic handler. The client
//! firmware adds only the shearwater client path on top; the empty firmware adds nothing, so
//! the difference between the two is what the client costs.
#![no_std]

use core::future::Future;
use core::pin::pin;
use core::ptr::{read_volatile, write_volatile};
use core::task::{Context, Poll, Waker};

#[cfg(feature = "defmt")]
use defmt_rtt as _;

/// A fake peripheral at a fixed address. Nothing is there: the firmware is measured, not run.
pub mod reg {
    /// Milliseconds since boot.
    pub const TIMER: usize = 0x4000_0000;
    /// Random numbers.
    pub const RNG: usize = 0x4000_0004;
    /// Network status: bit 0 readable, bit 1 writable, bit 2 connected, bit 3 failed.
    pub const NET_STATUS: usize = 0x4000_0008;
    /// Network receive data, one byte per read.
    pub const NET_RX: usize = 0x4000_000C;
    /// Network transmit data, one byte per write.
    pub const NET_TX: usize = 0x4000_0010;
    /// Network control: 1 connect, 2 close.
    pub const NET_CTRL: usize = 0x4000_0014;
    /// Whatever the application drives with a command (a LED).
    pub const OUTPUT: usize = 0x4000_0018;
}

/// Reads a 32-bit register.
#[inline(always)]
pub fn read(addr: usize) -> u32 {
    // SAFETY: the measured firmware is never run; see the module docs.
    unsafe { read_volatile(addr as *const u32) }
}

/// Writes a 32-bit register.
#[inline(always)]
pub fn write(addr: usize, value: u32) {
    // SAFETY: as for `read`.
    unsafe { write_volatile(addr as *mut u32, value) }
}

/// Polls `future` forever, sleeping between polls (an interrupt would wake the core).
pub fn run(future: impl Future<Output = core::convert::Infallible>) -> ! {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(never) = future.as_mut().poll(&mut cx) {
            match never {}
        }
        cortex_m::asm::wfe();
    }
}

/// Pending until `ready()` holds.
pub async fn until(mut ready: impl FnMut() -> bool) {
    core::future::poll_fn(|_| {
        if ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

#[cfg(not(feature = "report"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    cortex_m::asm::udf()
}

#[cfg(feature = "report")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    cortex_m::asm::udf()
}
