//! Durable file writes: write a temporary file, fsync it, rename it into place,
//! fsync the directory. A reader sees the old file or the new one, never half of one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory of `path` and a fresh hidden temporary name beside it, so a
/// rename into place stays on one file system.
fn temp_beside(path: &Path) -> io::Result<(&Path, PathBuf)> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Ok((
        dir,
        dir.join(format!(".{name}.{}.tmp", crate::ids::new_id())),
    ))
}

/// Writes `bytes` to `path` atomically and durably (temp file beside it, fsync, rename, fsync dir).
///
/// # Errors
/// Any I/O error; the temporary file is removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, tmp) = temp_beside(path)?;
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically (temp file, rename) without fsync: a
/// reader sees the old or the new content, but a crash may lose the update.
/// For figures that are rewritten often and worthless after a crash (progress).
///
/// # Errors
/// Any I/O error; the temporary file is removed on failure.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (_, tmp) = temp_beside(path)?;
    let result = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Bytes written between two writeback starts of a [`StagedFile`].
const WRITEBACK_EVERY: u64 = 1 << 20;

/// The file under a [`Staged`] write: every [`WRITEBACK_EVERY`] bytes written,
/// it asks the kernel to start writing them to disk (Linux `sync_file_range`
/// with `SYNC_FILE_RANGE_WRITE`, which does not wait), so the fsync of the
/// commit finds most of a large file already on its way instead of starting
/// all of it then. Elsewhere it is the plain file. A failed start is ignored:
/// the fsync reports any real error.
#[derive(Debug)]
pub struct StagedFile {
    file: File,
    written: u64,
    started: u64,
}

impl StagedFile {
    fn new(file: File) -> Self {
        Self {
            file,
            written: 0,
            started: 0,
        }
    }

    fn wrote(&mut self, n: usize) {
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_EVERY {
            start_writeback(&self.file, self.started, self.written - self.started);
            self.started = self.written;
        }
    }
}

