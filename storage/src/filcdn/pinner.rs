//! The pin worker: drives [`PinQueue`] records through the provider calls of [`PdpClient`].
//!
//! Each pass reads the queue, does the due network steps, writes each outcome back (flushed)
//! and sleeps until the next due time or an enqueue. It holds no state of its own beyond the
//! config, so aborting it at any await point and starting it again over the same tree is a
//! normal restart (the `kill -9` test does exactly that).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy_primitives::{hex, Address, U256};
use alloy_sol_types::Eip712Domain;
use sha2::{Digest, Sha256};

use super::commp::{commp_reader, MAX_UPLOAD_SIZE, MIN_UPLOAD_SIZE};
use super::config::{render_url, FilcdnConfig};
use super::eip712::{self, PayerKey};
use super::pdp::{PdpClient, PdpError, PostPiece, TxOutcome};
use super::piece_cid::PieceCid;
use super::queue::{
    backoff_ms, now_ms, Batch, DataSetState, PinKind, PinQueue, PinRecord, PinState, QueueError,
};

/// What the server learns when a file is on chain: switch its URL to `url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedItem {
    pub key: String,
    pub stream_id: String,
    pub kind: PinKind,
    pub seq: Option<u64>,
    /// PieceCIDv2.
    pub piece_cid: String,
    pub url: String,
    pub local_path: PathBuf,
    /// Unix ms when it was enqueued; with `pinned_ms`, the pin latency for metrics.
    pub enqueued_ms: u64,
    /// Unix ms when `on_pinned` was called.
    pub pinned_ms: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinnerError {
    #[error("filcdn config: {0}")]
    Config(String),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("filcdn provider {url}: {error}")]
    Provider { url: String, error: PdpError },
}

/// What [`startup_check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartupReport {
    /// The wallet that pays (fund it with USDFC and approve FWSS as operator beforehand).
    pub payer: Address,
    /// The data set in use, if there is one yet (configured, or created earlier and in sled).
    pub data_set_id: Option<u64>,
}

/// Start-up check: config sane, provider reachable (`GET /pdp/ping`), configured data set
/// known to the provider. Funding cannot be seen from here (that needs a chain RPC): an
/// unfunded wallet shows up as a rejected data-set creation in the queue's `last_error`.
pub async fn startup_check(
    client: &PdpClient,
    cfg: &FilcdnConfig,
    queue: &PinQueue,
) -> Result<StartupReport, PinnerError> {
    let payer = check_config(cfg)?;
    let t = &cfg.timeouts;
    let provider = |error| PinnerError::Provider {
        url: cfg.provider_url.clone(),
        error,
    };
    client.ping(t.request()).await.map_err(provider)?;
    let data_set_id = match (cfg.data_set_id, queue.data_set()?) {
        (Some(id), _) => {
            client.data_set(id, t.request()).await.map_err(provider)?;
            Some(id)
        }
        (None, Some(DataSetState::Ready { data_set_id, .. })) => Some(data_set_id),
        (None, _) => None,
    };
    Ok(StartupReport { payer, data_set_id })
}

/// PieceCIDv2 of a file, streaming (for `storef piece-cid FILE`; `.to_v1_string()` for `--v1`).
pub async fn piece_cid_of_file(path: &std::path::Path) -> std::io::Result<PieceCid> {
    let f = tokio::fs::File::open(path).await?;
    Ok(PieceCid::from(commp_reader(f).await?))
}

/// Checked, parsed config the worker runs with.
struct Pinner<'a, F> {
    queue: PinQueue,
    client: PdpClient,
    cfg: FilcdnConfig,
    key: PayerKey,
    payer: String,
    domain: Eip712Domain,
    warm_storage: Address,
    payee: Option<Address>,
    on_pinned: &'a F,
}

