//! The durable pin queue: one record per file to pin, in a `sled::Tree` the server's `Db`
//! hands over.
//!
//! ```text
//! Pending ──POST 200 (already parked)────────────────┐
//!    │ POST 201 + PUT 204                             ▼
//!    └──► Uploaded ──GET /pdp/piece 200──► Parked ──batch──► AddPending(batch) ──confirmed──► Pinned(url)
//!            │ not parked within park_ms  ▲   ▲                   │ rejected
//!            └──────► Pending             │   └───────────────────┘
//! any step: error ─► same state, attempts+1, last_error, next_retry = now + backoff
//! ```
//!
//! Every transition is written and flushed (`flush_async`) before the network step it
//! authorizes, so after `kill -9` the worker resumes at the last step known done. Redoing a
//! step is safe: `POST /pdp/piece` answers 200 for a piece the provider already parked (no
//! second upload), and a batch whose add-pieces answer was lost is first looked up in the data
//! set (`batch.submitting` is set before the POST) before it is sent again.
//!
//! Keys: `i/<item key>` → [`PinRecord`], `a/<item key>` → () while the worker has work on it,
//! `b/<batch id be64>` → [`Batch`],
//! `m/dataset` → [`DataSetState`], `m/next_batch` → be64 counter. Values are JSON.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a queued file is, for status and for the server's callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinKind {
    Segment,
    Init,
    Vod,
}

/// A file to pin. `key` is the server's unique name for it (enqueueing a key twice is a no-op).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinItem {
    pub key: String,
    pub local_path: PathBuf,
    pub size: u64,
    pub kind: PinKind,
    pub stream_id: String,
    /// Segment sequence number (None for init / VOD).
    pub seq: Option<u64>,
}

/// Where an item stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PinState {
    Pending,
    Uploaded {
        piece_cid: String,
        since_ms: u64,
    },
    Parked {
        piece_cid: String,
        since_ms: u64,
    },
    AddPending {
        piece_cid: String,
        batch: u64,
    },
    Pinned {
        piece_cid: String,
        url: String,
        /// `on_pinned` has returned for it (it is re-called after a crash otherwise).
        notified: bool,
    },
    /// Can never be pinned (too small / too large / file gone); kept local.
    Rejected {
        reason: String,
    },
}

/// One queue entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRecord {
    pub item: PinItem,
    pub state: PinState,
    /// Consecutive failed attempts of the current step.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Unix ms before which the worker leaves it alone.
    pub next_retry_ms: u64,
    pub enqueued_ms: u64,
}

impl PinRecord {
    pub fn is_pinned(&self) -> bool {
        matches!(self.state, PinState::Pinned { .. })
    }
    /// In a retry backoff after an error.
    pub fn is_failing(&self) -> bool {
        self.last_error.is_some() && !self.is_pinned()
    }
}

/// An add-pieces call: persisted before it is signed and sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: u64,
    pub keys: Vec<String>,
    pub pieces: Vec<String>,
    /// `AddPieces.nonce`, hex of 32 bytes; fixed at batch creation so a resend is identical.
    pub nonce: String,
    /// Set (and flushed) right before the POST: if `status_url` is still None after a
    /// restart, the POST may have reached the provider.
    pub submitting: bool,
    /// Since when a lost-answer batch has been looked for in the data set.
    pub recovering_since_ms: Option<u64>,
    pub status_url: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_retry_ms: u64,
}

/// The data set the pieces go into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DataSetState {
    /// Creation signed with this client id; `status_url` once the provider accepted it.
    Creating {
        client_data_set_id: String,
        status_url: Option<String>,
        attempts: u32,
        last_error: Option<String>,
        next_retry_ms: u64,
    },
    Ready {
        data_set_id: u64,
        client_data_set_id: String,
    },
}

/// Counts for status JSON and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PinCounts {
    pub pinned: usize,
    /// Not yet pinned (any step), including those failing.
    pub pending: usize,
    /// Of `pending`, those in error backoff.
    pub failed: usize,
    pub rejected: usize,
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record at {key:?}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("no queue item {0:?}")]
    Missing(String),
}

/// The queue. Cheap to clone; clones share the tree and the wake-up signal.
#[derive(Clone)]
pub struct PinQueue {
    tree: sled::Tree,
    wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for PinQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinQueue")
            .field("len", &self.tree.len())
            .finish()
    }
}

