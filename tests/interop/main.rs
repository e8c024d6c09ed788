//! Interoperability with real brokers: mosquitto and RabbitMQ with its MQTT plugin, each
//! started by the tests on private loopback ports with its own directory, run as the current
//! user, and stopped afterwards (see `processes.rs`).
//!
//! The tests are ignored by default, so `cargo test` stays fast. Install the brokers and run
//! them with:
//!
//! ```text
//! .ci/brokers.sh
//! cargo test --features tokio --test interop -- --ignored --test-threads=1
//! ```
//!
//! A missing broker fails the test with the install command; it never passes silently.
//! Every scenario (in `scenarios.rs`) runs against both brokers and asserts what each broker
//! is known to do where they differ; `docs/interop.md` describes the differences.
//! `-- --nocapture` prints the QoS and retained-message findings.

#[cfg(feature = "tokio")]
mod harness;
#[cfg(feature = "tokio")]
mod processes;
#[cfg(feature = "tokio")]
mod scenarios;

/// One ignored test running `$body` with a broker handle and its [`scenarios::Ctx`].
macro_rules! interop_test {
    ($name:ident => $broker:ident, |$handle:ident, $ctx:ident| $body:expr) => {
        #[test]
        #[ignore = "needs mosquitto/rabbitmq: run with --ignored (see .ci/run)"]
        fn $name() {
            #[cfg(feature = "tokio")]
            {
                #[allow(unused_mut, reason = "only the restart test changes the broker")]
                let mut $handle = crate::brokers::$broker();
                let $ctx = $handle.ctx();
                crate::harness::run(async move { $body.await });
            }
            #[cfg(not(feature = "tokio"))]
            panic!(
                "the interop tests need the `tokio` feature: \
                 cargo test --features tokio --test interop -- --ignored --test-threads=1"
            );
        }
    };
}

#[cfg(feature = "tokio")]
mod brokers {
    //! The brokers and what each is known to do.

    use std::sync::{Mutex, MutexGuard, OnceLock};

    use shearwater::packet::QoS;

    use crate::processes::{self, Broker, Kind};
    use crate::scenarios::{Ctx, Profile};

    /// A broker for one test, and its profile.
    pub struct Handle<B> {
        /// The broker (owned, or the shared node's lock).
        pub broker: B,
        profile: Profile,
    }

    impl<B: std::ops::Deref<Target = Broker>> Handle<B> {
        /// Where the scenarios run.
        pub fn ctx(&self) -> Ctx {
            Ctx {
                addr: self.broker.addr(),
                profile: self.profile,
            }
        }
    }

    /// Mosquitto 2.0: the specification's choices, QoS 2 included.
    const MOSQUITTO: Profile = Profile {
        kind: Kind::Mosquitto,
        grants_for_qos2: QoS::ExactlyOnce,
        max_publish_qos: QoS::ExactlyOnce,
        retained_to_wildcards: true,
        overlap_copies: 1,
    };

    /// RabbitMQ 3.10's MQTT plugin: no QoS 2, retained messages only for exact topics, one
    /// queue per client.
    const RABBITMQ: Profile = Profile {
        kind: Kind::RabbitMq,
        grants_for_qos2: QoS::AtLeastOnce,
        max_publish_qos: QoS::AtLeastOnce,
        retained_to_wildcards: false,
        overlap_copies: 1,
    };

    /// A fresh mosquitto for each test (it starts in milliseconds).
    pub fn mosquitto() -> Handle<Box<Broker>> {
        let broker = Broker::mosquitto(&[]).unwrap_or_else(|e| panic!("{e}"));
        println!(
            "mosquitto {} on port {}",
            processes::version(Kind::Mosquitto),
            broker.port()
        );
        Handle {
            broker: Box::new(broker),
            profile: MOSQUITTO,
        }
    }

