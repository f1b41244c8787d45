//! Thread-per-core executors for publisher connections.
//!
//! A live publisher is a stream of small events (one RTMP message per video or audio frame, ~80 a
//! second) handed from its connection task to the stream's packaging task. On tokio's
//! work-stealing runtime each hand-off may wake a parked worker thread that then finds nothing to
//! steal: measured with 50 RTMP publishers, ~3 context switches per frame and most of the
//! scheduling cost of ingest. nginx-rtmp avoids this with single-threaded worker processes; a
//! shard is the same idea: a single-threaded tokio runtime on its own thread. A connection and
//! every task it spawns (the packaging task, via `tokio::spawn`) live on one shard, so a hand-off
//! is a push onto a local queue, and connections are spread over the shards so all cores work.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::runtime::{Builder, Handle};

/// A fixed set of single-threaded runtimes; see the module docs.
pub struct Shards {
    shards: Vec<Shard>,
}

struct Shard {
    handle: Handle,
    /// Tasks spawned through [`Shards::spawn`] and still running: new work goes to the least
    /// loaded shard, so long-lived publishers stay balanced when others come and go.
    running: Arc<AtomicUsize>,
}

impl Shards {
    /// Starts `n` (at least one) shard threads named `{name}-{i}`. They run for the life of the
    /// process.
    pub fn start(n: usize, name: &str) -> std::io::Result<Shards> {
        let mut shards = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let rt = Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("{name}-{i}-blocking"))
                .build()?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || rt.block_on(std::future::pending::<()>()))?;
            shards.push(Shard {
                handle,
                running: Arc::new(AtomicUsize::new(0)),
            });
        }
        Ok(Shards { shards })
    }

    /// How many shards there are.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Never true: [`Shards::start`] makes at least one.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Runs `fut` on the least loaded shard.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shard = self
            .shards
            .iter()
            .min_by_key(|s| s.running.load(Ordering::Relaxed))
            .unwrap_or_else(|| unreachable!("Shards::start makes at least one shard"));
        let running = shard.running.clone();
        running.fetch_add(1, Ordering::Relaxed);
        shard.handle.spawn(async move {
            // Decremented even if `fut` panics (the guard drops while unwinding).
            let _guard = Running(running);
            fut.await
        })
    }

    /// Tasks running on each shard, in shard order.
    pub fn load(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| s.running.load(Ordering::Relaxed))
            .collect()
    }
}

struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn tasks_spread_over_shards_and_their_children_stay_on_the_shard() {
        let shards = Shards::start(2, "test-shard").unwrap();
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let mut joins = Vec::new();
        for _ in 0..4 {
            let mut rx = release_rx.clone();
            joins.push(shards.spawn(async move {
                let outer = std::thread::current().id();
                // A task spawned from a shard runs on the same thread.
                let inner = tokio::spawn(async { std::thread::current().id() })
                    .await
                    .unwrap();
                let _ = rx.wait_for(|v| *v).await;
                (outer, inner)
            }));
        }
        // Least loaded placement: 4 long-running tasks over 2 shards are 2 + 2.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(shards.load(), vec![2, 2]);
        release_tx.send(true).unwrap();
        let mut threads = std::collections::HashSet::new();
        for j in joins {
            let (outer, inner) = j.await.unwrap();
            assert_eq!(outer, inner);
            assert_ne!(outer, std::thread::current().id());
            threads.insert(outer);
        }
        assert_eq!(threads.len(), 2);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(shards.load(), vec![0, 0]);
    }

    #[tokio::test]
    async fn a_panicking_task_frees_its_slot_and_the_shard_keeps_running() {
        let shards = Shards::start(1, "test-shard-panic").unwrap();
        let r = shards.spawn(async { panic!("boom") }).await;
        assert!(r.unwrap_err().is_panic());
        assert_eq!(shards.load(), vec![0]);
        assert_eq!(shards.spawn(async { 7 }).await.unwrap(), 7);
    }
}
