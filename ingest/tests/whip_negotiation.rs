//! SDP negotiation through `WhipHandle::publish` with the captured offers of real clients, bad
//! offers, unknown sessions, and garbage on the media port.

mod whip_support;

use ingest::publish::Publisher;
use ingest::whip::{WhipConfig, WhipError, WhipHandle, WhipServer};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CHROMIUM: &str = include_str!("../testdata/whip/chromium156_whip_offer.sdp");
const GSTREAMER: &str = include_str!("../testdata/whip/gstreamer122_whipsink_offer.sdp");

async fn server() -> WhipHandle {
    let (h, _task) = WhipServer::start(WhipConfig {
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        ..WhipConfig::default()
    })
    .await
    .unwrap();
    h
}

fn publisher() -> (Publisher, mpsc::Receiver<ingest::publish::IngestEvent>) {
    let (tx, rx) = mpsc::channel(16);
    (
        Publisher {
            stream_id: "s".into(),
            events: tx,
            cancel: CancellationToken::new(),
        },
        rx,
    )
}

/// The `m=` section of `kind` in an SDP: its m= line and attribute lines.
fn section<'a>(sdp: &'a str, kind: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in sdp.lines() {
        if l.starts_with("m=") {
            inside = l.starts_with(&format!("m={kind} "));
        }
        if inside {
            out.push(l);
        }
    }
    out
}

