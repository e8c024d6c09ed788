//! The baseline: the same runtime, executor and panic handler as the client firmware, and a
//! task that only waits on the fake peripheral.
#![no_std]
#![no_main]

use shearwater_size::{reg, run, until, write};

#[cortex_m_rt::entry]
fn main() -> ! {
    run(async {
        loop {
            until(|| shearwater_size::read(reg::NET_STATUS) != 0).await;
            write(reg::OUTPUT, 1);
        }
    })
}
