//! `Pool`: blocking work off the loop thread, results back through the loop's waker.
//!
//! The loop thread must never block: one `fsync` that takes 20 ms stalls every
//! connection for 20 ms. So work that can block (an `fsync`, finishing a file, writing
//! to a stdout that may be a slow pipe, a DNS lookup) is handed to a few helper threads,
//! and its result comes back as an event: the helper pushes the result on a channel and
//! wakes the loop, which calls the handler's `on_wake`, where the handler collects
//! results with `try_recv`. This is libuv's `uv_queue_work` + `uv_async_send`.
//!
//! A pool belongs to one handler and has one result type. With one thread, jobs run in
//! the order they were submitted (what an ordered output stream needs); with more, in
//! any order. Dropping the pool lets queued jobs finish, then joins the threads, so no
//! submitted work (a file being made durable) is lost when a server stops.

use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mio::Waker;

type Job<T> = Box<dyn FnOnce() -> T + Send + 'static>;

/// Helper threads running blocking jobs for one handler.
pub struct Pool<T: Send + 'static> {
    jobs: Option<Sender<Job<T>>>,
    results: Receiver<T>,
    threads: Vec<JoinHandle<()>>,
    in_flight: usize,
}

impl<T: Send + 'static> Pool<T> {
    /// Start `threads` helper threads (at least one) named `name`; each finished job
    /// wakes the loop through `waker`.
    pub fn new(name: &str, threads: usize, waker: Arc<Waker>) -> io::Result<Pool<T>> {
        let (job_tx, job_rx) = channel::<Job<T>>();
        let (result_tx, results) = channel::<T>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let job_rx = Arc::clone(&job_rx);
            let result_tx = result_tx.clone();
            let waker = Arc::clone(&waker);
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || worker(job_rx, result_tx, waker))
                .map_err(|e| io::Error::new(e.kind(), format!("start {name} thread: {e}")))?;
            handles.push(handle);
        }
        Ok(Pool {
            jobs: Some(job_tx),
            results,
            threads: handles,
            in_flight: 0,
        })
    }

    /// Run `job` on a helper thread; its result comes back through `try_recv`.
    pub fn submit(&mut self, job: impl FnOnce() -> T + Send + 'static) {
        if let Some(jobs) = &self.jobs {
            if jobs.send(Box::new(job)).is_ok() {
                self.in_flight += 1;
            }
        }
    }

    /// A finished job's result, if one is waiting (call from `on_wake` until `None`).
    pub fn try_recv(&mut self) -> Option<T> {
        let result = self.results.try_recv().ok()?;
        self.in_flight -= 1;
        Some(result)
    }

    /// Jobs submitted whose results have not been collected yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

fn worker<T>(jobs: Arc<Mutex<Receiver<Job<T>>>>, results: Sender<T>, waker: Arc<Waker>) {
    loop {
        // Hold the lock only to take a job, never while running one.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return, // another helper panicked holding the lock
        };
        let Ok(job) = job else {
            return; // the pool was dropped and the queue is empty
        };
        if results.send(job()).is_err() {
            return;
        }
        // A failed wake means the loop is gone; the result simply stays uncollected.
        let _ = waker.wake();
    }
}

impl<T: Send + 'static> Drop for Pool<T> {
    fn drop(&mut self) {
        self.jobs = None; // helpers finish what is queued, then see the channel closed
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}