impl Write for StagedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.wrote(n);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.file.write_vectored(bufs)?;
        self.wrote(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    // SAFETY: sync_file_range reads no memory of ours; the descriptor is
    // open for as long as `file` is borrowed.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

/// A file written complete under a temporary name beside its destination,
/// then renamed into place ([`Staged::commit`]) and fsynced ([`Staged::sync`])
/// in whichever order the caller's protocol needs: renaming first lets the
/// fsyncs of several files and their directory run at once. Dropped before
/// its commit, the temporary file is removed.
#[derive(Debug)]
pub struct Staged {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staged {
    /// Writes a temporary file beside `dest` through a 64 KiB buffer with
    /// `write` (not fsynced; its writeback to disk is started as it goes, see
    /// [`StagedFile`]).
    ///
    /// # Errors
    /// Any I/O error of `write` or the flush; the temporary file is removed.
    pub fn write_with(
        dest: &Path,
        write: impl FnOnce(&mut io::BufWriter<StagedFile>) -> io::Result<()>,
    ) -> io::Result<Self> {
        let (_, tmp) = temp_beside(dest)?;
        let file = File::create(&tmp)?;
        let mut w = io::BufWriter::with_capacity(1 << 16, StagedFile::new(file));
        let written =
            write(&mut w).and_then(|()| w.into_inner().map_err(io::IntoInnerError::into_error));
        match written {
            Ok(StagedFile { file, .. }) => Ok(Self {
                file,
                tmp,
                dest: dest.to_path_buf(),
                committed: false,
            }),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// [`Staged::write_with`] for bytes at hand.
    ///
    /// # Errors
    /// Any I/O error; the temporary file is removed.
    pub fn write(dest: &Path, bytes: &[u8]) -> io::Result<Self> {
        Self::write_with(dest, |w| w.write_all(bytes))
    }

    /// Fsyncs the file's content (before or after its commit).
    ///
    /// # Errors
    /// The fsync's error.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Renames the file into place: readers now see it whole. It survives a
    /// crash only once it is synced and its directory is ([`sync_dir`]).
    ///
    /// # Errors
    /// The rename's error.
    pub fn commit(&mut self) -> io::Result<()> {
        if !self.committed {
            fs::rename(&self.tmp, &self.dest)?;
            self.committed = true;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Fsyncs a file (or a directory) by path.
///
/// # Errors
/// When the file cannot be opened or synced.
pub fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Fsyncs files and directories all at once, each on its own thread, so the
/// file system can fold them into one journal commit instead of one each.
///
/// # Errors
/// The first error of any open or sync; all are attempted.
pub fn sync_all_at_once(paths: &[&Path]) -> io::Result<()> {
    let Some((last, rest)) = paths.split_last() else {
        return Ok(());
    };
    std::thread::scope(|s| {
        let others: Vec<_> = rest.iter().map(|p| s.spawn(|| sync_file(p))).collect();
        let mut result = sync_file(last);
        for h in others {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("an fsync panicked")));
            result = result.and(r);
        }
        result
    })
}

/// Fsyncs a directory so a rename or creation inside it survives a crash.
///
/// # Errors
/// When the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents, the error naming the entry that
/// failed (a start-up error must say which path in the data directory is
/// wrong, not only "File exists").
///
/// # Errors
/// Any I/O error of the creation, its message prefixed with `dir`.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir).map_err(naming(dir, "creating"))
}

/// Wraps an I/O error with what was being done to which path, keeping its kind.
pub fn naming<'a>(path: &'a Path, doing: &'a str) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |e| io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

/// Renames `from` to `to` and fsyncs the destination's directory.
///
/// # Errors
/// Any I/O error of the rename or the sync.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    match to.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Microseconds since the Unix epoch, now (0 before 1970).
fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Now as RFC 3339 UTC with microseconds, e.g. `2026-01-02T03:04:05.000006Z`.
pub fn now_rfc3339() -> String {
    rfc3339_micros(now_micros())
}

/// The last stamp [`creation_rfc3339`] handed out, in Unix microseconds.
static LAST_CREATION: AtomicU64 = AtomicU64::new(0);

/// A creation time for a new dataset or job: now as [`now_rfc3339`] does, but
/// always later than the one before it in this process (one microsecond
/// later when the clock has not moved on, or went back), so sorting by it
/// ([`stamp_order`]) is creation order even for items created in the same
/// microsecond.
pub fn creation_rfc3339() -> String {
    let now = now_micros();
    let prev = LAST_CREATION
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(0);
    rfc3339_micros(now.max(prev.saturating_add(1)))
}

/// Runs `publish` with a fresh [`creation_rfc3339`] stamp, one at a time in
/// this process: what `publish` makes visible (a rename into a listed
/// directory) becomes visible in the order of the stamps, so a list read in
/// creation order never gains an item before its last entry later on. A
/// paging cursor that names that entry then misses nothing stored here.
/// `publish` should only do the short last step (write a small record,
/// rename): large files are made durable before.
pub fn publish_stamped<T>(publish: impl FnOnce(String) -> T) -> T {
    static PUBLISHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = PUBLISHING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    publish(creation_rfc3339())
}

/// Every `{dir}/{id}/{file}` record whose id is valid, parsed; `unreadable`
/// is told of each one that exists but does not parse (start-up logs it, a
/// listing skips it).
pub fn read_records<T: serde::de::DeserializeOwned>(
    dir: &Path,
    file: &str,
    mut unreadable: impl FnMut(&Path, &serde_json::Error),
) -> Vec<T> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(crate::ids::is_valid))
        .filter_map(|e| {
            let path = e.path().join(file);
            let bytes = fs::read(&path).ok()?;
            serde_json::from_slice(&bytes)
                .map_err(|err| unreadable(&path, &err))
                .ok()
        })
        .collect()
}

/// Sorts records into creation order: by their `created` stamp as
/// [`stamp_order`] orders it, then by id; `key` gives both.
pub fn sort_by_creation<T>(records: &mut [T], key: impl Fn(&T) -> (&str, &str)) {
    records.sort_by(|a, b| {
        let ((ca, ia), (cb, ib)) = (key(a), key(b));
        (stamp_order(ca), ia).cmp(&(stamp_order(cb), ib))
    });
}

/// A key that orders RFC 3339 UTC stamps as written here by time: the
/// seconds part, then the fraction in nanoseconds. A stamp without a fraction
/// (written with one-second resolution, before stamps had one) sorts at the
/// start of its second.
pub fn stamp_order(stamp: &str) -> (&str, u32) {
    // `get`, not `split_at`: a hand-edited record may hold any text, and a
    // cut inside a character must not panic.
    let (secs, rest) = match stamp.get(..19) {
        Some(secs) => (secs, &stamp[19..]),
        None => (stamp, ""),
    };
    // Up to nine fraction digits, padded on the right: no allocation, as
    // this runs twice per comparison when a list is sorted.
    let nanos = rest.strip_prefix('.').map_or(0, |r| {
        let digits = r.bytes().take_while(u8::is_ascii_digit).take(9);
        let (value, places) = digits.fold((0u32, 0u32), |(v, n), d| {
            (v * 10 + u32::from(d - b'0'), n + 1)
        });
        value * 10u32.pow(9 - places)
    });
    (secs, nanos)
}

/// Unix microseconds as RFC 3339 UTC with six fractional digits.
pub fn rfc3339_micros(unix_micros: u64) -> String {
    let secs = rfc3339(unix_micros / 1_000_000);
    let base = secs.strip_suffix('Z').unwrap_or(&secs);
    format!("{base}.{:06}Z", unix_micros % 1_000_000)
}

/// Unix seconds as RFC 3339 UTC (days-to-civil after Howard Hinnant's algorithm).
pub fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_files_keep_every_byte_across_writeback_starts() {
        // Past several writeback starts, through both write paths: plain
        // writes (through the buffer) and vectored writes larger than it.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.csv");
        let chunk: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut expected = Vec::new();
        let mut staged = Staged::write_with(&p, |w| {
            for round in 0..12 {
                w.write_all(&chunk[..1000 + round])?;
                expected.extend_from_slice(&chunk[..1000 + round]);
                let (a, b) = chunk.split_at(100_000);
                let mut bufs = [io::IoSlice::new(a), io::IoSlice::new(b)];
                let mut bufs = &mut bufs[..];
                while !bufs.is_empty() {
                    let n = w.write_vectored(bufs)?;
                    io::IoSlice::advance_slices(&mut bufs, n);
                }
                expected.extend_from_slice(&chunk);
            }
            Ok(())
        })
        .unwrap();
        assert!(expected.len() as u64 > 3 * WRITEBACK_EVERY);
        staged.sync().unwrap();
        staged.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), expected);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn staged_files_appear_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        let mut kept = Staged::write(&p, b"rows").unwrap();
        kept.sync().unwrap();
        assert!(!p.exists());
        kept.commit().unwrap();
        drop(kept);
        assert_eq!(fs::read(&p).unwrap(), b"rows");
        let dropped =
            Staged::write_with(&dir.path().join("s.json"), |w| w.write_all(b"{}")).unwrap();
        drop(dropped);
        let failed = Staged::write_with(&dir.path().join("t.json"), |_| {
            Err(io::Error::other("encoder failed"))
        });
        assert!(failed.is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["r.csv"], "no temporary file is left behind");
    }

    #[test]
    fn creation_stamps_increase_and_order_with_second_stamps() {
        let stamps: Vec<String> = (0..1000).map(|_| creation_rfc3339()).collect();
        for pair in stamps.windows(2) {
            assert!(
                stamp_order(&pair[0]) < stamp_order(&pair[1]),
                "{} then {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(
            rfc3339_micros(1_767_323_045_000_006),
            "2026-01-02T03:04:05.000006Z"
        );
        // A stamp written before fractions sorts at the start of its second.
        let old = "2026-01-02T03:04:05Z";
        assert!(stamp_order(old) < stamp_order("2026-01-02T03:04:05.000001Z"));
        assert!(stamp_order(old) > stamp_order("2026-01-02T03:04:04.999999Z"));
        assert_eq!(stamp_order("2026-01-02T03:04:05.5Z").1, 500_000_000);
        assert_eq!(
            stamp_order("2026-01-02T03:04:05.123456789123Z").1,
            123_456_789
        );
        assert_eq!(stamp_order("2026-01-02T03:04:05.000001Z").1, 1_000);
        assert_eq!(stamp_order("2026-01-02T03:04:05.Z").1, 0);
        // Any text orders somewhere, without a panic.
        for odd in ["", "2026", "2026-01-02T03:04:0é5Z", "ééééééééééééééééééé"]
        {
            let _ = stamp_order(odd);
        }
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_323_045), "2026-01-02T03:04:05Z");
    }
}
