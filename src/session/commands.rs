//! The transport commands waiting for the driver. At most a Close and then an Open are ever
//! worth doing, so two flags hold them, in that order, and nothing is ever dropped.

use super::Command;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PendingCommands {
    close: bool,
    open: bool,
}

impl PendingCommands {
    pub(crate) fn push(&mut self, command: Command) {
        match command {
            Command::Open => self.open = true,
            // An Open the driver has not carried out yet opened nothing: cancelled, it leaves
            // nothing to close (the connection before it was closed, or its Close is still
            // pending and stays first).
            Command::Close if self.open => self.open = false,
            Command::Close => self.close = true,
        }
    }

    /// The driver reports the outcome of an Open: it was carried out, even if the driver
    /// never took it from here.
    pub(crate) fn opened(&mut self) {
        self.open = false;
    }

    /// The next command: a pending Close always before a pending Open.
    pub(crate) fn pop(&mut self) -> Option<Command> {
        if core::mem::take(&mut self.close) {
            Some(Command::Close)
        } else if core::mem::take(&mut self.open) {
            Some(Command::Open)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn drain(pending: &mut PendingCommands) -> Vec<Command> {
        core::iter::from_fn(|| pending.pop()).collect()
    }

    #[test]
    fn test_close_then_open_in_order() {
        let mut p = PendingCommands::default();
        p.push(Command::Close);
        p.push(Command::Open);
        assert_eq!(drain(&mut p), vec![Command::Close, Command::Open]);
        assert_eq!(drain(&mut p), vec![]);
    }

    #[test]
    fn test_close_cancels_an_open_not_carried_out() {
        let mut p = PendingCommands::default();
        p.push(Command::Close);
        // Reconnect attempts that time out before the driver gets to them, any number of
        // times: one Close of the real connection, then the latest Open.
        for _ in 0..10 {
            p.push(Command::Open);
            p.push(Command::Close);
        }
        p.push(Command::Open);
        assert_eq!(drain(&mut p), vec![Command::Close, Command::Open]);
        p.push(Command::Open);
        p.push(Command::Close);
        assert_eq!(drain(&mut p), vec![]);
    }
}
