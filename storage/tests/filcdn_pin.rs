//! The pin queue + worker against the fake PDP provider: everything pinned exactly once, URLs
//! that re-hash to their CIDs, outages and crashes that lose nothing.

#[path = "../../tests/fake_pdp/mod.rs"]
mod fake_pdp;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_pdp::{FakeConfig, FakePdp};
use storage::filcdn::commp::commp;
use storage::filcdn::eip712::PayerKey;
use storage::filcdn::{
    run_pinner, FilcdnConfig, FilcdnTimeouts, Network, PdpClient, PieceCid, PinItem, PinKind,
    PinQueue, PinState, PinnedItem, Secret,
};

/// Throwaway dev keys (the first two anvil accounts); never funded anywhere that matters.
const PAYER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const OTHER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const PAYEE: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn fake_config(payer_key: &str) -> FakeConfig {
    FakeConfig {
        payer: PayerKey::from_hex(payer_key).unwrap().address(),
        payee: PAYEE.parse().unwrap(),
        chain_id: Network::Calibration.chain_id(),
        warm_storage: Network::Calibration.default_warm_storage().parse().unwrap(),
        confirm_after: Duration::from_millis(150),
        park_after: Duration::from_millis(60),
    }
}

fn config(fake: &FakePdp, batch_size: usize) -> FilcdnConfig {
    config_for_url(&fake.url(), batch_size)
}

fn config_for_url(url: &str, batch_size: usize) -> FilcdnConfig {
    FilcdnConfig {
        enabled: true,
        network: Network::Calibration,
        provider_url: url.to_string(),
        provider_address: Some(PAYEE.into()),
        private_key: Secret::new(PAYER_KEY),
        url_template: format!("{url}/{{cid}}"),
        batch_size,
        upload_concurrency: 3,
        timeouts: FilcdnTimeouts {
            connect_ms: 500,
            request_ms: 3_000,
            upload_ms: 10_000,
            poll_ms: 40,
            // Also how long a lost add-pieces answer is looked for before a resend.
            park_ms: 2_000,
            backoff_initial_ms: 40,
            backoff_max_ms: 300,
            batch_linger_ms: 100,
        },
        ..FilcdnConfig::default()
    }
}

/// Writes `n` segment files of varied sizes and content; returns the items.
fn make_files(dir: &Path, n: usize) -> Vec<PinItem> {
    (0..n)
        .map(|i| {
            let size = 127 + i * 3_001 + (i % 3) * 50_000;
            let data: Vec<u8> = (0..size).map(|j| ((j * 31 + i * 7) % 251) as u8).collect();
            let path = dir.join(format!("seg{i}.m4s"));
            std::fs::write(&path, &data).unwrap();
            PinItem {
                key: format!("s1/seg/{i}"),
                local_path: path,
                size: size as u64,
                kind: if i == 0 {
                    PinKind::Init
                } else {
                    PinKind::Segment
                },
                stream_id: "s1".into(),
                seq: Some(i as u64),
            }
        })
        .collect()
}

type Seen = Arc<Mutex<Vec<PinnedItem>>>;

fn spawn_pinner(queue: &PinQueue, cfg: &FilcdnConfig, seen: &Seen) -> tokio::task::JoinHandle<()> {
    let client = PdpClient::new(&cfg.provider_url, Duration::from_millis(500)).unwrap();
    let seen = seen.clone();
    let (q, c) = (queue.clone(), cfg.clone());
    tokio::spawn(async move {
        run_pinner(q, client, c, move |p| seen.lock().unwrap().push(p))
            .await
            .unwrap();
    })
}

