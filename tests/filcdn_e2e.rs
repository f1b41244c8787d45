//! FilCDN pinning end to end: the real storef binary, configured only through `STOREF_FILCDN_*`
//! variables, against the fake PDP provider (`tests/fake_pdp`), which re-hashes every PUT,
//! checks every EIP-712 signature and serves pieces FilBeam-style at `/{cid}`.

mod common;
mod fake_pdp;

use common::*;
use fake_pdp::{FakeConfig, FakePdp};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use storage::filcdn::commp::commp;
use storage::filcdn::eip712::PayerKey;
use storage::filcdn::{Network, PieceCid};

/// Throwaway dev keys (the first two anvil accounts); never funded anywhere that matters.
const PAYER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const PAYEE: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const USER: &str = "684688c353e543e031f3b018";

async fn fake(confirm_after: Duration) -> FakePdp {
    FakePdp::start(FakeConfig {
        payer: PayerKey::from_hex(PAYER_KEY).unwrap().address(),
        payee: PAYEE.parse().unwrap(),
        chain_id: Network::Calibration.chain_id(),
        warm_storage: Network::Calibration.default_warm_storage().parse().unwrap(),
        confirm_after,
        park_after: Duration::from_millis(60),
    })
    .await
}

/// The `[filcdn]` settings, as environment variables only.
fn filcdn_env(fake: &FakePdp) -> Vec<(String, String)> {
    let url = fake.url();
    [
        ("STOREF_FILCDN_ENABLED", "true".to_string()),
        ("STOREF_FILCDN_PROVIDER_URL", url.clone()),
        ("STOREF_FILCDN_PROVIDER_ADDRESS", PAYEE.to_string()),
        ("STOREF_FILCDN_PRIVATE_KEY", PAYER_KEY.to_string()),
        ("STOREF_FILCDN_URL_TEMPLATE", format!("{url}/{{cid}}")),
        ("STOREF_FILCDN_BATCH_SIZE", "8".to_string()),
        ("STOREF_FILCDN_TIMEOUTS_CONNECT_MS", "500".to_string()),
        ("STOREF_FILCDN_TIMEOUTS_REQUEST_MS", "3000".to_string()),
        ("STOREF_FILCDN_TIMEOUTS_POLL_MS", "50".to_string()),
        ("STOREF_FILCDN_TIMEOUTS_PARK_MS", "2000".to_string()),
        (
            "STOREF_FILCDN_TIMEOUTS_BACKOFF_INITIAL_MS",
            "50".to_string(),
        ),
        ("STOREF_FILCDN_TIMEOUTS_BACKOFF_MAX_MS", "400".to_string()),
        ("STOREF_FILCDN_TIMEOUTS_BATCH_LINGER_MS", "150".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

/// Three 4 s chunks of a generated H.264 + AAC clip, cut as the seed session did.
fn chunks(dir: &Path) -> Vec<PathBuf> {
    require_tool("ffmpeg");
    let clip = make_clip(dir, "clip.mp4", 12);
    (0..3)
        .map(|i| cut(&clip, dir, &format!("c{i}.mp4"), 4.0 * i as f64, 4.0))
        .collect()
}

fn cid_of(bytes: &[u8]) -> String {
    PieceCid::from(commp(bytes)).to_string()
}

/// Segment and init URIs of a playlist (`#EXT-X-MAP:URI="…"` and media lines).
fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            out.extend(rest.split('"').next().map(str::to_string));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            out.push(line.trim().to_string());
        }
    }
    out
}

async fn status(s: &Server, tok: &str, id: &str) -> Value {
    let r = client()
        .get(s.url(&format!("/api/streams/{id}")))
        .bearer_auth(tok)
        .send()
        .await
        .expect("status");
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.expect("json")["stream"].clone()
}

