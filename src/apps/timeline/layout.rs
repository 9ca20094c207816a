//! From a list of events to lanes: what the picture shows, before any drawing.
//!
//! One lane for the loop itself (each sleep, from `poll` to `wake`, with its reason; the
//! events each wake-up returned; timers and signals), one per UDP port, and one per
//! connection *lifetime*: the loop reuses a slot number as soon as its connection is
//! gone, so "conn 3" is a different connection after each `closed`; lifetimes are
//! numbered c1, c2, ... in the order they opened. A connection lane carries its marks
//! (read, write, WouldBlock, EOF, ...), the spans where backpressure paused its reading,
//! and its outbound queue's depth over time.
//!
//! Past `Options::lanes` connections the picture would be unreadable, so lanes are
//! grouped (`group.rs`): the busiest connections keep their own lane, the others are
//! gathered in group lanes that show how many of them were open and their marks merged.

use std::collections::HashMap;

use super::group::{group_lanes, Group};
use super::record::{Event, Record, What};

/// How an event is drawn on its lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MarkKind {
    /// Accepted or connected.
    Open,
    /// A readiness event (its flags are in the details).
    Ready,
    /// Bytes read.
    Read,
    /// A send the kernel took whole.
    Write,
    /// A send the kernel took only part of (or none): the rest was queued.
    WriteShort,
    /// Queued bytes written on writability.
    Flush,
    /// `WouldBlock` on a read or a write.
    WouldBlock,
    /// The peer's EOF.
    Eof,
    /// A handler deadline or the idle timeout.
    Due,
    /// Closing (lingering) or closed.
    Close,
    /// A loop timer fired (loop lane).
    Timer,
    /// A datagram (UDP lanes).
    Datagram,
    /// Anything else (signals, the recorder's own notes, kinds unknown to this reader).
    Other,
}

/// One mark: a kind at a time.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    /// Microseconds since the recording started.
    pub t: u64,
    /// How it is drawn.
    pub kind: MarkKind,
}

/// Why the loop slept as long as it did, for the colour of a sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SleepWhy {
    /// No timer pending: sleep until a socket is ready.
    Nothing,
    /// Until the next timer (or deadline, or idle timeout).
    Timer,
    /// Anything else (an accept retry, the shutdown grace period).
    Other,
}

/// One sleep of the loop: from its `poll` line to the next `wake` line.
#[derive(Clone, Copy, Debug)]
pub struct Sleep {
    /// When `poll` was called.
    pub from: u64,
    /// When it returned.
    pub to: u64,
    /// Why it could sleep that long.
    pub why: SleepWhy,
}

/// The loop's own lane.
#[derive(Debug, Default)]
pub struct LoopLane {
    /// Every sleep; the loop was awake in between.
    pub sleeps: Vec<Sleep>,
    /// Each wake-up: its time and how many events `poll` returned.
    pub wakes: Vec<(u64, u64)>,
    /// Timers, signals, the recorder's notes.
    pub marks: Vec<Mark>,
    /// The events this lane shows (indices into `Timeline::events`), for the details.
    pub events: Vec<usize>,
}

/// One connection's lifetime.
#[derive(Debug, Default)]
pub struct ConnLane {
    /// c1, c2, ...: the order in which lifetimes began.
    pub ordinal: usize,
    /// The loop's slot number (reused by later connections).
    pub slot: usize,
    /// The other end, if the record saw it open.
    pub peer: Option<String>,
    /// True for an outbound connection.
    pub outbound: bool,
    /// When it opened (or first appeared in the record).
    pub open: u64,
    /// When it was closed (`None`: still open when the record ends).
    pub closed: Option<u64>,
    /// When the lingering close began (the handler was done).
    pub lingering: Option<u64>,
    /// Why it closed.
    pub reason: Option<String>,
    /// Spans where backpressure paused its reading (`to` is `None` while still paused).
    pub paused: Vec<(u64, Option<u64>)>,
    /// Outbound queue depth after each change.
    pub queue: Vec<(u64, u64)>,
    /// Its marks, in time order.
    pub marks: Vec<Mark>,
    /// The events this lane shows (indices into `Timeline::events`).
    pub events: Vec<usize>,
    /// Bytes read from it.
    pub bytes_in: u64,
    /// Bytes written to it.
    pub bytes_out: u64,
    /// The deepest its queue got.
    pub max_queue: u64,
}

