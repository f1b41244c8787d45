//! The seed session (`shared/seed/session.txt`) replayed against the real server: start a stream,
//! upload chunks cut with `ffmpeg -c copy` from an H.264 (B-frames) + AAC clip, read `live.m3u8`
//! between uploads, stop; then ffprobe/ffmpeg read the playlist and the VOD.

mod common;
use common::*;
use std::path::Path;

/// Frame duration of the generated clips (30 fps).
const FRAME: f64 = 1.0 / 30.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_session_end_to_end() {
    require_tool("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "clip.mp4", 16);
    // Chunks as the seed cut them (input seeking, stream copy), the last one starting between
    // keyframes so it has leading frames that cannot be decoded.
    let chunks = [
        cut(&clip, dir.path(), "c0.mp4", 0.0, 5.0),
        cut(&clip, dir.path(), "c1.mp4", 5.0, 5.0),
        cut(&clip, dir.path(), "c2.mp4", 10.0, 3.0),
    ];
    let tail = dir.path().join("c3.mp4");
    // Output seeking with stream copy and -copyinkf starts mid-GOP: leading non-keyframes.
    run(ffmpeg()
        .arg("-i")
        .arg(&clip)
        .args(["-ss", "13.5", "-t", "2", "-c", "copy", "-copyinkf"])
        .arg(&tail));
    let all: Vec<&Path> = chunks
        .iter()
        .map(|p| p.as_path())
        .chain([tail.as_path()])
        .collect();

    let s = Server::start(&[]);
    let tok = token("684688c353e543e031f3b018", 3600);
    let started = start_stream(&s, &tok).await;
    let id = started["streamId"].as_str().unwrap().to_string();
    assert_eq!(started["success"], true);
    assert_eq!(id.len(), 24);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert!(started["streamKey"].as_str().unwrap().len() >= 32);
    assert_eq!(
        started["playbackUrl"],
        format!("http://127.0.0.1:{}/api/streams/{id}/live.m3u8", s.port)
    );

    let playlist_url = s.url(&format!("/api/streams/{id}/live.m3u8"));
    let (st, empty) = get_text(&playlist_url).await;
    assert_eq!(st, 200);
    assert!(empty.starts_with("#EXTM3U"), "{empty}");
    assert!(empty.contains("#EXT-X-PLAYLIST-TYPE:EVENT"));
    assert!(!empty.contains("#EXT-X-ENDLIST"));

    let mut uploaded_video = 0u64;
    let mut dropped = 0u64;
    let mut seen_segments = 0usize;
    for (i, c) in all.iter().enumerate() {
        uploaded_video += count_packets(c.to_str().unwrap(), "v:0");
        let (st, body) = upload(&s, &tok, &id, &i.to_string(), c).await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(body["success"], true);
        assert_eq!(body["message"], format!("Chunk {i} uploaded successfully."));
        dropped += body["droppedFrames"].as_u64().unwrap();
        let (_, text) = get_text(&playlist_url).await;
        assert!(text.contains("#EXT-X-VERSION:7"), "{text}");
        assert!(text.contains("#EXT-X-MAP:URI="), "{text}");
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{text}");
        let n = playlist_entries(&text).len();
        assert!(n > seen_segments, "chunk {i} added no segment:\n{text}");
        seen_segments = n;
    }
    assert!(dropped > 0, "the mid-GOP chunk must report dropped frames");
    assert!(
        dropped < 30,
        "at most one GOP is undecodable, dropped {dropped}"
    );

    // (ffmpeg reads a live EVENT playlist from its last three segments and then polls for more, so
    // the complete read-back happens once the stream is stopped and the playlist ends.)
    let p = playlist_url.as_str();

    let r = client()
        .post(s.url(&format!("/api/streams/{id}/stop")))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stop: serde_json::Value = r.json().await.unwrap();
    assert_eq!(stop["success"], true);
    assert_eq!(
        stop["message"],
        "Stream finalized successfully. VOD created."
    );
    let video_id = stop["videoId"].as_str().unwrap();
    assert_eq!(video_id.len(), 24);
    let video_url = stop["videoUrl"].as_str().unwrap();
    assert_eq!(
        video_url,
        s.url(&format!("/api/videos/{video_id}/video.mp4"))
    );

    // After stop: a complete VOD-type playlist.
    let (_, text) = get_text(&playlist_url).await;
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    let entries = playlist_entries(&text);
    let target: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .unwrap()
        .parse()
        .unwrap();
    let longest = entries.iter().map(|e| e.0).fold(0.0, f64::max);
    assert_eq!(
        target,
        longest.ceil(),
        "TARGETDURATION = ceil(longest EXTINF)"
    );

    // Frame count, full decode, keyframe at every segment start.
    assert_eq!(count_packets(p, "v:0"), uploaded_video - dropped);
    assert!(count_packets(p, "a:0") > 0, "audio present");
    run(ffmpeg().args(["-xerror", "-i", p, "-f", "null", "-"]));
    let init = download(
        &s.url(&format!("/api/streams/{id}/{}", entries[0].3)),
        &dir.path().join("init.mp4"),
    )
    .await;
    for (k, (extinf, uri, _, map)) in entries.iter().enumerate() {
        let init_bytes = if *map == entries[0].3 {
            init.clone()
        } else {
            download(
                &s.url(&format!("/api/streams/{id}/{map}")),
                &dir.path().join("i.mp4"),
            )
            .await
        };
        let seg = download(
            &s.url(&format!("/api/streams/{id}/{uri}")),
            &dir.path().join("s.m4s"),
        )
        .await;
        let one = dir.path().join(format!("seg{k}.mp4"));
        std::fs::write(&one, [init_bytes, seg].concat()).unwrap();
        let pk = packets(one.to_str().unwrap(), "v:0");
        assert!(!pk.is_empty(), "segment {k} has video");
        assert!(pk[0].1, "segment {k} ({uri}) must start with a keyframe");
        let span = pk.len() as f64 * FRAME;
        assert!(
            (span - extinf).abs() <= FRAME + 1e-3,
            "segment {k}: EXTINF {extinf} vs {} frames",
            pk.len()
        );
    }
    // Durations: the playlist covers exactly the frames kept.
    let total: f64 = entries.iter().map(|e| e.0).sum();
    let expected = (uploaded_video - dropped) as f64 * FRAME;
    assert!(
        (total - expected).abs() <= FRAME,
        "playlist {total}s vs frames {expected}s"
    );

    // A/V start together.
    let streams = ffprobe_json(p, &["-show_entries", "stream=codec_type,start_time"]);
    let starts: Vec<(String, f64)> = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap().to_string(),
                s["start_time"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let v = starts.iter().find(|s| s.0 == "video").unwrap().1;
    let a = starts.iter().find(|s| s.0 == "audio").unwrap().1;
    assert!((v - a).abs() <= 0.050, "A/V start {v} vs {a}");

    // The VOD MP4: moov before mdat, every frame, decodes.
    let vod = dir.path().join("vod.mp4");
    let bytes = download(video_url, &vod).await;
    let boxes = top_level_boxes(&bytes);
    let moov = boxes.iter().position(|b| b == "moov").expect("moov");
    let mdat = boxes.iter().position(|b| b == "mdat").expect("mdat");
    assert!(moov < mdat, "moov must come before mdat: {boxes:?}");
    let vp = vod.to_str().unwrap();
    assert_eq!(count_packets(vp, "v:0"), uploaded_video - dropped);
    assert!(count_packets(vp, "a:0") > 0);
    run(ffmpeg().args(["-xerror", "-i", vp, "-f", "null", "-"]));

    // The video record and its playlist.
    let (st, body) = get_text(&s.url(&format!("/api/videos/{video_id}"))).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["video"]["streamId"], id);
    let vod_pl = s.url(&format!("/api/videos/{video_id}/index.m3u8"));
    assert_eq!(count_packets(&vod_pl, "v:0"), uploaded_video - dropped);

    // Range requests on the MP4.
    let r = client()
        .get(video_url)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[..100]);
}
