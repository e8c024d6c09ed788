//! One logging shim: every log line of the crate goes through these macros, which forward to
//! `defmt`, to `log`, or to nothing. Only `{}` and `{:?}` placeholders are used, because both
//! backends accept them.
#![allow(unused_macros, reason = "not every layer logs at every level yet")]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("the `defmt` and `log` features exclude each other: enable one of them");

macro_rules! log_at {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(feature = "log")]
        ::log::$level!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let _ = ($(&$x,)*);
    }};
}

macro_rules! trace {
    ($($arg:tt)*) => { log_at!(trace, $($arg)*) };
}

macro_rules! debug {
    ($($arg:tt)*) => { log_at!(debug, $($arg)*) };
}

macro_rules! info {
    ($($arg:tt)*) => { log_at!(info, $($arg)*) };
}

macro_rules! warn {
    ($($arg:tt)*) => { log_at!(warn, $($arg)*) };
}

macro_rules! error {
    ($($arg:tt)*) => { log_at!(error, $($arg)*) };
}