/// Checks the parts of the config that need no network: key, addresses, data set ids.
/// Returns the payer address (what the wallet must fund).
pub fn check_config(cfg: &FilcdnConfig) -> Result<Address, PinnerError> {
    let bad = |s: &str| PinnerError::Config(s.to_string());
    if cfg.private_key.is_empty() {
        return Err(bad("private_key is empty"));
    }
    let key = PayerKey::from_hex(cfg.private_key.expose())
        .map_err(|_| bad("private_key is not a 32-byte hex secp256k1 key"))?;
    cfg.warm_storage()
        .parse::<Address>()
        .map_err(|_| bad("warm_storage_address is not an address"))?;
    match (cfg.data_set_id, cfg.client_data_set_id) {
        (Some(_), None) => return Err(bad("data_set_id needs client_data_set_id")),
        (None, _) => {
            let payee = cfg
                .provider_address
                .as_deref()
                .ok_or_else(|| bad("provider_address is needed to create a data set"))?;
            payee
                .parse::<Address>()
                .map_err(|_| bad("provider_address is not an address"))?;
        }
        _ => {}
    }
    if cfg.provider_url.trim().is_empty() {
        return Err(bad("provider_url is empty"));
    }
    Ok(key.address())
}

/// Runs the pin worker forever (abort the task to stop it). `on_pinned` is called once an
/// item's piece is on chain, after that is flushed; after a crash between the two it is
/// called again on restart, so it must be idempotent. Errors only for a bad config.
pub async fn run_pinner<F>(
    queue: PinQueue,
    client: PdpClient,
    config: FilcdnConfig,
    on_pinned: F,
) -> Result<(), PinnerError>
where
    F: Fn(PinnedItem) + Send + Sync,
{
    check_config(&config)?;
    let key = PayerKey::from_hex(config.private_key.expose())
        .map_err(|e| PinnerError::Config(e.to_string()))?;
    let warm_storage: Address = config
        .warm_storage()
        .parse()
        .map_err(|_| PinnerError::Config("warm_storage_address".into()))?;
    let payee = config
        .provider_address
        .as_deref()
        .and_then(|p| p.parse::<Address>().ok());
    let p = Pinner {
        queue: queue.clone(),
        client,
        payer: key.address().to_string(),
        domain: eip712::domain(config.network.chain_id(), warm_storage),
        key,
        warm_storage,
        payee,
        cfg: config,
        on_pinned: &on_pinned,
    };
    let wake = queue.wake_signal();
    let chain_wake = tokio::sync::Notify::new();
    tracing::info!(payer = %p.payer, provider = %p.cfg.provider_url, "filcdn pinner started");
    // Two loops over disjoint states: uploads (Pending) may take minutes for a VOD and must
    // not hold up parking polls, batching and confirmations of everything else.
    let uploads = async {
        loop {
            let sleep = match p.upload_pass().await {
                Ok((d, worked)) => {
                    if worked {
                        chain_wake.notify_one();
                    }
                    d
                }
                Err(e) => {
                    tracing::error!(error = %e, "filcdn pin queue");
                    Duration::from_millis(p.cfg.timeouts.backoff_max_ms.min(5_000))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = wake.notified() => {}
            }
        }
    };
    let chain = async {
        loop {
            let sleep = match p.chain_pass().await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "filcdn pin queue");
                    Duration::from_millis(p.cfg.timeouts.backoff_max_ms.min(5_000))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = chain_wake.notified() => {}
            }
        }
    };
    tokio::join!(uploads, chain);
    Ok(())
}

/// 32 unpredictable-enough bytes for `clientDataSetId` / `AddPieces.nonce`: they must be
/// unique per payer, not secret, so a hash of time, pid, a counter and the payer will do.
fn unique_u256(payer: &str) -> U256 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(t.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(payer.as_bytes());
    U256::from_be_bytes::<32>(h.finalize().into())
}

fn parse_u256(s: &str) -> Option<U256> {
    s.parse::<U256>().ok()
}

