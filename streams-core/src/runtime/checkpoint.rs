//! Checkpoint files: the changelog offset each store of a task is known to be restored up to.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StreamsError;

/// The checkpoint file of a task directory.
pub(crate) fn path(task_dir: &Path) -> PathBuf {
    task_dir.join(".checkpoint")
}

fn io(path: &Path, source: std::io::Error) -> StreamsError {
    StreamsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads `(changelog topic, partition) -> next offset`; a missing file is an empty checkpoint, a malformed one
/// an error naming the line.
pub(crate) fn read(task_dir: &Path) -> Result<BTreeMap<(String, i32), i64>, StreamsError> {
    let p = path(task_dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io(&p, e)),
    };
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let parsed = match parts.as_slice() {
            [topic, partition, offset] => partition
                .parse::<i32>()
                .ok()
                .zip(offset.parse::<i64>().ok())
                .map(|(p, o)| (topic.to_string(), p, o)),
            _ => None,
        };
        let (topic, partition, offset) = parsed.ok_or_else(|| StreamsError::Io {
            path: p.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "line {}: expected '<topic> <partition> <offset>', got '{line}'",
                    n + 1
                ),
            ),
        })?;
        out.insert((topic, partition), offset);
    }
    Ok(out)
}

/// Removes the entries of `partitions` from the checkpoint file, if it has them, before their stores are wiped or
/// rebuilt: a crash in the middle must not leave an offset that a half-restored store would then be trusted to
/// have reached.
pub(crate) fn forget(task_dir: &Path, partitions: &[(String, i32)]) -> Result<(), StreamsError> {
    let mut offsets = read(task_dir)?;
    let before = offsets.len();
    for tp in partitions {
        offsets.remove(tp);
    }
    if offsets.len() != before {
        write(task_dir, &offsets)?;
    }
    Ok(())
}

/// Writes the checkpoint atomically: a temporary file, synced, then renamed over the old one.
pub(crate) fn write(
    task_dir: &Path,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<(), StreamsError> {
    std::fs::create_dir_all(task_dir).map_err(|e| io(task_dir, e))?;
    let p = path(task_dir);
    let tmp = task_dir.join(".checkpoint.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    for ((topic, partition), offset) in offsets {
        writeln!(f, "{topic} {partition} {offset}").map_err(|e| io(&tmp, e))?;
    }
    f.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| io(&p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        let mut m = BTreeMap::new();
        m.insert(("app-s-changelog".to_string(), 3), 42);
        m.insert(("app-t-changelog".to_string(), 0), 0);
        write(dir.path(), &m).unwrap();
        assert_eq!(read(dir.path()).unwrap(), m);
        std::fs::write(path(dir.path()), "app-s-changelog x 1\n").unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
