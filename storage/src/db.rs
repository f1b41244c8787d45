//! The repository over sled: streams, stream keys, segments, init segments, uploaded chunks and
//! videos.
//!
//! Everything lives in one sled tree under typed key prefixes so that a multi-record change (an
//! uploaded chunk's segments + the chunk's record + the stream's resume point) is one atomic
//! `apply_batch`. sled only makes a write durable on flush (every 500 ms by default), so every
//! mutating call here ends with a flush before it returns (see [`Db::flush`] for why never
//! `flush_async`): callers acknowledge to clients only after that.

use crate::records::{ChunkRecord, InitRecord, SegmentRecord, StreamRecord, VideoRecord};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A record that belongs to one stream (whose generation its writes change).
trait OfStream {
    fn stream_id(&self) -> &str;
}

impl OfStream for SegmentRecord {
    fn stream_id(&self) -> &str {
        &self.stream_id
    }
}

impl OfStream for InitRecord {
    fn stream_id(&self) -> &str {
        &self.stream_id
    }
}

impl OfStream for VideoRecord {
    fn stream_id(&self) -> &str {
        &self.stream_id
    }
}

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record at key {key}: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode record: {0}")]
    Encode(#[source] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, DbError>;

/// One atomic change: every record in it is written, or none is.
#[derive(Default, Debug)]
pub struct Commit {
    pub streams: Vec<StreamRecord>,
    pub segments: Vec<SegmentRecord>,
    pub inits: Vec<InitRecord>,
    pub chunks: Vec<ChunkRecord>,
    pub videos: Vec<VideoRecord>,
    /// Chunk records to remove (a pending chunk file that was consumed is re-written as committed,
    /// so this is rarely needed).
    pub remove_chunks: Vec<(String, u64)>,
}

/// The state store. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    db: sled::Db,
    main: sled::Tree,
    generations: Arc<Generations>,
}

/// A number per stream that changes whenever a record of the stream (its own, a segment, an init
/// segment, a VOD) is written, so a reader can keep what it derived from them (a rendered
/// playlist) until it changes instead of re-reading every segment record per request.
#[derive(Default)]
struct Generations(Mutex<GenerationTable>);

#[derive(Default)]
struct GenerationTable {
    last: u64,
    by_stream: HashMap<String, u64>,
}

impl Generations {
    fn bump<'a>(&self, streams: impl IntoIterator<Item = &'a str>) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for s in streams {
            t.last += 1;
            let g = t.last;
            // A live stream is bumped every segment: no new key string once it has one.
            match t.by_stream.get_mut(s) {
                Some(v) => *v = g,
                None => {
                    t.by_stream.insert(s.to_string(), g);
                }
            }
        }
    }

    fn get(&self, stream: &str) -> u64 {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.by_stream.get(stream).copied().unwrap_or(0)
    }
}

fn stream_key(id: &str) -> Vec<u8> {
    format!("s/{id}").into_bytes()
}
fn key_key(stream_key: &str) -> Vec<u8> {
    format!("k/{stream_key}").into_bytes()
}
fn user_key(user: &str, id: &str) -> Vec<u8> {
    format!("u/{user}/{id}").into_bytes()
}
fn segment_key(stream: &str, seq: u64) -> Vec<u8> {
    format!("g/{stream}/{seq:016x}").into_bytes()
}
fn init_key(stream: &str, id: u32) -> Vec<u8> {
    format!("i/{stream}/{id:08x}").into_bytes()
}
fn chunk_key(stream: &str, seq: u64) -> Vec<u8> {
    format!("c/{stream}/{seq:016x}").into_bytes()
}
fn video_key(id: &str) -> Vec<u8> {
    format!("v/{id}").into_bytes()
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(DbError::Encode)
}

fn decode<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|source| DbError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

