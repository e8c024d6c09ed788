//! shearwater on an emulated Cortex-M4 (QEMU `mps2-an386`): the codec vectors, the session
//! scenarios of the host tests with the same assertions, and the async client against a
//! simulated broker, each with the peak stack it took. Results and the exit status go out
//! through semihosting: 0 when everything passed, 1 at the first failure (a panic or a fault).
#![no_std]
#![no_main]

mod client;
mod codec;
mod session;

use core::ptr::{addr_of, read_volatile, write_volatile};

use cortex_m_rt::{ExceptionFrame, STACK_PAINT_VALUE, entry, exception};
use cortex_m_semihosting::{debug, hprintln};

/// One named check; it panics on failure.
pub type Scenario = (&'static str, fn());

unsafe extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

/// The stack region as (lowest address, top).
fn stack_region() -> (usize, usize) {
    (
        addr_of!(_stack_end) as usize,
        addr_of!(_stack_start) as usize,
    )
}

/// Bytes of stack below the top that were written since the last paint: the stack grows down,
/// so the lowest word that lost its paint marks the deepest point reached.
fn stack_peak() -> usize {
    let (bottom, top) = stack_region();
    let mut at = bottom;
    // SAFETY: `at` stays word-aligned inside the stack region.
    while at < top && unsafe { read_volatile(at as *const u32) } == STACK_PAINT_VALUE {
        at += 4;
    }
    top - at
}

/// Bytes of stack in use at the caller (from the top down to the current frame).
#[inline(always)]
fn stack_depth() -> usize {
    stack_region().1 - cortex_m::register::msp::read() as usize
}

/// Paints the unused stack again (below the current frame, less a margin for this function's
/// own frame), so that the next measurement is the next scenario's alone.
#[inline(never)]
fn repaint_stack() {
    let (bottom, _) = stack_region();
    let limit = cortex_m::register::msp::read() as usize - 128;
    let mut at = bottom;
    while at < limit {
        // SAFETY: word-aligned, between the end of static RAM and below the live frames.
        unsafe { write_volatile(at as *mut u32, STACK_PAINT_VALUE) };
        at += 4;
    }
}

#[entry]
fn main() -> ! {
    let (bottom, top) = stack_region();
    hprintln!(
        "shearwater on QEMU mps2-an386 (Cortex-M4), stack region {} B",
        top - bottom
    );
    let groups: [(&str, &[Scenario]); 3] = [
        ("codec", codec::SCENARIOS),
        ("session", session::SCENARIOS),
        ("client", client::SCENARIOS),
    ];
    let mut passed = 0;
    let mut peak = 0;
    for (group, scenarios) in groups {
        let mut group_peak = 0;
        for (name, scenario) in scenarios {
            repaint_stack();
            scenario();
            let used = stack_peak();
            group_peak = group_peak.max(used);
            passed += 1;
            hprintln!("ok  {}::{} (stack {} B)", group, name, used);
        }
        hprintln!("peak stack, {}: {} B", group, group_peak);
        peak = peak.max(group_peak);
    }
    hprintln!(
        "peak stack, all scenarios (with their test scaffolding): {} B",
        peak
    );
    hprintln!(
        "peak stack of the client path (Client::poll and its future, below the caller): {} B",
        client::CLIENT_STACK.load(core::sync::atomic::Ordering::Relaxed)
    );
    hprintln!("qemu: {} passed, 0 failed", passed);
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("FAILED: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("FAILED: hard fault at pc {:#010x}", frame.pc());
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
