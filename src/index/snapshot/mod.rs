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
//! truncated or corrupt one is reported and skipped. One thread reads and
//! checksums the file; one per core decodes the profiles and inserts them
//! shard by shard ([`crate::index::BulkLoader`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::index::profile::{MAX_WORDS, ProfileError, UserProfile};
use crate::index::{BulkLoader, BulkRepairs, UserId, UserIndex};

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

/// The body of a snapshot (everything the checksum covers), read in large
/// blocks and checksummed as it is read.
struct Input {
    file: io::Take<File>,
    crc: crc32fast::Hasher,
    /// The block being read; `buf[pos..end]` is read and not yet used.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl Input {
    /// Makes at least `n` unused bytes available; false when the body ends first.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        if self.end - self.pos >= n {
            return Ok(true);
        }
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        while self.end < n {
            let got = self.file.read(&mut self.buf[self.end..])?;
            if got == 0 {
                return Ok(false);
            }
            self.crc.update(&self.buf[self.end..self.end + got]);
            self.end += got;
        }
        Ok(true)
    }

    fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        if !self.fill(out.len())? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        out.copy_from_slice(&self.buf[self.pos..self.pos + out.len()]);
        self.pos += out.len();
        Ok(())
    }
}

/// Bytes of profiles handed to a decoding thread at a time.
const BLOCK: usize = 4 << 20;

/// A block of whole profile records (`more` byte, user id, profile) and
/// where in it they are.
type Block = (Vec<u8>, std::ops::Range<usize>);

