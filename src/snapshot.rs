//! Snapshots: the whole index plus the source offsets it covers, so a restart
//! (or a kill -9) resumes exactly where the snapshot was taken.
//!
//! File format (little-endian): magic `RTASNAP3`, created-at ms, user and
//! device counts (to pre-size the index on restore), the offsets
//! (topic, partition, next offset), the deletion tombstones, the profiles
//! (user id + profile encoding), the record counts again, a CRC-32 of all of
//! it and the end magic `RTAEND01`. A file is written to a temporary name,
//! fsynced, renamed into place and the directory fsynced, so a crash leaves
//! either the old snapshot or the new one, never half of one. On load, the
//! newest file whose checksum and counts verify wins (read once: the checksum
//! is checked at the end and a corrupt file's users are dropped again); a
//! truncated or corrupt one is reported and skipped.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::index::{UserId, UserIndex};
use crate::profile::{ProfileError, UserProfile};

const MAGIC: &[u8; 8] = b"RTASNAP3";
/// The previous format (profiles without the vector fields), still restored.
const MAGIC_V2: &[u8; 8] = b"RTASNAP2";
const END: &[u8; 8] = b"RTAEND01";
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".rtasnap";

/// Source positions a snapshot covers: (topic, partition) -> next offset to read.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not a complete, intact snapshot.
    #[error("{path}: corrupt snapshot: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What did not verify.
        reason: String,
    },
}