impl ConnLane {
    /// "c3 127.0.0.1:5000" (or "c3 slot 7" when the record did not see it open).
    pub fn label(&self) -> String {
        match &self.peer {
            Some(peer) if !peer.is_empty() => format!("c{} {peer}", self.ordinal),
            _ => format!("c{} slot {}", self.ordinal, self.slot),
        }
    }

    /// How much happened on it, to choose which lanes stay visible when grouping.
    pub fn busyness(&self) -> usize {
        self.events.len() + 50 * self.paused.len()
    }
}

/// One UDP port's lane.
#[derive(Debug, Default)]
pub struct UdpLane {
    /// The loop's port number.
    pub port: usize,
    /// One mark per datagram.
    pub marks: Vec<Mark>,
    /// The events this lane shows.
    pub events: Vec<usize>,
}

/// What one row of the picture shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Row {
    /// A connection lane (index into `Timeline::conns`).
    Conn(usize),
    /// A group lane (index into `Timeline::groups`).
    Group(usize),
}

/// Everything the picture shows.
#[derive(Debug, Default)]
pub struct Timeline {
    /// The events as read (the lanes refer to them by index).
    pub events: Vec<Event>,
    /// Time of the first event, microseconds.
    pub start: u64,
    /// Time of the last event, microseconds.
    pub end: u64,
    /// The loop's lane.
    pub loop_lane: LoopLane,
    /// One lane per UDP port that received datagrams.
    pub udp: Vec<UdpLane>,
    /// Every connection lifetime, in order of opening.
    pub conns: Vec<ConnLane>,
    /// Groups of connection lanes shown as one (empty when all fit).
    pub groups: Vec<Group>,
    /// The connection rows, top to bottom.
    pub rows: Vec<Row>,
    /// Turns of the loop (wake-ups) in the record.
    pub turns: usize,
    /// Notes for the header: a record limit, dropped chunks, skipped lines.
    pub notes: Vec<String>,
}

impl Timeline {
    /// Lay out a record, keeping at most `max_lanes` connection rows.
    pub fn new(record: Record, max_lanes: usize) -> Timeline {
        let mut t = Timeline {
            start: record.events.first().map_or(0, |e| e.t),
            end: record.events.last().map_or(0, |e| e.t),
            ..Timeline::default()
        };
        if record.limited {
            t.notes
                .push("the recorder stopped at --record-limit: what follows is missing".into());
        }
        if record.dropped_chunks > 0 {
            t.notes.push(format!(
                "the disk was slower than the loop: {} chunks of events were dropped",
                record.dropped_chunks
            ));
        }
        if record.skipped > 0 {
            t.notes
                .push("the last line was cut short and is left out".into());
        }
        let mut current: HashMap<usize, usize> = HashMap::new();
        let mut udp: HashMap<usize, usize> = HashMap::new();
        let mut pending_poll: Option<(u64, SleepWhy)> = None;
        for (i, event) in record.events.iter().enumerate() {
            match &event.what {
                What::Poll { why, .. } => {
                    pending_poll = Some((event.t, sleep_why(why)));
                    t.loop_lane.events.push(i);
                }
                What::Wake { events, .. } => {
                    if let Some((from, why)) = pending_poll.take() {
                        t.loop_lane.sleeps.push(Sleep {
                            from,
                            to: event.t,
                            why,
                        });
                    }
                    t.loop_lane.wakes.push((event.t, *events));
                    t.loop_lane.events.push(i);
                    t.turns += 1;
                }
                What::Timer { .. } => t.loop_mark(i, event.t, MarkKind::Timer),
                What::Datagram { port, .. } => {
                    let lane = *udp.entry(*port).or_insert_with(|| {
                        t.udp.push(UdpLane {
                            port: *port,
                            ..UdpLane::default()
                        });
                        t.udp.len() - 1
                    });
                    let lane = &mut t.udp[lane];
                    lane.marks.push(Mark {
                        t: event.t,
                        kind: MarkKind::Datagram,
                    });
                    lane.events.push(i);
                }
                what => match what.conn() {
                    Some(slot) => t.conn_event(&mut current, i, event, slot),
                    None => t.loop_mark(i, event.t, MarkKind::Other),
                },
            }
        }
        t.udp.sort_by_key(|u| u.port);
        t.events = record.events;
        let (groups, rows) = group_lanes(&t.conns, max_lanes);
        t.groups = groups;
        t.rows = rows;
        t
    }

