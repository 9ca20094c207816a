//! `NetState`: what the network side keeps per transfer — `--retry` attempts, the
//! connects racing for it (happy eyeballs), and its phase timings — and the keys of
//! the loop timers that wake a transfer up (`RETRY` and `RACE`).
//!
//! A timer outlives nothing on purpose: the fetcher cannot always cancel a transfer's
//! timers when it ends (it may end inside another callback), and transfer ids are slab
//! keys, reused at once. So a timer key carries the transfer's id *and* its serial (its
//! URL's position in the run, never reused): a timer whose serial is not the transfer's
//! under that id belongs to a transfer that is gone, and is ignored.

use mio::Token;

use crate::core::TimerId;

use super::timing::Marks;

/// Timer key flag: a transfer's `--retry` wait is over (`retry.rs`).
pub const RETRY: u64 = 1 << 63;
/// Timer key flag: a transfer's connection attempt delay passed (`eyeballs.rs`).
pub const RACE: u64 = 1 << 62;
/// Bits of the transfer id in a key (the low 32).
const ID_BITS: u32 = 32;
/// Mask for the serial bits kept in a key (30 bits above the id).
const SERIAL_MASK: u64 = (1 << 30) - 1;

/// The timer key for transfer `id` (serial `serial`) with `flag`.
pub fn timer_key(flag: u64, id: usize, serial: u64) -> u64 {
    flag | ((serial & SERIAL_MASK) << ID_BITS) | (id as u64 & ((1 << ID_BITS) - 1))
}

/// The flag, transfer id and (masked) serial in a key made by `timer_key`; None for any
/// other key (the fetcher's own `ADMIT` and `--timeout` keys are small numbers).
pub fn split_key(key: u64) -> Option<(u64, usize, u64)> {
    let flag = key & (RETRY | RACE);
    if flag != RETRY && flag != RACE {
        return None;
    }
    let id = (key & ((1 << ID_BITS) - 1)) as usize;
    let serial = (key >> ID_BITS) & SERIAL_MASK;
    Some((flag, id, serial))
}

/// Whether a key's serial is this transfer's.
pub fn same_serial(key_serial: u64, serial: u64) -> bool {
    key_serial == serial & SERIAL_MASK
}

/// Per transfer: attempts, racing connects, timings.
#[derive(Debug, Default)]
pub struct NetState {
    /// `--retry` attempts started so far (1: the first).
    pub attempts: u32,
    /// A `--retry` wait is on (the transfer has no connection meanwhile).
    pub retry_timer: Option<TimerId>,
    /// Connects started for this transfer and not yet finished (happy eyeballs: up
    /// to one per address, started 250 ms apart). Empty once one won.
    pub racing: Vec<Token>,
    /// The timer that starts the next address's connect.
    pub race_timer: Option<TimerId>,
    /// The last connect error, reported if every address fails.
    pub connect_error: Option<String>,
    /// Phase ends of the current request.
    pub marks: Marks,
}

impl NetState {
    /// A transfer's state before its first attempt.
    pub fn new() -> NetState {
        NetState {
            attempts: 1,
            ..NetState::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_never_meet_small_keys() {
        let key = timer_key(RETRY, 12345, 7);
        assert_eq!(split_key(key), Some((RETRY, 12345, 7)));
        let key = timer_key(RACE, 0, (1 << 40) + 3);
        let (flag, id, serial) = split_key(key).unwrap();
        assert_eq!((flag, id), (RACE, 0));
        assert!(same_serial(serial, (1 << 40) + 3));
        assert_eq!(split_key(0), None);
        assert_eq!(split_key(1 + 4_000_000), None);
    }
}
