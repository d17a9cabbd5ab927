//! The tokio runtime the servers (and our load generator) run on.
//!
//! HTTP/2 answers leave in batches only if the connection task runs after the
//! stream tasks that completed them, not after each one. Tokio's multi-thread
//! scheduler runs a just-woken task next (its "LIFO slot"), so every finished
//! stream woke the connection and cost one `writev`: on loopback, where a write
//! also runs the receiver's TCP stack, that was a third of the server's CPU.
//! With one worker this module builds a current-thread runtime, whose queue is
//! first in, first out; with more, a multi-thread runtime with the LIFO slot
//! turned off (a `tokio_unstable` switch, which `.cargo/config.toml` sets; a
//! build without the flag still works, only with one write per answer). The
//! effect is measured in docs/performance.md.

use std::io;

use tokio::runtime::{Builder, Runtime};

/// Worker threads when none are configured: one per core.
pub fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A runtime with `worker_threads` workers (at least one) and I/O and timers on.
pub fn build(worker_threads: usize) -> io::Result<Runtime> {
    if worker_threads <= 1 {
        return Builder::new_current_thread().enable_all().build();
    }
    let mut builder = Builder::new_multi_thread();
    builder.worker_threads(worker_threads).enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build()
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    use super::*;

    #[test]
    fn one_worker_gets_the_first_in_first_out_runtime_and_more_get_as_many_workers() {
        let one = build(1).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let three = build(3).unwrap();
        assert_eq!(three.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(three.metrics().num_workers(), 3);
        // both serve futures
        assert_eq!(one.block_on(async { 1 + 1 }), 2);
        assert_eq!(three.block_on(three.spawn(async { 2 + 2 })).unwrap(), 4);
    }
}
