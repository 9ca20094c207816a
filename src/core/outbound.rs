//! `OutboundQueue`: the bytes a connection owes its peer but could not write yet.
//!
//! This is seed 001's `message_queue[conn]`, with two fixes. It is one contiguous byte
//! buffer rather than a queue of messages, so a partial `send` never loses the tail of a
//! message (the seed's `s.send(next_msg)` drops whatever the kernel did not take). And it
//! is bounded by its owner: the loop stops reading from a connection whose queue passed
//! the high watermark (see `conn.rs`), so a peer that never reads cannot grow it.
//!
//! Readiness rule relied on: the queue is only written to the socket when the socket is
//! writable; a short write means the kernel buffer is full, so the rest waits here for
//! the next writable edge.

/// Bytes waiting to be written, oldest first.
#[derive(Debug, Default)]
pub struct OutboundQueue {
    /// Storage; bytes before `head` were already written.
    buf: Vec<u8>,
    /// Index of the first unwritten byte in `buf`.
    head: usize,
}

impl OutboundQueue {
    /// Number of bytes still to write.
    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The unwritten bytes, ready to hand to `write`.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// Append bytes at the tail.
    pub fn push(&mut self, bytes: &[u8]) {
        // Reclaim the written prefix before growing, so the buffer's size follows what is
        // pending, not everything that ever passed through it.
        if self.head > 0 && self.head >= self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Mark `n` bytes as written.
    pub fn consume(&mut self, n: usize) {
        self.head += n.min(self.len());
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        }
    }

    /// Capacity held by the queue, for tests and memory reasoning.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_consume_keeps_order() {
        let mut q = OutboundQueue::default();
        q.push(b"hello ");
        q.push(b"world");
        assert_eq!(q.as_slice(), b"hello world");
        q.consume(6);
        assert_eq!(q.as_slice(), b"world");
        q.push(b"!");
        assert_eq!(q.as_slice(), b"world!");
        q.consume(100);
        assert!(q.is_empty());
    }
}
