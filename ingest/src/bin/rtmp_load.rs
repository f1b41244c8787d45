//! RTMP load generator: N concurrent publishers replay an FLV file at real-time pace to an
//! `rtmp://HOST:PORT/APP` URL, one stream key each, and report how far each fell behind.
//!
//! ```text
//! rtmp_load --url rtmp://127.0.0.1:1935/live --flv clip.flv (--keys k1,k2,… | --count N --key-prefix load)
//!           [--loops 1] [--ramp-ms 20] [--behind-ms 1000] [--json]
//! ```
//!
//! Lag of a tag = the time it finished being written to the socket minus the time it was due
//! (first tag's send time + its FLV timestamp). A publisher whose lag ever exceeded `--behind-ms`
//! "fell behind": the server (or the network) did not take its media at real-time pace. The exit
//! status is 0 when every publisher connected and none fell behind, 1 otherwise.
//!
//! `--latency-playlist TEMPLATE` (`{key}`, `{id}` from `--ids`, `{index}` substituted; an
//! `http://` URL or a file path) also measures, for `--latency-sample` publishers spread over the
//! N, the time from each segment-closing keyframe being sent to its segment being listed there
//! (see `rtmp_load_latency/probe.rs`), and prints a `latency` line.

#[path = "rtmp_load_latency/probe.rs"]
mod latency;

use bytes::Bytes;
use ingest::flv::file::{read_flv, FileTag};
use ingest::rtmp::client::PublishClient;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

struct Args {
    url: String,
    flv: String,
    keys: Vec<String>,
    loops: u32,
    ramp: Duration,
    behind: Duration,
    json: bool,
    latency_playlist: Option<String>,
    ids: Vec<String>,
    latency_sample: usize,
    poll: Duration,
    target_ms: u32,
}

fn usage() -> ! {
    eprintln!(
        "usage: rtmp_load --url rtmp://HOST:PORT/APP --flv FILE (--keys K1,K2 | --count N [--key-prefix P])\n\
         \x20                [--loops N] [--ramp-ms MS] [--behind-ms MS] [--json]\n\
         \x20                [--latency-playlist TEMPLATE [--ids ID1,ID2] [--latency-sample K]\n\
         \x20                 [--poll-ms 5] [--target-ms 2000]]\n\
         \x20      rtmp_load --serve HOST:PORT"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        flv: String::new(),
        keys: Vec::new(),
        loops: 1,
        ramp: Duration::from_millis(20),
        behind: Duration::from_millis(1000),
        json: false,
        latency_playlist: None,
        ids: Vec::new(),
        latency_sample: 5,
        poll: Duration::from_millis(5),
        target_ms: 2000,
    };
    let mut count = None;
    let mut prefix = "load".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--url" => a.url = value(),
            "--flv" => a.flv = value(),
            "--keys" => a.keys = value().split(',').map(str::to_string).collect(),
            "--count" => count = Some(value().parse::<usize>().unwrap_or_else(|_| usage())),
            "--key-prefix" => prefix = value(),
            "--loops" => a.loops = value().parse().unwrap_or_else(|_| usage()),
            "--ramp-ms" => {
                a.ramp = Duration::from_millis(value().parse().unwrap_or_else(|_| usage()))
            }
            "--behind-ms" => {
                a.behind = Duration::from_millis(value().parse().unwrap_or_else(|_| usage()))
            }
            "--json" => a.json = true,
            "--latency-playlist" => a.latency_playlist = Some(value()),
            "--ids" => a.ids = value().split(',').map(str::to_string).collect(),
            "--latency-sample" => a.latency_sample = value().parse().unwrap_or_else(|_| usage()),
            "--poll-ms" => {
                a.poll = Duration::from_millis(value().parse().unwrap_or_else(|_| usage()))
            }
            "--target-ms" => a.target_ms = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if let Some(n) = count {
        a.keys = (0..n).map(|i| format!("{prefix}{i}")).collect();
    }
    if a.url.is_empty() || a.flv.is_empty() || a.keys.is_empty() {
        usage();
    }
    a
}

/// `rtmp://host[:port]/app` → (host:port, app).
fn parse_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("rtmp://")?;
    let (host, app) = rest.split_once('/')?;
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:1935")
    };
    Some((host, app.trim_end_matches('/').to_string()))
}

#[derive(Debug, Default)]
struct Report {
    key: String,
    error: Option<String>,
    connect_ms: f64,
    tags: usize,
    bytes: u64,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    lag_max_ms: f64,
    final_lag_ms: f64,
    fell_behind: bool,
}

