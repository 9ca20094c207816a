//! `Tally`: what a session sent and received, and what that says about how it went —
//! the `-v` summary line, and the verdict: did it do what was asked?
//!
//! Kept apart from the handler so the rules can be read (and tested) in one place:
//! input that never left is a failure; input sent with no reply at all, however the
//! session ended, is a failure; asked to send nothing, ending is success.

use std::time::Duration;

/// Counts of one session, in bytes (TCP, Unix) or datagrams (UDP).
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// What messages call the server.
    pub name: String,
    /// Counting datagrams rather than bytes.
    pub datagrams: bool,
    /// Input handed to the loop for the server (queued or written).
    pub sent: u64,
    /// Replies received.
    pub received: u64,
}

impl Tally {
    fn unit(&self) -> &'static str {
        match self.datagrams {
            true => "datagram",
            false => "byte",
        }
    }

    /// The `-v` line at the end: `ADDR: closed by the server; sent 3 bytes, received 3
    /// bytes` (`how` says why it ended; `unsent` bytes were still queued, so not sent).
    pub fn summary(&self, how: &str, unsent: usize) -> String {
        let sent = self.sent.saturating_sub(unsent as u64);
        format!(
            "{}: {how}; sent {}, received {}",
            self.name,
            count(sent, self.unit()),
            count(self.received, self.unit())
        )
    }

    /// Why the session did not do what was asked, if it did not.
    pub fn failure(&self, how: &str, unsent: usize) -> Option<String> {
        if unsent > 0 {
            return Some(format!(
                "{}: {} of input never sent: {how}",
                self.name,
                count(unsent as u64, "byte")
            ));
        }
        if self.sent == 0 || self.received > 0 {
            return None;
        }
        let hint = match self.datagrams {
            true => " (UDP says nothing when no server listens there)",
            false => "",
        };
        Some(format!(
            "sent {} to {} but no reply came: {how}{hint}",
            count(self.sent, self.unit()),
            self.name
        ))
    }
}

/// Seconds for messages: `2 s`, `0.5 s`.
pub(super) fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// A count for messages: `1 byte`, `3 bytes`.
fn count(n: u64, unit: &str) -> String {
    match n {
        1 => format!("1 {unit}"),
        n => format!("{n} {unit}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(sent: u64, received: u64) -> Tally {
        Tally {
            name: "127.0.0.1:8888".into(),
            datagrams: false,
            sent,
            received,
        }
    }

    #[test]
    fn it_happened_only_if_a_reply_came_to_input_that_left() {
        assert_eq!(tally(0, 0).failure("done", 0), None, "nothing asked");
        assert_eq!(tally(3, 1).failure("done", 0), None);
        assert_eq!(
            tally(3, 0).failure("closed by the server", 0).as_deref(),
            Some("sent 3 bytes to 127.0.0.1:8888 but no reply came: closed by the server")
        );
        assert_eq!(
            tally(3, 3).failure("stalled", 1).as_deref(),
            Some("127.0.0.1:8888: 1 byte of input never sent: stalled")
        );
        let udp = Tally {
            datagrams: true,
            ..tally(1, 0)
        };
        assert!(udp
            .failure("w", 0)
            .is_some_and(|m| m.starts_with("sent 1 datagram to")));
    }

    #[test]
    fn the_summary_counts_only_what_left() {
        assert_eq!(
            tally(5, 3).summary("closed by the server", 2),
            "127.0.0.1:8888: closed by the server; sent 3 bytes, received 3 bytes"
        );
        assert_eq!(secs(Duration::from_millis(500)), "0.5 s");
    }
}
