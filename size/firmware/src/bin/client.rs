//! The whole client path a device links: connect, subscribe, publish, the poll loop with
//! keepalive, reconnect with backoff, over a transport, a clock and a random generator whose
//! every read is a volatile access to a fake peripheral.
#![no_std]
#![no_main]

use core::convert::Infallible;

use embassy_futures::select::{Either, select};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use shearwater::client::{Buffers, Client, ClientEvent, Clock};
use shearwater::packet::{QoS, Subscription};
use shearwater::session::{Config, OutgoingMessage};
use shearwater::time::{Duration, Instant};
use shearwater::transport::Transport;
use shearwater_size::{read, reg, run, until, write};
use static_cell::ConstStaticCell;

/// The QoS the application subscribes with.
const SUBSCRIBE_QOS: QoS = if cfg!(feature = "qos2") {
    QoS::ExactlyOnce
} else if cfg!(feature = "qos1") {
    QoS::AtLeastOnce
} else {
    QoS::AtMostOnce
};

/// The QoS of the telemetry.
const TELEMETRY_QOS: QoS = if cfg!(feature = "qos1") {
    QoS::AtLeastOnce
} else {
    QoS::AtMostOnce
};

const RX: usize = 512;
const TX: usize = 512;
const OUTBOX: usize = 1024;
const FILTERS: usize = 64;

/// The fake network interface as a transport.
struct Net;

const READABLE: u32 = 1;
const WRITABLE: u32 = 2;
const CONNECTED: u32 = 4;
const FAILED: u32 = 8;

impl ErrorType for Net {
    type Error = ErrorKind;
}

impl Read for Net {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        until(|| read(reg::NET_STATUS) & (READABLE | FAILED) != 0).await;
        let mut n = 0;
        for byte in buf.iter_mut() {
            let status = read(reg::NET_STATUS);
            if status & FAILED != 0 {
                return Err(ErrorKind::ConnectionReset);
            }
            if status & READABLE == 0 {
                break;
            }
            *byte = read(reg::NET_RX) as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl Write for Net {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        until(|| read(reg::NET_STATUS) & (WRITABLE | FAILED) != 0).await;
        let mut n = 0;
        for &byte in buf {
            let status = read(reg::NET_STATUS);
            if status & FAILED != 0 {
                return Err(ErrorKind::ConnectionReset);
            }
            if status & WRITABLE == 0 {
                break;
            }
            write(reg::NET_TX, u32::from(byte));
            n += 1;
        }
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        until(|| read(reg::NET_STATUS) & (WRITABLE | FAILED) != 0).await;
        Ok(())
    }
}

impl Transport for Net {
    async fn connect(&mut self) -> Result<(), ErrorKind> {
        write(reg::NET_CTRL, 1);
        until(|| read(reg::NET_STATUS) & (CONNECTED | FAILED) != 0).await;
        if read(reg::NET_STATUS) & FAILED != 0 {
            return Err(ErrorKind::ConnectionRefused);
        }
        Ok(())
    }

    async fn close(&mut self) {
        write(reg::NET_CTRL, 2);
    }
}

/// The fake timer as the client's clock.
struct Timer;

impl Clock for Timer {
    fn now(&self) -> Instant {
        Instant::from_millis(u64::from(read(reg::TIMER)))
    }

    async fn sleep_until(&self, at: Instant) {
        until(|| self.now() >= at).await;
    }
}

/// The fake RNG peripheral.
struct Rng;

impl rand_core::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        read(reg::RNG)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_u32(self)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dst);
    }
}

type DeviceClient<'b> = Client<'b, Net, Timer, Rng>;

/// The device application: subscribe to commands, publish telemetry every 5 s, react to
/// commands, start again if the session ever stops.
async fn app(client: &mut DeviceClient<'_>) -> Infallible {
    let _ = client.subscribe(&[Subscription {
        filter: "devices/dev-1/cmd",
        qos: SUBSCRIBE_QOS,
    }]);
    let mut next = Timer.now();
    let mut count = 0u32;
    loop {
        match select(client.poll(), Timer.sleep_until(next)).await {
            Either::First(Ok(ClientEvent::Message(message))) => {
                write(
                    reg::OUTPUT,
                    u32::from(message.payload.first().copied().unwrap_or(0)),
                );
            }
            Either::First(Ok(ClientEvent::Session(event))) => {
                core::hint::black_box(event);
            }
            Either::First(Err(_)) => client.restart(),
            Either::Second(()) => {
                next = next + Duration::from_secs(5);
                count = count.wrapping_add(1);
                let payload = count.to_le_bytes();
                let qos = if cfg!(feature = "qos2") && count.is_multiple_of(4) {
                    QoS::ExactlyOnce
                } else {
                    TELEMETRY_QOS
                };
                let message = OutgoingMessage::new("devices/dev-1/telemetry", &payload)
                    .qos(qos)
                    .ttl(Duration::from_secs(30));
                if client.publish(&message).is_err() {
                    write(reg::OUTPUT, 0xE);
                }
            }
        }
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    // In statics, as a firmware keeps them: zeroed with the rest of .bss at reset, not by code.
    static RX_BUF: ConstStaticCell<[u8; RX]> = ConstStaticCell::new([0; RX]);
    static TX_BUF: ConstStaticCell<[u8; TX]> = ConstStaticCell::new([0; TX]);
    static OUTBOX_BUF: ConstStaticCell<[u8; OUTBOX]> = ConstStaticCell::new([0; OUTBOX]);
    static FILTERS_BUF: ConstStaticCell<[u8; FILTERS]> = ConstStaticCell::new([0; FILTERS]);
    let buffers = Buffers {
        rx: RX_BUF.take(),
        tx: TX_BUF.take(),
        outbox: OUTBOX_BUF.take(),
        filters: FILTERS_BUF.take(),
    };
    let Ok(mut client) = Client::new(Config::new("dev-1"), buffers, Net, Timer, Rng) else {
        cortex_m::asm::udf();
    };
    #[cfg(feature = "report")]
    report(&mut client);
    run(app(&mut client))
}

/// Prints the sizes of the client's state and futures, then exits (run in QEMU).
#[cfg(feature = "report")]
fn report(client: &mut DeviceClient<'_>) {
    use cortex_m_semihosting::{debug, hprintln};
    let state = core::mem::size_of_val(client);
    let session = core::mem::size_of_val(client.session());
    let poll = core::mem::size_of_val(&client.poll());
    let app = core::mem::size_of_val(&app(client));
    hprintln!("client state (Client<_, _, _, 16, 8, 8>): {} B", state);
    hprintln!("  of which the session: {} B", session);
    hprintln!("poll() future: {} B", poll);
    hprintln!("application task future (holds &mut Client): {} B", app);
    hprintln!(
        "buffers (rx, tx, outbox, filters): {} B",
        RX + TX + OUTBOX + FILTERS
    );
    debug::exit(debug::EXIT_SUCCESS);
}