fn load(
    path: &Path,
    index: &UserIndex,
    progress: &mut impl FnMut(u64),
) -> Result<(Offsets, u64), SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    if len < 8 + 8 + 12 {
        return Err(corrupt(path, "too short"));
    }
    let mut r = Input {
        file: file.take(len - 12),
        crc: crc32fast::Hasher::new(),
        buf: vec![0; BLOCK],
        pos: 0,
        end: 0,
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
    // the profile header's size; its word count is its last 4 bytes
    let header = if v2 { 26 } else { 30 };
    let users = load_in_parallel(path, index, v2, |send, recycled| {
        let mut users = 0u64;
        loop {
            // whole records at the front of the buffer
            let (buf, end) = (&r.buf, r.end);
            let mut at = r.pos;
            let mut n = 0u64;
            let mut need = 1;
            let mut last = false;
            while at < end {
                if buf[at] == 0 {
                    last = true;
                    break;
                }
                let words_at = at + 1 + 8 + header - 4;
                if end < words_at + 4 {
                    need = words_at + 4 - at;
                    break;
                }
                let mut w = [0u8; 4];
                w.copy_from_slice(&buf[words_at..words_at + 4]);
                let words = u32::from_le_bytes(w) as usize;
                if words > MAX_WORDS {
                    return Err(corrupt(path, "profile counts do not fit its words"));
                }
                let record = 1 + 8 + header + 4 * words;
                if end - at < record {
                    need = record;
                    break;
                }
                at += record;
                n += 1;
            }
            if n > 0 {
                // hand the records over; the rest moves to a recycled buffer
                let mut next = recycled()?;
                let rest = end - at;
                if next.len() < rest.max(BLOCK) {
                    next.resize(rest.max(BLOCK), 0);
                }
                next[..rest].copy_from_slice(&r.buf[at..end]);
                let block = std::mem::replace(&mut r.buf, next);
                let records = r.pos..at;
                (r.pos, r.end) = (0, rest);
                if !send((block, records)) {
                    return Ok(users); // a decoder failed: its error is reported
                }
                let before = users;
                users += n;
                if users / 1_000_000 > before / 1_000_000 {
                    progress(users / 1_000_000 * 1_000_000);
                }
            } else if last {
                r.pos = at + 1; // the end-of-profiles byte
                return Ok(users);
            } else if !r.fill(need).map_err(c)? {
                return Err(corrupt(path, "truncated profile"));
            }
        }
    })
    .map_err(|e| match e {
        Loaded::Read(e) => e,
        Loaded::Insert(e) => corrupt(path, e.to_string()),
    })?;
    r.read_exact(&mut u8x8).map_err(c)?;
    if u64::from_le_bytes(u8x8) != users {
        return Err(corrupt(path, "user count mismatch"));
    }
    if r.pos != r.end || r.fill(1).map_err(c)? {
        return Err(corrupt(path, "data after the user count"));
    }
    let crc = r.crc.finalize();
    let mut tail = [0u8; 12];
    r.file
        .into_inner()
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

/// Why a parallel load stopped.
enum Loaded {
    /// Reading or decoding the file failed.
    Read(SnapshotError),
    /// A profile could not be inserted.
    Insert(ProfileError),
}

/// Runs `read` on this thread, which checksums the file and hands blocks of
/// whole profile records to `send` (taking buffers from `recycled`, which
/// waits for one to come back once a few are out), and decodes and inserts
/// them on one thread per core, each through its own [`BulkLoader`]:
/// decoding (an allocation per profile) and hash inserts, not reading, are
/// most of a restore. Order does not matter: a snapshot holds each user once
/// and each device under one user (and [`UserIndex::finish_bulk`] puts right
/// a file that does not). `send` returns false once a decoder has failed;
/// the first failure is returned after all threads stopped.
fn load_in_parallel(
    path: &Path,
    index: &UserIndex,
    v2: bool,
    read: impl FnOnce(
        &mut dyn FnMut(Block) -> bool,
        &mut dyn FnMut() -> Result<Vec<u8>, SnapshotError>,
    ) -> Result<u64, SnapshotError>,
) -> Result<u64, Loaded> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, mpsc};
    let decoders = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let failed = AtomicBool::new(false);
    let (blocks, queue) = mpsc::sync_channel::<Block>(decoders);
    // held by the decoders only: should they all stop, sending fails
    let queue = Arc::new(Mutex::new(queue));
    let (give_back, given_back) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(decoders);
        for part in 0..decoders {
            let (queue, failed, give_back) = (Arc::clone(&queue), &failed, give_back.clone());
            handles.push(s.spawn(move || -> Result<BulkRepairs, Loaded> {
                let mut loader = index.bulk_loader(part, decoders);
                let mut result = Ok(());
                loop {
                    let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((block, records)) = next else {
                        break;
                    };
                    if result.is_ok() {
                        result = decode(path, &block[records], v2, &mut loader);
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                    // ignored: the reader may have stopped already
                    let _ = give_back.send(block);
                }
                result?;
                Ok(loader.finish())
            }));
        }
        drop((queue, give_back));
        // the reader's own buffer, the queue and one being decoded per thread
        let mut buffers = 1 + 2 * decoders;
        let read = read(
            &mut |block| !failed.load(Ordering::Relaxed) && blocks.send(block).is_ok(),
            &mut || {
                if let Ok(b) = given_back.try_recv() {
                    return Ok(b);
                }
                if buffers > 0 {
                    buffers -= 1;
                    return Ok(vec![0; BLOCK]);
                }
                given_back.recv().map_err(|_| SnapshotError::Corrupt {
                    path: path.to_path_buf(),
                    reason: "decoders stopped".to_string(),
                })
            },
        );
        drop(blocks);
        let mut failure = None;
        let mut repairs = BulkRepairs::default();
        for h in handles {
            match h.join() {
                Ok(Ok(r)) => repairs.merge(r),
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let users = read.map_err(Loaded::Read)?;
        index.finish_bulk(repairs).map_err(Loaded::Insert)?;
        Ok(users)
    })
}

/// Decodes the profile records in `records` into `loader`.
fn decode(
    path: &Path,
    mut records: &[u8],
    v2: bool,
    loader: &mut BulkLoader<'_>,
) -> Result<(), Loaded> {
    let c = |e: io::Error| Loaded::Read(corrupt(path, e.to_string()));
    while let Some((_more, rest)) = records.split_first() {
        let Some((user, rest)) = rest.split_first_chunk::<8>() else {
            return Err(Loaded::Read(corrupt(path, "truncated profile")));
        };
        let user: UserId = u64::from_le_bytes(*user);
        records = rest;
        let profile = if v2 {
            UserProfile::read_from_v2(&mut records)
        } else {
            UserProfile::read_from(&mut records)
        }
        .map_err(c)?;
        loader.push(user, profile).map_err(Loaded::Insert)?;
    }
    Ok(())
}

/// Snapshot timing for logs.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests;