    fn loop_mark(&mut self, i: usize, at: u64, kind: MarkKind) {
        self.loop_lane.marks.push(Mark { t: at, kind });
        self.loop_lane.events.push(i);
    }

    /// Put one connection event on the lane of the slot's current lifetime.
    fn conn_event(
        &mut self,
        current: &mut HashMap<usize, usize>,
        i: usize,
        event: &Event,
        slot: usize,
    ) {
        let at = event.t;
        let opens = matches!(event.what, What::Open { .. });
        if opens {
            // An outbound connection's events come before its `connected` line (the
            // connect completes as a writable event): that lane is this connection.
            // A slot that opened before and opens again without a `closed` line (a
            // record that lost it) starts a new lifetime here.
            let connecting = current
                .get(&slot)
                .is_some_and(|&lane| self.conns[lane].peer.is_none());
            if !connecting {
                if let Some(old) = current.remove(&slot) {
                    self.conns[old].closed.get_or_insert(at);
                }
            }
        }
        let lane = *current.entry(slot).or_insert_with(|| {
            self.conns.push(ConnLane {
                ordinal: self.conns.len() + 1,
                slot,
                open: at,
                ..ConnLane::default()
            });
            self.conns.len() - 1
        });
        let conn = &mut self.conns[lane];
        conn.events.push(i);
        let mut queue = None;
        let kind = match &event.what {
            What::Open { peer, outbound, .. } => {
                conn.peer = Some(peer.clone());
                conn.outbound = *outbound;
                MarkKind::Open
            }
            What::Ready { .. } => MarkKind::Ready,
            What::Read {
                bytes, discarded, ..
            } => {
                conn.bytes_in += bytes;
                if *discarded {
                    MarkKind::Other
                } else {
                    MarkKind::Read
                }
            }
            What::Write {
                wrote, of, queued, ..
            } => {
                conn.bytes_out += wrote;
                queue = Some(*queued);
                if wrote < of {
                    MarkKind::WriteShort
                } else {
                    MarkKind::Write
                }
            }
            What::Flush { wrote, queued, .. } => {
                conn.bytes_out += wrote;
                queue = Some(*queued);
                MarkKind::Flush
            }
            What::WouldBlock { .. } => MarkKind::WouldBlock,
            What::Backpressure { paused, queued, .. } => {
                queue = Some(*queued);
                if *paused {
                    conn.paused.push((at, None));
                } else {
                    end_pause(conn, at);
                }
                // The pause is drawn as a span, not a mark.
                conn.record_queue(at, queue);
                return;
            }
            What::Eof { .. } => MarkKind::Eof,
            What::Due { .. } => MarkKind::Due,
            What::Close {
                reason, lingering, ..
            } => {
                conn.reason = Some(reason.clone());
                end_pause(conn, at);
                if *lingering {
                    conn.lingering = Some(at);
                } else {
                    conn.closed = Some(at);
                    queue = Some(0);
                    current.remove(&slot);
                }
                MarkKind::Close
            }
            _ => MarkKind::Other,
        };
        conn.marks.push(Mark { t: at, kind });
        conn.record_queue(at, queue);
    }

