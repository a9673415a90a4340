//! The dataset store: uploads streamed to disk, validated, and kept as Arrow IPC.
//!
//! Memory stays flat whatever the upload's size: the body is copied to a
//! scratch file, converted batch by batch into Arrow IPC
//! (`recon_core::input::convert_to_ipc`), and mapped batch by batch into a
//! typed side when a job reads it ([`DatasetStore::load_side`]); no step holds
//! the whole file as text.
//!
//! Layout under the data directory:
//! ```text
//! tmp/{instance}/owner.json        who owns this scratch directory
//! tmp/{instance}/{id}.upload       the raw body while it streams in
//! tmp/{instance}/{id}/             the dataset being built
//! datasets/{id}/data.arrow         the rows, all columns UTF-8 text
//! datasets/{id}/meta.json          id, name, format, rows, columns, bytes, sha256, created
//! ```
//! A dataset becomes visible only by the rename of its complete, fsynced
//! directory into `datasets/` (then the parent is fsynced), so a crash or a
//! SIGKILL mid-upload leaves at most scratch files, which the next start sweeps.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use recon_core::error::InputError;
use recon_core::input::{Format, ReadOptions, SideLoad, Table, convert_to_ipc};
use recon_core::mapping::{SideMapping, TextEncoding};
use recon_core::rules::RoleSet;
use recon_core::side::Side;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::durable;
use crate::error::ApiError;
use crate::ids;
use crate::owner::Owner;

/// A stored dataset's description, as `meta.json` holds it and the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// The dataset id.
    pub id: String,
    /// The name given at upload (or the file name, or the id).
    pub name: String,
    /// The uploaded format: `csv`, `parquet`, `arrow`, `arrow-stream` or `ndjson`.
    pub format: String,
    /// Rows (records) stored.
    pub rows: u64,
    /// Column names in file order.
    pub columns: Vec<String>,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the uploaded bytes.
    pub sha256: String,
    /// When it was stored (RFC 3339 UTC, microseconds; later than every
    /// dataset stored before it by this process, see [`durable::creation_rfc3339`]).
    pub created: String,
    /// Bytes the stored Arrow IPC file takes.
    pub stored_bytes: u64,
    /// Columns stored empty because their values have no text form (a nested
    /// struct, map or union of a Parquet, Arrow or NDJSON upload): a mapping
    /// that names one fails the job, naming the column and its type. Absent
    /// when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable_columns: Vec<String>,
    /// A CSV upload's delimiter, as it was read (absent for other formats,
    /// and in datasets stored before recon recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// Whether a CSV upload's first line named its columns (absent as
    /// `delimiter` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_header: Option<bool>,
    /// A CSV upload's encoding, as it was read: its WHATWG name (`UTF-8`,
    /// `windows-1252`; absent as `delimiter` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

