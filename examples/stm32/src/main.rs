//! shearwater on a NUCLEO-F429ZI: embassy-stm32 Ethernet (RMII, LAN8742A PHY), embassy-net with
//! DHCP and DNS, and the shared device application (`examples/device/app.rs`): telemetry at
//! QoS 1 with a time to live, commands on `devices/<id>/cmd` driving the green LED, the blue
//! LED lit while the session is up, jitter from the chip's RNG, logs with defmt over RTT.
//!
//! ```sh
//! SHEARWATER_BROKER=broker.example.net cargo run --release   # flashes with probe-rs
//! ```
#![no_std]
#![no_main]

#[path = "../../device/app.rs"]
mod app;

use embassy_executor::Spawner;
use embassy_net::StackResources;
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::gpio::{Level, Output, Speed};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::Rng;
use embassy_stm32::time::Hertz;
use embassy_stm32::{Config, bind_interrupts, eth, rng};
use static_cell::StaticCell;
use {defmt_rtt as _, panic_probe as _};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    HASH_RNG => rng::InterruptHandler<RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

/// 8 MHz from the ST-LINK into HSE; 168 MHz system clock, and the PLL's Q output at the
/// 48 MHz the RNG needs.
fn clocks() -> Config {
    use embassy_stm32::rcc::*;
    let mut config = embassy_stm32::Config::default();
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Bypass,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL168,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV7),
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_stm32::init(clocks());
    defmt::info!("shearwater on NUCLEO-F429ZI");

    let mut rng = Rng::new(p.RNG, Irqs);
    // A locally administered MAC from the chip's unique id.
    let uid = embassy_stm32::uid::uid();
    let mac = [0x02, uid[0], uid[1], uid[2], uid[3], uid[4]];

    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::<4, 4>::new()),
        p.ETH,
        Irqs,
        p.PA1,  // REF_CLK
        p.PA7,  // CRS_DV
        p.PC4,  // RXD0
        p.PC5,  // RXD1
        p.PG13, // TXD0
        p.PB13, // TXD1
        p.PG11, // TX_EN
        mac,
        p.ETH_SMA,
        p.PA2, // MDIO
        p.PC1, // MDC
    );

    let config = embassy_net::Config::dhcpv4(Default::default());
    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        config,
        RESOURCES.init(StackResources::new()),
        rng.next_u64(),
    );
    spawner.spawn(net_task(runner).unwrap());

    defmt::info!("waiting for DHCP");
    stack.wait_config_up().await;
    if let Some(v4) = stack.config_v4() {
        defmt::info!("address {}", v4.address);
    }

    let mut green = Output::new(p.PB0, Level::Low, Speed::Low);
    let mut blue = Output::new(p.PB7, Level::Low, Speed::Low);
    app::run(
        stack,
        embassy_stm32::uid::uid_hex(),
        rng,
        |command| match command {
            app::LedCommand::On => green.set_high(),
            app::LedCommand::Off => green.set_low(),
            app::LedCommand::Toggle => green.toggle(),
        },
        |up| blue.set_level(Level::from(up)),
    )
    .await
}