impl<F: Fn(PinnedItem) + Send + Sync> Pinner<'_, F> {
    fn backoff(&self) -> (u64, u64) {
        (
            self.cfg.timeouts.backoff_initial_ms,
            self.cfg.timeouts.backoff_max_ms,
        )
    }

    /// Uploads due Pending items (`upload_concurrency` at a time); returns how long to sleep
    /// and whether anything moved on.
    async fn upload_pass(&self) -> Result<(Duration, bool), QueueError> {
        let now = now_ms();
        let pending: Vec<PinRecord> = self
            .queue
            .active()?
            .into_iter()
            .filter(|r| matches!(r.state, PinState::Pending))
            .collect();
        let due: Vec<&PinRecord> = pending
            .iter()
            .filter(|r| r.next_retry_ms <= now)
            .take(self.cfg.upload_concurrency.max(1))
            .collect();
        if due.is_empty() {
            let next = pending
                .iter()
                .map(|r| r.next_retry_ms)
                .min()
                .unwrap_or(now + 60_000);
            return Ok((
                Duration::from_millis(next.saturating_sub(now).clamp(10, 60_000)),
                false,
            ));
        }
        futures_util::future::join_all(due.iter().map(|r| self.upload(r, now))).await;
        Ok((Duration::ZERO, true))
    }

    /// Everything after the upload: parking polls, data set, batches, notifications.
    async fn chain_pass(&self) -> Result<Duration, QueueError> {
        let now = now_ms();
        let records = self.queue.active()?;
        self.notify(&records).await?;
        let data_set = self.ensure_data_set(now).await?;

        for r in records.iter().filter(|r| r.next_retry_ms <= now) {
            if let PinState::Uploaded {
                piece_cid,
                since_ms,
            } = &r.state
            {
                self.check_parked(r, piece_cid, *since_ms, now).await?;
            }
        }

        if let Some((id, client_id)) = data_set {
            for b in self.queue.batches()? {
                if b.next_retry_ms <= now {
                    self.drive_batch(b, id, client_id, now).await?;
                }
            }
            self.maybe_start_batch(now).await?;
        }

        // Pinned items found by this pass are reported at once.
        let records = self.queue.active()?;
        self.notify(&records).await?;
        Ok(self.next_wake(&records, data_set.is_some(), now_ms()))
    }

    /// When the chain loop has something due. Parked items only count once there is a data
    /// set to add them to (else a rejected creation would spin the loop).
    fn next_wake(&self, records: &[PinRecord], data_set_ready: bool, now: u64) -> Duration {
        let poll = self.cfg.timeouts.poll_ms.max(10);
        let mut next = now + 60_000;
        for r in records {
            match &r.state {
                PinState::Pinned { .. } | PinState::Rejected { .. } | PinState::Pending => {}
                PinState::AddPending { .. } => next = next.min(now + poll),
                PinState::Parked { .. } if !data_set_ready => {}
                PinState::Parked { since_ms, .. } => {
                    next = next.min(
                        r.next_retry_ms
                            .max(since_ms + self.cfg.timeouts.batch_linger_ms),
                    )
                }
                _ => next = next.min(r.next_retry_ms),
            }
        }
        if let Ok(Some(DataSetState::Creating { next_retry_ms, .. })) = self.queue.data_set() {
            next = next.min(next_retry_ms.max(now + 10));
        }
        Duration::from_millis(next.saturating_sub(now).clamp(10, 60_000))
    }

    async fn notify(&self, records: &[PinRecord]) -> Result<(), QueueError> {
        for r in records {
            let PinState::Pinned {
                piece_cid,
                url,
                notified: false,
            } = &r.state
            else {
                continue;
            };
            (self.on_pinned)(PinnedItem {
                key: r.item.key.clone(),
                stream_id: r.item.stream_id.clone(),
                kind: r.item.kind,
                seq: r.item.seq,
                piece_cid: piece_cid.clone(),
                url: url.clone(),
                local_path: r.item.local_path.clone(),
                enqueued_ms: r.enqueued_ms,
                pinned_ms: now_ms(),
            });
            self.queue
                .set_state(
                    &r.item.key,
                    PinState::Pinned {
                        piece_cid: piece_cid.clone(),
                        url: url.clone(),
                        notified: true,
                    },
                )
                .await?;
            if !self.cfg.keep_local_after_pin {
                if let Err(e) = tokio::fs::remove_file(&r.item.local_path).await {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path = %r.item.local_path.display(), error = %e, "prune pinned file");
                    }
                }
            }
        }
        Ok(())
    }

    async fn fail(&self, key: &str, err: &(dyn std::fmt::Display + Sync), now: u64) {
        let (i, m) = self.backoff();
        match self.queue.fail(key, &err.to_string(), now, i, m).await {
            Ok(n) => tracing::warn!(key, attempts = n, error = %err, "filcdn pin step failed"),
            Err(e) => tracing::error!(key, error = %e, "filcdn queue write"),
        }
    }

    async fn upload(&self, r: &PinRecord, now: u64) {
        let key = &r.item.key;
        let path = &r.item.local_path;
        let file = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let reason = format!("local file {} is gone", path.display());
                let _ = self
                    .queue
                    .set_state(key, PinState::Rejected { reason })
                    .await;
                return;
            }
            Err(e) => return self.fail(key, &e, now).await,
        };
        let c = match commp_reader(file).await {
            Ok(c) => c,
            Err(e) => return self.fail(key, &e, now).await,
        };
        let size = c.payload_size();
        if !(MIN_UPLOAD_SIZE..=MAX_UPLOAD_SIZE).contains(&size) {
            let reason = format!(
                "{size} bytes is outside the {MIN_UPLOAD_SIZE}..={MAX_UPLOAD_SIZE} a provider accepts"
            );
            let _ = self
                .queue
                .set_state(key, PinState::Rejected { reason })
                .await;
            return;
        }
        let cid = PieceCid::from(c);
        let t = &self.cfg.timeouts;
        let next = match self.client.post_piece(&cid, t.request()).await {
            Ok(PostPiece::AlreadyParked) => PinState::Parked {
                piece_cid: cid.to_string(),
                since_ms: now_ms(),
            },
            Ok(PostPiece::Upload(url)) => {
                match self.client.put_file(&url, path, t.upload()).await {
                    // 409: Curio already has bytes for this upload id.
                    Ok(()) => PinState::Uploaded {
                        piece_cid: cid.to_string(),
                        since_ms: now_ms(),
                    },
                    Err(e) if e.status() == Some(409) => PinState::Uploaded {
                        piece_cid: cid.to_string(),
                        since_ms: now_ms(),
                    },
                    Err(e) => return self.fail(key, &e, now).await,
                }
            }
            Err(e) => return self.fail(key, &e, now).await,
        };
        if let Err(e) = self.queue.set_state(key, next).await {
            tracing::error!(key, error = %e, "filcdn queue write");
        }
    }

    async fn check_parked(
        &self,
        r: &PinRecord,
        cid: &str,
        since: u64,
        now: u64,
    ) -> Result<(), QueueError> {
        let key = &r.item.key;
        let Ok(piece) = PieceCid::parse(cid) else {
            return self.queue.set_state(key, PinState::Pending).await;
        };
        let t = &self.cfg.timeouts;
        match self.client.find_piece(&piece, t.request()).await {
            Ok(super::pdp::FindPiece::Parked) => {
                self.queue
                    .set_state(
                        key,
                        PinState::Parked {
                            piece_cid: cid.to_string(),
                            since_ms: now_ms(),
                        },
                    )
                    .await
            }
            Ok(super::pdp::FindPiece::NotYet) if now.saturating_sub(since) > t.park_ms => {
                tracing::warn!(key, cid, "piece not parked in time; uploading again");
                self.queue.set_state(key, PinState::Pending).await
            }
            Ok(super::pdp::FindPiece::NotYet) => self.queue.defer(key, now + t.poll_ms).await,
            Err(e) => {
                self.fail(key, &e, now).await;
                Ok(())
            }
        }
    }

    /// The data set to add to, creating it (once) when the config names none.
    async fn ensure_data_set(&self, now: u64) -> Result<Option<(u64, U256)>, QueueError> {
        if let (Some(id), Some(client)) = (self.cfg.data_set_id, self.cfg.client_data_set_id) {
            return Ok(Some((id, U256::from(client))));
        }
        let state = match self.queue.data_set()? {
            Some(DataSetState::Ready {
                data_set_id,
                client_data_set_id,
            }) => {
                return Ok(parse_u256(&client_data_set_id).map(|c| (data_set_id, c)));
            }
            Some(s) => s,
            None => {
                let s = DataSetState::Creating {
                    client_data_set_id: unique_u256(&self.payer).to_string(),
                    status_url: None,
                    attempts: 0,
                    last_error: None,
                    next_retry_ms: 0,
                };
                self.queue.put_data_set(&s).await?;
                s
            }
        };
        let DataSetState::Creating {
            client_data_set_id,
            status_url,
            attempts,
            next_retry_ms,
            ..
        } = state
        else {
            return Ok(None);
        };
        if next_retry_ms > now {
            return Ok(None);
        }
        let t = &self.cfg.timeouts;
        let (bi, bm) = self.backoff();
        let failed = |err: String, url: Option<String>, client: String| DataSetState::Creating {
            client_data_set_id: client,
            status_url: url,
            attempts: attempts + 1,
            last_error: Some(err),
            next_retry_ms: now + backoff_ms(attempts + 1, bi, bm),
        };
        let Some(client_id) = parse_u256(&client_data_set_id) else {
            self.queue.remove_data_set().await?;
            return Ok(None);
        };
        let next = match status_url {
            None => {
                let Some(payee) = self.payee else {
                    return Ok(None);
                };
                let md = eip712::data_set_metadata(true, &[]);
                let extra = match eip712::create_data_set_extra_data(
                    &self.key,
                    &self.domain,
                    client_id,
                    payee,
                    &md,
                ) {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::error!(error = %e, "sign CreateDataSet");
                        return Ok(None);
                    }
                };
                match self
                    .client
                    .create_data_set(self.warm_storage, &extra, t.request())
                    .await
                {
                    Ok(url) => {
                        tracing::info!(status = %url, "filcdn data set creation sent");
                        DataSetState::Creating {
                            client_data_set_id,
                            status_url: Some(url),
                            attempts: 0,
                            last_error: None,
                            next_retry_ms: now + t.poll_ms,
                        }
                    }
                    Err(e) => failed(e.to_string(), None, client_data_set_id),
                }
            }
            Some(url) => match self.client.create_status(&url, t.request()).await {
                Ok(s) => match (s.outcome(), s.data_set_id) {
                    (TxOutcome::Confirmed, Some(id)) => {
                        tracing::info!(data_set_id = id, "filcdn data set created");
                        DataSetState::Ready {
                            data_set_id: id,
                            client_data_set_id,
                        }
                    }
                    (TxOutcome::Rejected, _) => failed(
                        format!(
                            "create data set transaction {} rejected",
                            s.create_message_hash
                        ),
                        None,
                        unique_u256(&self.payer).to_string(),
                    ),
                    _ => DataSetState::Creating {
                        client_data_set_id,
                        status_url: Some(url),
                        attempts,
                        last_error: None,
                        next_retry_ms: now + t.poll_ms,
                    },
                },
                Err(e) => failed(e.to_string(), Some(url), client_data_set_id),
            },
        };
        self.queue.put_data_set(&next).await?;
        Ok(match next {
            DataSetState::Ready { data_set_id, .. } => Some((data_set_id, client_id)),
            _ => None,
        })
    }

    async fn maybe_start_batch(&self, now: u64) -> Result<(), QueueError> {
        let mut parked: Vec<(u64, String, String)> = self
            .queue
            .active()?
            .into_iter()
            .filter(|r| r.next_retry_ms <= now)
            .filter_map(|r| match r.state {
                PinState::Parked {
                    piece_cid,
                    since_ms,
                } => Some((since_ms, r.item.key, piece_cid)),
                _ => None,
            })
            .collect();
        let size = self.cfg.batch_size();
        parked.sort();
        while let Some(&(oldest, _, _)) = parked.first() {
            if parked.len() < size && oldest + self.cfg.timeouts.batch_linger_ms > now {
                break;
            }
            let take: Vec<(String, String)> = parked
                .drain(..parked.len().min(size))
                .map(|(_, k, c)| (k, c))
                .collect();
            let nonce = hex::encode(unique_u256(&self.payer).to_be_bytes::<32>());
            let b = self.queue.start_batch(&take, nonce).await?;
            tracing::info!(
                batch = b.id,
                pieces = b.keys.len(),
                "filcdn add-pieces batch"
            );
        }
        Ok(())
    }

    async fn drive_batch(
        &self,
        mut b: Batch,
        data_set_id: u64,
        client_id: U256,
        now: u64,
    ) -> Result<(), QueueError> {
        let t = &self.cfg.timeouts;
        let backoff = self.backoff();
        let pieces: Vec<PieceCid> = b
            .pieces
            .iter()
            .filter_map(|c| PieceCid::parse(c).ok())
            .collect();
        if pieces.len() != b.pieces.len() {
            return self
                .queue
                .finish_batch(&b, &[], Some("unparseable piece CID"), now, backoff)
                .await;
        }
        if let Some(url) = b.status_url.clone() {
            match self.client.add_status(&url, t.request()).await {
                Ok(s) => match s.outcome() {
                    TxOutcome::Confirmed => return self.complete(&b, &pieces, None, now).await,
                    TxOutcome::Rejected => {
                        let e = format!("add-pieces transaction {} rejected", s.tx_hash);
                        tracing::warn!(batch = b.id, "{e}");
                        return self
                            .queue
                            .finish_batch(&b, &[], Some(&e), now, backoff)
                            .await;
                    }
                    TxOutcome::Pending => {
                        b.next_retry_ms = now + t.poll_ms;
                        b.last_error = None;
                    }
                },
                Err(e) => {
                    b.attempts += 1;
                    b.last_error = Some(e.to_string());
                    b.next_retry_ms = now + backoff_ms(b.attempts, backoff.0, backoff.1);
                }
            }
            return self.queue.put_batch(&b).await;
        }
        if b.submitting {
            // The POST may have landed before the crash / timeout: look in the data set first,
            // and only send again once it stayed absent for a while (no nonce check on chain
            // would stop a duplicate add).
            let since = *b.recovering_since_ms.get_or_insert(now);
            match self.client.data_set(data_set_id, t.request()).await {
                Ok(ds) => {
                    let present: Vec<bool> = b
                        .pieces
                        .iter()
                        .map(|c| ds.pieces.iter().any(|p| &p.piece_cid == c))
                        .collect();
                    if present.iter().all(|&x| x) {
                        return self.complete(&b, &pieces, None, now).await;
                    }
                    if now.saturating_sub(since) < t.park_ms.min(120_000).max(t.poll_ms * 3) {
                        b.next_retry_ms = now + t.poll_ms;
                        return self.queue.put_batch(&b).await;
                    }
                    if present.iter().any(|&x| x) {
                        return self.complete(&b, &pieces, Some(&present), now).await;
                    }
                    tracing::warn!(
                        batch = b.id,
                        "add-pieces answer lost and pieces absent; sending again"
                    );
                }
                Err(e) => {
                    b.attempts += 1;
                    b.last_error = Some(e.to_string());
                    b.next_retry_ms = now + backoff_ms(b.attempts, backoff.0, backoff.1);
                    return self.queue.put_batch(&b).await;
                }
            }
        }
        // Flushed before the POST it authorizes.
        b.submitting = true;
        b.recovering_since_ms = None;
        self.queue.put_batch(&b).await?;
        let nonce = hex::decode(&b.nonce)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .map(U256::from_be_bytes::<32>)
            .unwrap_or_default();
        let extra =
            match eip712::add_pieces_extra_data(&self.key, &self.domain, client_id, nonce, &pieces)
            {
                Ok(x) => x,
                Err(e) => {
                    return self
                        .queue
                        .finish_batch(&b, &[], Some(&e.to_string()), now, backoff)
                        .await
                }
            };
        match self
            .client
            .add_pieces(data_set_id, &pieces, &extra, t.request())
            .await
        {
            Ok(url) => {
                b.status_url = Some(url);
                b.next_retry_ms = now + t.poll_ms;
                self.queue.put_batch(&b).await
            }
            // The provider answered an error: nothing was sent on chain.
            Err(e @ PdpError::Status { .. }) => {
                tracing::warn!(batch = b.id, error = %e, "add-pieces refused");
                self.queue
                    .finish_batch(&b, &[], Some(&e.to_string()), now, backoff)
                    .await
            }
            // No answer: it may have been sent; the recovery path above decides.
            Err(e) => {
                b.attempts += 1;
                b.last_error = Some(e.to_string());
                b.next_retry_ms = now + t.poll_ms;
                self.queue.put_batch(&b).await
            }
        }
    }

    /// Marks a batch's pieces pinned (`present` = which ones, None = all).
    async fn complete(
        &self,
        b: &Batch,
        pieces: &[PieceCid],
        present: Option<&[bool]>,
        now: u64,
    ) -> Result<(), QueueError> {
        let template = self.cfg.url_template();
        let pinned: Vec<(String, String)> = b
            .keys
            .iter()
            .zip(pieces)
            .enumerate()
            .filter(|(i, _)| present.is_none_or(|p| p.get(*i).copied().unwrap_or(false)))
            .map(|(_, (k, p))| (k.clone(), render_url(template, &self.payer, p)))
            .collect();
        let err = present.map(|_| "some pieces of a lost add-pieces call are absent");
        self.queue
            .finish_batch(b, &pinned, err, now, self.backoff())
            .await
    }
}
