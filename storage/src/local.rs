//! The local segment store: files under the data directory, written so that a crash at any
//! moment leaves either the old file, the complete new one, or nothing — never a torn file a
//! record points at.

use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Files under one root directory, addressed by relative paths (`streams/<id>/segments/3.m4s`).
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of `rel`, refusing anything that could leave the root.
    pub fn path(&self, rel: &str) -> io::Result<PathBuf> {
        let p = Path::new(rel);
        if rel.is_empty()
            || p.is_absolute()
            || p.components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad relative path {rel:?}"),
            ));
        }
        Ok(self.root.join(p))
    }

    /// Writes `parts` to `rel` atomically and durably: temp file in the same directory, fsync,
    /// rename, fsync of the directory. Blocking: call from `spawn_blocking`.
    pub fn write_atomic(&self, rel: &str, parts: &[Bytes]) -> io::Result<u64> {
        let dest = self.path(rel)?;
        let dir = parent(&dest)?;
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            dest.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
            std::process::id()
        ));
        let n = write_synced(&tmp, parts)?;
        fs::rename(&tmp, &dest)?;
        sync_dir(dir)?;
        Ok(n)
    }

    /// Writes `parts` to `rel` durably, in place: for files that are written once and mean
    /// nothing until a database record names them (media segments). A crash mid-write can leave
    /// a torn file, but no record points at it, and the retry after restart truncates it. This
    /// saves the temp file's rename per segment, and the directory sync then has nothing to
    /// write but the new entry. Blocking: call from `spawn_blocking`.
    pub fn write_unreferenced(&self, rel: &str, parts: &[Bytes]) -> io::Result<u64> {
        let dest = self.path(rel)?;
        let n = write_synced(&dest, parts)?;
        sync_dir(parent(&dest)?)?;
        Ok(n)
    }

    /// Moves an already written and synced file (an upload staged under the root) to `rel`,
    /// durably.
    pub fn adopt(&self, staged: &Path, rel: &str) -> io::Result<()> {
        let dest = self.path(rel)?;
        let dir = parent(&dest)?;
        fs::create_dir_all(dir)?;
        File::open(staged)?.sync_all()?;
        fs::rename(staged, &dest)?;
        sync_dir(dir)
    }

    pub fn read(&self, rel: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(rel)?)
    }

    pub fn remove(&self, rel: &str) -> io::Result<()> {
        match fs::remove_file(self.path(rel)?) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent"))
}

/// Creates (or truncates) `path`, creating its directory when missing (a stream's first file),
/// writes `parts` and fsyncs it.
fn write_synced(path: &Path, parts: &[Bytes]) -> io::Result<u64> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    };
    let mut f = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(parent(path)?)?;
            open()?
        }
        r => r?,
    };
    let n = write_all_vectored(&mut f, parts)?;
    f.sync_all()?;
    Ok(n)
}

/// Writes every part with as few `writev` calls as the kernel allows: a segment is a header
/// and one part per frame, a hundred or more `write` calls each on its own.
fn write_all_vectored(f: &mut File, parts: &[Bytes]) -> io::Result<u64> {
    /// Linux's IOV_MAX.
    const MAX_SLICES: usize = 1024;
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let (mut part, mut offset) = (0usize, 0usize);
    while part < parts.len() {
        let slices: Vec<io::IoSlice<'_>> = parts
            .iter()
            .skip(part)
            .enumerate()
            .map(|(i, p)| {
                io::IoSlice::new(if i == 0 {
                    p.get(offset..).unwrap_or_default()
                } else {
                    p
                })
            })
            .take(MAX_SLICES)
            .collect();
        let mut written = match f.write_vectored(&slices) {
            Ok(0) if slices.iter().any(|s| !s.is_empty()) => {
                return Err(io::ErrorKind::WriteZero.into())
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Advance past what was written: whole parts, then into the next one.
        while part < parts.len() {
            let left = parts[part].len() - offset;
            if written < left {
                offset += written;
                break;
            }
            written -= left;
            part += 1;
            offset = 0;
        }
    }
    Ok(total)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new(d.path());
        let n = s
            .write_atomic(
                "streams/a/segments/1.m4s",
                &[Bytes::from_static(b"ab"), Bytes::from_static(b"cd")],
            )
            .unwrap();
        assert_eq!(n, 4);
        assert_eq!(s.read("streams/a/segments/1.m4s").unwrap(), b"abcd");
        let leftovers: Vec<_> = fs::read_dir(d.path().join("streams/a/segments"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(s.path(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn unreferenced_writes_go_in_place_and_truncate_a_torn_file() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new(d.path());
        // What a crash mid-write leaves: a longer, torn file under the final name.
        fs::create_dir_all(d.path().join("streams/a/segments")).unwrap();
        fs::write(d.path().join("streams/a/segments/7.m4s"), vec![9u8; 5000]).unwrap();
        // More parts than one writev takes, of uneven sizes, some empty.
        let parts: Vec<Bytes> = (0..2500usize)
            .map(|i| Bytes::from(vec![(i % 251) as u8; i % 7]))
            .collect();
        let want: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let n = s
            .write_unreferenced("streams/a/segments/7.m4s", &parts)
            .unwrap();
        assert_eq!(n, want.len() as u64);
        assert_eq!(s.read("streams/a/segments/7.m4s").unwrap(), want);
        // A stream's first file creates its directory.
        s.write_unreferenced("streams/b/segments/0.m4s", &[Bytes::from_static(b"x")])
            .unwrap();
        assert_eq!(s.read("streams/b/segments/0.m4s").unwrap(), b"x");
        let names: Vec<_> = fs::read_dir(d.path().join("streams/a/segments"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["7.m4s"]);
    }
}