impl DatasetMeta {
    /// Checks that `mapping`'s reading keys (`format`, `delimiter`,
    /// `has_header`) agree with how the dataset was read when it was stored:
    /// a stored dataset is not read again, so a key set otherwise would be
    /// ignored, and the same rules would mean something else to `recon match`.
    /// Keys left at their defaults always agree.
    ///
    /// # Errors
    /// The message naming the key, both values and what to do.
    ///
    /// `called` is how messages name the dataset (`dataset ID`, or the upload's
    /// part where the client was never given the id).
    pub fn check_read_options(&self, mapping: &SideMapping, called: &str) -> Result<(), String> {
        let redo = "store it read that way (the upload's `delimiter`, `has_header` and \
                    `encoding` options; in POST /v1/reconcile, send the `rules` part before the files) \
                    or remove the key";
        let stored: Option<Format> =
            serde_json::from_value(serde_json::Value::String(self.format.clone())).ok();
        if let Some(f) = mapping.format
            && Some(f) != stored
        {
            return Err(format!(
                "`format` = \"{}\", but {called} was stored from a {} upload: remove the key",
                f.name(),
                self.format
            ));
        }
        if let Some(format) = stored.filter(|f| *f != Format::Csv) {
            return mapping.check_csv_options(format).map_err(|e| e.to_string());
        }
        // A key at its default agrees with any upload; one set otherwise must
        // be what the upload was read with.
        let defaults = SideMapping::default();
        let delimiter = mapping.delimiter.to_string();
        if mapping.delimiter != defaults.delimiter
            && self.delimiter.as_ref().is_some_and(|d| *d != delimiter)
        {
            return Err(format!(
                "`delimiter` = {delimiter:?}, but {called} was read with delimiter {:?} when it \
                 was stored: {redo}",
                self.delimiter.as_deref().unwrap_or_default()
            ));
        }
        if !mapping.encoding.is_utf8()
            && let Some(stored) = self.encoding.as_deref()
            && stored != mapping.encoding.name()
        {
            return Err(format!(
                "`encoding` = {:?}, but {called} was read as {stored} when it was stored: {redo}",
                mapping.encoding.name()
            ));
        }
        if mapping.has_header != defaults.has_header && self.has_header == Some(defaults.has_header)
        {
            return Err(format!(
                "`has_header` = {}, but {called} was read with a header line when it was \
                 stored: {redo}",
                mapping.has_header
            ));
        }
        Ok(())
    }
}

/// How to read an upload, beyond its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOptions {
    /// The dataset's name; by default the file name or the id.
    pub name: Option<String>,
    /// What messages about the content call the upload: by default its
    /// `name`, else `request body` (never the id, which the client has not
    /// been told when the upload is refused).
    pub source: Option<String>,
    /// CSV delimiter.
    pub delimiter: u8,
    /// Whether a CSV's first line names the columns.
    pub has_header: bool,
    /// A CSV's character encoding.
    pub encoding: TextEncoding,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            name: None,
            source: None,
            delimiter: b',',
            has_header: true,
            encoding: TextEncoding::UTF_8,
        }
    }
}

/// Datasets under one data directory.
#[derive(Debug)]
pub struct DatasetStore {
    datasets: PathBuf,
    scratch: PathBuf,
    chunk: usize,
    limit: u64,
}

/// Bytes of an upload gathered (from `recv_bytes` reads) before one write to disk.
const BLOCK: usize = 1 << 20;

/// Full blocks that may wait for the upload's hashing thread.
const BLOCKS_IN_FLIGHT: usize = 3;

/// Scratch directories without an `owner.json` older than this are swept.
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

impl DatasetStore {
    /// Opens the store: creates the directories, sweeps scratch space left by
    /// dead instances, and claims a scratch directory for `owner`.
    ///
    /// # Errors
    /// When the directories cannot be created.
    pub fn open(data_dir: &Path, owner: &Owner, chunk: usize, limit: u64) -> io::Result<Self> {
        let datasets = data_dir.join("datasets");
        let tmp = data_dir.join("tmp");
        durable::create_dir_all(&datasets)?;
        durable::create_dir_all(&tmp)?;
        // Only to log the unreadable ones, once.
        let _: Vec<DatasetMeta> =
            durable::read_records(&datasets, "meta.json", crate::jobs::unreadable("dataset"));
        sweep_tmp(&tmp, &crate::owner::leases_dir(data_dir));
        let scratch = tmp.join(&owner.instance);
        durable::create_dir_all(&scratch)?;
        let owner_json = serde_json::to_vec(owner).map_err(io::Error::other)?;
        let owner_path = scratch.join("owner.json");
        fs::write(&owner_path, owner_json).map_err(durable::naming(&owner_path, "writing"))?;
        Ok(Self {
            datasets,
            scratch,
            chunk: chunk.max(4096),
            limit,
        })
    }

