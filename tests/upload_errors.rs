//! Bad input, auth and ownership, out-of-order chunks and gaps: each gets a precise status and
//! JSON message, and the stream goes on.

mod common;
use common::*;
use serde_json::{json, Value};

async fn post_raw(s: &Server, tok: &str, id: &str, ctype: &str, body: Vec<u8>) -> (u16, Value) {
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/upload")))
        .bearer_auth(tok)
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn form(s: &Server, tok: &str, id: &str, form: reqwest::multipart::Form) -> (u16, Value) {
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/upload")))
        .bearer_auth(tok)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn assert_err(got: (u16, Value), status: u16, needle: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["success"], false, "{}", got.1);
    let msg = got.1["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_get_precise_errors_and_the_stream_goes_on() {
    require_tool("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "clip.mp4", 4);
    let good = std::fs::read(&clip).unwrap();
    let s = Server::start(&[("STOREF_UPLOAD_MAX_CHUNK_BYTES", "2000000")]);
    let tok = token("alice", 3600);
    let id = start_stream(&s, &tok).await["streamId"]
        .as_str()
        .unwrap()
        .to_string();

    assert_err(
        post_raw(&s, &tok, &id, "application/json", b"{}".to_vec()).await,
        400,
        "multipart",
    );
    let f = reqwest::multipart::Form::new().text("sequence", "0");
    assert_err(form(&s, &tok, &id, f).await, 400, "video_chunk");
    let f = reqwest::multipart::Form::new().part(
        "video_chunk",
        reqwest::multipart::Part::bytes(good.clone()).file_name("a.mp4"),
    );
    assert_err(form(&s, &tok, &id, f).await, 400, "sequence");
    assert_err(
        upload_bytes(&s, &tok, &id, "one", good.clone()).await,
        400,
        "integer",
    );
    assert_err(
        upload_bytes(&s, &tok, &id, "-1", good.clone()).await,
        400,
        "integer",
    );
    assert_err(
        upload_bytes(&s, &tok, &id, "0", b"hello, not a video".repeat(100)).await,
        415,
        "not an MP4",
    );
    assert_err(
        upload_bytes(&s, &tok, &id, "0", good[..good.len() / 2].to_vec()).await,
        400,
        "truncated",
    );
    assert_err(upload_bytes(&s, &tok, &id, "0", vec![]).await, 400, "empty");
    assert_err(
        upload_bytes(&s, &tok, &id, "0", vec![7u8; 2_500_000]).await,
        413,
        "limit",
    );

    // HEVC is refused by codec name.
    let hevc = dir.path().join("hevc.mp4");
    run(ffmpeg()
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-t",
            "1",
            "-c:v",
            "libx265",
            "-tag:v",
            "hvc1",
        ])
        .arg(&hevc));
    assert_err(upload(&s, &tok, &id, "0", &hevc).await, 415, "hvc1");
    // An MP4 with only a subtitle track has nothing to package.
    let srt = dir.path().join("s.srt");
    std::fs::write(&srt, "1\n00:00:00,000 --> 00:00:01,000\nhi\n").unwrap();
    let subs = dir.path().join("subs.mp4");
    run(ffmpeg()
        .arg("-i")
        .arg(&srt)
        .args(["-c:s", "mov_text"])
        .arg(&subs));
    assert_err(
        upload(&s, &tok, &id, "0", &subs).await,
        400,
        "no audio or video",
    );

    // Auth and ownership.
    assert_err(
        upload_bytes(&s, "garbage", &id, "0", good.clone()).await,
        401,
        "invalid token",
    );
    let expired = token_at("alice", 1_750_489_037, 1_750_575_437, SECRET);
    assert_err(
        upload_bytes(&s, &expired, &id, "0", good.clone()).await,
        401,
        "expired",
    );
    let forged = token_at("alice", 0, i64::MAX / 2, "not-the-secret");
    assert_err(
        upload_bytes(&s, &forged, &id, "0", good.clone()).await,
        401,
        "signature",
    );
    let bob = token("bob", 3600);
    assert_err(
        upload_bytes(&s, &bob, &id, "0", good.clone()).await,
        404,
        "not found",
    );
    assert_err(
        upload_bytes(&s, &tok, "000000000000000000000000", "0", good.clone()).await,
        404,
        "not found",
    );
    assert_err(
        upload_bytes(&s, &tok, "not-an-id", "0", good.clone()).await,
        400,
        "invalid stream id",
    );
    let r = client()
        .post(s.url("/api/streams/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"success": false, "message": "missing bearer token"})
    );

    // After all that, the stream takes a good chunk.
    let (st, body) = upload_bytes(&s, &tok, &id, "0", good.clone()).await;
    assert_eq!(st, 200, "{body}");
    // A retry with the same bytes is answered as before; different bytes conflict.
    let (st, again) = upload_bytes(&s, &tok, &id, "0", good.clone()).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["message"], "Chunk 0 uploaded successfully.");
    let other = std::fs::read(cut(&clip, dir.path(), "o.mp4", 1.0, 2.0)).unwrap();
    assert_err(
        upload_bytes(&s, &tok, &id, "0", other).await,
        409,
        "different content",
    );

    // Status belongs to the owner only.
    let r = client()
        .get(s.url(&format!("/api/streams/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .get(s.url(&format!("/api/streams/{id}")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    let st: Value = r.json().await.unwrap();
    assert_eq!(st["stream"]["status"], "live");
    assert_eq!(st["stream"]["nextChunk"], 1);
    let list: Value = client()
        .get(s.url("/api/streams"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["streams"], json!([]));

    // Stop, then uploads are refused.
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_err(
        upload_bytes(&s, &tok, &id, "1", good.clone()).await,
        409,
        "stopped",
    );
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // Unknown routes answer in the same JSON shape.
    let (st, body) = get_text(&s.url("/api/nope")).await;
    assert_eq!(st, 404);
    assert!(body.contains("\"success\":false"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_chunks_wait_and_gaps_time_out() {
    require_tool("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "clip.mp4", 8);
    let c: Vec<_> = (0..4)
        .map(|i| cut(&clip, dir.path(), &format!("c{i}.mp4"), i as f64 * 2.0, 2.0))
        .collect();
    let s = Server::start(&[("STOREF_UPLOAD_GAP_TIMEOUT", "2s")]);
    let tok = token("carol", 3600);
    let id = start_stream(&s, &tok).await["streamId"]
        .as_str()
        .unwrap()
        .to_string();
    let pl = s.url(&format!("/api/streams/{id}/live.m3u8"));

    // 1 before 0: 1 waits, then both are listed with no discontinuity.
    let (st, b) = upload(&s, &tok, &id, "1", &c[1]).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["status"], "pending");
    assert!(playlist_entries(&get_text(&pl).await.1).is_empty());
    let (st, b) = upload(&s, &tok, &id, "0", &c[0]).await;
    assert_eq!(st, 200, "{b}");
    let e = playlist_entries(&get_text(&pl).await.1);
    let n01 = e.len();
    assert!(n01 >= 2, "each chunk gives at least one segment");
    assert!(
        e.iter().all(|x| !x.2),
        "no discontinuity for an in-order timeline"
    );

    // 3 without 2: after the gap timeout, 2 is skipped with a discontinuity.
    let (st, _) = upload(&s, &tok, &id, "3", &c[3]).await;
    assert_eq!(st, 200);
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let e = playlist_entries(&get_text(&pl).await.1);
    assert!(e.len() > n01, "chunk 3 listed after the gap timeout");
    assert!(
        e[n01].2,
        "segment after a skipped chunk starts a discontinuity"
    );
    assert!(e[n01 + 1..].iter().all(|x| !x.2));
    let (st, b) = upload(&s, &tok, &id, "2", &c[2]).await;
    assert_eq!(st, 409, "{b}");
    assert!(b["message"].as_str().unwrap().contains("gap timeout"));
    let st: Value = client()
        .get(s.url(&format!("/api/streams/{id}")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["stream"]["skippedChunks"], json!([2]));
    // Timestamps stay continuous across the skip: the playlist decodes as one timeline (stopped
    // first, so ffmpeg reads the whole playlist rather than its live tail).
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pk = packets(&pl, "v:0");
    let expected: u64 = [0, 1, 3]
        .iter()
        .map(|&i| count_packets(c[i].to_str().unwrap(), "v:0"))
        .sum();
    assert_eq!(pk.len() as u64, expected);
    for w in pk.windows(2) {
        assert!(w[1].0 > w[0].0 - 0.2, "pts jump back {:?}", w);
    }
}