/// What a restore found.
#[derive(Debug)]
pub struct Restored {
    /// The file restored.
    pub path: PathBuf,
    /// The offsets it covers.
    pub offsets: Offsets,
    /// Users restored.
    pub users: u64,
    /// Files skipped as corrupt, newest first, with the reason.
    pub skipped: Vec<String>,
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct CrcReader<R: Read> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes a snapshot of `index` covering `offsets` into `dir`, keeping the
/// newest `keep` files; returns the new file's path.
pub fn write(
    dir: &Path,
    index: &UserIndex,
    offsets: &Offsets,
    keep: usize,
) -> Result<PathBuf, SnapshotError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io {
            path: path.clone(),
            source,
        }
    };
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    // zero-padded so that names sort by time; never reuse a name (two in one ms)
    let newest = list(dir).first().and_then(|p| created_of(p)).unwrap_or(0);
    let created = now_ms().max(newest + 1);
    let name = format!("{PREFIX}{created:020}{SUFFIX}");
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut w = CrcWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
    };
    let result = (|| -> io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&created.to_le_bytes())?;
        w.write_all(&(index.users() as u64).to_le_bytes())?;
        w.write_all(&(index.devices() as u64).to_le_bytes())?;
        w.write_all(&(offsets.len() as u32).to_le_bytes())?;
        for ((topic, partition), offset) in offsets {
            let t = topic.as_bytes();
            w.write_all(&(t.len() as u16).to_le_bytes())?;
            w.write_all(t)?;
            w.write_all(&partition.to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
        }
        let tombstones = index.tombstones();
        w.write_all(&(tombstones.len() as u64).to_le_bytes())?;
        for (user, at) in &tombstones {
            w.write_all(&user.to_le_bytes())?;
            w.write_all(&at.to_le_bytes())?;
        }
        let mut users = 0u64;
        let mut failed = None;
        index.for_each(|user, p| {
            if failed.is_some() {
                return;
            }
            let r = w
                .write_all(&[1])
                .and_then(|_| w.write_all(&user.to_le_bytes()))
                .and_then(|_| p.write_to(&mut w));
            match r {
                Ok(()) => users += 1,
                Err(e) => failed = Some(e),
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        w.write_all(&[0])?; // end of profiles
        w.write_all(&users.to_le_bytes())?;
        let crc = w.crc.clone().finalize();
        let mut inner = w.inner;
        inner.write_all(&crc.to_le_bytes())?;
        inner.write_all(END)?;
        let file = inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(SnapshotError::Io { path: tmp, source });
    }
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    prune(dir, keep);
    Ok(path)
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    files.sort();
    files.reverse(); // newest first
    files
}

fn created_of(p: &Path) -> Option<u64> {
    p.file_name()?
        .to_str()?
        .strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

fn prune(dir: &Path, keep: usize) {
    for old in list(dir).into_iter().skip(keep.max(1)) {
        let _ = fs::remove_file(old);
    }
}

/// Restores the newest intact snapshot in `dir` into `index` (which should be
/// empty); `None` when there is none. `progress` is called every million users.
pub fn restore_newest(
    dir: &Path,
    index: &UserIndex,
    mut progress: impl FnMut(u64),
) -> Result<Option<Restored>, SnapshotError> {
    let mut skipped = Vec::new();
    for path in list(dir) {
        match load(&path, index, &mut progress) {
            Ok((offsets, users)) => {
                return Ok(Some(Restored {
                    path,
                    offsets,
                    users,
                    skipped,
                }));
            }
            Err(e @ SnapshotError::Corrupt { .. }) => {
                // a corrupt file must not leave half its users behind
                index.clear();
                tracing::warn!(error = %e, "skipping snapshot");
                skipped.push(e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The user and device counts recorded in the newest snapshot in `dir`, to
/// pre-size an index before restoring (unverified: only a capacity hint).
pub fn newest_counts(dir: &Path) -> Option<(u64, u64)> {
    let path = list(dir).into_iter().next()?;
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut h = [0u8; 32];
    f.read_exact(&mut h).ok()?;
    if &h[..8] != MAGIC && &h[..8] != MAGIC_V2 {
        return None;
    }
    let n = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or([0; 8]));
    // a corrupt header must not size a huge allocation: every user takes at
    // least 35 bytes of the file and every device 16
    Some((n(16).min(len / 35), n(24).min(len / 16)))
}

fn corrupt(path: &Path, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks a snapshot's checksum and trailer without loading it.
pub fn verify(path: &Path) -> Result<(), SnapshotError> {
    let mut f = File::open(path).map_err(|source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let len = f
        .metadata()
        .map_err(|source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if len < 8 + 8 + 12 {
        return Err(corrupt(path, "too short"));
    }
    let body = len - 12;
    let mut crc = crc32fast::Hasher::new();
    let mut r = BufReader::with_capacity(1 << 20, (&mut f).take(body));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(|source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
    }
    let mut tail = [0u8; 12];
    f.read_exact(&mut tail)
        .map_err(|_| corrupt(path, "truncated trailer"))?;
    if &tail[4..] != END {
        return Err(corrupt(path, "missing end marker (truncated?)"));
    }
    if u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) != crc.finalize() {
        return Err(corrupt(path, "checksum mismatch"));
    }
    Ok(())
}

fn load(
    path: &Path,
    index: &UserIndex,
    progress: &mut impl FnMut(u64),
) -> Result<(Offsets, u64), SnapshotError> {
    let file = File::open(path).map_err(|source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut r = CrcReader {
        inner: BufReader::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
    };
    let c = |e: io::Error| corrupt(path, e.to_string());
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(c)?;
    let v2 = &magic == MAGIC_V2;
    if &magic != MAGIC && !v2 {
        return Err(corrupt(path, "not a snapshot (bad magic)"));
    }
    let mut u8x8 = [0u8; 8];
    r.read_exact(&mut u8x8).map_err(c)?; // created
    r.read_exact(&mut u8x8).map_err(c)?; // users (a capacity hint)
    r.read_exact(&mut u8x8).map_err(c)?; // devices (a capacity hint)
    let mut u8x4 = [0u8; 4];
    r.read_exact(&mut u8x4).map_err(c)?;
    let n_offsets = u32::from_le_bytes(u8x4);
    let mut offsets = Offsets::new();
    for _ in 0..n_offsets {
        let mut l = [0u8; 2];
        r.read_exact(&mut l).map_err(c)?;
        let mut t = vec![0u8; usize::from(u16::from_le_bytes(l))];
        r.read_exact(&mut t).map_err(c)?;
        let topic = String::from_utf8(t).map_err(|_| corrupt(path, "topic is not UTF-8"))?;
        r.read_exact(&mut u8x4).map_err(c)?;
        let partition = i32::from_le_bytes(u8x4);
        r.read_exact(&mut u8x8).map_err(c)?;
        offsets.insert((topic, partition), i64::from_le_bytes(u8x8));
    }
    r.read_exact(&mut u8x8).map_err(c)?;
    let n_tombstones = u64::from_le_bytes(u8x8);
    for _ in 0..n_tombstones {
        r.read_exact(&mut u8x8).map_err(c)?;
        let user = u64::from_le_bytes(u8x8);
        r.read_exact(&mut u8x8).map_err(c)?;
        index.restore_tombstone(user, i64::from_le_bytes(u8x8));
    }
    let users = insert_in_parallel(index, |send| {
        let mut users = 0u64;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let mut more = [0u8; 1];
            r.read_exact(&mut more).map_err(c)?;
            if more[0] == 0 {
                break;
            }
            r.read_exact(&mut u8x8).map_err(c)?;
            let user: UserId = u64::from_le_bytes(u8x8);
            let profile = if v2 {
                UserProfile::read_from_v2(&mut r)
            } else {
                UserProfile::read_from(&mut r)
            };
            batch.push((user, profile.map_err(c)?));
            if batch.len() == BATCH
                && !send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
            {
                return Ok(users); // an inserter failed: its error is reported
            }
            users += 1;
            if users.is_multiple_of(1_000_000) {
                progress(users);
            }
        }
        send(batch);
        Ok(users)
    })
    .map_err(|e| match e {
        Loaded::Read(e) => e,
        Loaded::Insert(e) => corrupt(path, e.to_string()),
    })?;
    r.read_exact(&mut u8x8).map_err(c)?;
    if u64::from_le_bytes(u8x8) != users {
        return Err(corrupt(path, "user count mismatch"));
    }
    let crc = r.crc.clone().finalize();
    let mut tail = [0u8; 12];
    r.inner
        .read_exact(&mut tail)
        .map_err(|_| corrupt(path, "truncated trailer"))?;
    if &tail[4..] != END {
        return Err(corrupt(path, "missing end marker (truncated?)"));
    }
    if u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) != crc {
        return Err(corrupt(path, "checksum mismatch"));
    }
    Ok((offsets, users))
}

/// Users handed to an inserter thread at a time.
const BATCH: usize = 1024;

/// Why a parallel load stopped.
enum Loaded {
    /// Reading or decoding the file failed.
    Read(SnapshotError),
    /// A profile could not be inserted.
    Insert(ProfileError),
}

/// Runs `read` on this thread, which hands batches of users to `send`, and
/// inserts them into `index` on one thread per core: hash inserts, not
/// reading, are most of a restore, and the index takes them concurrently.
/// Order does not matter: a snapshot holds each user once and each device
/// under one user. `send` returns false once an inserter has failed; the
/// first failure is returned after all threads stopped.
fn insert_in_parallel(
    index: &UserIndex,
    read: impl FnOnce(&mut dyn FnMut(Vec<(UserId, UserProfile)>) -> bool) -> Result<u64, SnapshotError>,
) -> Result<u64, Loaded> {
    let inserters = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    std::thread::scope(|s| {
        let mut senders = Vec::with_capacity(inserters);
        let mut handles = Vec::with_capacity(inserters);
        for _ in 0..inserters {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(UserId, UserProfile)>>(4);
            senders.push(tx);
            handles.push(s.spawn(move || -> Result<(), ProfileError> {
                for batch in rx {
                    for (user, profile) in batch {
                        index.upsert(user, profile)?;
                    }
                }
                Ok(())
            }));
        }
        let mut next = 0;
        let read = read(&mut |batch| {
            next = (next + 1) % senders.len();
            senders[next].send(batch).is_ok()
        });
        drop(senders);
        let mut failed = None;
        for h in handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failed.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match (read, failed) {
            (_, Some(e)) => Err(Loaded::Insert(e)),
            (Err(e), None) => Err(Loaded::Read(e)),
            (Ok(users), None) => Ok(users),
        }
    })
}

/// Snapshot timing for logs.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population::populate;
    use crate::record::UserRecord;
    use crate::taxonomy::Taxonomy;

    fn dump(index: &UserIndex, t: &Taxonomy) -> Vec<String> {
        let mut v = Vec::new();
        index.for_each(|u, p| {
            v.push(serde_json::to_string(&UserRecord::from_profile(u, p, t, 2000)).unwrap())
        });
        v.sort();
        v
    }

    #[test]
    fn a_snapshot_restores_the_same_index_and_offsets() {
        let t = Taxonomy::default_taxonomy();
        let idx = UserIndex::default();
        populate(&idx, 2_000, 5, 2000, &t);
        idx.delete_user(17, 123);
        let dir = tempfile::tempdir().unwrap();
        let offsets: Offsets = [
            (("tags".to_string(), 0), 42),
            (("behaviour".to_string(), 3), 7),
        ]
        .into();
        write(dir.path(), &idx, &offsets, 2).unwrap();
        let back = UserIndex::default();
        let r = restore_newest(dir.path(), &back, |_| {}).unwrap().unwrap();
        assert_eq!(r.offsets, offsets);
        assert_eq!(r.users, 1_999);
        assert_eq!(dump(&back, &t), dump(&idx, &t));
        assert!(back.deleted_after(17, 100));
        assert_eq!(back.devices(), idx.devices());
    }

    #[test]
    fn a_corrupt_or_truncated_newest_snapshot_falls_back_to_the_previous_one() {
        let t = Taxonomy::default_taxonomy();
        let idx = UserIndex::default();
        populate(&idx, 300, 1, 2000, &t);
        let dir = tempfile::tempdir().unwrap();
        let old = write(dir.path(), &idx, &[(("t".to_string(), 0), 1)].into(), 5).unwrap();
        let newest = write(dir.path(), &idx, &[(("t".to_string(), 0), 2)].into(), 5).unwrap();
        // flip one byte in the middle of the newest
        let mut bytes = fs::read(&newest).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        fs::write(&newest, &bytes).unwrap();
        let back = UserIndex::default();
        let r = restore_newest(dir.path(), &back, |_| {}).unwrap().unwrap();
        assert_eq!(r.path, old);
        assert_eq!(r.offsets[&("t".to_string(), 0)], 1);
        assert_eq!(r.skipped.len(), 1);
        assert!(r.skipped[0].contains("corrupt snapshot"), "{:?}", r.skipped);
        // nothing of the corrupt file's contents is left behind
        assert_eq!(back.users(), idx.users());
        // truncation is detected too
        fs::write(&newest, &bytes[..bytes.len() / 3]).unwrap();
        assert!(matches!(
            verify(&newest),
            Err(SnapshotError::Corrupt { .. })
        ));
    }

    #[test]
    fn only_the_newest_snapshots_are_kept() {
        let idx = UserIndex::default();
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..4 {
            write(dir.path(), &idx, &Offsets::new(), 2).unwrap();
        }
        assert_eq!(list(dir.path()).len(), 2);
    }
}