impl Db {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new().path(dir).open()?;
        let main = db.open_tree("main")?;
        Ok(Db {
            db,
            main,
            generations: Arc::default(),
        })
    }

    /// A separate tree for a subsystem with its own record layout (the FilCDN pin queue).
    pub fn tree(&self, name: &str) -> Result<sled::Tree> {
        Ok(self.db.open_tree(name)?)
    }

    /// Makes everything written so far durable.
    ///
    /// Never sled's `flush_async`: in sled 0.34 concurrent `flush_async` calls deadlock (its
    /// thread pool's threads all wait in a flush for log writes queued behind them; sled issues
    /// #1241, #1308, #1357, fixed on sled's main branch but never released), and the WHIP load
    /// benchmark hit exactly that at 50 publishers. A blocking `flush` on tokio's blocking pool
    /// leaves sled's pool only the log writes, which never wait on anything.
    pub async fn flush(&self) -> Result<()> {
        Ok(flush_blocking((*self.db).clone()).await?)
    }

    /// Applies `c` atomically and flushes it to disk.
    pub async fn commit(&self, c: Commit) -> Result<()> {
        self.apply(&c)?;
        self.flush().await
    }

    /// [`Db::commit`] for a caller already on a blocking thread (a live segment, written and
    /// committed in one blocking step). sled's async flush hands the work to its own thread pool
    /// and wakes the caller back: two thread hops per segment that this avoids.
    pub fn commit_blocking(&self, c: &Commit) -> Result<()> {
        self.apply(c)?;
        self.db.flush()?;
        Ok(())
    }

    fn apply(&self, c: &Commit) -> Result<()> {
        let mut b = sled::Batch::default();
        for s in &c.streams {
            b.insert(stream_key(&s.id), encode(s)?);
            b.insert(key_key(&s.stream_key), s.id.as_bytes());
            b.insert(user_key(&s.user_id, &s.id), &[][..]);
        }
        for s in &c.segments {
            b.insert(segment_key(&s.stream_id, s.sequence), encode(s)?);
        }
        for i in &c.inits {
            b.insert(init_key(&i.stream_id, i.init_id), encode(i)?);
        }
        for ch in &c.chunks {
            b.insert(chunk_key(&ch.stream_id, ch.sequence), encode(ch)?);
        }
        for v in &c.videos {
            b.insert(video_key(&v.id), encode(v)?);
        }
        for (s, seq) in &c.remove_chunks {
            b.remove(chunk_key(s, *seq));
        }
        self.main.apply_batch(b)?;
        // After the write: a reader that saw the old generation may have read new records, never
        // the other way round.
        self.generations.bump(
            c.streams
                .iter()
                .map(|s| s.id.as_str())
                .chain(c.segments.iter().map(|s| s.stream_id.as_str()))
                .chain(c.inits.iter().map(|i| i.stream_id.as_str()))
                .chain(c.videos.iter().map(|v| v.stream_id.as_str())),
        );
        Ok(())
    }

    /// The stream's generation (see [`Generations`]): read it before the records, and what was
    /// derived from them is current while it has not changed. 0 for a stream not written since
    /// the database was opened.
    pub fn generation(&self, stream: &str) -> u64 {
        self.generations.get(stream)
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.main.get(key)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>> {
        self.main
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    pub fn stream(&self, id: &str) -> Result<Option<StreamRecord>> {
        self.get(&stream_key(id))
    }

    /// The stream a publisher's key belongs to.
    pub fn stream_by_key(&self, stream_key: &str) -> Result<Option<StreamRecord>> {
        match self.main.get(key_key(stream_key))? {
            Some(id) => self.stream(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Every stream of `user`, newest first.
    pub fn streams_of_user(&self, user: &str) -> Result<Vec<StreamRecord>> {
        let prefix = format!("u/{user}/");
        let mut out = Vec::new();
        for kv in self.main.scan_prefix(prefix.as_bytes()) {
            let (k, _) = kv?;
            let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(s) = self.stream(&id)? {
                out.push(s);
            }
        }
        out.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Every stream not yet stopped (to resume sessions after a restart).
    pub fn live_streams(&self) -> Result<Vec<StreamRecord>> {
        Ok(self
            .scan::<StreamRecord>(b"s/")?
            .into_iter()
            .filter(|s| s.is_live())
            .collect())
    }

    /// The stream's segments in sequence order.
    pub fn segments(&self, stream: &str) -> Result<Vec<SegmentRecord>> {
        self.scan(format!("g/{stream}/").as_bytes())
    }

    pub fn segment(&self, stream: &str, seq: u64) -> Result<Option<SegmentRecord>> {
        self.get(&segment_key(stream, seq))
    }

    pub fn inits(&self, stream: &str) -> Result<Vec<InitRecord>> {
        self.scan(format!("i/{stream}/").as_bytes())
    }

    pub fn init(&self, stream: &str, id: u32) -> Result<Option<InitRecord>> {
        self.get(&init_key(stream, id))
    }

    pub fn chunk(&self, stream: &str, seq: u64) -> Result<Option<ChunkRecord>> {
        self.get(&chunk_key(stream, seq))
    }

    /// The stream's chunk records in sequence order.
    pub fn chunks(&self, stream: &str) -> Result<Vec<ChunkRecord>> {
        self.scan(format!("c/{stream}/").as_bytes())
    }

    pub fn video(&self, id: &str) -> Result<Option<VideoRecord>> {
        self.get(&video_key(id))
    }

    /// Every stream (to re-offer unpinned files to the pin queue at start-up).
    pub fn streams(&self) -> Result<Vec<StreamRecord>> {
        self.scan(b"s/")
    }

    /// Sets a segment's CDN URL. Blocking (sled's own flush): the pin worker's callback is
    /// synchronous and must not return before the URL is durable. False if there is no record.
    pub fn set_segment_remote_url(&self, stream: &str, seq: u64, url: &str) -> Result<bool> {
        self.set_remote_url::<SegmentRecord>(&segment_key(stream, seq), |r| {
            r.remote_url = Some(url.to_string())
        })
    }

    /// Sets an init segment's CDN URL (see [`Db::set_segment_remote_url`]).
    pub fn set_init_remote_url(&self, stream: &str, id: u32, url: &str) -> Result<bool> {
        self.set_remote_url::<InitRecord>(&init_key(stream, id), |r| {
            r.remote_url = Some(url.to_string())
        })
    }

    /// Sets a VOD's CDN URL (see [`Db::set_segment_remote_url`]).
    pub fn set_video_remote_url(&self, id: &str, url: &str) -> Result<bool> {
        self.set_remote_url::<VideoRecord>(&video_key(id), |r| r.remote_url = Some(url.to_string()))
    }

    /// Read-modify-write with compare-and-swap, so a concurrent writer of the same record is
    /// never overwritten with a stale copy. Changes the record's stream's generation.
    fn set_remote_url<T: Serialize + DeserializeOwned + OfStream>(
        &self,
        key: &[u8],
        set: impl Fn(&mut T),
    ) -> Result<bool> {
        loop {
            let Some(old) = self.main.get(key)? else {
                return Ok(false);
            };
            let mut rec: T = decode(key, &old)?;
            set(&mut rec);
            let new = encode(&rec)?;
            if self
                .main
                .compare_and_swap(key, Some(&old), Some(new))?
                .is_ok()
            {
                self.generations.bump([rec.stream_id()]);
                break;
            }
        }
        self.db.flush()?;
        Ok(true)
    }
}

/// `tree.flush()` on tokio's blocking pool (see [`Db::flush`] for why not `flush_async`); a
/// `sled::Db` flushes through its default tree.
pub(crate) async fn flush_blocking(tree: sled::Tree) -> sled::Result<()> {
    match tokio::task::spawn_blocking(move || tree.flush()).await {
        Ok(r) => r.map(drop),
        // The closure does not panic short of a sled bug; report it as an I/O failure.
        Err(e) => Err(sled::Error::Io(std::io::Error::other(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{SegmentRecord, StreamRecord, StreamStatus};

    fn segment(stream: &str, sequence: u64) -> SegmentRecord {
        SegmentRecord {
            stream_id: stream.to_string(),
            sequence,
            init_id: 0,
            discontinuity: false,
            start_secs: sequence as f64 * 2.0,
            duration_secs: 2.0,
            size: 1000,
            path: format!("streams/{stream}/segments/{sequence}.m4s"),
            program_date_time_ms: 0,
            video_frames: 60,
            audio_frames: 94,
            remote_url: None,
        }
    }

    #[tokio::test]
    async fn a_stream_generation_changes_with_every_write_of_its_records_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        assert_eq!((db.generation("a"), db.generation("b")), (0, 0));
        db.commit(Commit {
            segments: vec![segment("a", 0)],
            ..Default::default()
        })
        .await
        .unwrap();
        let a1 = db.generation("a");
        assert!(a1 > 0);
        assert_eq!(db.generation("b"), 0);
        // A CDN URL swapped in (the pinner), for a segment, then for an init segment.
        assert!(db
            .set_segment_remote_url("a", 0, "https://x/0.m4s")
            .unwrap());
        let a2 = db.generation("a");
        assert!(a2 > a1);
        db.commit(Commit {
            inits: vec![InitRecord {
                stream_id: "a".into(),
                init_id: 0,
                path: "streams/a/init/0.mp4".into(),
                codecs: "avc1.42c01f".into(),
                width: 16,
                height: 16,
                remote_url: None,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
        let a3 = db.generation("a");
        assert!(a3 > a2);
        assert!(db.set_init_remote_url("a", 0, "https://x/i0.mp4").unwrap());
        assert!(db.generation("a") > a3);
        // A missing record changes nothing, not even a generation.
        assert!(!db.set_segment_remote_url("b", 9, "https://x").unwrap());
        assert_eq!(db.generation("b"), 0);
        // A fresh open starts over at 0 (nothing derived survives a restart either).
        drop(db);
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.generation("a"), 0);
    }

    /// 64 streams committing at once, the way live publishers close segments. With sled's
    /// `flush_async` this could hang for ever (sled issues #1241/#1308); every commit must land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits_all_complete_and_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for s in 0..64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("stream{s}");
                for seq in 0..5 {
                    let c = Commit {
                        streams: vec![StreamRecord {
                            id: id.clone(),
                            user_id: "u".into(),
                            title: None,
                            stream_key: format!("sk_{s}"),
                            status: StreamStatus::Live,
                            created_at_ms: 0,
                            stopped_at_ms: None,
                            video_id: None,
                            resume: None,
                            next_chunk: seq,
                            pull: None,
                            ingest_state: None,
                            live_protocol: Some("rtmp".into()),
                        }],
                        segments: vec![segment(&id, seq)],
                        ..Default::default()
                    };
                    if seq % 2 == 0 {
                        db.commit(c).await.unwrap();
                    } else {
                        let db = db.clone();
                        tokio::task::spawn_blocking(move || db.commit_blocking(&c))
                            .await
                            .unwrap()
                            .unwrap();
                    }
                }
            }));
        }
        tokio::time::timeout(std::time::Duration::from_secs(60), async {
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await
        .expect("every concurrent commit completes");
        drop(db);
        let db = Db::open(dir.path()).unwrap();
        for s in 0..64 {
            assert_eq!(db.segments(&format!("stream{s}")).unwrap().len(), 5);
        }
    }
}