    /// The largest body accepted, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The scratch directory of this instance.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    fn dir(&self, id: &str) -> Result<PathBuf, ApiError> {
        if !ids::is_valid(id) {
            return Err(ApiError::NotFound(format!("no dataset {id:?}")));
        }
        Ok(self.datasets.join(id))
    }

    /// Streams `body` to disk, parses and validates it as `format`, and stores it.
    ///
    /// # Errors
    /// 408/400/413 for body read failures, 422 for malformed content, 500 for disk errors.
    pub fn create(
        &self,
        body: &mut dyn Read,
        format: Format,
        opts: &UploadOptions,
    ) -> Result<DatasetMeta, ApiError> {
        let built = self.build(body, format, opts)?;
        self.publish(built)
    }

    /// [`DatasetStore::create`] up to the last step: the dataset is converted
    /// and durable in this instance's scratch space, and invisible until
    /// [`DatasetStore::publish`]. Dropped unpublished it is removed; a crash
    /// leaves it to the next start's sweep of dead instances' scratch, so a
    /// request that stores several files (`POST /v1/reconcile`) and dies
    /// half-way leaves none of them listed.
    ///
    /// # Errors
    /// As [`DatasetStore::create`].
    pub fn build(
        &self,
        body: &mut dyn Read,
        format: Format,
        opts: &UploadOptions,
    ) -> Result<Built, ApiError> {
        let id = ids::new_id();
        let scratch = Scratch {
            raw: self.scratch.join(format!("{id}.upload")),
            build: self.scratch.join(&id),
        };
        let started = std::time::Instant::now();
        let (bytes, sha256) = self.stream_to_file(body, &scratch.raw)?;
        let streamed = started.elapsed();
        let name = opts.name.clone().unwrap_or_else(|| id.clone());
        let source = (opts.source.clone())
            .or_else(|| opts.name.clone())
            .unwrap_or_else(|| "request body".to_owned());
        let read_opts = ReadOptions {
            delimiter: opts.delimiter,
            has_header: opts.has_header,
            encoding: opts.encoding,
            source: Some(source),
            ..ReadOptions::default()
        };
        let build = &scratch.build;
        fs::create_dir_all(build).map_err(|e| ApiError::internal_at(build, e))?;
        let data = build.join("data.arrow");
        let converted =
            convert_to_ipc(&scratch.raw, format, &read_opts, &data).map_err(input_error)?;
        let converted_at = started.elapsed();
        // The upload as sent is not kept: only the stored form waits to be
        // published (a one-shot request's left file, while its right arrives).
        let _ = fs::remove_file(&scratch.raw);
        // The data is made durable first; only the small record and the
        // rename are published under the creation stamp (see
        // `durable::publish_stamped`), so datasets appear in `created` order.
        durable::sync_all_at_once(&[&data]).map_err(|e| ApiError::internal_at(&data, e))?;
        let stored_bytes = fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
        let csv = format == Format::Csv;
        let meta = DatasetMeta {
            id: id.clone(),
            name,
            format: format.name().to_owned(),
            rows: converted.rows,
            columns: converted.columns,
            bytes,
            sha256,
            // Stamped when published.
            created: String::new(),
            stored_bytes,
            unreadable_columns: converted.unreadable,
            delimiter: csv.then(|| char::from(opts.delimiter).to_string()),
            has_header: csv.then_some(opts.has_header),
            // As read: a byte order mark's encoding over the one asked for.
            encoding: csv.then(|| {
                converted
                    .encoding
                    .unwrap_or(opts.encoding)
                    .name()
                    .to_owned()
            }),
        };
        tracing::debug!(
            dataset = id,
            rows = meta.rows,
            bytes,
            stream_ms = streamed.as_millis() as u64,
            convert_ms = (converted_at - streamed).as_millis() as u64,
            "dataset built"
        );
        Ok(Built {
            meta,
            scratch,
            started,
        })
    }

    /// Makes a built dataset visible under its creation stamp: its record
    /// written and fsynced beside the data, the directory renamed into
    /// `datasets/`.
    ///
    /// # Errors
    /// 500 when the record or the rename cannot be written.
    pub fn publish(&self, built: Built) -> Result<DatasetMeta, ApiError> {
        let Built {
            meta,
            scratch,
            started,
        } = built;
        let build = &scratch.build;
        let dest = self.datasets.join(&meta.id);
        let meta = durable::publish_stamped(|created| -> Result<DatasetMeta, ApiError> {
            let meta = DatasetMeta { created, ..meta };
            let json = serde_json::to_vec_pretty(&meta).map_err(ApiError::internal)?;
            // The build directory is private until renamed, so its files need
            // no temporary names; the record and the directory are fsynced.
            let meta_path = build.join("meta.json");
            fs::write(&meta_path, &json).map_err(|e| ApiError::internal_at(&meta_path, e))?;
            durable::sync_all_at_once(&[&meta_path, build])
                .map_err(|e| ApiError::internal_at(build, e))?;
            durable::rename_durable(build, &dest).map_err(|e| ApiError::internal_at(&dest, e))?;
            Ok(meta)
        })?;
        tracing::info!(
            dataset = meta.id,
            rows = meta.rows,
            bytes = meta.bytes,
            total_ms = started.elapsed().as_millis() as u64,
            "dataset stored"
        );
        Ok(meta)
    }

    /// Copies `body` to `path` in `chunk`-byte reads gathered into blocks of
    /// [`BLOCK`] bytes: each full block is written with one call and handed to
    /// a hashing thread, so SHA-256 runs while the next block is received.
    /// At most [`BLOCKS_IN_FLIGHT`] blocks wait for the hasher (then the copy
    /// waits too), so memory stays a few blocks whatever the body's size.
    fn stream_to_file(&self, body: &mut dyn Read, path: &Path) -> Result<(u64, String), ApiError> {
        let mut file = File::create(path).map_err(|e| ApiError::internal_at(path, e))?;
        let block = BLOCK.max(self.chunk);
        let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(BLOCKS_IN_FLIGHT);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        std::thread::scope(|s| {
            let hasher = s.spawn(move || {
                let mut hasher = Sha256::new();
                for (buf, len) in full_rx {
                    hasher.update(&buf[..len]);
                    let _ = free_tx.send(buf);
                }
                hex::encode(hasher.finalize())
            });
            let copied = (|| {
                let mut hand_over = |buf: Vec<u8>, len: usize| -> Result<(), ApiError> {
                    file.write_all(&buf[..len])
                        .map_err(|e| ApiError::internal_at(path, e))?;
                    full_tx
                        .send((buf, len))
                        .map_err(|_| ApiError::internal("the upload's hashing thread ended"))
                };
                let mut buf = vec![0u8; block];
                let mut filled = 0;
                let mut total = 0u64;
                loop {
                    let end = (filled + self.chunk).min(block);
                    let n = match body.read(&mut buf[filled..end]) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(ApiError::from_body_io(&e, self.limit)),
                    };
                    total += n as u64;
                    if total >= self.limit {
                        return Err(ApiError::PayloadTooLarge { limit: self.limit });
                    }
                    filled += n;
                    if filled == block {
                        let next = free_rx.try_recv().unwrap_or_else(|_| vec![0u8; block]);
                        hand_over(std::mem::replace(&mut buf, next), filled)?;
                        filled = 0;
                    }
                }
                if filled > 0 {
                    hand_over(buf, filled)?;
                }
                Ok(total)
            })();
            drop(full_tx);
            let sha256 = hasher
                .join()
                .map_err(|_| ApiError::internal("hashing the upload panicked"))?;
            Ok((copied?, sha256))
        })
    }

    /// Every stored dataset, oldest first.
    pub fn list(&self) -> Vec<DatasetMeta> {
        let mut out: Vec<DatasetMeta> =
            durable::read_records(&self.datasets, "meta.json", |_, _| {});
        durable::sort_by_creation(&mut out, |m| (&m.created, &m.id));
        out
    }

    /// One dataset's metadata.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown or invalid id.
    pub fn get(&self, id: &str) -> Result<DatasetMeta, ApiError> {
        read_meta(&self.dir(id)?).ok_or_else(|| ApiError::NotFound(format!("no dataset {id:?}")))
    }

    /// Deletes a dataset: it disappears at once (renamed into scratch), then its files go.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown or invalid id; 500 for disk errors.
    pub fn delete(&self, id: &str) -> Result<(), ApiError> {
        let dir = self.dir(id)?;
        let gone = self.scratch.join(format!("{id}.deleted"));
        match fs::rename(&dir, &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ApiError::NotFound(format!("no dataset {id:?}")));
            }
            Err(e) => return Err(ApiError::internal(e)),
        }
        let _ = durable::sync_dir(&self.datasets);
        let _ = fs::remove_dir_all(&gone);
        Ok(())
    }

    /// Reads a stored dataset and maps it to a typed side with `mapping`,
    /// batch by batch (never the whole dataset as text), building only the text
    /// roles in `roles` (a job's: `Rules::roles`); every mapped column is still
    /// checked to exist. Messages name the dataset and the upload's line numbers.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown id (e.g. deleted since);
    /// [`ApiError::Unprocessable`] naming line, column and value when a value
    /// does not fit the mapping; 500 when the file cannot be read.
    pub fn load_side(
        &self,
        id: &str,
        mapping: &SideMapping,
        roles: RoleSet,
    ) -> Result<(DatasetMeta, Side), ApiError> {
        let meta = self.get(id)?;
        let opts = ReadOptions {
            source: Some(meta.name.clone()),
            ..ReadOptions::default()
        };
        let path = self.dir(id)?.join("data.arrow");
        let side = SideLoad::new(&path, mapping)
            .format(Format::Arrow)
            .options(opts)
            .roles(roles)
            .load()
            .map_err(input_error)?;
        Ok((meta, side))
    }

    /// Checks that every column `mapping` names is in the dataset `meta`
    /// describes (and readable as text), from the stored Arrow schema alone:
    /// no row is read. The check is recon-core's own, so the message is the
    /// one loading the dataset would give (it names the dataset and the
    /// column).
    ///
    /// # Errors
    /// [`ApiError::NotFound`] when its data is gone (deleted since); [`ApiError::Unprocessable`]
    /// for a missing, ambiguous or unreadable column or an unusable mapping;
    /// 500 when the stored schema cannot be read.
    pub fn check_columns(&self, meta: &DatasetMeta, mapping: &SideMapping) -> Result<(), ApiError> {
        let path = self.dir(&meta.id)?.join("data.arrow");
        columns_fit(&path, meta, mapping)
    }

    /// How many datasets are stored and the bytes their files take.
    pub fn usage(&self) -> (usize, u64) {
        let all = self.list();
        (all.len(), all.iter().map(|m| m.stored_bytes).sum())
    }
}

