//! `kill -9` mid-stream and restart: nothing acknowledged is lost, the stream is still live, its
//! playlist is intact and later chunks continue the same timeline.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_acknowledged() {
    require_tool("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "clip.mp4", 12);
    let c: Vec<_> = (0..4)
        .map(|i| cut(&clip, dir.path(), &format!("c{i}.mp4"), i as f64 * 3.0, 3.0))
        .collect();
    let frames: Vec<u64> = c
        .iter()
        .map(|p| count_packets(p.to_str().unwrap(), "v:0"))
        .collect();
    let s = Server::start(&[("STOREF_UPLOAD_GAP_TIMEOUT", "60s")]);
    let tok = token("dave", 3600);
    let id = start_stream(&s, &tok).await["streamId"]
        .as_str()
        .unwrap()
        .to_string();
    for i in [0usize, 1] {
        let (st, b) = upload(&s, &tok, &id, &i.to_string(), &c[i]).await;
        assert_eq!(st, 200, "{b}");
    }
    // Chunk 3 acknowledged as pending (waiting for 2) must survive too.
    let (st, b) = upload(&s, &tok, &id, "3", &c[3]).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["status"], "pending");
    let pl = s.url(&format!("/api/streams/{id}/live.m3u8"));
    let before = get_text(&pl).await.1;

    // An upload in flight when the process dies: it was never acknowledged.
    let bytes = std::fs::read(&c[2]).unwrap();
    let url = s.url(&format!("/api/streams/{id}/upload"));
    let tok2 = tok.clone();
    let inflight = tokio::spawn(async move {
        let form = reqwest::multipart::Form::new().text("sequence", "2").part(
            "video_chunk",
            reqwest::multipart::Part::bytes(bytes).file_name("c.mp4"),
        );
        client()
            .post(url)
            .bearer_auth(tok2)
            .multipart(form)
            .send()
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let s = s.restart(&[("STOREF_UPLOAD_GAP_TIMEOUT", "60s")]);
    let acked_inflight = matches!(inflight.await, Ok(Ok(r)) if r.status() == 200);

    let after = get_text(&pl).await.1;
    let n_before = playlist_entries(&before).len();
    let e_after = playlist_entries(&after);
    assert!(
        e_after.len() >= n_before,
        "segments lost:\nbefore\n{before}\nafter\n{after}"
    );
    assert_eq!(
        &e_after[..n_before],
        &playlist_entries(&before)[..],
        "segments changed"
    );
    let st: serde_json::Value = client()
        .get(s.url(&format!("/api/streams/{id}")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["stream"]["status"], "live");

    // Chunk 2 (again, or for the first time) fills the gap; 3 follows from its pending copy.
    let (st, b) = upload(&s, &tok, &id, "2", &c[2]).await;
    assert_eq!(st, 200, "{b} (in flight acked: {acked_inflight})");
    let e = playlist_entries(&get_text(&pl).await.1);
    assert!(
        e.iter().all(|x| !x.2),
        "one continuous timeline, no discontinuity"
    );
    // Stop, so the playlist ends and ffmpeg reads it whole (a live one is read from its tail).
    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(count_packets(&pl, "v:0"), frames.iter().sum::<u64>());
    let pk = packets(&pl, "v:0");
    let mut pts: Vec<f64> = pk.iter().map(|p| p.0).collect();
    pts.sort_by(f64::total_cmp);
    // `-ss N -t 3 -c copy` cuts in decode order, so with B-frames a chunk can end with a P-frame
    // whose preceding B-frame is in the next chunk (two frame periods), and the next chunk starts
    // where the longer of audio and video ended (up to one AAC frame, 21 ms, later): anything
    // beyond 0.1 s would be a hole of ours.
    for w in pts.windows(2) {
        assert!(
            w[1] - w[0] < 0.1,
            "hole in the timeline between {} and {}",
            w[0],
            w[1]
        );
    }
}
