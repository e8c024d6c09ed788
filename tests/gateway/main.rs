//! The client against real processes: an HAProxy gateway in front of two bridged mosquitto
//! brokers, and the faults of a fleet's network (a broker killed and restarted, listeners that
//! accept TCP but never serve, a link that goes silent without closing).
//!
//! Every test starts its own processes on free loopback ports with their own temporary
//! configuration directories, waits for them with bounded waits, and kills them on drop; the
//! system services are never used. A missing `mosquitto` or `haproxy` fails the test with an
//! install hint. The tests take minutes, so they are ignored by default:
//!
//! ```text
//! cargo test --features tokio --test gateway -- --ignored
//! ```
//!
//! Each test prints what it measured (with `--nocapture`): idle time survived, when HAProxy
//! cut a silent client, how long a failover took, the backoff delays drawn, how fast a
//! half-open link was found.

#[cfg(feature = "tokio")]
mod fakes;
#[cfg(feature = "tokio")]
mod haproxy;
#[cfg(feature = "tokio")]
mod harness;
#[cfg(feature = "tokio")]
mod mosquitto;
#[cfg(feature = "tokio")]
mod mqtt;
#[cfg(feature = "tokio")]
#[path = "../interop/processes.rs"]
mod processes;

/// Declares one slow test: ignored by default, run on a current-thread tokio runtime. Without
/// the `tokio` feature the body is compiled out and the test fails with the command to use,
/// so that `--ignored` never passes without having run anything.
macro_rules! slow_test {
    ($(#[doc = $doc:literal])* async fn $name:ident() $body:block) => {
        $(#[doc = $doc])*
        #[test]
        #[ignore = "needs haproxy/mosquitto and minutes: run with --ignored (see .ci/run)"]
        fn $name() {
            #[cfg(feature = "tokio")]
            {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime")
                    .block_on(async $body)
            }
            #[cfg(not(feature = "tokio"))]
            panic!("needs the `tokio` feature: cargo test --features tokio --test gateway -- --ignored");
        }
    };
}

mod faults;
mod through_haproxy;
