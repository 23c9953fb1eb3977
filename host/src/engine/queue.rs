//! A queue of record batches bounded in batches and in bytes, with back-pressure and
//! cancellation.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use arrow_array::RecordBatch;

/// The queue was cancelled: the run is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// A batch in a queue, with the checkpoint tag it carries in a checkpointed run.
pub type Item = (RecordBatch, Option<String>);

struct State {
    items: VecDeque<(Item, usize)>,
    bytes: usize,
    producers: usize,
    cancelled: bool,
    max_len: usize,
    max_bytes_seen: usize,
}

/// A bounded multi-producer multi-consumer queue of batches.
///
/// A push waits while the queue holds `max_batches` batches, or while adding the batch would
/// exceed `max_bytes`; an empty queue always accepts one batch, however large, so a batch
/// bigger than the budget still moves. The queue ends when every producer has called
/// [`producer_done`](Self::producer_done) and it is drained; [`cancel`](Self::cancel) wakes
/// everyone and makes every later call fail or end.
pub struct BatchQueue {
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
    max_batches: usize,
    max_bytes: usize,
}

/// Depth figures of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    /// Batches waiting now.
    pub batches: usize,
    /// Bytes waiting now.
    pub bytes: usize,
}

impl BatchQueue {
    /// A queue for `producers` producers, holding at most `max_batches` batches and
    /// `max_bytes` bytes.
    pub fn new(producers: usize, max_batches: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                producers,
                cancelled: false,
                max_len: 0,
                max_bytes_seen: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            max_batches: max_batches.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a batch of `bytes` bytes, waiting while the queue is full.
    pub fn push(&self, batch: RecordBatch, bytes: usize) -> Result<(), Cancelled> {
        self.push_item((batch, None), bytes)
    }

    /// Adds a batch with its tag, waiting while the queue is full.
    pub fn push_item(&self, item: Item, bytes: usize) -> Result<(), Cancelled> {
        let mut s = self.lock();
        loop {
            if s.cancelled {
                return Err(Cancelled);
            }
            let fits = s.items.is_empty()
                || (s.items.len() < self.max_batches && s.bytes + bytes <= self.max_bytes);
            if fits {
                break;
            }
            s = self.not_full.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.items.push_back((item, bytes));
        s.bytes += bytes;
        s.max_len = s.max_len.max(s.items.len());
        s.max_bytes_seen = s.max_bytes_seen.max(s.bytes);
        drop(s);
        self.not_empty.notify_one();
        Ok(())
    }

    /// Takes the next batch, waiting while the queue is empty; `None` at the end or when
    /// cancelled.
    pub fn pop(&self) -> Option<RecordBatch> {
        self.pop_item().map(|(batch, _)| batch)
    }

    /// Takes the next batch with its tag, waiting while the queue is empty; `None` at the end
    /// or when cancelled.
    pub fn pop_item(&self) -> Option<Item> {
        let mut s = self.lock();
        loop {
            if s.cancelled {
                return None;
            }
            if let Some((item, bytes)) = s.items.pop_front() {
                s.bytes -= bytes;
                drop(s);
                self.not_full.notify_all();
                return Some(item);
            }
            if s.producers == 0 {
                return None;
            }
            s = self.not_empty.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Records that one producer has finished.
    pub fn producer_done(&self) {
        let mut s = self.lock();
        s.producers = s.producers.saturating_sub(1);
        drop(s);
        self.not_empty.notify_all();
    }

    /// Cancels the queue: drops what it holds and wakes every waiting producer and consumer.
    pub fn cancel(&self) {
        let mut s = self.lock();
        s.cancelled = true;
        s.items.clear();
        s.bytes = 0;
        drop(s);
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    /// What the queue holds now.
    pub fn depth(&self) -> QueueDepth {
        let s = self.lock();
        QueueDepth {
            batches: s.items.len(),
            bytes: s.bytes,
        }
    }

    /// The most the queue has held at once.
    pub fn peak(&self) -> QueueDepth {
        let s = self.lock();
        QueueDepth {
            batches: s.max_len,
            bytes: s.max_bytes_seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arrow_array::{Int32Array, RecordBatch};

    use super::*;

    fn batch(n: i32) -> RecordBatch {
        RecordBatch::try_from_iter([("a", Arc::new(Int32Array::from(vec![n])) as _)]).unwrap()
    }

    #[test]
    fn bounded_by_batches() {
        let q = Arc::new(BatchQueue::new(1, 2, usize::MAX));
        q.push(batch(1), 1).unwrap();
        q.push(batch(2), 1).unwrap();
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.push(batch(3), 1));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(q.depth().batches, 2, "third push must wait");
        assert!(q.pop().is_some());
        t.join().unwrap().unwrap();
        assert_eq!(q.peak().batches, 2);
    }

    #[test]
    fn bounded_by_bytes_but_always_admits_one() {
        let q = Arc::new(BatchQueue::new(1, 100, 10));
        q.push(batch(1), 50).unwrap(); // larger than the budget, but the queue was empty
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.push(batch(2), 5));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(q.depth().batches, 1);
        q.pop().unwrap();
        t.join().unwrap().unwrap();
        assert_eq!(
            q.depth(),
            QueueDepth {
                batches: 1,
                bytes: 5
            }
        );
    }

    #[test]
    fn ends_when_all_producers_are_done() {
        let q = BatchQueue::new(2, 4, 100);
        q.push(batch(1), 1).unwrap();
        q.producer_done();
        assert!(q.pop().is_some());
        q.producer_done();
        assert!(q.pop().is_none());
    }

    #[test]
    fn cancel_wakes_blocked_producers_and_consumers() {
        let q = Arc::new(BatchQueue::new(1, 1, 100));
        q.push(batch(1), 1).unwrap();
        let qp = q.clone();
        let producer = std::thread::spawn(move || qp.push(batch(2), 1));
        let empty = Arc::new(BatchQueue::new(1, 1, 100));
        let qc = empty.clone();
        let consumer = std::thread::spawn(move || qc.pop());
        std::thread::sleep(Duration::from_millis(30));
        q.cancel();
        empty.cancel();
        assert_eq!(producer.join().unwrap(), Err(Cancelled));
        assert!(consumer.join().unwrap().is_none());
    }
}