const ITEM: &str = "i/";
/// Index of items the worker still has to do something about (superset: a stale entry for a
/// finished item is skipped; an entry is added before its item and removed after it ends).
const ACTIVE: &str = "a/";
const BATCH: &str = "b/";
const DATASET: &[u8] = b"m/dataset";
const NEXT_BATCH: &[u8] = b"m/next_batch";

fn item_key(key: &str) -> Vec<u8> {
    format!("{ITEM}{key}").into_bytes()
}

fn active_key(key: &str) -> Vec<u8> {
    format!("{ACTIVE}{key}").into_bytes()
}

/// Whether the worker is done with a record (so it leaves the active index).
fn is_final(r: &PinRecord) -> bool {
    matches!(
        r.state,
        PinState::Pinned { notified: true, .. } | PinState::Rejected { .. }
    )
}

fn batch_key(id: u64) -> Vec<u8> {
    let mut k = BATCH.as_bytes().to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn dec<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(bytes).map_err(|e| QueueError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// Exponential backoff: `initial · 2^(attempts-1)`, capped.
pub fn backoff_ms(attempts: u32, initial_ms: u64, max_ms: u64) -> u64 {
    let exp = attempts.saturating_sub(1).min(30);
    initial_ms.saturating_mul(1u64 << exp).min(max_ms)
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl PinQueue {
    pub fn open(tree: sled::Tree) -> Result<Self, QueueError> {
        Ok(Self {
            tree,
            wake: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Resolves when something was enqueued (the worker sleeps on it).
    pub fn wake_signal(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// A blocking flush on tokio's blocking pool: sled 0.34's `flush_async` deadlocks when
    /// called concurrently (see `Db::flush`).
    async fn flush(&self) -> Result<(), QueueError> {
        Ok(crate::db::flush_blocking(self.tree.clone()).await?)
    }

    /// Adds an item (Pending) and flushes. Returns false if the key was already queued.
    pub async fn enqueue(&self, item: PinItem) -> Result<bool, QueueError> {
        let k = item_key(&item.key);
        let rec = PinRecord {
            item,
            state: PinState::Pending,
            attempts: 0,
            last_error: None,
            next_retry_ms: 0,
            enqueued_ms: now_ms(),
        };
        if self.tree.contains_key(&k)? {
            return Ok(false);
        }
        self.tree.insert(active_key(&rec.item.key), &[][..])?;
        let fresh = self
            .tree
            .compare_and_swap(k, None as Option<&[u8]>, Some(enc(&rec)))?
            .is_ok();
        self.flush().await?;
        self.wake.notify_one();
        Ok(fresh)
    }

    pub fn get(&self, key: &str) -> Result<Option<PinRecord>, QueueError> {
        let k = item_key(key);
        self.tree.get(&k)?.map(|v| dec(&k, &v)).transpose()
    }

    /// Every record, in key order.
    pub fn records(&self) -> Result<Vec<PinRecord>, QueueError> {
        self.tree
            .scan_prefix(ITEM)
            .map(|r| {
                let (k, v) = r?;
                dec(&k, &v)
            })
            .collect()
    }

    /// Records the worker still has work on (not pinned-and-reported, not rejected), without
    /// reading the whole history.
    pub fn active(&self) -> Result<Vec<PinRecord>, QueueError> {
        let mut out = Vec::new();
        for r in self.tree.scan_prefix(ACTIVE) {
            let (k, _) = r?;
            let key = String::from_utf8_lossy(&k[ACTIVE.len()..]).into_owned();
            match self.get(&key)? {
                Some(rec) if !is_final(&rec) => out.push(rec),
                // Stale (crash between the final write and the index removal).
                Some(_) => {
                    self.tree.remove(&k)?;
                }
                // An enqueue in progress: it indexes the key just before writing the record.
                // Dropping the index here lost that item for good (it stayed pending, never
                // uploaded: a flaky filcdn_pin test). `remove` drops the index first, so this
                // is never a removed item's leftover.
                None => {}
            }
        }
        Ok(out)
    }

    /// Counts over all items, or one stream's.
    pub fn counts(&self, stream_id: Option<&str>) -> Result<PinCounts, QueueError> {
        let mut c = PinCounts::default();
        let mut last: Option<(u64, String)> = None;
        for r in self.records()? {
            if stream_id.is_some_and(|s| s != r.item.stream_id) {
                continue;
            }
            match &r.state {
                PinState::Pinned { .. } => c.pinned += 1,
                PinState::Rejected { reason } => {
                    c.rejected += 1;
                    last = Some((u64::MAX, reason.clone()));
                }
                _ => {
                    c.pending += 1;
                    if let Some(e) = &r.last_error {
                        c.failed += 1;
                        if last.as_ref().is_none_or(|(t, _)| r.next_retry_ms >= *t) {
                            last = Some((r.next_retry_ms, e.clone()));
                        }
                    }
                }
            }
        }
        c.last_error = last.map(|(_, e)| e);
        Ok(c)
    }

    /// Moves an item to `state`, clearing its error, and flushes.
    pub async fn set_state(&self, key: &str, state: PinState) -> Result<(), QueueError> {
        self.update(key, |r| {
            r.state = state.clone();
            r.attempts = 0;
            r.last_error = None;
            r.next_retry_ms = 0;
        })
        .await
        .map(|_| ())
    }

    /// Sets when the worker looks at the item next, without counting an error (polling).
    pub async fn defer(&self, key: &str, until_ms: u64) -> Result<(), QueueError> {
        self.update(key, |r| r.next_retry_ms = until_ms)
            .await
            .map(|_| ())
    }

    /// Records a failed attempt: same state, attempts+1, backoff.
    pub async fn fail(
        &self,
        key: &str,
        error: &str,
        now: u64,
        initial_ms: u64,
        max_ms: u64,
    ) -> Result<u32, QueueError> {
        let rec = self
            .update(key, |r| {
                r.attempts = r.attempts.saturating_add(1);
                r.last_error = Some(error.to_string());
                r.next_retry_ms = now + backoff_ms(r.attempts, initial_ms, max_ms);
            })
            .await?;
        Ok(rec.attempts)
    }

    /// Read-modify-write of one record (retried by sled on races), flushed; the new record.
    async fn update(&self, key: &str, f: impl Fn(&mut PinRecord)) -> Result<PinRecord, QueueError> {
        let k = item_key(key);
        let new = self.tree.update_and_fetch(&k, |old| {
            let old = old?;
            match dec::<PinRecord>(&k, old) {
                Ok(mut r) => {
                    f(&mut r);
                    Some(enc(&r))
                }
                // Leave a record we cannot read untouched; the decode below reports it.
                Err(_) => Some(old.to_vec()),
            }
        })?;
        let new = new.ok_or_else(|| QueueError::Missing(key.to_string()))?;
        let rec: PinRecord = dec(&k, &new)?;
        if is_final(&rec) {
            self.tree.remove(active_key(key))?;
        }
        self.flush().await?;
        Ok(rec)
    }

    /// Removes an item (the server forgets a stream). Not for use while it is in a batch.
    pub async fn remove(&self, key: &str) -> Result<(), QueueError> {
        self.tree.remove(active_key(key))?;
        self.tree.remove(item_key(key))?;
        self.flush().await
    }

    // --- batches ---

    /// Atomically creates a batch of parked items (they become AddPending) and flushes.
    pub async fn start_batch(
        &self,
        items: &[(String, String)],
        nonce_hex: String,
    ) -> Result<Batch, QueueError> {
        let id = self
            .tree
            .update_and_fetch(NEXT_BATCH, |old| {
                let n = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                Some((n + 1).to_be_bytes().to_vec())
            })?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(1);
        let batch = Batch {
            id,
            keys: items.iter().map(|(k, _)| k.clone()).collect(),
            pieces: items.iter().map(|(_, c)| c.clone()).collect(),
            nonce: nonce_hex,
            submitting: false,
            recovering_since_ms: None,
            status_url: None,
            attempts: 0,
            last_error: None,
            next_retry_ms: 0,
        };
        let mut b = sled::Batch::default();
        for (key, cid) in items {
            let mut r = self
                .get(key)?
                .ok_or_else(|| QueueError::Missing(key.clone()))?;
            r.state = PinState::AddPending {
                piece_cid: cid.clone(),
                batch: id,
            };
            r.attempts = 0;
            r.last_error = None;
            b.insert(item_key(key), enc(&r));
        }
        b.insert(batch_key(id), enc(&batch));
        self.tree.apply_batch(b)?;
        self.flush().await?;
        Ok(batch)
    }

    pub fn batches(&self) -> Result<Vec<Batch>, QueueError> {
        self.tree
            .scan_prefix(BATCH)
            .map(|r| {
                let (k, v) = r?;
                dec(&k, &v)
            })
            .collect()
    }

    /// Stores a batch's new state and flushes.
    pub async fn put_batch(&self, batch: &Batch) -> Result<(), QueueError> {
        self.tree.insert(batch_key(batch.id), enc(batch))?;
        self.flush().await
    }

    /// Ends a batch: `pinned` items get their URL, the rest go back to Parked with `error`.
    /// One atomic write, flushed.
    pub async fn finish_batch(
        &self,
        batch: &Batch,
        pinned: &[(String, String)],
        error: Option<&str>,
        now: u64,
        (backoff_initial_ms, backoff_max_ms): (u64, u64),
    ) -> Result<(), QueueError> {
        let mut b = sled::Batch::default();
        for (key, cid) in batch.keys.iter().zip(&batch.pieces) {
            let Some(mut r) = self.get(key)? else {
                continue;
            };
            if let Some((_, url)) = pinned.iter().find(|(k, _)| k == key) {
                r.state = PinState::Pinned {
                    piece_cid: cid.clone(),
                    url: url.clone(),
                    notified: false,
                };
                r.attempts = 0;
                r.last_error = None;
            } else {
                r.state = PinState::Parked {
                    piece_cid: cid.clone(),
                    since_ms: now,
                };
                if let Some(e) = error {
                    r.attempts = r.attempts.saturating_add(1);
                    r.last_error = Some(e.to_string());
                    r.next_retry_ms =
                        now + backoff_ms(r.attempts, backoff_initial_ms, backoff_max_ms);
                }
            }
            b.insert(item_key(key), enc(&r));
        }
        b.remove(batch_key(batch.id));
        self.tree.apply_batch(b)?;
        self.flush().await
    }

    // --- data set ---

    pub fn data_set(&self) -> Result<Option<DataSetState>, QueueError> {
        self.tree
            .get(DATASET)?
            .map(|v| dec(DATASET, &v))
            .transpose()
    }

    pub async fn put_data_set(&self, state: &DataSetState) -> Result<(), QueueError> {
        self.tree.insert(DATASET, enc(state))?;
        self.flush().await
    }

    /// Forgets the data set (a new one is created on the next pass).
    pub async fn remove_data_set(&self) -> Result<(), QueueError> {
        self.tree.remove(DATASET)?;
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> (tempfile::TempDir, sled::Db, PinQueue) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let q = PinQueue::open(db.open_tree("pins").unwrap()).unwrap();
        (dir, db, q)
    }

    fn item(key: &str, stream: &str) -> PinItem {
        PinItem {
            key: key.into(),
            local_path: PathBuf::from(format!("/tmp/{key}")),
            size: 1000,
            kind: PinKind::Segment,
            stream_id: stream.into(),
            seq: Some(1),
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(
            (1..=6)
                .map(|a| backoff_ms(a, 100, 1_000))
                .collect::<Vec<_>>(),
            [100, 200, 400, 800, 1_000, 1_000]
        );
        assert_eq!(backoff_ms(u32::MAX, 100, 5_000), 5_000);
    }

    #[tokio::test]
    async fn transitions_errors_and_counts() {
        let (_d, _db, q) = queue();
        assert!(q.enqueue(item("a", "s1")).await.unwrap());
        assert!(q.enqueue(item("b", "s1")).await.unwrap());
        assert!(q.enqueue(item("c", "s2")).await.unwrap());
        assert!(!q.enqueue(item("a", "s1")).await.unwrap());
        assert_eq!(q.fail("a", "HTTP 500", 1_000, 100, 1_000).await.unwrap(), 1);
        assert_eq!(q.fail("a", "HTTP 429", 1_000, 100, 1_000).await.unwrap(), 2);
        let a = q.get("a").unwrap().unwrap();
        assert_eq!(
            (a.next_retry_ms, a.last_error.as_deref()),
            (1_200, Some("HTTP 429"))
        );
        let done = PinState::Pinned {
            piece_cid: "x".into(),
            url: "u".into(),
            notified: false,
        };
        q.set_state("b", done).await.unwrap();
        let c = q.counts(Some("s1")).unwrap();
        assert_eq!((c.pinned, c.pending, c.failed), (1, 1, 1));
        assert_eq!(c.last_error.as_deref(), Some("HTTP 429"));
        assert_eq!(q.counts(None).unwrap().pending, 2);
        // A later success clears the error.
        q.set_state("a", PinState::Pending).await.unwrap();
        assert_eq!(q.counts(Some("s1")).unwrap().failed, 0);
        assert!(matches!(
            q.fail("zz", "e", 0, 1, 1).await,
            Err(QueueError::Missing(_))
        ));
    }

    #[tokio::test]
    async fn batch_start_and_finish_are_atomic_and_durable() {
        let (dir, db, q) = queue();
        for k in ["a", "b", "c"] {
            q.enqueue(item(k, "s")).await.unwrap();
            let parked = PinState::Parked {
                piece_cid: format!("cid-{k}"),
                since_ms: 5,
            };
            q.set_state(k, parked).await.unwrap();
        }
        let items: Vec<(String, String)> = ["a", "b"]
            .iter()
            .map(|k| (k.to_string(), format!("cid-{k}")))
            .collect();
        let b = q.start_batch(&items, "00".repeat(32)).await.unwrap();
        let b2 = q.start_batch(&items[..1], "11".repeat(32)).await.unwrap();
        assert_eq!((b.id, b2.id), (1, 2));
        drop(q);
        drop(db);
        // Reopened: the batch and its items' states survived.
        let db = sled::open(dir.path().join("db")).unwrap();
        let q = PinQueue::open(db.open_tree("pins").unwrap()).unwrap();
        assert_eq!(q.batches().unwrap().len(), 2);
        assert!(matches!(
            q.get("b").unwrap().unwrap().state,
            PinState::AddPending { batch: 1, .. }
        ));
        let pinned = vec![("a".to_string(), "https://x/cid-a".to_string())];
        q.finish_batch(&b, &pinned, Some("half lost"), 100, (10, 100))
            .await
            .unwrap();
        assert_eq!(q.batches().unwrap().len(), 1);
        assert!(q.get("a").unwrap().unwrap().is_pinned());
        let rb = q.get("b").unwrap().unwrap();
        assert!(matches!(rb.state, PinState::Parked { .. }));
        assert_eq!((rb.attempts, rb.next_retry_ms), (1, 110));
    }

    #[tokio::test]
    async fn an_enqueue_in_progress_keeps_its_index() {
        let (_d, _db, q) = queue();
        // What a worker pass sees between enqueue's index write and its record write.
        q.tree.insert(active_key("mid"), &[][..]).unwrap();
        assert!(q.active().unwrap().is_empty());
        assert!(q.tree.contains_key(active_key("mid")).unwrap());
        // The enqueue finishes (the key is indexed already; the record lands).
        q.tree
            .insert(
                item_key("mid"),
                enc(&PinRecord {
                    item: item("mid", "s"),
                    state: PinState::Pending,
                    attempts: 0,
                    last_error: None,
                    next_retry_ms: 0,
                    enqueued_ms: 0,
                }),
            )
            .unwrap();
        let active = q.active().unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].item.key, "mid");
    }

    #[tokio::test]
    async fn active_index_follows_final_states() {
        let (_d, db, q) = queue();
        for k in ["a", "b", "c"] {
            q.enqueue(item(k, "s")).await.unwrap();
        }
        let pinned = |notified| PinState::Pinned {
            piece_cid: "x".into(),
            url: "u".into(),
            notified,
        };
        q.set_state("a", pinned(false)).await.unwrap();
        q.set_state(
            "b",
            PinState::Rejected {
                reason: "tiny".into(),
            },
        )
        .await
        .unwrap();
        let keys = |q: &PinQueue| {
            q.active()
                .unwrap()
                .into_iter()
                .map(|r| r.item.key)
                .collect::<Vec<_>>()
        };
        // Pinned but not yet reported stays active (it must be reported after a crash).
        assert_eq!(keys(&q), ["a", "c"]);
        q.set_state("a", pinned(true)).await.unwrap();
        assert_eq!(keys(&q), ["c"]);
        // A stale index entry (crash between writes) is skipped and cleaned.
        db.open_tree("pins")
            .unwrap()
            .insert("a/a", &[][..])
            .unwrap();
        assert_eq!(keys(&q), ["c"]);
        assert_eq!(q.records().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn corrupt_record_is_reported_not_panicked() {
        let (_d, db, q) = queue();
        db.open_tree("pins")
            .unwrap()
            .insert("i/bad", &b"{not json"[..])
            .unwrap();
        assert!(matches!(q.records(), Err(QueueError::Corrupt { .. })));
        assert!(matches!(q.get("bad"), Err(QueueError::Corrupt { .. })));
    }
}
