//! Persistence of the blacklist across restarts: the unexpired entries as
//! JSON lines, written atomically and read back leniently.

use super::{Blacklist, Entry};

impl Blacklist {
    /// Writes the unexpired entries to `path` as JSON lines, atomically
    /// (a temporary file, fsync, rename), so that a restart keeps what
    /// operators and rules listed. Returns how many were written.
    pub fn save_to(&self, path: &std::path::Path, now_ms: i64) -> std::io::Result<usize> {
        use std::io::Write;
        let entries = self.list(now_ms, usize::MAX);
        let tmp = path.with_extension("tmp");
        {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            for e in &entries {
                serde_json::to_writer(&mut w, e)?;
                w.write_all(b"\n")?;
            }
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(entries.len())
    }

    /// Lists the unexpired entries of a file written by [`Blacklist::save_to`]
    /// (keeping their reasons and times). Lines that do not parse and
    /// expired entries are skipped; returns (loaded, skipped). A missing
    /// file is an empty list.
    pub fn load_from(
        &self,
        path: &std::path::Path,
        now_ms: i64,
    ) -> std::io::Result<(usize, usize)> {
        use std::io::BufRead;
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        let (mut loaded, mut skipped) = (0, 0);
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(&line) {
                Ok(e) if e.is_active(now_ms) && e.until_ms > e.since_ms => {
                    // restored, not listed anew: not counted as a listing
                    // an operator's entries count for it again, over its cap if need be
                    let owner = e.added_by.as_deref().map(|name| (name, usize::MAX));
                    match self.upsert(e.listed, e.reason, e.since_ms, e.until_ms, false, owner) {
                        Ok(_) => loaded += 1,
                        Err(_) => skipped += 1,
                    }
                }
                _ => skipped += 1,
            }
        }
        Ok((loaded, skipped))
    }
}