    /// The connection lanes of a row: one, or a group's members.
    pub fn row_members(&self, row: Row) -> Vec<usize> {
        match row {
            Row::Conn(i) => vec![i],
            Row::Group(g) => self.groups[g].members.clone(),
        }
    }
}

impl ConnLane {
    fn record_queue(&mut self, at: u64, queued: Option<u64>) {
        if let Some(q) = queued {
            if self.queue.last().map(|&(_, last)| last) != Some(q) {
                self.queue.push((at, q));
            }
            self.max_queue = self.max_queue.max(q);
        }
    }
}

fn end_pause(conn: &mut ConnLane, at: u64) {
    if let Some(last) = conn.paused.last_mut() {
        if last.1.is_none() {
            last.1 = Some(at);
        }
    }
}

fn sleep_why(why: &str) -> SleepWhy {
    match why {
        "nothing scheduled" => SleepWhy::Nothing,
        "next timer" => SleepWhy::Timer,
        _ => SleepWhy::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::timeline::record::parse;

    fn timeline(lines: &[&str]) -> Timeline {
        Timeline::new(parse(&lines.join("\n")).unwrap(), 30)
    }

    #[test]
    fn a_reused_slot_is_a_new_lifetime_and_sleeps_run_from_poll_to_wake() {
        let t = timeline(&[
            r#"{"t":0,"kind":"poll","timeout_us":null,"why":"nothing scheduled"}"#,
            r#"{"t":10,"kind":"wake","events":1,"slept_us":10}"#,
            r#"{"t":11,"kind":"accept","conn":0,"peer":"10.0.0.1:1"}"#,
            r#"{"t":12,"kind":"write","conn":0,"wrote":0,"of":100,"queued":100}"#,
            r#"{"t":13,"kind":"paused","conn":0,"queued":100}"#,
            r#"{"t":20,"kind":"flush","conn":0,"wrote":100,"queued":0}"#,
            r#"{"t":20,"kind":"resumed","conn":0,"queued":0}"#,
            r#"{"t":30,"kind":"closed","conn":0,"reason":"closed by peer"}"#,
            r#"{"t":31,"kind":"accept","conn":0,"peer":"10.0.0.2:2"}"#,
            r#"{"t":40,"kind":"poll","timeout_us":5000,"why":"next timer"}"#,
            r#"{"t":45,"kind":"wake","events":0,"slept_us":5}"#,
        ]);
        assert_eq!(t.conns.len(), 2);
        let first = &t.conns[0];
        assert_eq!((first.open, first.closed), (11, Some(30)));
        assert_eq!(first.paused, [(13, Some(20))]);
        assert_eq!(first.queue, [(12, 100), (20, 0)]);
        assert_eq!((first.bytes_out, first.max_queue), (100, 100));
        assert_eq!(first.label(), "c1 10.0.0.1:1");
        assert_eq!((t.conns[1].open, t.conns[1].closed), (31, None));
        let sleeps: Vec<(u64, u64, SleepWhy)> = t
            .loop_lane
            .sleeps
            .iter()
            .map(|s| (s.from, s.to, s.why))
            .collect();
        assert_eq!(
            sleeps,
            [(0, 10, SleepWhy::Nothing), (40, 45, SleepWhy::Timer)]
        );
        assert_eq!(t.turns, 2);
    }

    #[test]
    fn events_before_connected_belong_to_the_connection_they_complete() {
        let t = timeline(&[
            r#"{"t":5,"kind":"event","conn":3,"readable":false,"writable":true,"read_closed":false,"error":false}"#,
            r#"{"t":6,"kind":"connected","conn":3,"peer":"127.0.0.1:8000"}"#,
            r#"{"t":7,"kind":"write","conn":3,"wrote":40,"of":40,"queued":0}"#,
        ]);
        assert_eq!(t.conns.len(), 1);
        let conn = &t.conns[0];
        assert_eq!((conn.open, conn.outbound, conn.events.len()), (5, true, 3));
        assert_eq!(conn.label(), "c1 127.0.0.1:8000");
    }
}
