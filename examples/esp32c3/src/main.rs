//! shearwater on an ESP32-C3: esp-hal with esp-rtos, the esp-radio Wi-Fi driver, embassy-net
//! with DHCP and DNS, and the shared device application (`examples/device/app.rs`): telemetry
//! at QoS 1 with a time to live, commands on `devices/<id>/cmd` driving the LED on GPIO8,
//! jitter from the hardware RNG, logs with defmt through espflash.
//!
//! ```sh
//! SHEARWATER_WIFI_SSID=my-ap SHEARWATER_WIFI_PASSWORD=secret \
//!   SHEARWATER_BROKER=broker.example.net cargo run --release   # flashes with espflash
//! ```
#![no_std]
#![no_main]

#[path = "../../device/app.rs"]
mod app;

use core::fmt::Write as _;

use embassy_executor::Spawner;
use embassy_net::StackResources;
use embassy_time::{Duration, Timer};
use esp_hal::clock::CpuClock;
use esp_hal::gpio::{Level, Output, OutputConfig};
use esp_hal::rng::Rng;
use esp_hal::timer::timg::TimerGroup;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config as WifiConfig, Interface, WifiController,
};
use static_cell::StaticCell;
use {esp_backtrace as _, esp_println as _};

esp_bootloader_esp_idf::esp_app_desc!();

/// The access point, from the environment at build time. Without a password the network is
/// taken to be open.
const SSID: &str = match option_env!("SHEARWATER_WIFI_SSID") {
    Some(ssid) => ssid,
    None => "shearwater",
};
const PASSWORD: &str = match option_env!("SHEARWATER_WIFI_PASSWORD") {
    Some(password) => password,
    None => "",
};

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Interface>) -> ! {
    runner.run().await
}

/// Keeps the station associated: connects, waits for the disconnect, connects again.
#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) -> ! {
    let authentication = if PASSWORD.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        match PASSWORD.try_into() {
            Ok(password) => AuthenticationMethodConfig::WpaWpa2Personal(password),
            Err(_) => defmt::panic!("SHEARWATER_WIFI_PASSWORD is too long"),
        }
    };
    let Ok(ssid) = SSID.try_into() else {
        defmt::panic!("SHEARWATER_WIFI_SSID is too long");
    };
    let config = WifiConfig::Station(
        StationConfig::default()
            .with_ssid(ssid)
            .with_authentication(authentication),
    );
    if let Err(e) = controller.set_config(&config) {
        defmt::panic!("Wi-Fi configuration refused: {}", e);
    }
    loop {
        match controller.connect_async().await {
            Ok(_) => {
                defmt::info!("Wi-Fi connected to {}", SSID);
                let _ = controller.wait_for_disconnect_async().await;
                defmt::warn!("Wi-Fi disconnected");
            }
            Err(e) => {
                defmt::warn!("Wi-Fi connect failed: {}", e);
                Timer::after(Duration::from_secs(5)).await;
            }
        }
    }
}

#[esp_rtos::main]
async fn main(spawner: Spawner) {
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp_alloc::heap_allocator!(size: 72 * 1024);
    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);
    defmt::info!("shearwater on ESP32-C3");

    let controller = match WifiController::new(peripherals.WIFI, Default::default()) {
        Ok(controller) => controller,
        Err(e) => defmt::panic!("Wi-Fi driver: {}", e),
    };
    let station = Interface::station();
    // With the radio on, the RNG draws from true entropy.
    let rng = Rng::new();
    let seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());

    let config = embassy_net::Config::dhcpv4(Default::default());
    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) =
        embassy_net::new(station, config, RESOURCES.init(StackResources::new()), seed);
    spawner.spawn(wifi_task(controller).unwrap());
    spawner.spawn(net_task(runner).unwrap());

    defmt::info!("waiting for Wi-Fi and DHCP");
    stack.wait_config_up().await;
    if let Some(v4) = stack.config_v4() {
        defmt::info!("address {}", v4.address);
    }

    let mut id: heapless::String<12> = heapless::String::new();
    for b in esp_hal::efuse::base_mac_address().as_bytes() {
        let _ = write!(id, "{b:02x}");
    }
    let mut led = Output::new(peripherals.GPIO8, Level::High, OutputConfig::default());
    app::run(
        stack,
        id.as_str(),
        rng,
        // The LED on GPIO8 of most ESP32-C3 boards is lit when the pin is low.
        |command| match command {
            app::LedCommand::On => led.set_low(),
            app::LedCommand::Off => led.set_high(),
            app::LedCommand::Toggle => led.toggle(),
        },
        |up| defmt::info!("session {}", if up { "up" } else { "down" }),
    )
    .await
}