/// Waits until every URI of live.m3u8 is a fake-provider URL; returns them.
async fn wait_all_remote(s: &Server, fake: &FakePdp, id: &str, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    let url = s.url(&format!("/api/streams/{id}/live.m3u8"));
    loop {
        let (st, text) = get_text(&url).await;
        assert_eq!(st, 200);
        let u = uris(&text);
        if !u.is_empty() && u.iter().all(|x| x.starts_with(&fake.url())) {
            return u;
        }
        assert!(
            start.elapsed() < limit,
            "not all pinned after {limit:?}:\n{text}\nlog:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The local files of a stream (segments and inits) by PieceCIDv2.
fn local_files(s: &Server, id: &str) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    for sub in ["segments", "init"] {
        let dir = s.data.join(format!("streams/{id}/{sub}"));
        for e in std::fs::read_dir(&dir).unwrap() {
            let b = std::fs::read(e.unwrap().path()).unwrap();
            out.insert(cid_of(&b), b);
        }
    }
    out
}

/// Every URI serves bytes that re-hash to the CID in the URL and equal a local file; every
/// local file is listed; each piece was added on chain exactly once.
async fn check_pinned(s: &Server, fake: &FakePdp, id: &str, uris: &[String]) {
    let local = local_files(s, id);
    let mut listed = std::collections::HashSet::new();
    for u in uris {
        let cid = u.rsplit('/').next().unwrap();
        assert!(cid.starts_with("bafkzcib"), "{u}");
        let r = client().get(u).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {u}");
        let body = r.bytes().await.unwrap();
        assert_eq!(cid_of(&body), cid, "{u} does not re-hash to its CID");
        assert!(
            local.get(cid).is_some_and(|l| l[..] == body[..]),
            "{u} differs from every local file {:?}; log:\n{}",
            local
                .iter()
                .map(|(c, b)| (c.clone(), b.len()))
                .collect::<Vec<_>>(),
            s.log()
        );
        assert_eq!(
            fake.adds_of(cid),
            1,
            "{cid} added {} times",
            fake.adds_of(cid)
        );
        listed.insert(cid.to_string());
    }
    assert_eq!(
        listed.len(),
        local.len(),
        "a local file is not in the playlist"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_upload_pins_segments_and_vod_through_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = chunks(dir.path());
    let fake = fake(Duration::from_millis(150)).await;
    let env = filcdn_env(&fake);
    let s = Server::start(&refs(&env));
    assert!(
        s.log().contains("filcdn pinning on"),
        "start-up check:\n{}",
        s.log()
    );
    let tok = token(USER, 3600);
    let id = start_stream(&s, &tok).await["streamId"]
        .as_str()
        .unwrap()
        .to_string();
    let playlist = s.url(&format!("/api/streams/{id}/live.m3u8"));

    let (st, body) = upload(&s, &tok, &id, "0", &chunks[0]).await;
    assert_eq!(st, 200, "{body}");
    wait_all_remote(&s, &fake, &id, Duration::from_secs(30)).await;

    // Provider down (every call 500) for the second chunk: it plays from local at once and
    // waits in the queue.
    fake.fail_all(Some(500));
    let (st, body) = upload(&s, &tok, &id, "1", &chunks[1]).await;
    assert_eq!(st, 200, "{body}");
    let (_, text) = get_text(&playlist).await;
    let u = uris(&text);
    let local: Vec<&String> = u.iter().filter(|x| !x.starts_with(&fake.url())).collect();
    assert!(!local.is_empty(), "chunk 1 must be listed locally:\n{text}");
    for l in &local {
        let abs = if l.starts_with("http") {
            l.to_string()
        } else {
            s.url(&format!("/api/streams/{id}/{l}"))
        };
        assert_eq!(get_text(&abs).await.0, 200, "{abs}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = status(&s, &tok, &id).await["pins"].clone();
        if p["failed"].as_u64().unwrap_or(0) > 0 {
            assert!(p["last_error"].as_str().unwrap().contains("500"), "{p}");
            break;
        }
        assert!(Instant::now() < deadline, "no failure reported: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fake.injected_failures() > 0);
    fake.fail_all(None);
    let (st, body) = upload(&s, &tok, &id, "2", &chunks[2]).await;
    assert_eq!(st, 200, "{body}");

    let all = wait_all_remote(&s, &fake, &id, Duration::from_secs(60)).await;
    check_pinned(&s, &fake, &id, &all).await;
    let files = local_files(&s, &id).len();

    // Stop: the VOD is pinned too, and videoUrl switches to it.
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stopped: Value = r.json().await.unwrap();
    let video_id = stopped["videoId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let vod_url = loop {
        let st = status(&s, &tok, &id).await;
        let u = st["videoUrl"].as_str().unwrap_or_default().to_string();
        if u.starts_with(&fake.url()) {
            let p = &st["pins"];
            assert_eq!(p["pinned"].as_u64(), Some(files as u64 + 1), "{p}");
            assert_eq!(p["pending"].as_u64(), Some(0), "{p}");
            break u;
        }
        assert!(Instant::now() < deadline, "VOD not pinned: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let remote = client()
        .get(&vod_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let local = std::fs::read(s.data.join(format!("videos/{video_id}.mp4"))).unwrap();
    assert_eq!(&remote[..], &local[..], "VOD bytes");
    assert_eq!(cid_of(&local), vod_url.rsplit('/').next().unwrap());
    // The stopped stream's playlist, too, lists only FilBeam URLs.
    let all = wait_all_remote(&s, &fake, &id, Duration::from_secs(5)).await;
    // …and so does the VOD playlist, now cacheable for good.
    let r = client()
        .get(s.url(&format!("/api/videos/{video_id}/index.m3u8")))
        .send()
        .await
        .unwrap();
    let cache = r.headers()["cache-control"].to_str().unwrap().to_string();
    assert!(cache.contains("immutable"), "{cache}");
    let vod_uris = uris(&r.text().await.unwrap());
    assert!(!vod_uris.is_empty());
    assert!(vod_uris.iter().all(|u| all.contains(u)), "{vod_uris:?}");

    assert_eq!(fake.data_set_count(), 1);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    let (_, metrics) = get_text(&s.url("/metrics")).await;
    let metric = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert_eq!(metric("storef_pins_total"), files as u64 + 1);
    assert_eq!(metric("storef_pins_enqueued_total"), files as u64 + 1);
    assert!(metric("storef_pin_latency_ms_sum") > 0);
    eprintln!(
        "pinned {} files; mean pin latency {} ms; provider: {} uploads, {} add calls, {} injected failures",
        files + 1,
        metric("storef_pin_latency_ms_sum") / (files as u64 + 1),
        fake.total_uploads(),
        fake.add_calls(),
        fake.injected_failures()
    );

    // `storef piece-cid` agrees with the URL.
    let seg = s.data.join(format!("streams/{id}/segments"));
    let first = std::fs::read_dir(&seg)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_storef"))
        .arg("piece-cid")
        .arg(&first)
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.trim(), cid_of(&std::fs::read(&first).unwrap()));
    assert!(all.iter().any(|u| u.ends_with(printed.trim())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_queue_then_restart_pins_each_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = chunks(dir.path());
    // Slow confirmations keep pieces mid-queue when the server dies.
    let fake = fake(Duration::from_millis(1_500)).await;
    let env = filcdn_env(&fake);
    let s = Server::start(&refs(&env));
    let tok = token(USER, 3600);
    let id = start_stream(&s, &tok).await["streamId"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, body) = upload(&s, &tok, &id, "0", &chunks[0]).await;
    assert_eq!(st, 200, "{body}");
    // The data set exists once the first chunk is pinned (its creation is the one step a
    // crash can repeat; see storage/src/filcdn/README.md).
    wait_all_remote(&s, &fake, &id, Duration::from_secs(30)).await;
    for (i, c) in chunks.iter().enumerate().skip(1) {
        let (st, body) = upload(&s, &tok, &id, &i.to_string(), c).await;
        assert_eq!(st, 200, "{body}");
    }
    // Wait until the provider has started on them, then crash.
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = fake.total_uploads();
    while fake.total_uploads() == before {
        assert!(Instant::now() < deadline, "no upload started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let p = status(&s, &tok, &id).await["pins"].clone();
    assert!(p["pending"].as_u64().unwrap() > 0, "not mid-queue: {p}");
    // Restarted with local copies pruned once pinned (segments only after the stop).
    let mut env2 = env.clone();
    env2.push(("STOREF_FILCDN_KEEP_LOCAL_AFTER_PIN".into(), "false".into()));
    let s = s.restart(&refs(&env2));
    let all = wait_all_remote(&s, &fake, &id, Duration::from_secs(60)).await;
    check_pinned(&s, &fake, &id, &all).await;
    let files = local_files(&s, &id).len();
    let p = status(&s, &tok, &id).await["pins"].clone();
    assert_eq!(p["pending"].as_u64(), Some(0), "{p}");
    assert_eq!(p["pinned"].as_u64(), Some(files as u64), "{p}");

    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !status(&s, &tok, &id).await["videoUrl"]
        .as_str()
        .unwrap_or_default()
        .starts_with(&fake.url())
    {
        assert!(Instant::now() < deadline, "VOD not pinned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(local_files(&s, &id).len(), 0, "local copies not pruned");
    assert_eq!(
        std::fs::read_dir(s.data.join("videos")).unwrap().count(),
        0,
        "VOD mp4 not pruned"
    );
    // Still fully playable from the provider.
    for u in wait_all_remote(&s, &fake, &id, Duration::from_secs(5)).await {
        assert_eq!(client().get(&u).send().await.unwrap().status(), 200, "{u}");
    }
    assert_eq!(fake.data_set_count(), 1);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    eprintln!(
        "after kill -9: {} files pinned once each (+ the VOD); provider saw {} uploads, {} add calls",
        files,
        fake.total_uploads(),
        fake.add_calls()
    );
}
