//! Bounded lock-free hand-off between link reactors and their consumer, and a pool of reusable
//! frame buffers.
//!
//! [`BoundedQueue`] wraps crossbeam's `ArrayQueue` (a fixed ring, no allocation after creation):
//! a push into a full queue gives the value back to the producer ([`Full`]) and is counted, so
//! nothing is dropped silently; the producer decides (return `SendError::Full`, or count a drop).
//! [`BufferPool`] recycles `Vec<u8>` frame buffers so the packet path does not allocate per
//! packet in steady state.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

/// A push found the queue full; the value comes back to the producer.
#[derive(PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

/// A fixed-capacity multi-producer multi-consumer queue that counts refused pushes.
pub struct BoundedQueue<T> {
    queue: ArrayQueue<T>,
    refused: AtomicU64,
}

impl<T> fmt::Debug for BoundedQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedQueue")
            .field("len", &self.queue.len())
            .field("capacity", &self.queue.capacity())
            .field("refused", &self.refused())
            .finish()
    }
}

impl<T> BoundedQueue<T> {
    /// A queue holding at most `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Self {
        BoundedQueue {
            queue: ArrayQueue::new(capacity.max(1)),
            refused: AtomicU64::new(0),
        }
    }

    /// Appends `value`, or gives it back when the queue is full (counted in [`Self::refused`]).
    pub fn push(&self, value: T) -> Result<(), Full<T>> {
        self.queue.push(value).map_err(|value| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Full(value)
        })
    }

    /// Takes the oldest value.
    pub fn pop(&self) -> Option<T> {
        self.queue.pop()
    }

    /// Values queued now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Most values the queue holds.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Free places now (a hint: other producers may take them).
    pub fn free(&self) -> usize {
        self.queue.capacity() - self.queue.len()
    }

    /// Pushes refused because the queue was full, since creation.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Reusable byte buffers of one size class. `take` hands out a pooled buffer (cleared) or a new
/// one when the pool is empty (counted); `give` returns it, keeping at most `capacity` buffers.
pub struct BufferPool {
    free: ArrayQueue<Vec<u8>>,
    buffer_bytes: usize,
    allocated: AtomicU64,
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("free", &self.free.len())
            .field("buffer_bytes", &self.buffer_bytes)
            .field("allocated", &self.allocated())
            .finish()
    }
}

impl BufferPool {
    /// A pool keeping up to `capacity` buffers of `buffer_bytes` capacity, `prefill` made now.
    pub fn new(capacity: usize, buffer_bytes: usize, prefill: usize) -> Self {
        let pool = BufferPool {
            free: ArrayQueue::new(capacity.max(1)),
            buffer_bytes,
            allocated: AtomicU64::new(0),
        };
        for _ in 0..prefill.min(capacity) {
            let _ = pool.free.push(Vec::with_capacity(buffer_bytes));
        }
        pool
    }

    /// An empty buffer with at least `buffer_bytes` capacity.
    pub fn take(&self) -> Vec<u8> {
        match self.free.pop() {
            Some(mut buffer) => {
                buffer.clear();
                buffer
            }
            None => {
                self.allocated.fetch_add(1, Ordering::Relaxed);
                Vec::with_capacity(self.buffer_bytes)
            }
        }
    }

    /// Returns a buffer for reuse (dropped when the pool is full or it is of another size class:
    /// smaller, or more than twice the class, such as a reassembled message, which the pool
    /// would otherwise keep by the thousand).
    pub fn give(&self, buffer: Vec<u8>) {
        if self.fits(buffer.capacity()) {
            let _ = self.free.push(buffer);
        }
    }

    /// Whether a buffer of `capacity` bytes belongs to this pool's size class.
    fn fits(&self, capacity: usize) -> bool {
        (self.buffer_bytes..=self.buffer_bytes.saturating_mul(2)).contains(&capacity)
    }

    /// Buffers allocated because the pool was empty, since creation (steady state: constant).
    pub fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_gives_the_value_back_and_counts() {
        let q = BoundedQueue::new(2);
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(q.push(3), Err(Full(3)));
        assert_eq!(q.refused(), 1);
        assert_eq!(q.pop(), Some(1));
        q.push(4).unwrap();
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(2), Some(4), None));
    }

    #[test]
    fn pool_reuses_buffers_without_allocating() {
        let pool = BufferPool::new(4, 1500, 2);
        let a = pool.take();
        let b = pool.take();
        assert_eq!(pool.allocated(), 0);
        let c = pool.take();
        assert_eq!(pool.allocated(), 1);
        for mut buffer in [a, b, c] {
            buffer.extend_from_slice(b"data");
            pool.give(buffer);
        }
        let again = pool.take();
        assert!(again.is_empty() && again.capacity() >= 1500);
        assert_eq!(pool.allocated(), 1);
    }

    #[test]
    fn pool_keeps_only_its_size_class() {
        let pool = BufferPool::new(8, 1500, 0);
        // A frame buffer that grew once (sealing appends a tag) is still of the class.
        let mut grown = Vec::with_capacity(1500);
        grown.resize(1501, 0);
        pool.give(grown);
        // A reassembled 64 KB message and a small buffer are not kept.
        pool.give(Vec::with_capacity(64_000));
        pool.give(Vec::with_capacity(100));
        assert_eq!(pool.free.len(), 1);
        let reused = pool.take();
        assert!(reused.is_empty() && (1500..=3000).contains(&reused.capacity()));
        assert_eq!(pool.allocated(), 0);
    }
}
