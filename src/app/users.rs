//! Users loaded at start: the generated population and JSON-lines user files,
//! and what the index costs per user once they are in.

use std::io::BufRead;
use std::path::Path;

use crate::app::error::StartError;
use crate::domain::calendar::Day;
use crate::domain::taxonomy::Taxonomy;
use crate::index::UserIndex;
use crate::index::record::UserRecord;

/// Loads a JSON-lines file of user records; invalid lines are counted and
/// logged (with their line number, never their ids) and skipped. Returns
/// (loaded, skipped).
pub fn load_user_file(
    index: &UserIndex,
    path: &Path,
    taxonomy: &Taxonomy,
    today: Day,
) -> Result<(u64, u64), StartError> {
    let read_error = |source| StartError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let (mut loaded, mut skipped) = (0u64, 0u64);
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let result = serde_json::from_str::<UserRecord>(&line)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                r.to_profile(taxonomy, today)
                    .map(|p| (r.user_id, p))
                    .map_err(|e| e.to_string())
            })
            .and_then(|(u, p)| index.upsert(u, p).map_err(|e| e.to_string()));
        match result {
            Ok(()) => loaded += 1,
            Err(e) => {
                skipped += 1;
                tracing::warn!(file = %path.display(), line = n + 1, error = %e, "skipping invalid user record");
            }
        }
    }
    Ok((loaded, skipped))
}

/// The process's resident bytes (Linux `/proc/self/statm`), when known.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Resident bytes per user the index added (process RSS now minus `rss_before`,
/// so allocator overhead and slack included) and where they went.
pub fn memory_report(index: &UserIndex, rss_before: Option<u64>) -> String {
    let users = index.users().max(1) as f64;
    let (device_table, profile_table) = index.table_bytes();
    let per_user = |b: u64| b as f64 / users;
    match resident_bytes().zip(rss_before) {
        Some((now, before)) => {
            let added = now.saturating_sub(before);
            format!(
                "{:.0} bytes/user resident ({:.0} MiB; process {:.0} MiB): device table {:.0}, \
                 profile table {:.0}, profile bodies {:.0}, allocator overhead and rest {:.0}",
                per_user(added),
                added as f64 / 1048576.0,
                now as f64 / 1048576.0,
                per_user(device_table),
                per_user(profile_table),
                per_user(index.profile_heap_bytes()),
                per_user(
                    added.saturating_sub(device_table + profile_table + index.profile_heap_bytes())
                ),
            )
        }
        None => "resident size unknown".into(),
    }
}