/// Scratch files of one upload, removed however the upload ends (error or
/// panic); after success the build directory has been renamed away already.
#[derive(Debug)]
struct Scratch {
    raw: PathBuf,
    build: PathBuf,
}

/// A dataset [`DatasetStore::build`] made, not yet published: its record
/// (but for the creation stamp) and its files in scratch space, removed if
/// this is dropped unpublished.
#[derive(Debug)]
pub struct Built {
    meta: DatasetMeta,
    scratch: Scratch,
    started: std::time::Instant,
}

impl Built {
    /// The dataset's record, but for its creation stamp (given when published).
    pub fn meta(&self) -> &DatasetMeta {
        &self.meta
    }

    /// [`DatasetStore::check_columns`] before the dataset is published.
    ///
    /// # Errors
    /// As [`DatasetStore::check_columns`].
    pub fn check_columns(&self, mapping: &SideMapping) -> Result<(), ApiError> {
        columns_fit(&self.scratch.build.join("data.arrow"), &self.meta, mapping)
    }
}

/// Whether the stored data file at `path` (of the dataset `meta`) has the
/// columns `mapping` reads.
fn columns_fit(path: &Path, meta: &DatasetMeta, mapping: &SideMapping) -> Result<(), ApiError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ApiError::NotFound(format!("no dataset {:?}", meta.id)),
        _ => ApiError::internal_at(path, e),
    })?;
    let reader = arrow_ipc::reader::FileReader::try_new(io::BufReader::new(file), None)
        .map_err(|e| ApiError::internal_at(path, e))?;
    let mut table = Table::empty(meta.name.clone());
    table.schema = recon_core::input::stored_ipc_schema(&reader);
    Side::from_table(&table, mapping)
        .map(drop)
        .map_err(input_error)
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.raw);
        let _ = fs::remove_dir_all(&self.build);
    }
}