async fn wait_all_pinned(queue: &PinQueue, n: usize, limit: Duration) {
    let start = Instant::now();
    loop {
        let c = queue.counts(None).unwrap();
        if c.pinned == n {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "only {} of {n} pinned after {limit:?}: {c:?}",
            c.pinned
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Every item pinned; its URL serves bytes that re-hash to the CID in the URL and equal the
/// local file; the provider saw one upload and one on-chain add per piece.
async fn check_pinned_once(queue: &PinQueue, fake: &FakePdp, items: &[PinItem], seen: &Seen) {
    let http = reqwest::Client::new();
    let seen = seen.lock().unwrap().clone();
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    for p in &seen {
        *by_key.entry(p.key.as_str()).or_default() += 1;
    }
    for item in items {
        let rec = queue.get(&item.key).unwrap().unwrap();
        let storage::filcdn::PinState::Pinned {
            piece_cid,
            url,
            notified,
        } = rec.state
        else {
            panic!("{} not pinned: {:?}", item.key, rec.state);
        };
        assert!(notified, "{}", item.key);
        assert!(
            by_key.get(item.key.as_str()).copied().unwrap_or(0) >= 1,
            "{} never reported",
            item.key
        );
        let cid_in_url = url.rsplit('/').next().unwrap();
        assert_eq!(cid_in_url, piece_cid);
        let body = http.get(&url).send().await.unwrap();
        assert_eq!(body.status(), 200, "{url}");
        let bytes = body.bytes().await.unwrap();
        assert_eq!(
            bytes.as_ref(),
            std::fs::read(&item.local_path).unwrap().as_slice()
        );
        assert_eq!(PieceCid::from(commp(&bytes)).to_string(), cid_in_url);
        assert_eq!(fake.uploads_of(&piece_cid), 1, "uploads of {}", item.key);
        assert_eq!(fake.adds_of(&piece_cid), 1, "adds of {}", item.key);
    }
    assert_eq!(fake.total_adds(), items.len());
    assert_eq!(fake.data_set_count(), 1);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

fn open_queue(db_path: &PathBuf) -> (sled::Db, PinQueue) {
    // After an abort, sled's own threads may hold the old instance (and its file lock) for
    // a moment while an interrupted flush finishes.
    let start = Instant::now();
    let db = loop {
        match sled::open(db_path) {
            Ok(db) => break db,
            Err(e) if start.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("reopen sled: {e}"),
        }
    };
    let q = PinQueue::open(db.open_tree("pins").unwrap()).unwrap();
    (db, q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_through_queue_are_pinned_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakePdp::start(fake_config(PAYER_KEY)).await;
    let cfg = config(&fake, 10);
    let (_db, queue) = open_queue(&dir.path().join("db"));
    let items = make_files(dir.path(), 25);
    for it in &items {
        assert!(queue.enqueue(it.clone()).await.unwrap());
    }
    // Enqueueing a key twice is a no-op.
    assert!(!queue.enqueue(items[3].clone()).await.unwrap());
    let seen = Seen::default();
    let worker = spawn_pinner(&queue, &cfg, &seen);
    wait_all_pinned(&queue, items.len(), Duration::from_secs(120)).await;
    // Let the final notifications land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    worker.abort();
    check_pinned_once(&queue, &fake, &items, &seen).await;
    assert_eq!(seen.lock().unwrap().len(), items.len());
    let c = queue.counts(Some("s1")).unwrap();
    assert_eq!((c.pinned, c.pending, c.failed), (25, 0, 0));
    // URLs follow the template: payer-free here, FilBeam form by default.
    let u = &seen.lock().unwrap()[0].url;
    assert!(u.starts_with(&fake.url()), "{u}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_then_up_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakePdp::start(fake_config(PAYER_KEY)).await;
    let cfg = config(&fake, 8);
    let (_db, queue) = open_queue(&dir.path().join("db"));
    let items = make_files(dir.path(), 12);
    fake.stop();
    let seen = Seen::default();
    let worker = spawn_pinner(&queue, &cfg, &seen);
    for it in &items {
        queue.enqueue(it.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let c = queue.counts(None).unwrap();
    assert_eq!(c.pinned, 0);
    assert_eq!(c.pending, 12);
    assert!(c.failed > 0, "{c:?}");
    assert!(c.last_error.is_some(), "{c:?}");
    fake.restart().await;
    wait_all_pinned(&queue, items.len(), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    worker.abort();
    check_pinned_once(&queue, &fake, &items, &seen).await;
    assert_eq!(queue.counts(None).unwrap().failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_queue_and_reopen_pins_each_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakePdp::start(fake_config(PAYER_KEY)).await;
    let cfg = config(&fake, 7);
    let db_path = dir.path().join("db");
    let items = make_files(dir.path(), 30);
    {
        let (_db, queue) = open_queue(&db_path);
        for it in &items {
            queue.enqueue(it.clone()).await.unwrap();
        }
    }
    let seen = Seen::default();
    // Kill the worker at assorted points (mid-upload, mid-batch, mid-poll), drop the db and
    // reopen it, again and again.
    // Runs grow a little each round so work always advances; kills keep coming until
    // everything is pinned (or 60 rounds).
    let mut kills_with_batch_in_flight = 0;
    let mut kills_with_uploads_left = 0;
    let mut progress = Vec::new();
    for round in 0..60u64 {
        let (db, queue) = open_queue(&db_path);
        let worker = spawn_pinner(&queue, &cfg, &seen);
        tokio::time::sleep(Duration::from_millis(20 + (round * 37) % 90 + round * 3)).await;
        worker.abort();
        let _ = worker.await;
        let recs = queue.records().unwrap();
        let pinned = recs.iter().filter(|r| r.is_pinned()).count();
        progress.push(pinned);
        if !queue.batches().unwrap().is_empty() {
            kills_with_batch_in_flight += 1;
        }
        if recs
            .iter()
            .any(|r| matches!(r.state, PinState::Pending | PinState::Uploaded { .. }))
        {
            kills_with_uploads_left += 1;
        }
        drop(queue);
        drop(db);
        if pinned == items.len() {
            break;
        }
    }
    eprintln!("pinned after each kill: {progress:?}");
    assert!(kills_with_uploads_left >= 2, "{progress:?}");
    assert!(kills_with_batch_in_flight >= 2, "{progress:?}");
    let (_db, queue) = open_queue(&db_path);
    let worker = spawn_pinner(&queue, &cfg, &seen);
    wait_all_pinned(&queue, items.len(), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    worker.abort();
    check_pinned_once(&queue, &fake, &items, &seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_errors_slow_parking_and_rejected_tx_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut fc = fake_config(PAYER_KEY);
    fc.park_after = Duration::from_millis(700);
    let fake = FakePdp::start(fc).await;
    let cfg = config(&fake, 40);
    let (_db, queue) = open_queue(&dir.path().join("db"));
    let items = make_files(dir.path(), 9);
    fake.fail_next(6, 429);
    fake.reject_next_txs(1);
    let seen = Seen::default();
    let worker = spawn_pinner(&queue, &cfg, &seen);
    for it in &items {
        queue.enqueue(it.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.fail_next(3, 500);
    wait_all_pinned(&queue, items.len(), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    worker.abort();
    check_pinned_once(&queue, &fake, &items, &seen).await;
    // The faults really happened: 6 × 429 + 3 × 500, and one reverted batch that was re-sent.
    assert_eq!(fake.injected_failures(), 9);
    assert_eq!(fake.reverted_txs(), 1);
    assert!(fake.add_calls() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_payer_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    // The provider expects another payer: creation must fail, nothing is pinned.
    let fake = FakePdp::start(fake_config(OTHER_KEY)).await;
    let cfg = config(&fake, 4);
    let (_db, queue) = open_queue(&dir.path().join("db"));
    let items = make_files(dir.path(), 3);
    let seen = Seen::default();
    let worker = spawn_pinner(&queue, &cfg, &seen);
    for it in &items {
        queue.enqueue(it.clone()).await.unwrap();
    }
    // Wait (bounded) until the three uploads are parked and creation has been refused, instead
    // of a fixed sleep that a loaded machine can outrun.
    let parked_now = |q: &PinQueue| {
        q.records()
            .unwrap()
            .into_iter()
            .filter(|r| matches!(r.state, storage::filcdn::PinState::Parked { .. }))
            .count()
    };
    let start = Instant::now();
    while (parked_now(&queue) < 3 || !fake.violations().iter().any(|v| v.contains("create")))
        && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.abort();
    assert_eq!(queue.counts(None).unwrap().pinned, 0);
    assert!(seen.lock().unwrap().is_empty());
    assert!(fake.data_set_count() == 0);
    assert!(
        fake.violations().iter().any(|v| v.contains("create")),
        "{:?}",
        fake.violations()
    );
    // Uploads themselves went through (parking needs no signature).
    let parked = queue
        .records()
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r.state, storage::filcdn::PinState::Parked { .. }))
        .count();
    assert_eq!(parked, 3);
}

/// A kill between sending add-pieces and storing its answer: the transaction lands anyway, so
/// the restarted worker must find the pieces in the data set instead of adding them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_add_sent_before_answer_stored_adds_once() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakePdp::start(fake_config(PAYER_KEY)).await;
    let mut cfg = config(&fake, 5);
    // One batch of all five, whatever the upload timing.
    cfg.timeouts.batch_linger_ms = 60_000;
    let db_path = dir.path().join("db");
    let items = make_files(dir.path(), 5);
    let seen = Seen::default();
    fake.delay_add_answers(Some(Duration::from_secs(5)));
    {
        let (db, queue) = open_queue(&db_path);
        for it in &items {
            queue.enqueue(it.clone()).await.unwrap();
        }
        let worker = spawn_pinner(&queue, &cfg, &seen);
        let start = Instant::now();
        // Wait until the batch is sent but its answer not stored, then kill.
        while fake.add_calls() == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no add-pieces call"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let b = queue.batches().unwrap();
        assert_eq!(b.len(), 1);
        assert!(b[0].submitting && b[0].status_url.is_none(), "{b:?}");
        worker.abort();
        let _ = worker.await;
        drop(queue);
        drop(db);
    }
    fake.delay_add_answers(None);
    let (_db, queue) = open_queue(&db_path);
    let worker = spawn_pinner(&queue, &cfg, &seen);
    wait_all_pinned(&queue, items.len(), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    worker.abort();
    check_pinned_once(&queue, &fake, &items, &seen).await;
    assert_eq!(fake.add_calls(), 1, "the batch was sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_check_and_piece_cid_of_file() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakePdp::start(fake_config(PAYER_KEY)).await;
    let mut cfg = config(&fake, 4);
    let (_db, queue) = open_queue(&dir.path().join("db"));
    let client = PdpClient::new(&cfg.provider_url, Duration::from_millis(500)).unwrap();
    let r = storage::filcdn::startup_check(&client, &cfg, &queue)
        .await
        .unwrap();
    assert_eq!(r.payer, PayerKey::from_hex(PAYER_KEY).unwrap().address());
    assert_eq!(r.data_set_id, None);
    // A configured data set the provider does not know is refused, naming the provider.
    cfg.data_set_id = Some(99);
    cfg.client_data_set_id = Some(1);
    let e = storage::filcdn::startup_check(&client, &cfg, &queue)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    cfg.client_data_set_id = None;
    let e = storage::filcdn::check_config(&cfg).unwrap_err();
    assert!(e.to_string().contains("client_data_set_id"), "{e}");
    fake.stop();
    cfg.data_set_id = None;
    assert!(storage::filcdn::startup_check(&client, &cfg, &queue)
        .await
        .is_err());

    let items = make_files(dir.path(), 2);
    let cid = storage::filcdn::piece_cid_of_file(&items[1].local_path)
        .await
        .unwrap();
    let bytes = std::fs::read(&items[1].local_path).unwrap();
    assert_eq!(cid, PieceCid::from(commp(&bytes)));
    assert_eq!(cid.payload_size(), bytes.len() as u64);
}

/// A real `kill -9`: the worker runs in a child process (this same test binary, re-executed
/// with `FILCDN_CHILD_DB` set) that is SIGKILLed mid-queue, so sled gets no chance to flush on
/// drop. The provider (fake) lives in this process and keeps counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_child_worker_pins_each_exactly_once() {
    if let Ok(db_path) = std::env::var("FILCDN_CHILD_DB") {
        // Child: run the worker until killed.
        let url = std::env::var("FILCDN_CHILD_URL").unwrap();
        let cfg = config_for_url(&url, 7);
        let (_db, queue) = open_queue(&PathBuf::from(db_path));
        let seen = Seen::default();
        let worker = spawn_pinner(&queue, &cfg, &seen);
        let _ = worker.await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = FakePdp::start(fake_config(PAYER_KEY)).await;
    let db_path = dir.path().join("db");
    let items = make_files(dir.path(), 30);
    {
        let (_db, queue) = open_queue(&db_path);
        for it in &items {
            queue.enqueue(it.clone()).await.unwrap();
        }
    }
    let exe = std::env::current_exe().unwrap();
    let spawn_child = || {
        std::process::Command::new(&exe)
            .args([
                "--exact",
                "kill_9_child_worker_pins_each_exactly_once",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FILCDN_CHILD_DB", &db_path)
            .env("FILCDN_CHILD_URL", fake.url())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut kills = 0;
    let start = Instant::now();
    while fake.total_adds() < items.len() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "not done after 90 s"
        );
        let mut child = spawn_child();
        // Long enough for the child to start and do some work, short enough to cut it.
        let before = fake.request_count();
        let t0 = Instant::now();
        while fake.request_count() < before + 3 + kills * 2
            && t0.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(10 + kills as u64 * 17 % 60)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    // Let the last one notify: run a final child a little, then stop it.
    let mut child = spawn_child();
    tokio::time::sleep(Duration::from_millis(800)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("{kills} SIGKILLs before all {} pieces landed", items.len());
    assert!(kills >= 3, "{kills}");
    let (_db, queue) = open_queue(&db_path);
    let http = reqwest::Client::new();
    for item in &items {
        let rec = queue.get(&item.key).unwrap().unwrap();
        let PinState::Pinned { piece_cid, url, .. } = rec.state else {
            panic!("{} not pinned: {:?}", item.key, rec.state);
        };
        assert_eq!(fake.uploads_of(&piece_cid), 1, "uploads of {}", item.key);
        assert_eq!(fake.adds_of(&piece_cid), 1, "adds of {}", item.key);
        let bytes = http.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(PieceCid::from(commp(&bytes)).to_string(), piece_cid);
    }
    assert_eq!(fake.total_adds(), items.len());
    assert_eq!(fake.violations(), Vec::<String>::new());
}