async fn publisher(
    addr: SocketAddr,
    app: String,
    key: String,
    tags: std::sync::Arc<Vec<FileTag>>,
    loops: u32,
    behind: Duration,
    mut clock: Option<latency::KeyframeClock>,
) -> Report {
    let mut report = Report {
        key: key.clone(),
        ..Report::default()
    };
    let t0 = Instant::now();
    let mut client = match PublishClient::publish(addr, &app, &key, Duration::from_secs(10)).await {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    report.connect_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let first_ts = tags.first().map_or(0, |t| t.timestamp_ms);
    let span = tags
        .last()
        .map_or(0, |t| t.timestamp_ms.saturating_sub(first_ts))
        + 33;
    let mut lags = Vec::with_capacity(tags.len() * loops as usize);
    let start = Instant::now();
    for l in 0..loops {
        let offset = l * span;
        for tag in tags.iter() {
            // Sequence headers are only needed once; later loops continue the same stream.
            if l > 0 && is_sequence_header(tag) {
                continue;
            }
            let ts = tag.timestamp_ms.saturating_sub(first_ts) + offset;
            let due = start + Duration::from_millis(u64::from(ts));
            tokio::time::sleep_until(due).await;
            let body: Bytes = tag.body.clone();
            report.bytes += body.len() as u64;
            let sent = match tag.tag_type {
                9 => client.send_video(ts, body).await,
                8 => client.send_audio(ts, body).await,
                _ => continue,
            };
            if let Err(e) = sent {
                report.error = Some(e.to_string());
                break;
            }
            report.tags += 1;
            if let (9, Some(c)) = (tag.tag_type, clock.as_mut()) {
                c.on_video_sent(ts, &tag.body, Instant::now());
            }
            lags.push(Instant::now().saturating_duration_since(due));
        }
        if report.error.is_some() {
            break;
        }
    }
    if report.error.is_none() {
        let _ = client.stop().await;
    }
    let ms_final = lags.last().copied();
    lags.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| {
        lags.get(((lags.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .map_or(0.0, ms)
    };
    report.lag_p50_ms = pick(0.5);
    report.lag_p99_ms = pick(0.99);
    report.lag_max_ms = lags.last().copied().map_or(0.0, ms);
    report.final_lag_ms = ms_final.map_or(0.0, ms);
    report.fell_behind = lags.last().is_some_and(|l| *l > behind);
    report
}

fn is_sequence_header(tag: &FileTag) -> bool {
    match tag.tag_type {
        9 => tag.body.get(1) == Some(&0) && tag.body.first().is_some_and(|b| b & 0x0f == 7),
        8 => tag.body.get(1) == Some(&0) && tag.body.first().is_some_and(|b| b >> 4 == 10),
        _ => false,
    }
}

/// Accepts every key; counts and drops the media.
struct SinkGate;

impl ingest::publish::PublishGate for SinkGate {
    fn start_publish(
        &self,
        key: &str,
        info: ingest::publish::PublisherInfo,
    ) -> Result<ingest::publish::Publisher, ingest::publish::Refusal> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ingest::publish::IngestEvent>(256);
        let key = key.to_string();
        tokio::spawn(async move {
            let (mut frames, mut bytes) = (0u64, 0u64);
            while let Some(e) = rx.recv().await {
                frames += e.frames().len() as u64;
                bytes += e.frames().iter().map(|f| f.data.len() as u64).sum::<u64>();
                match e {
                    ingest::publish::IngestEvent::Frame(_)
                    | ingest::publish::IngestEvent::Frames(_) => {}
                    ingest::publish::IngestEvent::Tracks(tracks) => {
                        let codecs: Vec<String> =
                            tracks.iter().map(|t| t.codec.rfc6381()).collect();
                        println!("{key}\ttracks {}", codecs.join(","));
                    }
                    ingest::publish::IngestEvent::Stats(_) => {}
                }
            }
            println!("{key}\t{:?}\t{frames} frames\t{bytes} bytes", info.remote);
        });
        Ok(ingest::publish::Publisher {
            stream_id: String::new(),
            events: tx,
            cancel: tokio_util::sync::CancellationToken::new(),
        })
    }
}

async fn sink_server(addr: &str) -> ! {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{addr}: {e}");
            std::process::exit(2)
        }
    };
    let r = ingest::rtmp::serve(
        listener,
        std::sync::Arc::new(SinkGate),
        ingest::rtmp::RtmpConfig::default(),
    )
    .await;
    eprintln!("serve ended: {r:?}");
    std::process::exit(1)
}

#[tokio::main]
async fn main() {
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some("--serve") {
        sink_server(&argv.next().unwrap_or_else(|| usage())).await;
    }
    let args = parse_args();
    let Some((host, app)) = parse_url(&args.url) else {
        usage()
    };
    let addr = match tokio::net::lookup_host(&host)
        .await
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(a) => a,
        None => {
            eprintln!("cannot resolve {host}");
            std::process::exit(2)
        }
    };
    let file = match std::fs::read(&args.flv) {
        Ok(f) => Bytes::from(f),
        Err(e) => {
            eprintln!("{}: {e}", args.flv);
            std::process::exit(2)
        }
    };
    let tags = match read_flv(&file) {
        Ok(t) => std::sync::Arc::new(t),
        Err(e) => {
            eprintln!("{}: {e}", args.flv);
            std::process::exit(2)
        }
    };
    let media_ms = tags.last().map_or(0, |t| t.timestamp_ms);
    eprintln!(
        "{} publishers → {addr}/{app}, {} tags ({media_ms} ms) × {} loops",
        args.keys.len(),
        tags.len(),
        args.loops
    );
    let mut handles = Vec::new();
    let mut probes = Vec::new();
    let n = args.keys.len();
    let k = args.latency_sample.min(n);
    let sampled: Vec<usize> = (0..k).map(|j| j * n / k.max(1)).collect();
    for (i, key) in args.keys.iter().enumerate() {
        let clock = match &args.latency_playlist {
            Some(t) if sampled.contains(&i) => {
                let url = t
                    .replace("{key}", key)
                    .replace("{index}", &i.to_string())
                    .replace("{id}", args.ids.get(i).map_or("", String::as_str));
                let (clock, task) =
                    latency::watch(url, args.target_ms, args.poll, Duration::from_secs(10));
                probes.push(task);
                Some(clock)
            }
            _ => None,
        };
        handles.push(tokio::spawn(publisher(
            addr,
            app.clone(),
            key.clone(),
            tags.clone(),
            args.loops,
            args.behind,
            clock,
        )));
        tokio::time::sleep(args.ramp).await;
    }
    let mut reports = Vec::new();
    for h in handles {
        match h.await {
            Ok(r) => reports.push(r),
            Err(e) => reports.push(Report {
                error: Some(e.to_string()),
                ..Report::default()
            }),
        }
    }
    let mut samples = Vec::new();
    for p in probes {
        if let Ok(s) = p.await {
            samples.push(s);
        }
    }
    let failed = reports
        .iter()
        .filter(|r| r.error.is_some() || r.fell_behind)
        .count();
    if args.json {
        let rows: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "key": r.key, "error": r.error, "connectMs": r.connect_ms, "tags": r.tags,
                    "bytes": r.bytes, "lagP50Ms": r.lag_p50_ms, "lagP99Ms": r.lag_p99_ms,
                    "lagMaxMs": r.lag_max_ms, "fellBehind": r.fell_behind,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        println!(
            "key\tconnect_ms\ttags\tbytes\tlag_p50_ms\tlag_p99_ms\tlag_max_ms\tfinal_lag_ms\tstatus"
        );
        for r in &reports {
            let status = match (&r.error, r.fell_behind) {
                (Some(e), _) => format!("error: {e}"),
                (None, true) => "BEHIND".to_string(),
                (None, false) => "ok".to_string(),
            };
            println!(
                "{}\t{:.1}\t{}\t{}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{}",
                r.key,
                r.connect_ms,
                r.tags,
                r.bytes,
                r.lag_p50_ms,
                r.lag_p99_ms,
                r.lag_max_ms,
                r.final_lag_ms,
                status
            );
        }
        if args.latency_playlist.is_some() {
            let s = latency::summary(&samples);
            println!(
                "latency\tstreams\tsamples\tp50_ms\tp99_ms\tmax_ms\tunlisted\tpoll_errors\tpolls"
            );
            println!(
                "latency\t{}\t{}\t{:.1}\t{:.1}\t{:.1}\t{}\t{}\t{}",
                samples.len(),
                s.samples,
                s.p50_ms,
                s.p99_ms,
                s.max_ms,
                s.unlisted,
                s.poll_errors,
                s.polls
            );
        }
        println!("{} publishers, {} failed or behind", reports.len(), failed);
    }
    std::process::exit(i32::from(failed > 0));
}
