//! Keeping the picture readable at 200 connections: which lanes stay, which are grouped.
//!
//! Up to the limit every connection has its own lane. Past it, half of the rows go to
//! the busiest connections (most events, and any that backpressure paused: the slow
//! reader among a crowd of idle clients is the one worth seeing), and the rest of the
//! connections are gathered, in the order they opened, into the other half: group lanes
//! that draw how many of their members were open at each moment and all their marks
//! merged. The HTML page can open a group to show its members one by one.

use std::collections::BTreeSet;

use super::layout::{ConnLane, Row};

/// Connection lanes shown as one row.
#[derive(Debug, Default)]
pub struct Group {
    /// Its members (indices into `Timeline::conns`), in order of opening.
    pub members: Vec<usize>,
    /// How many members were open, after each change: `(time, count)`.
    pub open_count: Vec<(u64, u64)>,
}

impl Group {
    /// "12 conns c5…c40".
    pub fn label(&self, conns: &[ConnLane]) -> String {
        let first = self.members.first().map_or(0, |&i| conns[i].ordinal);
        let last = self.members.last().map_or(0, |&i| conns[i].ordinal);
        format!("{} conns c{first}\u{2026}c{last}", self.members.len())
    }

    /// When its first member opened.
    pub fn open(&self, conns: &[ConnLane]) -> u64 {
        self.members
            .iter()
            .map(|&i| conns[i].open)
            .min()
            .unwrap_or(0)
    }
}

/// Choose the rows: every connection alone if they fit in `max_lanes`, otherwise the
/// busiest alone and the rest in groups. Rows are in order of opening.
pub fn group_lanes(conns: &[ConnLane], max_lanes: usize) -> (Vec<Group>, Vec<Row>) {
    let max_lanes = max_lanes.max(1);
    if conns.len() <= max_lanes {
        return (Vec::new(), (0..conns.len()).map(Row::Conn).collect());
    }
    let alone = max_lanes / 2;
    let group_rows = max_lanes - alone;
    let mut by_busyness: Vec<usize> = (0..conns.len()).collect();
    // Stable: among equally busy lanes the earlier ones stay.
    by_busyness.sort_by_key(|&i| std::cmp::Reverse(conns[i].busyness()));
    let kept: BTreeSet<usize> = by_busyness.into_iter().take(alone).collect();
    let rest: Vec<usize> = (0..conns.len()).filter(|i| !kept.contains(i)).collect();
    let per_group = rest.len().div_ceil(group_rows);
    let groups: Vec<Group> = rest
        .chunks(per_group.max(1))
        .map(|members| Group {
            members: members.to_vec(),
            open_count: open_count(conns, members),
        })
        .collect();
    let mut rows: Vec<(u64, Row)> = kept
        .iter()
        .map(|&i| (conns[i].open, Row::Conn(i)))
        .collect();
    rows.extend(
        groups
            .iter()
            .enumerate()
            .map(|(g, group)| (group.open(conns), Row::Group(g))),
    );
    rows.sort_by_key(|&(open, row)| (open, row_order(row, &groups)));
    (groups, rows.into_iter().map(|(_, row)| row).collect())
}

/// Tie-break for rows that opened at the same microsecond: by first connection.
fn row_order(row: Row, groups: &[Group]) -> usize {
    match row {
        Row::Conn(i) => i,
        Row::Group(g) => groups[g].members.first().copied().unwrap_or(0),
    }
}

/// How many of `members` were open over time: +1 at each open, -1 at each close.
fn open_count(conns: &[ConnLane], members: &[usize]) -> Vec<(u64, u64)> {
    let mut changes: Vec<(u64, i64)> = Vec::with_capacity(members.len() * 2);
    for &i in members {
        changes.push((conns[i].open, 1));
        if let Some(closed) = conns[i].closed {
            changes.push((closed, -1));
        }
    }
    changes.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut open: i64 = 0;
    for (t, delta) in changes {
        open += delta;
        let count = open.max(0) as u64;
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 = count,
            _ => out.push((t, count)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(ordinal: usize, open: u64, closed: u64, events: usize) -> ConnLane {
        ConnLane {
            ordinal,
            open,
            closed: Some(closed),
            events: vec![0; events],
            ..ConnLane::default()
        }
    }

    #[test]
    fn few_lanes_stay_alone() {
        let conns = vec![lane(1, 0, 5, 3), lane(2, 1, 5, 3)];
        let (groups, rows) = group_lanes(&conns, 30);
        assert!(groups.is_empty());
        assert_eq!(rows, [Row::Conn(0), Row::Conn(1)]);
    }

    #[test]
    fn past_the_limit_the_busiest_stay_and_the_rest_are_grouped() {
        let mut conns: Vec<ConnLane> = (0..200).map(|i| lane(i + 1, i as u64, 1000, 4)).collect();
        conns[150].events = vec![0; 500];
        let (groups, rows) = group_lanes(&conns, 30);
        assert_eq!(rows.len(), 30);
        assert!(rows.contains(&Row::Conn(150)), "the busiest keeps its lane");
        let grouped: usize = groups.iter().map(|g| g.members.len()).sum();
        assert_eq!(grouped, 200 - 15);
        // Every connection is shown exactly once.
        let mut seen: Vec<usize> = groups.iter().flat_map(|g| g.members.clone()).collect();
        seen.extend(rows.iter().filter_map(|r| match r {
            Row::Conn(i) => Some(*i),
            Row::Group(_) => None,
        }));
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        // The first group's open count rises one by one, then falls to 0 at once.
        let counts = &groups[0].open_count;
        assert_eq!(counts.last().map(|c| c.1), Some(0));
        assert_eq!(
            counts.iter().map(|c| c.1).max(),
            Some(groups[0].members.len() as u64)
        );
    }
}