fn payload_types(m_line: &str) -> Vec<u8> {
    m_line
        .split(' ')
        .skip(3)
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[tokio::test]
async fn chromium_offer_gets_h264_and_opus_with_its_own_payload_types() {
    let h = server().await;
    let (p, _rx) = publisher();
    let a = h.publish(CHROMIUM, p).await.unwrap();
    let sdp = &a.answer_sdp;
    assert!(sdp.contains("a=ice-lite"), "{sdp}");
    let port = h.local_addr().port();
    assert!(
        sdp.contains(&format!("127.0.0.1 {port} typ host")),
        "host candidate on the bound address: {sdp}"
    );
    let video = section(sdp, "video");
    let pts = payload_types(video[0]);
    // packetization-mode 1 first; the first is what Chromium will send.
    assert_eq!(pts.first(), Some(&102), "{}", video[0]);
    for (pt, plid, pm) in [(102, "42001f", 1), (108, "42e01f", 1), (116, "4d001f", 1)] {
        assert!(pts.contains(&pt));
        let fmtp = video
            .iter()
            .find(|l| l.starts_with(&format!("a=fmtp:{pt} ")))
            .unwrap_or_else(|| panic!("no fmtp for {pt}: {sdp}"));
        assert!(fmtp.contains(&format!("profile-level-id={plid}")), "{fmtp}");
        assert!(fmtp.contains(&format!("packetization-mode={pm}")), "{fmtp}");
    }
    assert!(video.contains(&"a=rtpmap:102 H264/90000"));
    assert!(video.contains(&"a=rtcp-fb:102 nack pli"));
    assert!(video.contains(&"a=recvonly"));
    assert!(!sdp.contains("VP8") && !sdp.contains("VP9") && !sdp.contains("AV1"));
    let audio = section(sdp, "audio");
    assert_eq!(payload_types(audio[0]).first(), Some(&111));
    assert!(audio
        .iter()
        .any(|l| l.eq_ignore_ascii_case("a=rtpmap:111 opus/48000/2")));
    assert_eq!(a.session_id.len(), 32);
    assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
    h.delete(&a.session_id).await.unwrap();
    assert!(matches!(
        h.delete(&a.session_id).await,
        Err(WhipError::NotFound(_))
    ));
}

#[tokio::test]
async fn gstreamer_offer_bundle_only_audio_and_42c01f() {
    let h = server().await;
    let (p, _rx) = publisher();
    let a = h.publish(GSTREAMER, p).await.unwrap();
    let sdp = &a.answer_sdp;
    let video = section(sdp, "video");
    assert_eq!(payload_types(video[0]), vec![96], "{sdp}");
    let fmtp = video.iter().find(|l| l.starts_with("a=fmtp:96 ")).unwrap();
    assert!(fmtp.contains("profile-level-id=42c01f"), "{fmtp}");
    assert!(fmtp.contains("packetization-mode=1"), "{fmtp}");
    assert!(sdp.contains("a=mid:video0") && sdp.contains("a=mid:audio1"));
    let audio = section(sdp, "audio");
    assert_eq!(payload_types(audio[0]), vec![111], "{sdp}");
    assert!(
        audio
            .iter()
            .any(|l| l.eq_ignore_ascii_case("a=rtpmap:111 opus/48000/2")),
        "{sdp}"
    );
    assert!(sdp.contains("a=group:BUNDLE video0 audio1"), "{sdp}");
}

#[tokio::test]
async fn safari_high_profile_is_echoed() {
    // Safari adds High profile (Constrained High 640c1f); Firefox refuses an answer whose
    // profile-level-id differs from its offer.
    let offer = CHROMIUM
        .replace("profile-level-id=4d001f", "profile-level-id=640c1f")
        .replace("profile-level-id=42001f", "profile-level-id=640c34");
    let h = server().await;
    let (p, _rx) = publisher();
    let a = h.publish(&offer, p).await.unwrap();
    assert!(
        a.answer_sdp.contains("profile-level-id=640c1f"),
        "{}",
        a.answer_sdp
    );
    assert!(a.answer_sdp.contains("profile-level-id=640c34"));
    assert!(!a.answer_sdp.contains("profile-level-id=4d001f"));
}

#[tokio::test]
async fn bad_offers_get_client_errors() {
    let h = server().await;
    for garbage in [
        "",
        "hello",
        "v=0\r\nm=video\r\n",
        "\u{0}\u{1}\u{2}",
        "v=0\r\n",
    ] {
        let (p, _rx) = publisher();
        let e = h.publish(garbage, p).await.unwrap_err();
        assert!(matches!(e, WhipError::BadSdp(_)), "{garbage:?}: {e:?}");
        assert_eq!(e.status(), 400);
    }
    let vp8_only = CHROMIUM
        .lines()
        .filter(|l| !l.contains("H264") && !l.contains("profile-level-id"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let (p, mut rx) = publisher();
    let e = h.publish(&vp8_only, p).await.unwrap_err();
    assert_eq!(e.status(), 415);
    let msg = e.to_string();
    assert!(msg.contains("VP8") && msg.contains("H.264"), "{msg}");
    // The refused publisher's sender is dropped: the stream session sees it gone at once.
    assert!(rx.recv().await.is_none());
}

#[tokio::test]
async fn unknown_sessions_are_not_found_and_patch_is_405() {
    let h = server().await;
    assert_eq!(h.delete("nope").await.unwrap_err().status(), 404);
    assert_eq!(h.request_keyframe("nope").await.unwrap_err().status(), 404);
    assert_eq!(h.patch("nope", "").await.unwrap_err().status(), 404);
    let (p, _rx) = publisher();
    let a = h.publish(CHROMIUM, p).await.unwrap();
    assert_eq!(
        h.patch(&a.session_id, "a=candidate:1")
            .await
            .unwrap_err()
            .status(),
        405
    );
    h.request_keyframe(&a.session_id).await.unwrap();
}

#[tokio::test]
async fn garbage_on_the_media_port_is_dropped() {
    let h = server().await;
    let (p, _rx) = publisher();
    let a = h.publish(GSTREAMER, p).await.unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = h.local_addr();
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut sent = 0;
    for i in 0..2000usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 1400) as usize;
        let mut d: Vec<u8> = (0..len).map(|k| (seed >> (k % 56)) as u8).collect();
        // Make some look like STUN (first byte 0/1), DTLS (20..64) and RTP (128..191).
        if let Some(b) = d.first_mut() {
            *b = [0x00, 0x01, 0x16, 0x17, 0x80, 0x90, 0xbf][i % 7];
        }
        if i % 7 < 2 && d.len() >= 8 {
            d[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]); // STUN magic cookie
        }
        sock.send_to(&d, target).await.unwrap();
        sent += 1;
        if i % 20 == 0 {
            // Loopback drops datagrams past the socket buffer; pace like a real flood would arrive.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // The task is still serving: new publishes and deletes work, and it counted the garbage.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (p2, _rx2) = publisher();
    let b = h.publish(CHROMIUM, p2).await.unwrap();
    h.delete(&b.session_id).await.unwrap();
    h.delete(&a.session_id).await.unwrap();
    let unrouted = h.unrouted_datagrams();
    assert!(unrouted >= sent * 9 / 10, "{unrouted} of {sent}");
}

#[tokio::test]
async fn unspecified_bind_offers_local_addresses_and_public_ips_replace_them() {
    let (h, _t) = WhipServer::start(WhipConfig {
        udp_addr: "0.0.0.0:0".parse().unwrap(),
        ..WhipConfig::default()
    })
    .await
    .unwrap();
    let port = h.local_addr().port();
    assert!(h.candidates().iter().all(|c| c.port() == port));
    assert!(
        h.candidates().iter().any(|c| c.ip().is_loopback()),
        "127.0.0.1 lets a browser on the same machine publish: {:?}",
        h.candidates()
    );
    assert!(h.candidates().iter().all(|c| !c.ip().is_unspecified()));

    let (h, _t) = WhipServer::start(WhipConfig {
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        public_ips: vec!["203.0.113.7".parse().unwrap()],
        ice_servers: vec![ingest::whip::IceServer {
            url: "turn:turn.example.net:3478?transport=udp".into(),
            username: Some("u".into()),
            credential: Some("p".into()),
        }],
        ..WhipConfig::default()
    })
    .await
    .unwrap();
    let (p, _rx) = publisher();
    let a = h.publish(CHROMIUM, p).await.unwrap();
    let port = h.local_addr().port();
    assert!(a
        .answer_sdp
        .contains(&format!("203.0.113.7 {port} typ host")));
    assert!(!a.answer_sdp.contains("127.0.0.1"));
    assert_eq!(
        a.links,
        vec![
            "<turn:turn.example.net:3478?transport=udp>; rel=\"ice-server\"; username=\"u\"; \
             credential=\"p\"; credential-type=\"password\""
                .to_string()
        ]
    );
}
