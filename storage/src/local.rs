//! The local segment store: files under the data directory, written so that a crash at any
//! moment leaves either the old file, the complete new one, or nothing — never a torn file.

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
        let dir = dest
            .parent()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent"))?;
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            dest.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
            std::process::id()
        ));
        let open = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
        };
        // The directory exists for every file but a stream's first: create it only then.
        let mut f = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir)?;
                open()?
            }
            r => r?,
        };
        let mut n = 0u64;
        for p in parts {
            f.write_all(p)?;
            n += p.len() as u64;
        }
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &dest)?;
        sync_dir(dir)?;
        Ok(n)
    }

    /// Moves an already written and synced file (an upload staged under the root) to `rel`,
    /// durably.
    pub fn adopt(&self, staged: &Path, rel: &str) -> io::Result<()> {
        let dest = self.path(rel)?;
        let dir = dest
            .parent()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent"))?;
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
}
