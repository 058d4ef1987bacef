//! The rows waiting for the store, oldest first, bounded by an estimate of the memory they
//! hold: beyond it the oldest are dropped (the newest say most about the endpoints now).

use crate::store::rows::PollRecord;
use std::collections::VecDeque;

/// What a row costs besides its strings and body (the struct, the allocations).
const ROW_OVERHEAD: usize = 256;

pub(super) struct Backlog {
    rows: VecDeque<PollRecord>,
    bytes: usize,
    bound: usize,
}

fn size(r: &PollRecord) -> usize {
    ROW_OVERHEAD
        + r.account.len()
        + r.endpoint.len()
        + r.error.as_ref().map_or(0, String::len)
        + r.body.as_ref().map_or(0, Vec::len)
        + r.body_hash.as_ref().map_or(0, String::len)
}

impl Backlog {
    pub fn new(bound: u64) -> Backlog {
        Backlog {
            rows: VecDeque::new(),
            bytes: 0,
            bound: usize::try_from(bound).unwrap_or(usize::MAX),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Appends `rows`, then drops the oldest beyond the bound: how many were dropped.
    pub fn extend(&mut self, rows: Vec<PollRecord>) -> usize {
        for r in rows {
            self.bytes += size(&r);
            self.rows.push_back(r);
        }
        let mut dropped = 0;
        while self.bytes > self.bound {
            let Some(r) = self.rows.pop_front() else {
                break;
            };
            self.bytes -= size(&r);
            dropped += 1;
        }
        dropped
    }

    /// The oldest `n` rows (at most), as one slice.
    pub fn front(&mut self, n: usize) -> &[PollRecord] {
        let n = n.min(self.rows.len());
        &self.rows.make_contiguous()[..n]
    }

    /// Forgets the oldest `n` rows (written, or refused).
    pub fn pop(&mut self, n: usize) {
        for r in self.rows.drain(..n.min(self.rows.len())) {
            self.bytes -= size(&r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: i64) -> PollRecord {
        PollRecord {
            status: Some(200),
            pages: Some(1),
            ..PollRecord::ended("a", "e", i, 1.0)
        }
    }

    #[test]
    fn keeps_the_newest_rows_in_order_within_the_bound() {
        let one = size(&row(0));
        let mut b = Backlog::new(3 * one as u64);
        assert_eq!(b.extend((0..2).map(row).collect()), 0);
        assert_eq!(b.extend((2..5).map(row).collect()), 2);
        let kept: Vec<i64> = b.front(10).iter().map(|r| r.started_at).collect();
        assert_eq!(kept, [2, 3, 4]);
        b.pop(2);
        assert_eq!((b.len(), b.bytes()), (1, one));
        assert_eq!(b.front(10)[0].started_at, 4);
    }
}