fn read_meta(dir: &Path) -> Option<DatasetMeta> {
    let bytes = fs::read(dir.join("meta.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Maps a recon-core input error: disk trouble is ours (500), the rest is the content's (422).
fn input_error(e: InputError) -> ApiError {
    match e {
        InputError::Io { .. } => ApiError::internal(e),
        other => ApiError::Unprocessable(other.to_string()),
    }
}

/// Removes scratch directories of dead instances (judged by their leases in
/// `leases`), and ownerless ones older than an hour.
fn sweep_tmp(tmp: &Path, leases: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let owner: Option<Owner> = fs::read(path.join("owner.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let stale = match owner {
            Some(o) => o.is_abandoned(leases),
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > ORPHAN_AGE),
        };
        if stale {
            tracing::info!(path = %path.display(), "sweeping scratch left by a dead instance");
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            if let Err(e) = removed {
                tracing::warn!(path = %path.display(), error = %e, "could not sweep scratch");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registered owner of `dir` and its lease (keep it to stay live).
    fn owner(dir: &Path) -> (Owner, crate::owner::Lease) {
        Owner::register(&crate::owner::leases_dir(dir)).unwrap()
    }

    #[test]
    fn dead_instance_scratch_is_swept_and_live_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (dead, dead_lease) = owner(dir.path());
        let (live, _live_lease) = owner(dir.path());
        let a = DatasetStore::open(dir.path(), &dead, 4096, 100).unwrap();
        fs::write(a.scratch().join("x.upload"), b"half").unwrap();
        // The dead one crashed: its lease is released, its scratch left.
        dead.unregister();
        drop(dead_lease);
        let b = DatasetStore::open(dir.path(), &live, 4096, 100).unwrap();
        assert!(!a.scratch().exists(), "dead scratch swept");
        assert!(b.scratch().exists());
        let (third, _third_lease) = owner(dir.path());
        let again = DatasetStore::open(dir.path(), &third, 4096, 100).unwrap();
        assert!(b.scratch().exists(), "live scratch kept");
        assert!(again.list().is_empty());
    }

    /// Hands out at most 1000 bytes per read, so blocks fill over many reads.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1000).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn streamed_blocks_are_written_and_hashed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = DatasetStore::open(dir.path(), &owner(dir.path()).0, 4096, 1 << 30).unwrap();
        // Several full blocks and a partial one, every byte position distinct mod 251.
        let body: Vec<u8> = (0..BLOCK * 3 + 12_345).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("raw");
        let (bytes, sha256) = s.stream_to_file(&mut Trickle(&body), &path).unwrap();
        assert_eq!(bytes, body.len() as u64);
        assert_eq!(sha256, hex::encode(Sha256::digest(&body)));
        assert!(fs::read(&path).unwrap() == body);

        let small =
            DatasetStore::open(dir.path(), &owner(dir.path()).0, 4096, BLOCK as u64).unwrap();
        let err = small
            .stream_to_file(&mut Trickle(&body), &path)
            .unwrap_err();
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn invalid_ids_never_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = DatasetStore::open(dir.path(), &owner(dir.path()).0, 4096, 100).unwrap();
        for id in ["..", "../tmp", "a/b"] {
            assert_eq!(s.get(id).unwrap_err().status(), 404);
            assert_eq!(s.delete(id).unwrap_err().status(), 404);
        }
    }
}