    /// The one RabbitMQ node of this test process (it takes about 10 s to start), locked for
    /// the whole test so tests never use it at the same time. Its watchdog stops it when the
    /// test process exits.
    pub fn rabbitmq() -> Handle<MutexGuard<'static, Broker>> {
        static NODE: OnceLock<Result<Mutex<Broker>, String>> = OnceLock::new();
        let node = NODE.get_or_init(|| {
            let started = std::time::Instant::now();
            let broker = Broker::rabbitmq()?;
            println!(
                "rabbitmq-server {} on port {}, ready after {:.1?}",
                processes::version(Kind::RabbitMq),
                broker.port(),
                started.elapsed()
            );
            Ok(Mutex::new(broker))
        });
        match node {
            Ok(broker) => Handle {
                broker: broker
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
                profile: RABBITMQ,
            },
            Err(e) => panic!("{e}"),
        }
    }
}

mod mosquitto {
    //! The scenarios against mosquitto, plus a broker restart.

    interop_test!(connect_clean_and_persistent => mosquitto, |_h, ctx| crate::scenarios::connect_clean_and_persistent(&ctx));
    interop_test!(wildcards => mosquitto, |_h, ctx| crate::scenarios::wildcards(&ctx));
    interop_test!(qos_matrix => mosquitto, |_h, ctx| crate::scenarios::qos_matrix(&ctx));
    interop_test!(retained => mosquitto, |_h, ctx| crate::scenarios::retained(&ctx));
    interop_test!(will_on_abrupt_close => mosquitto, |_h, ctx| crate::scenarios::will_on_abrupt_close(&ctx));
    interop_test!(unsubscribe => mosquitto, |_h, ctx| crate::scenarios::unsubscribe(&ctx));
    interop_test!(resubscribe_after_cut => mosquitto, |_h, ctx| crate::scenarios::resubscribe_after_cut(&ctx));
    interop_test!(resubscribe_after_restart => mosquitto, |handle, ctx| crate::scenarios::resubscribe_after_restart(&ctx, || {
        handle.broker.restart().unwrap_or_else(|e| panic!("{e}"));
    }));
    interop_test!(persistent_session_offline_messages => mosquitto, |_h, ctx| crate::scenarios::persistent_session_offline_messages(&ctx));
    interop_test!(qos2_publish_at_default_max_qos => mosquitto, |_h, ctx| crate::scenarios::qos2_publish_at_default_max_qos(&ctx));
    interop_test!(oversize_retained_message => mosquitto, |_h, ctx| crate::scenarios::oversize_retained_message(&ctx));
}

mod rabbitmq {
    //! The scenarios against RabbitMQ, plus what it does with QoS 2.

    interop_test!(connect_clean_and_persistent => rabbitmq, |_h, ctx| crate::scenarios::connect_clean_and_persistent(&ctx));
    interop_test!(wildcards => rabbitmq, |_h, ctx| crate::scenarios::wildcards(&ctx));
    interop_test!(qos_matrix => rabbitmq, |_h, ctx| crate::scenarios::qos_matrix(&ctx));
    interop_test!(retained => rabbitmq, |_h, ctx| crate::scenarios::retained(&ctx));
    interop_test!(will_on_abrupt_close => rabbitmq, |_h, ctx| crate::scenarios::will_on_abrupt_close(&ctx));
    interop_test!(unsubscribe => rabbitmq, |_h, ctx| crate::scenarios::unsubscribe(&ctx));
    interop_test!(resubscribe_after_cut => rabbitmq, |_h, ctx| crate::scenarios::resubscribe_after_cut(&ctx));
    interop_test!(persistent_session_offline_messages => rabbitmq, |_h, ctx| crate::scenarios::persistent_session_offline_messages(&ctx));
    interop_test!(qos2_publish_at_default_max_qos => rabbitmq, |_h, ctx| crate::scenarios::qos2_publish_at_default_max_qos(&ctx));
    interop_test!(oversize_retained_message => rabbitmq, |_h, ctx| crate::scenarios::oversize_retained_message(&ctx));
}
