//! Reconciliation jobs: persisted state, a bounded pool, waiting, and recovery.
//!
//! Layout under the data directory:
//! ```text
//! jobs/{id}/job.json       state, progress, timings, dataset ids, rules sha256 (atomic writes)
//! jobs/{id}/rules.toml     the rules the job runs with
//! jobs/{id}/results.csv    every result row (written to a temp file, renamed when complete)
//! jobs/{id}/summary.json   counts and totals (likewise)
//! jobs/{id}/rejects_left.csv, rejects_right.csv  rows each side quarantined (likewise)
//! jobs/{id}/results.parquet the same rows as Parquet, written after the job's end
//! ```
//! Jobs run on `job_threads` threads of their own (`recon-job-N`, fed from a
//! queue), never on a request thread; a job's parallel work (loading,
//! matching, writing) runs on rayon's global pool. A job is never a rayon task
//! itself, so a job waiting in a `rayon::join` cannot pick up and run another
//! whole job on its stack (which made one job's latency include another's and
//! held more jobs' data at once than `job_threads`).
//! A succeeded job's `results.parquet` is written after its end is committed
//! and its waiters woken, by one background thread (`recon-parquet`, at the
//! lowest CPU priority on Linux) so that it takes no job thread from the next
//! job. Its queue is short (`PARQUET_QUEUE`): when it is full the job's own job
//! thread writes the file, so the jobs' data waiting for it stay bounded.
//! `job.json` says `pending`, then `ready` or `failed`. A graceful stop starts
//! no queued job, then waits for the running jobs and these writes (within the
//! shutdown timeout, see [`Jobs::finish_running`] and
//! [`Jobs::finish_parquet_writes`]), then marks what is left interrupted
//! ([`Jobs::interrupt_own_unfinished`]: never a job whose end is being
//! committed, and a job it gave up commits nothing afterwards). A Parquet
//! write cut short by a crash or that timeout stays `pending` until another
//! instance judges its writer gone (below) and marks it `failed`.
//! Every read of a job's state comes from `job.json`, so a replica sharing the
//! data directory sees the same jobs. A job left `queued` or `running` by an
//! instance that is gone is marked `failed` with the error `interrupted`; its
//! results, never renamed into place, are not served.
//!
//! Abandoned work is judged by one rule (see `Judge`), applied by every
//! instance to every other instance's unfinished job: when it starts (to all
//! of them), whenever it reads one for an answer (`get`, `list`, waits; the
//! owner of a job on this host costs one non-blocking `flock` of its lease),
//! and in a background sweep (`recon-job-sweep`, every `SWEEP_EVERY`) that
//! ends the jobs nobody reads. A job whose owner is on this host is abandoned
//! at once when its lease is free (see [`crate::owner`]), and never while the
//! lease is held; a job of another host once its `job.json` has not changed
//! for `FOREIGN_STALE`. An instance never judges its own jobs. Two instances
//! judging one job at once both write the same end, atomically.
//!
//! Durability, with as few fsyncs on a request's path as that allows: a job is
//! queued with its files written but not yet fsynced, and made durable before
//! an answer shows it unfinished (202). Its end takes two rounds of fsyncs
//! (see `commit_end`): results, rules, directories and the final record under
//! a temporary name all at once, then the record's rename. Only then is a
//! waiting request woken, so an answer never shows an end that a crash could
//! undo, and a record showing the end never outlives the results it names.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use recon_core::mapping::SideMapping;
use recon_core::outcome::SideName;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::durable::{self, Staged};
use crate::error::ApiError;
use crate::ids;
use crate::owner::{Liveness, Owner};
use crate::reconcile;
use crate::store::{DatasetMeta, DatasetStore};

/// A job's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, waiting for a job thread.
    Queued,
    /// Running now.
    Running,
    /// Finished; results and summary are stored.
    Succeeded,
    /// Finished without results; `error` says why.
    Failed,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }

    /// The state a name ([`JobState::as_str`]) gives, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }
}

/// Where a succeeded job's `results.parquet` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParquetState {
    /// Waiting to be written, or being written, just after the job succeeded.
    Pending,
    /// Written and served.
    Ready,
    /// Not written (a write error, or the process died first).
    Failed,
}

/// Records processed of records to process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Records processed so far.
    pub done: u64,
    /// Records to process (left plus right); 0 until known.
    pub total: u64,
}

/// A job as `job.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id.
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// The left dataset's id.
    pub left: String,
    /// The right dataset's id.
    pub right: String,
    /// SHA-256 of the rules text.
    pub rules_sha256: String,
    /// Records done of total.
    pub progress: Progress,
    /// Why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was accepted (RFC 3339, microseconds; later than every job
    /// accepted before it by this process).
    pub created: String,
    /// When it started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Run time in milliseconds, once ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Whether `results.parquet` is written yet, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet: Option<ParquetState>,
    /// Milliseconds per stage, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<reconcile::Stages>,
    /// The summary, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    /// Which instance runs it (not shown by the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

impl JobRecord {
    /// The API's view: the record without its owner, with links (`results`
    /// left out for a failed job, which will never have any).
    pub fn to_api_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.remove("owner");
            let base = format!("/v1/reconciliations/{}", self.id);
            let mut links = serde_json::json!({
                "self": base,
                "results": format!("{base}/results"),
                "events": format!("{base}/events"),
            });
            if self.state == JobState::Failed
                && let Some(links) = links.as_object_mut()
            {
                links.remove("results");
            }
            obj.insert("links".to_owned(), links);
        }
        v
    }
}

/// Counts jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    /// Waiting.
    pub queued: usize,
    /// Running.
    pub running: usize,
    /// Succeeded.
    pub succeeded: usize,
    /// Failed.
    pub failed: usize,
}

/// A job whose owner cannot be checked from here (another host, e.g. a
/// re-created container) is judged abandoned once its `job.json` has not
/// changed for this long; a live job rewrites it several times per pass. So
/// is a Parquet write left `pending` that long (one takes seconds to minutes).
const FOREIGN_STALE: Duration = Duration::from_secs(3600);

/// How often the background sweep judges the jobs of other instances that
/// nobody reads (see [`Judge::sweep`]). Reads judge their job at once, so this
/// bounds only how long an unread job of a dead instance on this host (and
/// the counts of `/debug/status`, and an event stream opened before its owner
/// died) shows it unfinished. A pass lists `jobs/` and reads only the records
/// of jobs not ended for good, so it costs little more than the listing.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Removes the staged files (`.NAME.ID.tmp`, see [`durable`]) left in a job
/// directory by a writer that died before committing them. One another
/// instance removed first is no error: two may judge a job at once.
fn remove_staged(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a dead writer's staged file")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a staged file")
                }
            }
        }
    }
}

/// What start-up does with a `what` record that does not parse: logs it,
/// since the API cannot list or serve it (it answers 404) and its other files
/// stay on disk for an operator to look at.
pub(crate) fn unreadable(what: &str) -> impl FnMut(&Path, &serde_json::Error) + '_ {
    move |path, e| {
        tracing::error!(path = %path.display(), error = %e, "unreadable {what} record: not listed or served until repaired");
    }
}

/// Marks a job that will never end by itself `failed` with `interrupted`;
/// returns the record as marked (also when it could not be written: that is
/// logged, and the next judge of the job tries again). `recon_jobs_total`
/// counts the failure once, when the mark is written, not at every retry.
fn mark_interrupted(dir: &Path, mut rec: JobRecord) -> JobRecord {
    rec.state = JobState::Failed;
    rec.error = Some("interrupted".to_owned());
    rec.finished = Some(durable::now_rfc3339());
    match write_record(dir, &rec) {
        Ok(()) => metrics::counter!("recon_jobs_total", "status" => "failed").increment(1),
        Err(e) => tracing::error!(job = %rec.id, error = %e, "could not mark job interrupted"),
    }
    rec
}

/// Whether a record can still change by itself: a job not ended, or a
/// succeeded one whose Parquet write is `pending`.
fn unsettled(rec: &JobRecord) -> bool {
    !rec.state.is_terminal() || rec.parquet == Some(ParquetState::Pending)
}

/// What [`Judge::verdict`] makes of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nothing to do: settled, this instance's own, or its owner may still
    /// be at work.
    Leave,
    /// Unfinished, and its owner is gone: mark it `interrupted`.
    Interrupt,
    /// Succeeded with its Parquet write `pending`, and the writer is gone:
    /// mark the write `failed`.
    FailParquet,
}

/// What one pass of judgement has learnt of owners, so each is checked once
/// (one lease file lock per dead or live instance, not per job).
type Seen = HashMap<Owner, Liveness>;

/// Judges the jobs of other instances: whether their owner is gone, and what
/// that makes of the job. The one rule, used by start-up recovery
/// ([`Jobs::open`]), by every read of a record for an answer and by the
/// background sweep.
///
/// A job is judged abandoned when it has no owner; when its owner is
/// [`Liveness::Gone`]; or when its owner's liveness is
/// [`Liveness::Unknown`] (another host, say) and its `job.json` has not
/// changed for [`FOREIGN_STALE`]. A job whose owner is
/// [`Liveness::Alive`] (its lease held on this host) is never judged
/// abandoned, however long it has been quiet, and neither is a job of this
/// instance: it knows its own.
#[derive(Debug, Clone)]
struct Judge {
    /// The `jobs/` directory.
    dir: PathBuf,
    /// The data directory's lease files.
    leases: PathBuf,
    /// This instance's id.
    me: String,
}

impl Judge {
    /// What to do with `rec`, just read from `dir/job.json`. Reads nothing
    /// for a settled record or one of this instance; otherwise checks its
    /// owner's lease (unless `seen` knows it), and for an owner that cannot
    /// be checked the record's age, after the read, so a write the owner made
    /// since keeps its job.
    fn verdict(&self, dir: &Path, rec: &JobRecord, seen: &mut Seen) -> Verdict {
        if !unsettled(rec) || rec.owner.as_ref().is_some_and(|o| o.instance == self.me) {
            return Verdict::Leave;
        }
        let abandoned = match &rec.owner {
            None => true,
            Some(owner) => {
                let liveness = match seen.get(owner) {
                    Some(known) => *known,
                    None => {
                        let checked = owner.liveness(&self.leases);
                        seen.insert(owner.clone(), checked);
                        checked
                    }
                };
                match liveness {
                    Liveness::Alive => false,
                    Liveness::Gone => true,
                    Liveness::Unknown => untouched_for(dir, FOREIGN_STALE),
                }
            }
        };
        match (abandoned, rec.state.is_terminal()) {
            (false, _) => Verdict::Leave,
            (true, false) => Verdict::Interrupt,
            (true, true) => Verdict::FailParquet,
        }
    }

    /// Judges `rec`, just read from `dir/job.json`, and carries out the
    /// verdict: an abandoned job is marked `interrupted` (a dead writer's
    /// Parquet write `failed`) and the files its writer staged are removed.
    /// Returns the record as it now stands, to answer with.
    ///
    /// Another instance may judge the same job at the same moment: each
    /// write of the record is atomic, both write the same end, and one that
    /// finds the job already ended on disk leaves that end as it is.
    fn settle(&self, dir: &Path, mut rec: JobRecord, seen: &mut Seen) -> JobRecord {
        match self.verdict(dir, &rec, seen) {
            Verdict::Leave => rec,
            Verdict::Interrupt => {
                // The record as it is now: its owner may have ended the job
                // (or written more) since it was read.
                let now = read_record(dir).unwrap_or(rec);
                if now.state.is_terminal() {
                    return now;
                }
                tracing::warn!(job = %now.id, state = now.state.as_str(), "job abandoned by its instance: interrupted");
                let rec = mark_interrupted(dir, now);
                // Results the dead instance was writing, never to be committed.
                remove_staged(dir);
                rec
            }
            Verdict::FailParquet => {
                // The writer may have committed the file (`ready`) since the
                // record was read: that end stands.
                rec = read_record(dir).unwrap_or(rec);
                if rec.parquet != Some(ParquetState::Pending) {
                    return rec;
                }
                tracing::warn!(job = %rec.id, "parquet write abandoned by its instance: failed");
                rec.parquet = Some(ParquetState::Failed);
                if let Err(e) = write_record(dir, &rec) {
                    tracing::error!(job = %rec.id, error = %e, "could not mark parquet write failed");
                }
                // A results.parquet half written when its writer died.
                remove_staged(dir);
                rec
            }
        }
    }

    /// [`Judge::settle`] for a record read by listing `jobs/`: found in the
    /// directory its id names (a record naming no valid id is left as read).
    fn settle_listed(&self, rec: JobRecord, seen: &mut Seen) -> JobRecord {
        if !ids::is_valid(&rec.id) {
            return rec;
        }
        let dir = self.dir.join(&rec.id);
        self.settle(&dir, rec, seen)
    }

    /// Judges every job in `jobs/` but those in `settled`, whose records can
    /// no longer change (see [`unsettled`]); leaves in `settled` the ids of
    /// the jobs now known settled, so the next pass reads only the others.
    /// An unreadable record is skipped (start-up logged it).
    fn sweep(&self, settled: &mut HashSet<String>) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut seen = Seen::new();
        let mut still = HashSet::with_capacity(settled.len());
        for entry in entries.filter_map(Result::ok) {
            let Ok(id) = entry.file_name().into_string() else {
                continue;
            };
            if !ids::is_valid(&id) {
                continue;
            }
            if settled.remove(&id) {
                still.insert(id);
                continue;
            }
            let dir = entry.path();
            let Some(rec) = read_record(&dir) else {
                continue;
            };
            if !unsettled(&self.settle(&dir, rec, &mut seen)) {
                still.insert(id);
            }
        }
        *settled = still;
    }
}

/// The background sweep's thread (`recon-job-sweep`): dropping this stops
/// it and waits for it, so it never outlives its [`Jobs`].
#[derive(Debug)]
struct Sweeper {
    /// Never sent on: dropping it wakes and stops the thread.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the background sweep: `judge` sweeps `jobs/` every `every` until
/// the returned [`Sweeper`] is dropped. A pass that panics is logged, and the
/// next starts afresh.
///
/// # Errors
/// When the thread cannot start.
fn start_sweeper(judge: Judge, every: Duration) -> io::Result<Sweeper> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("recon-job-sweep".to_owned())
        .spawn(move || {
            let mut settled = HashSet::new();
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let _span = tracing::debug_span!("job_sweep").entered();
                if catch_unwind(AssertUnwindSafe(|| judge.sweep(&mut settled))).is_err() {
                    tracing::error!("a sweep of abandoned jobs panicked");
                    settled.clear();
                }
            }
        })?;
    Ok(Sweeper {
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Whether `dir/job.json` was last modified more than `age` ago.
fn untouched_for(dir: &Path, age: Duration) -> bool {
    fs::metadata(dir.join("job.json"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .is_some_and(|elapsed| elapsed > age)
}

/// How often a running job rewrites its progress at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// How many Parquet writes may wait for the background writer besides the one
/// it is doing. Each holds a job's two sides and outcome (hundreds of MB at 1M
/// records), so one: past that a job's own thread writes its file.
const PARQUET_QUEUE: usize = 1;

/// How long a job may run unless [`Jobs::with_time_limit`] says otherwise
/// (`job_timeout`'s default).
const TIME_LIMIT: Duration = Duration::from_secs(3600);

/// The file in a job's directory that asks the job to stop
/// ([`Jobs::cancel`]): a file, so the instance running the job sees a
/// request any replica took.
const CANCEL_FILE: &str = "cancel";

/// How often a running job looks for [`CANCEL_FILE`].
const CANCEL_LOOK_EVERY: Duration = Duration::from_millis(100);

/// The error of a job asked to stop before it started.
const CANCELLED_QUEUED: &str =
    "cancelled: POST /v1/reconciliations/{id}/cancel asked it to stop before it started";

/// The error of a job asked to stop while it ran.
const CANCELLED_RUNNING: &str =
    "cancelled: POST /v1/reconciliations/{id}/cancel asked it to stop while it was matching";

/// A succeeded job's Parquet write: the job's directory and what to write.
type ParquetWork = (PathBuf, reconcile::Deferred);

/// A job's whole run, handed to a job thread.
type Task = Box<dyn FnOnce() + Send>;

/// How a submission's messages name its datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// By id: the client chose stored datasets.
    ById,
    /// By the upload's part and name: `POST /v1/reconcile` stored them for
    /// this request only and never gave their ids.
    AsParts,
}

/// The job runner.
pub struct Jobs {
    dir: PathBuf,
    /// The job threads' queue, and how many there are.
    queue: mpsc::Sender<Task>,
    threads: usize,
    owner: Owner,
    /// Judges other instances' jobs (see [`Judge`]).
    judge: Judge,
    store: Arc<DatasetStore>,
    /// This instance's unfinished jobs; waiters sleep on the condvar.
    local: Arc<(Mutex<Local>, Condvar)>,
    /// The queue of the background Parquet writer (see [`start_parquet_writer`]).
    parquet: SyncSender<ParquetWork>,
    /// The background sweep of abandoned jobs; stops when this is dropped.
    _sweeper: Sweeper,
    /// How long one job may run (see [`Jobs::with_time_limit`]).
    time_limit: Duration,
}

/// How a long-lived reader (an event stream) reads one job's record: this
/// instance's memory first ([`Local::unrecorded`], an end or Parquet state
/// it could not write), else `job.json`, so it says what `GET` says.
#[derive(Debug, Clone)]
pub struct RecordLookup {
    id: String,
    dir: PathBuf,
    local: Arc<(Mutex<Local>, Condvar)>,
}

impl RecordLookup {
    /// The job's record now; `None` once it is gone (deleted).
    pub fn record(&self) -> Option<JobRecord> {
        self.kept().or_else(|| read_record(&self.dir))
    }

    /// The record this instance keeps in memory for the job, if any: an
    /// end or Parquet state it could not write.
    fn kept(&self) -> Option<JobRecord> {
        let local = self.local.0.lock().unwrap_or_else(PoisonError::into_inner);
        local.unrecorded.get(&self.id).cloned()
    }
}

/// The jobs this instance runs, as waiters see them.
#[derive(Debug, Default)]
struct Local {
    /// Bumped whenever one of them ends (after its end is durable) and when
    /// its Parquet file is finished.
    ended: u64,
    /// Ids of those not ended yet: their `job.json` may show an end before it
    /// is durable, so a waiter trusts it only once the id has left this set.
    unfinished: HashSet<String>,
    /// Succeeded jobs whose `results.parquet` is not finished yet.
    parquet_pending: usize,
    /// Jobs that ended but whose end could not be written (a full disk, a
    /// directory made read-only): their last record, which `get` serves
    /// instead of the stale `running` on disk, so waiters and clients see
    /// the failure. Lost with the process; the next start marks them
    /// `interrupted`.
    unrecorded: HashMap<String, JobRecord>,
    /// Set when a stop has begun ([`Jobs::stop_starting`]): job threads take
    /// no queued job any more, so the stop's wait for Parquet writes is not
    /// spent running new jobs that would not be waited for.
    stopping: bool,
    /// Jobs whose end is being committed right now: a stop waits for them
    /// (they are one fsync away) rather than mark them interrupted.
    committing: HashSet<String>,
    /// Jobs a stop gave up and marked interrupted
    /// ([`Jobs::interrupt_own_unfinished`]): one whose thread finishes
    /// afterwards commits nothing, so a success never lands over the mark
    /// (nor the mark over a success).
    given_up: HashSet<String>,
}

/// Takes a job out of [`Local::committing`] and wakes a stop waiting for it,
/// however the commit ends.
struct CommitGuard<'a> {
    local: &'a (Mutex<Local>, Condvar),
    id: String,
}

impl Drop for CommitGuard<'_> {
    fn drop(&mut self) {
        let (lock, cvar) = self.local;
        lock.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .committing
            .remove(&self.id);
        cvar.notify_all();
    }
}

/// How long a stop waits, past its deadline, for ends being committed when
/// it gives up the unfinished jobs: a commit is a few fsyncs. One stuck
/// longer (a hung disk) is left unmarked, and the stop keeps its lease
/// ([`Jobs::committing`]), so the next instance judges that job once the
/// process is gone.
const COMMIT_GRACE: Duration = Duration::from_secs(2);

/// Takes a job out of [`Local::unfinished`] and wakes the waiters, however
/// the job's thread ends (normally or by a panic).
struct EndGuard {
    local: Arc<(Mutex<Local>, Condvar)>,
    id: String,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        let (lock, _) = &*self.local;
        lock.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unfinished
            .remove(&self.id);
        wake(&self.local);
    }
}

/// Holds [`Local`] once `done` says so or `deadline` has passed, sleeping on
/// its condvar meanwhile (everything `done` reads is changed with a wake).
fn wait_until(
    local: &(Mutex<Local>, Condvar),
    deadline: Instant,
    done: impl Fn(&Local) -> bool,
) -> std::sync::MutexGuard<'_, Local> {
    let (lock, cvar) = local;
    let mut l = lock.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let now = Instant::now();
        if done(&l) || now >= deadline {
            return l;
        }
        l = cvar
            .wait_timeout(l, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Tells the waiters something ended (a job, or its Parquet write).
fn wake(local: &(Mutex<Local>, Condvar)) {
    let (lock, cvar) = local;
    lock.lock().unwrap_or_else(PoisonError::into_inner).ended += 1;
    cvar.notify_all();
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("dir", &self.dir)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Jobs {
    /// Opens the job directory, marks abandoned jobs failed (`interrupted`),
    /// starts a pool of `threads`, the background Parquet writer and the
    /// background sweep of abandoned jobs (every 30 s).
    ///
    /// # Errors
    /// When the directory cannot be created or a thread cannot start.
    pub fn open(
        data_dir: &Path,
        owner: Owner,
        store: Arc<DatasetStore>,
        threads: usize,
    ) -> io::Result<Self> {
        Self::open_with_sweep(data_dir, owner, store, threads, SWEEP_EVERY)
    }

    /// [`Jobs::open`] with the background sweep every `sweep_every` instead
    /// of every 30 s: for tests, which cannot wait that long.
    ///
    /// # Errors
    /// When the directory cannot be created or a thread cannot start.
    #[doc(hidden)]
    pub fn open_with_sweep(
        data_dir: &Path,
        owner: Owner,
        store: Arc<DatasetStore>,
        threads: usize,
        sweep_every: Duration,
    ) -> io::Result<Self> {
        let dir = data_dir.join("jobs");
        durable::create_dir_all(&dir)?;
        let threads = threads.max(1);
        let queue = start_job_threads(threads)?;
        let local = Arc::new((Mutex::new(Local::default()), Condvar::new()));
        // Detached: it ends once every sender is gone (see `start_parquet_writer`).
        let (parquet, _writer) = start_parquet_writer(Arc::clone(&local), PARQUET_QUEUE)?;
        let judge = Judge {
            dir: dir.clone(),
            leases: crate::owner::leases_dir(data_dir),
            me: owner.instance.clone(),
        };
        // Start-up recovery runs before the sweep starts, so the two never
        // judge one job at once within this instance.
        recover(&judge);
        let sweeper = start_sweeper(judge.clone(), sweep_every)?;
        Ok(Self {
            dir,
            queue,
            threads,
            owner,
            judge,
            store,
            local,
            parquet,
            _sweeper: sweeper,
            time_limit: TIME_LIMIT,
        })
    }

    /// Jobs submitted from now on may run for `limit` (`job_timeout`; one
    /// hour unless set): counted from the job's start, its time in the
    /// queue not included. Past it the matcher stops where it is and the job
    /// fails saying so; a job that has finished matching by then still
    /// writes its results.
    #[must_use]
    pub fn with_time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    fn job_dir(&self, id: &str) -> Result<PathBuf, ApiError> {
        if !ids::is_valid(id) {
            return Err(ApiError::NotFound(format!("no reconciliation {id:?}")));
        }
        Ok(self.dir.join(id))
    }

    /// Writes a new job's rules and record into `dir` (made for it) and
    /// publishes it under its creation stamp.
    ///
    /// # Errors
    /// 500 when either cannot be written.
    fn record_new(
        &self,
        id: &str,
        dir: &Path,
        left: &str,
        right: &str,
        rules: &str,
    ) -> Result<JobRecord, ApiError> {
        // Written, not yet fsynced: see `sync_accepted`.
        durable::write_atomic_unsynced(&dir.join("rules.toml"), rules.as_bytes())
            .map_err(ApiError::internal)?;
        // Stamped and made visible under one lock: jobs appear in `created`
        // order (see `durable::publish_stamped`).
        durable::publish_stamped(|created| -> Result<JobRecord, ApiError> {
            let rec = JobRecord {
                id: id.to_owned(),
                state: JobState::Queued,
                left: left.to_owned(),
                right: right.to_owned(),
                rules_sha256: hex::encode(Sha256::digest(rules.as_bytes())),
                progress: Progress::default(),
                error: None,
                created,
                started: None,
                finished: None,
                duration_ms: None,
                parquet: None,
                stages: None,
                summary: None,
                owner: Some(self.owner.clone()),
            };
            write_record_with(dir, &rec, Durability::Atomic).map_err(ApiError::internal)?;
            Ok(rec)
        })
    }

    /// Checks a job's rules and the columns each side maps against the two
    /// datasets' schemas (`columns` reads a side's schema), so a job never starts
    /// only to fail on a column name; values are checked by the job, which
    /// reads every row. [`JobStore::submit`] checks stored datasets with it;
    /// `POST /v1/reconcile` checks its files before it publishes them.
    ///
    /// # Errors
    /// 422 when the rules are invalid or a mapped column or reading option
    /// does not fit its dataset; 500 when a schema cannot be read.
    pub fn check(
        &self,
        metas: [&DatasetMeta; 2],
        rules: &str,
        naming: Naming,
        columns: impl Fn(SideName, &SideMapping) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let parsed = reconcile::parse_rules(rules).map_err(ApiError::Unprocessable)?;
        for (side, meta) in [SideName::Left, SideName::Right].into_iter().zip(metas) {
            let (name, id) = (side.as_str(), &meta.id);
            let called = match naming {
                Naming::ById => format!("dataset {id}"),
                Naming::AsParts => format!("the `{name}` file ({:?})", meta.name),
            };
            meta.check_read_options(parsed.mapping(side), &called)
                .map_err(|e| ApiError::Unprocessable(format!("[{name}]: {e}")))?;
            columns(side, parsed.mapping(side)).map_err(|e| match e {
                ApiError::Unprocessable(msg) => ApiError::Unprocessable(format!("[{name}]: {msg}")),
                ApiError::NotFound(_) => {
                    ApiError::Unprocessable(format!("{name} dataset {id:?} does not exist"))
                }
                other => other,
            })?;
        }
        Ok(())
    }

    /// Accepts a job over two stored datasets, queues it, and waits up to
    /// `wait` for it to end. The record returned is durable whatever state it
    /// shows: an ended job's results and end were committed before it ends the
    /// wait, and an unfinished job's acceptance is fsynced before this returns.
    ///
    /// # Errors
    /// 422 when a dataset is unknown or the rules are invalid; 500 for disk errors.
    pub fn submit(
        &self,
        left: &str,
        right: &str,
        rules: &str,
        wait: Duration,
        naming: Naming,
    ) -> Result<JobRecord, ApiError> {
        let meta = |side: &str, id: &str| {
            self.store.get(id).map_err(|_| {
                ApiError::Unprocessable(format!("{side} dataset {id:?} does not exist"))
            })
        };
        let metas = [meta("left", left)?, meta("right", right)?];
        let [l, r] = &metas;
        self.check([l, r], rules, naming, |side, mapping| match side {
            SideName::Left => self.store.check_columns(l, mapping),
            SideName::Right => self.store.check_columns(r, mapping),
        })?;
        let id = ids::new_id();
        let dir = self.dir.join(&id);
        fs::create_dir(&dir).map_err(ApiError::internal)?;
        let rec = self.record_new(&id, &dir, left, right, rules);
        if rec.is_err() {
            // Refused (a full disk, say): no empty job directory is left.
            let _ = fs::remove_dir_all(&dir);
        }
        let rec = rec?;
        self.local
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unfinished
            .insert(id.clone());
        let guard = EndGuard {
            local: Arc::clone(&self.local),
            id: id.clone(),
        };
        let local = Arc::clone(&self.local);
        let store = Arc::clone(&self.store);
        let run_rec = rec.clone();
        let rules = rules.to_owned();
        let jobs_dir = self.dir.clone();
        let job_dir = dir.clone();
        let parquet = self.parquet.clone();
        let limit = self.time_limit;
        let task: Task = Box::new(move || {
            let stopping = local
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .stopping;
            if stopping {
                // Left `queued` on disk: the stop marks it interrupted.
                tracing::info!(job = %run_rec.id, "stopping: queued job not started");
                return;
            }
            let deferred = run(&jobs_dir, &job_dir, run_rec, &store, &rules, &local, limit);
            if deferred.is_some() {
                // Counted before the job's end is seen, so a stop that waits
                // for Parquet writes cannot miss this one.
                local
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .parquet_pending += 1;
            }
            drop(guard);
            if let Some(d) = deferred {
                queue_parquet(&parquet, job_dir, d, &local);
            }
        });
        // The job threads live as long as `self`: a refused task means they
        // are gone, which is a fault of this process.
        self.queue
            .send(task)
            .map_err(|_| ApiError::internal("the job threads are gone"))?;
        tracing::info!(job = %id, left, right, "reconciliation queued");
        let rec = if wait.is_zero() {
            rec
        } else {
            self.wait(&id, wait)?
        };
        if !rec.state.is_terminal() {
            sync_accepted(&self.dir, &dir).map_err(ApiError::internal)?;
        }
        Ok(rec)
    }

    /// A job's record. Another instance's unfinished job whose owner is
    /// gone is marked `interrupted` first (see the module docs), so the answer
    /// shows its end.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown or invalid id.
    pub fn get(&self, id: &str) -> Result<JobRecord, ApiError> {
        self.get_with_dir(id).map(|(rec, _)| rec)
    }

    /// [`Jobs::get`] and the job's directory, from one read of its record
    /// (an unreadable `job.json` is a job the API does not know, on every
    /// route).
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown or invalid id.
    pub fn get_with_dir(&self, id: &str) -> Result<(JobRecord, PathBuf), ApiError> {
        self.get_with_lookup(id)
            .map(|(rec, lookup)| (rec, lookup.dir))
    }

    /// [`Jobs::get`], and how to read the job's record again later
    /// ([`RecordLookup`]).
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown or invalid id.
    pub fn get_with_lookup(&self, id: &str) -> Result<(JobRecord, RecordLookup), ApiError> {
        let lookup = RecordLookup {
            id: id.to_owned(),
            dir: self.job_dir(id)?,
            local: Arc::clone(&self.local),
        };
        let rec = match lookup.kept() {
            Some(rec) => rec,
            None => {
                let rec = read_record(&lookup.dir)
                    .ok_or_else(|| ApiError::NotFound(format!("no reconciliation {id:?}")))?;
                self.judge.settle(&lookup.dir, rec, &mut Seen::new())
            }
        };
        Ok((rec, lookup))
    }

    /// Asks job `id` to stop, then waits up to `wait` for it to end; returns
    /// its record. A queued job fails without starting; a running one stops
    /// at the matcher's next poll (within milliseconds; at the start of
    /// matching when it is still loading) and fails, keeping no results. A
    /// job already writing its results ends as it would have. Works for any
    /// replica's job: the request is a file in the job's directory, which
    /// the running instance looks for.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown id, [`ApiError::Conflict`] when
    /// the job has already ended, and an internal error when the request
    /// cannot be written.
    pub fn cancel(&self, id: &str, wait: Duration) -> Result<JobRecord, ApiError> {
        let (rec, dir) = self.get_with_dir(id)?;
        if rec.state.is_terminal() {
            return Err(ApiError::Conflict(format!(
                "reconciliation {id} has already ended: it {}",
                rec.state.as_str()
            )));
        }
        fs::write(dir.join(CANCEL_FILE), b"").map_err(ApiError::internal)?;
        tracing::info!(job = %id, state = rec.state.as_str(), "reconciliation asked to stop");
        if wait.is_zero() {
            Ok(rec)
        } else {
            self.wait(id, wait)
        }
    }

    /// Waits up to `timeout` for a job to end; returns its record either way.
    /// A job of this instance is seen ended only once its end is durable.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown id.
    pub fn wait(&self, id: &str, timeout: Duration) -> Result<JobRecord, ApiError> {
        self.watch(id, timeout, |rec| rec.state.is_terminal())
    }

    /// Waits until every `results.parquet` this instance owes is written, or
    /// until `deadline`; returns how many are still unwritten (0 when all are).
    /// A graceful stop calls it once requests are drained, so the Parquet
    /// results of jobs that succeeded just before survive the restart.
    pub fn finish_parquet_writes(&self, deadline: Instant) -> usize {
        wait_until(&self.local, deadline, |l| l.parquet_pending == 0).parquet_pending
    }

    /// At the start of a stop, once no request is served any more: the job
    /// threads start no queued job after the ones they are running (those
    /// left queued are marked `interrupted` by
    /// [`Jobs::interrupt_own_unfinished`]).
    pub fn stop_starting(&self) {
        self.local
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stopping = true;
    }

    /// During a stop, once no queued job starts ([`Jobs::stop_starting`]):
    /// waits until every job this instance is running has ended (its end
    /// committed), or until `deadline`; returns how many have not.
    pub fn finish_running(&self, deadline: Instant) -> usize {
        wait_until(&self.local, deadline, |l| l.unfinished.is_empty())
            .unfinished
            .len()
    }

    /// At the end of a stop: marks this instance's jobs still `queued` or
    /// `running` failed with `interrupted` (they will not finish; a client
    /// resubmits them) and returns their ids. Without this a replica on
    /// another host would leave them `running` for an hour.
    ///
    /// A job whose end is being committed is waited for (up to
    /// [`COMMIT_GRACE`]) and keeps its end; every other unfinished job is
    /// given up first, so its thread, should it go on before the process
    /// exits, writes nothing over the mark (no progress, no end). A job whose
    /// end this instance could not write gets that end, not `interrupted`.
    pub fn interrupt_own_unfinished(&self) -> Vec<String> {
        self.interrupt_own_unfinished_within(COMMIT_GRACE)
    }

    /// How many jobs' ends are being committed now: a stop that leaves one
    /// so keeps its lease for the next instance to judge it.
    pub fn committing(&self) -> usize {
        self.local
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .committing
            .len()
    }

    /// [`Jobs::interrupt_own_unfinished`], waiting up to `commit_wait` for
    /// ends being committed.
    fn interrupt_own_unfinished_within(&self, commit_wait: Duration) -> Vec<String> {
        let (still_committing, mut unrecorded) = {
            let deadline = Instant::now() + commit_wait;
            let mut local = wait_until(&self.local, deadline, |l| l.committing.is_empty());
            let unfinished: Vec<String> = local
                .unfinished
                .iter()
                .filter(|id| !local.committing.contains(*id))
                .cloned()
                .collect();
            local.given_up.extend(unfinished);
            (local.committing.clone(), local.unrecorded.clone())
        };
        let mut ids = Vec::new();
        let records: Vec<JobRecord> = durable::read_records(&self.dir, "job.json", |_, _| {});
        for rec in records {
            let mine = rec
                .owner
                .as_ref()
                .is_some_and(|o| o.instance == self.owner.instance);
            if !mine || rec.state.is_terminal() || still_committing.contains(&rec.id) {
                continue;
            }
            let dir = self.dir.join(&rec.id);
            // Its real end, already counted: one more try at writing it.
            if let Some(end) = unrecorded.remove(&rec.id) {
                if let Err(e) = write_record(&dir, &end) {
                    tracing::error!(job = %rec.id, error = %e, "could not record job failure");
                }
                continue;
            }
            ids.push(rec.id.clone());
            mark_interrupted(&dir, rec);
        }
        ids
    }

    /// Waits up to `timeout` while a succeeded job's `results.parquet` is
    /// still being written; returns its record either way.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown id.
    pub fn wait_parquet(&self, id: &str, timeout: Duration) -> Result<JobRecord, ApiError> {
        self.watch(id, timeout, |rec| {
            rec.parquet != Some(ParquetState::Pending)
        })
    }

    /// Re-reads a job's record until `settled` says so or `timeout` passes.
    /// Woken when a job of this instance ends or finishes its Parquet file; a
    /// job of another replica is polled every 100 ms, and judged on each read
    /// like [`Jobs::get`], so a wait on a dead replica's job ends. A record of this
    /// instance's job is not trusted while its end is being committed (it may
    /// show an end a crash would undo): past the deadline it is waited for,
    /// being one fsync away.
    fn watch(
        &self,
        id: &str,
        timeout: Duration,
        settled: impl Fn(&JobRecord) -> bool,
    ) -> Result<JobRecord, ApiError> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.local;
        loop {
            let (seen, committing) = {
                let local = lock.lock().unwrap_or_else(PoisonError::into_inner);
                (local.ended, local.unfinished.contains(id))
            };
            let rec = self.get(id)?;
            if !committing && settled(&rec) {
                return Ok(rec);
            }
            let now = Instant::now();
            if now >= deadline && !(committing && rec.state.is_terminal()) {
                return Ok(rec);
            }
            let wait = deadline
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            let local = lock.lock().unwrap_or_else(PoisonError::into_inner);
            if local.ended == seen {
                let _ = cvar.wait_timeout(local, wait);
            }
        }
    }

    /// Every job, oldest first. Other instances' unfinished jobs whose owners
    /// are gone are marked `interrupted` first (see the module docs): each owner's
    /// lease is checked once.
    pub fn list(&self) -> Vec<JobRecord> {
        let mut out = self.settled_records();
        durable::sort_by_creation(&mut out, |r| (&r.created, &r.id));
        out
    }

    /// A queued or running job (as [`Jobs::list`] sees it) that names
    /// dataset `id` on either side, if any.
    pub fn unfinished_naming(&self, id: &str) -> Option<JobRecord> {
        self.settled_records()
            .into_iter()
            .find(|j| !j.state.is_terminal() && (j.left == id || j.right == id))
    }

    /// Jobs by state, as [`Jobs::list`] sees them.
    pub fn counts(&self) -> JobCounts {
        let mut c = JobCounts::default();
        for rec in self.settled_records() {
            match rec.state {
                JobState::Queued => c.queued += 1,
                JobState::Running => c.running += 1,
                JobState::Succeeded => c.succeeded += 1,
                JobState::Failed => c.failed += 1,
            }
        }
        c
    }

    /// Every job's record as [`Jobs::get`] serves it, in no order: read from
    /// disk and judged, except the ends this instance could not write
    /// ([`Local::unrecorded`]), which replace their stale record on disk (or
    /// stand in for one that cannot be read).
    fn settled_records(&self) -> Vec<JobRecord> {
        let mut unrecorded = self
            .local
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unrecorded
            .clone();
        let records: Vec<JobRecord> = durable::read_records(&self.dir, "job.json", |_, _| {});
        let mut seen = Seen::new();
        let mut out: Vec<JobRecord> = records
            .into_iter()
            .map(|rec| match unrecorded.remove(&rec.id) {
                Some(kept) => kept,
                None => self.judge.settle_listed(rec, &mut seen),
            })
            .collect();
        out.extend(unrecorded.into_values());
        out
    }
}

/// Start-up recovery: marks jobs of dead instances failed with
/// `interrupted`, and their Parquet writes left `pending` failed; removes the
/// files either was writing (staged `.NAME.ID.tmp` files, never committed).
/// Logs each record that does not parse.
fn recover(judge: &Judge) {
    let records: Vec<JobRecord> = durable::read_records(&judge.dir, "job.json", unreadable("job"));
    let mut seen = Seen::new();
    for rec in records {
        judge.settle_listed(rec, &mut seen);
    }
}

/// Reads `dir/job.json`.
pub fn read_record(dir: &Path) -> Option<JobRecord> {
    let bytes = fs::read(dir.join("job.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// How far a `job.json` write must get before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Atomic and fsynced: accepted and final states.
    Synced,
    /// Atomic only: start and progress, worthless after a crash (the job is
    /// then `interrupted` whatever it said).
    Atomic,
}

fn write_record(dir: &Path, rec: &JobRecord) -> io::Result<()> {
    write_record_with(dir, rec, Durability::Synced)
}

fn write_record_with(dir: &Path, rec: &JobRecord, durability: Durability) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(rec).map_err(io::Error::other)?;
    let path = dir.join("job.json");
    match durability {
        Durability::Synced => durable::write_atomic(&path, &json),
        Durability::Atomic => durable::write_atomic_unsynced(&path, &json),
    }
}

/// Makes an accepted job durable: its rules and record fsynced, its directory
/// and the entry naming it in `jobs/`.
fn sync_accepted(jobs_dir: &Path, dir: &Path) -> io::Result<()> {
    durable::sync_file(&dir.join("rules.toml"))?;
    durable::sync_file(&dir.join("job.json"))?;
    durable::sync_dir(dir)?;
    durable::sync_dir(jobs_dir)
}

/// Records a job's end durably, in two rounds of fsyncs. First, at once (the
/// file system can fold them into one journal commit): the result `files`
/// (already in place), the rules, the job's directory, the entry naming it in
/// `jobs/`, and the final record written under a temporary name. Then the
/// record is renamed into place and the directory fsynced again. So a record
/// showing the end survives a crash only with everything it refers to.
fn commit_end(jobs_dir: &Path, dir: &Path, rec: &JobRecord, files: Vec<Staged>) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(rec).map_err(io::Error::other)?;
    let rules = dir.join("rules.toml");
    let mut record = std::thread::scope(|s| {
        let mut syncs = Vec::with_capacity(files.len() + 3);
        for f in &files {
            syncs.push(s.spawn(|| f.sync()));
        }
        syncs.push(s.spawn(|| durable::sync_file(&rules)));
        syncs.push(s.spawn(|| durable::sync_dir(dir)));
        syncs.push(s.spawn(|| durable::sync_dir(jobs_dir)));
        let record = Staged::write(&dir.join("job.json"), &json);
        let record = record.and_then(|r| r.sync().map(|()| r));
        let mut synced = Ok(());
        for h in syncs {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("an fsync panicked")));
            synced = synced.and(r);
        }
        synced.and(record)
    })?;
    record.commit()?;
    durable::sync_dir(dir)
}

/// Starts `threads` job threads taking tasks from one queue; returns its
/// sender. A task that panics is caught (its job's own code already turns a
/// panic into a failed job), so a thread is never lost; the threads end
/// once the sender is dropped.
///
/// # Errors
/// When a thread cannot be started.
fn start_job_threads(threads: usize) -> io::Result<mpsc::Sender<Task>> {
    let (tx, rx) = mpsc::channel::<Task>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..threads {
        let rx = Arc::clone(&rx);
        std::thread::Builder::new()
            .name(format!("recon-job-{i}"))
            .spawn(move || {
                loop {
                    let task = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(task) = task else { break };
                    if catch_unwind(AssertUnwindSafe(task)).is_err() {
                        tracing::error!("a job task panicked outside its job");
                    }
                }
            })?;
    }
    Ok(tx)
}

/// Starts the background Parquet writer: one thread, `recon-parquet`, at the
/// lowest CPU priority, writing each queued job's `results.parquet` in turn
/// (see [`finish_parquet`]) and waking the waiters after each. Its queue holds
/// `capacity` writes besides the one being done; the thread ends once every
/// sender is dropped and the queue is empty. Writes still queued when the
/// process exits (a crash, or a stop past its timeout) are lost: their jobs
/// stay `pending` until another instance marks them `failed` (see [`Judge`]).
///
/// # Errors
/// When the thread cannot start.
fn start_parquet_writer(
    local: Arc<(Mutex<Local>, Condvar)>,
    capacity: usize,
) -> io::Result<(SyncSender<ParquetWork>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel::<ParquetWork>(capacity);
    let writer = std::thread::Builder::new()
        .name("recon-parquet".to_owned())
        .spawn(move || {
            lower_priority();
            for (dir, deferred) in rx {
                let lost = finish_parquet(&dir, deferred);
                parquet_written(&local, lost);
            }
        })?;
    Ok((tx, writer))
}

/// Hands a succeeded job's Parquet write to the background writer or, when
/// its queue is full or the writer is gone, writes it on this thread (then
/// wakes the waiters), so the jobs' data waiting for it stay bounded. Returns
/// whether the write was queued.
fn queue_parquet(
    tx: &SyncSender<ParquetWork>,
    dir: PathBuf,
    deferred: reconcile::Deferred,
    local: &(Mutex<Local>, Condvar),
) -> bool {
    let (why, (dir, deferred)) = match tx.try_send((dir, deferred)) {
        Ok(()) => return true,
        Err(TrySendError::Full(work)) => ("queue full", work),
        Err(TrySendError::Disconnected(work)) => ("writer gone", work),
    };
    tracing::debug!(dir = %dir.display(), why, "writing parquet results on the job thread");
    let lost = finish_parquet(&dir, deferred);
    parquet_written(local, lost);
    false
}

/// Counts a Parquet write done (however it ended) and wakes the waiters.
/// `lost` is the job's record when its Parquet state could not be written:
/// served from memory from now on, as a lost end is.
fn parquet_written(local: &(Mutex<Local>, Condvar), lost: Option<JobRecord>) {
    let (lock, cvar) = local;
    let mut l = lock.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(rec) = lost {
        l.unrecorded.insert(rec.id.clone(), rec);
    }
    l.parquet_pending = l.parquet_pending.saturating_sub(1);
    l.ended += 1;
    cvar.notify_all();
}

/// Lowers the calling thread's CPU priority to the lowest (nice 19), so the
/// Parquet writer only gets CPU time the jobs leave. On Linux
/// `setpriority(PRIO_PROCESS, tid)` applies to that one thread (and threads
/// it starts later). A failure is logged at debug and ignored.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid takes no arguments, touches no memory and cannot fail.
    let tid = unsafe { libc::gettid() };
    let Ok(who) = libc::id_t::try_from(tid) else {
        tracing::debug!(
            tid,
            "could not lower the parquet writer's priority: bad thread id"
        );
        return;
    };
    // SAFETY: setpriority takes plain integers and touches no memory; `who`
    // is this thread's id, so only this thread's nice value changes.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, who, 19) };
    if rc != 0 {
        tracing::debug!(
            error = %io::Error::last_os_error(),
            "could not lower the parquet writer's priority"
        );
    }
}

/// Elsewhere the writer keeps the default priority.
#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Writes the deferred Parquet results and records whether that worked.
/// Returns the job's record when that record could not be written (a full
/// disk): the caller serves it from memory ([`Local::unrecorded`]), so this
/// instance answers `ready` or `failed`, never a `pending` that would last
/// until a restart.
fn finish_parquet(dir: &Path, deferred: reconcile::Deferred) -> Option<JobRecord> {
    let job = dir.file_name().unwrap_or_default().to_string_lossy();
    let _span = tracing::info_span!("parquet", job = %job).entered();
    let state = match catch_unwind(AssertUnwindSafe(|| deferred.write_parquet(dir))) {
        Ok(Ok(())) => ParquetState::Ready,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not write parquet results");
            ParquetState::Failed
        }
        Err(_) => {
            tracing::error!("writing parquet results panicked");
            ParquetState::Failed
        }
    };
    let mut rec = read_record(dir)?;
    rec.parquet = Some(state);
    match write_record(dir, &rec) {
        Ok(()) => None,
        Err(e) => {
            tracing::error!(error = %e, "could not record parquet state");
            Some(rec)
        }
    }
}

/// Writes a running job's record (atomic, not synced) unless a stop gave the
/// job up; `None` when it did. The write holds [`Local`]'s lock, so it lands
/// either before the stop gives the job up (and its mark replaces it) or
/// not at all: never a `running` record over the mark.
fn write_unless_given_up(
    local: &(Mutex<Local>, Condvar),
    dir: &Path,
    rec: &JobRecord,
) -> Option<io::Result<()>> {
    let l = local.0.lock().unwrap_or_else(PoisonError::into_inner);
    if l.given_up.contains(&rec.id) {
        return None;
    }
    let written = write_record_with(dir, rec, Durability::Atomic);
    drop(l);
    Some(written)
}

/// Runs one job on a job thread, recording every state change; returns the
/// Parquet write left to do when the job succeeded. Matching stops once the
/// job has run for `limit`.
fn run(
    jobs_dir: &Path,
    dir: &Path,
    mut rec: JobRecord,
    store: &DatasetStore,
    rules: &str,
    local: &(Mutex<Local>, Condvar),
    limit: Duration,
) -> Option<reconcile::Deferred> {
    let started = Instant::now();
    let deadline = Deadline {
        at: started.checked_add(limit),
        limit,
    };
    // A queued job another replica judged abandoned (queued for over an hour
    // on this host, say) was marked failed on disk: it stays failed rather
    // than running and flipping to another end a client may not expect.
    if let Some(on_disk) = read_record(dir)
        && on_disk.state.is_terminal()
    {
        tracing::warn!(job = %rec.id, state = on_disk.state.as_str(), "job ended elsewhere while queued; not run");
        return None;
    }
    // Asked to stop while queued: it ends failed without starting, through
    // the same commit as any end.
    let cancelled = dir.join(CANCEL_FILE).exists();
    if !cancelled {
        rec.state = JobState::Running;
        rec.started = Some(durable::now_rfc3339());
        match write_unless_given_up(local, dir, &rec) {
            None => return None,
            Some(Err(e)) => {
                tracing::error!(job = %rec.id, error = %e, "could not record job start")
            }
            Some(Ok(())) => {}
        }
    }
    let span = tracing::info_span!("job", id = %rec.id);
    let _enter = span.enter();
    let progress = Mutex::new(Progress::default());
    let result = if cancelled {
        Ok(Err(CANCELLED_QUEUED.to_owned()))
    } else {
        catch_unwind(AssertUnwindSafe(|| {
            execute(dir, &rec, store, rules, &progress, local, deadline)
        }))
    };
    let elapsed = started.elapsed();
    rec.finished = Some(durable::now_rfc3339());
    rec.duration_ms = Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    rec.progress = *progress.lock().unwrap_or_else(PoisonError::into_inner);
    let mut deferred = None;
    let mut files = Vec::new();
    // Counted once the end is committed (a job given up counts nothing).
    let mut records = Vec::new();
    match result {
        Ok(Ok((done, later))) => {
            deferred = Some(later);
            files.extend(done.files);
            rec.parquet = Some(ParquetState::Pending);
            rec.state = JobState::Succeeded;
            rec.progress.done = rec.progress.total;
            records = done.records;
            rec.summary = Some(done.summary);
            rec.stages = Some(done.stages);
        }
        Ok(Err(e)) => {
            rec.state = JobState::Failed;
            tracing::info!(error = %e, "reconciliation failed");
            rec.error = Some(e);
        }
        Err(_) => {
            rec.state = JobState::Failed;
            tracing::error!("reconciliation panicked");
            rec.error = Some("internal error".to_owned());
        }
    }
    // A stop that gave this job up has marked it interrupted: its end is not
    // committed (its staged files go as `files` drops), so neither lands over
    // the other; otherwise the stop waits for the commit.
    let _commit = {
        let mut l = local.0.lock().unwrap_or_else(PoisonError::into_inner);
        if l.given_up.contains(&rec.id) {
            drop(l);
            tracing::warn!(
                state = rec.state.as_str(),
                "ended after the stop gave it up (marked interrupted): its end is not recorded"
            );
            return None;
        }
        l.committing.insert(rec.id.clone());
        CommitGuard {
            local,
            id: rec.id.clone(),
        }
    };
    let committing = Instant::now();
    if let Err(e) = commit_end(jobs_dir, dir, &rec, files) {
        tracing::error!(error = %e, "could not record job end");
        deferred = None;
        rec.state = JobState::Failed;
        rec.error = Some(format!("recording the job's end: {e}"));
        rec.parquet = None;
        rec.summary = None;
        rec.stages = None;
        if let Err(e) = write_record(dir, &rec) {
            tracing::error!(error = %e, "could not record job failure");
            local
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .unrecorded
                .insert(rec.id.clone(), rec.clone());
        }
    }
    metrics::counter!("recon_jobs_total", "status" => rec.state.as_str()).increment(1);
    metrics::histogram!("recon_job_duration_seconds").record(elapsed.as_secs_f64());
    if rec.state == JobState::Succeeded {
        for (status, n) in &records {
            metrics::counter!("recon_records_total", "status" => status.clone()).increment(*n);
        }
        tracing::info!(
            ms = rec.duration_ms,
            stages = ?rec.stages,
            commit_ms = committing.elapsed().as_secs_f64() * 1000.0,
            "reconciliation succeeded"
        );
    }
    deferred
}

/// When a running job is stopped.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    /// `None` past the clock's range: never.
    at: Option<Instant>,
    /// The limit it was counted with, for the message.
    limit: Duration,
}

impl Deadline {
    fn passed(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    /// A job's error once stopped by its deadline.
    fn message(&self) -> String {
        format!(
            "stopped: the job ran past its time limit of {} (job_timeout) while matching; \
             raise RECON_JOB_TIMEOUT to let it finish, or give the rules' passes narrower \
             candidate gates (a reference, a smaller date window or amount tolerance)",
            tuning::units::format_duration(self.limit)
        )
    }
}

/// What a running job tells recon-core: `report(done, total)` as records
/// get their status, and stop once past the deadline or once asked to
/// ([`CANCEL_FILE`], looked for every [`CANCEL_LOOK_EVERY`]).
struct JobProgress<'a> {
    report: &'a (dyn Fn(u64, u64) + Sync),
    deadline: Deadline,
    /// The job's [`CANCEL_FILE`].
    cancel_file: PathBuf,
    /// When to look for it next (the matcher polls from every thread; one
    /// looks, the others go on).
    next_look: Mutex<Instant>,
    /// Why the matcher was told to stop: [`Stopped`] as a number.
    stopped: AtomicU8,
}

/// Why a job's matching was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Stopped {
    No = 0,
    Deadline = 1,
    Asked = 2,
}

impl JobProgress<'_> {
    fn stopped(&self) -> Stopped {
        match self.stopped.load(Ordering::Relaxed) {
            1 => Stopped::Deadline,
            2 => Stopped::Asked,
            _ => Stopped::No,
        }
    }

    /// Records why the matcher is told to stop (the first reason stays).
    fn stop(&self, why: Stopped) {
        let _ = self.stopped.compare_exchange(
            Stopped::No as u8,
            why as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

impl recon_core::Progress for JobProgress<'_> {
    fn update(&self, done: u64, total: u64) {
        (self.report)(done, total);
    }

    fn cancelled(&self) -> bool {
        if self.stopped() != Stopped::No {
            return true;
        }
        if self.deadline.passed() {
            self.stop(Stopped::Deadline);
            return true;
        }
        if let Ok(mut next) = self.next_look.try_lock() {
            let now = Instant::now();
            if now >= *next {
                *next = now + CANCEL_LOOK_EVERY;
                if self.cancel_file.exists() {
                    self.stop(Stopped::Asked);
                    return true;
                }
            }
        }
        false
    }
}

fn execute(
    dir: &Path,
    rec: &JobRecord,
    store: &DatasetStore,
    rules: &str,
    progress: &Mutex<Progress>,
    local: &(Mutex<Local>, Condvar),
    deadline: Deadline,
) -> Result<(reconcile::Finished, reconcile::Deferred), String> {
    let rules = reconcile::parse_rules(rules)?;
    let started = Instant::now();
    // A value that does not fit the mapping is the job's error as recon-core
    // words it (file, line, column, value); anything else names the dataset.
    // Only the roles the rules read are built.
    let load = |id: &str, side: SideName| {
        let (mapping, roles) = (rules.mapping(side), rules.roles(side));
        store.load_side(id, mapping, roles).map_err(|e| match e {
            ApiError::Unprocessable(msg) => msg,
            other => format!("dataset {id}: {other}"),
        })
    };
    let (l, r) = rayon::join(
        || load(&rec.left, SideName::Left),
        || load(&rec.right, SideName::Right),
    );
    let ((left_meta, left), (right_meta, right)) = (l?, r?);
    let load_map_ms = started.elapsed().as_secs_f64() * 1000.0;
    let facts = reconcile::RunFacts {
        run_id: rec.id.clone(),
        left_sha256: Some(left_meta.sha256),
        right_sha256: Some(right_meta.sha256),
    };
    // The first report (0 of the total, as matching starts) always goes
    // through: a long first pass would otherwise show 0 of 0 throughout.
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    let progress_rec = Mutex::new(rec.clone());
    let report = |done: u64, total: u64| {
        let Ok(mut last) = last.lock() else { return };
        if last.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) && done < total {
            return;
        }
        *last = Some(Instant::now());
        if let Ok(mut p) = progress.lock() {
            *p = Progress { done, total };
        }
        if let Ok(mut r) = progress_rec.lock() {
            r.progress = Progress { done, total };
            let _ = write_unless_given_up(local, dir, &r);
        }
    };
    let job = JobProgress {
        report: &report,
        deadline,
        cancel_file: dir.join(CANCEL_FILE),
        next_look: Mutex::new(Instant::now()),
        stopped: AtomicU8::new(Stopped::No as u8),
    };
    let result = reconcile::execute(rules, (left, right), load_map_ms, facts, dir, &job);
    // Told to stop, the matcher ends with its `Cancelled` error: say why.
    result.map_err(|e| match job.stopped() {
        Stopped::No => e,
        Stopped::Deadline => deadline.message(),
        Stopped::Asked => CANCELLED_RUNNING.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
[left]
id = "id"
amount = "amount"
currency = "currency"
date = "date"
reference = "ref"

[right]
id = "id"
amount = "amount"
currency = "currency"
date = "date"
reference = "ref"

[[pass]]
name = "reference"
cardinality = "one_to_one"
reference = "exact"
amount = { abs = "0.00" }
date = { before = 0, after = 3 }
"#;

    fn record(state: JobState) -> JobRecord {
        JobRecord {
            id: ids::new_id(),
            state,
            left: "l".into(),
            right: "r".into(),
            rules_sha256: String::new(),
            progress: Progress::default(),
            error: None,
            created: durable::now_rfc3339(),
            started: None,
            finished: None,
            duration_ms: None,
            parquet: None,
            stages: None,
            summary: None,
            owner: Some(Owner {
                host: "elsewhere.invalid".into(),
                pid: 1,
                instance: "0".repeat(32),
            }),
        }
    }

    /// A succeeded job in `jobs/{id}` under `root` (results in place, Parquet
    /// `pending`) and its Parquet write still to do.
    fn succeeded_job(root: &Path) -> (PathBuf, reconcile::Deferred) {
        let mut rec = record(JobState::Succeeded);
        rec.parquet = Some(ParquetState::Pending);
        let dir = root.join("jobs").join(&rec.id);
        fs::create_dir_all(&dir).unwrap();
        let left = root.join("left.csv");
        let right = root.join("right.csv");
        fs::write(
            &left,
            "id,date,amount,currency,ref\nL1,2024-01-02,100.00,EUR,INV-1\nL2,2024-01-03,-25.50,EUR,INV-2\n",
        )
        .unwrap();
        fs::write(
            &right,
            "id,date,amount,currency,ref\nB1,2024-01-02,100.00,EUR,INV-1\nB9,2024-01-09,77.00,EUR,X\n",
        )
        .unwrap();
        let rules = reconcile::parse_rules(RULES).unwrap();
        let l = recon_core::input::load_side(&left, &rules.left).unwrap();
        let r = recon_core::input::load_side(&right, &rules.right).unwrap();
        let facts = reconcile::RunFacts {
            run_id: rec.id.clone(),
            ..reconcile::RunFacts::default()
        };
        let (_, deferred) =
            reconcile::execute(rules, (l, r), 0.0, facts, &dir, &recon_core::NoProgress).unwrap();
        write_record(&dir, &rec).unwrap();
        (dir, deferred)
    }

    /// A live instance of `root`: its owner, its lease (keep it) and its store.
    fn instance(root: &Path) -> (Owner, crate::owner::Lease, DatasetStore) {
        let (owner, lease) = Owner::register(&crate::owner::leases_dir(root)).unwrap();
        let store = DatasetStore::open(root, &owner, 4096, 1 << 20).unwrap();
        (owner, lease, store)
    }

    fn local() -> Arc<(Mutex<Local>, Condvar)> {
        Arc::new((Mutex::new(Local::default()), Condvar::new()))
    }

    fn ended(local: &(Mutex<Local>, Condvar)) -> u64 {
        local.0.lock().unwrap().ended
    }

    /// The file is in place, whole, and `job.json` says `ready`.
    fn assert_parquet_ready(dir: &Path) {
        assert_eq!(read_record(dir).unwrap().parquet, Some(ParquetState::Ready));
        let bytes = fs::read(dir.join("results.parquet")).unwrap();
        assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
        let rows: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
        assert_eq!(rows, 4);
    }

    #[test]
    fn the_background_writer_writes_queued_parquet_and_wakes_waiters() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, deferred) = succeeded_job(tmp.path());
        let local = local();
        let (tx, writer) = start_parquet_writer(Arc::clone(&local), 1).unwrap();
        assert!(queue_parquet(&tx, dir.clone(), deferred, &local));
        // Once the only sender is gone the writer drains its queue and ends.
        drop(tx);
        writer.join().unwrap();
        assert_parquet_ready(&dir);
        assert_eq!(ended(&local), 1);
    }

    #[test]
    fn a_full_queue_writes_parquet_on_the_calling_thread() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, deferred) = succeeded_job(tmp.path());
        let local = local();
        // A rendezvous channel nobody receives from is always full.
        let (tx, rx) = mpsc::sync_channel::<ParquetWork>(0);
        assert!(!queue_parquet(&tx, dir.clone(), deferred, &local));
        assert_parquet_ready(&dir);
        assert_eq!(ended(&local), 1);
        assert!(rx.try_recv().is_err(), "nothing was queued");
    }

    /// A queued job whose record another replica has since marked failed is
    /// not run: it stays failed, never flipping to another end.
    #[test]
    fn a_running_job_stops_at_its_deadline_or_when_asked() {
        use recon_core::Progress as _;
        let dir = tempfile::tempdir().unwrap();
        let report = |_: u64, _: u64| {};
        let progress = |limit: Duration| JobProgress {
            report: &report,
            deadline: Deadline {
                at: Instant::now().checked_add(limit),
                limit,
            },
            cancel_file: dir.path().join(CANCEL_FILE),
            next_look: Mutex::new(Instant::now()),
            stopped: AtomicU8::new(Stopped::No as u8),
        };
        let hour = Duration::from_secs(3600);
        let p = progress(hour);
        assert!(!p.cancelled());
        assert_eq!(p.stopped(), Stopped::No);
        fs::write(dir.path().join(CANCEL_FILE), b"").unwrap();
        let p = progress(hour);
        assert!(p.cancelled());
        assert_eq!(p.stopped(), Stopped::Asked);
        // Once told, always told.
        fs::remove_file(dir.path().join(CANCEL_FILE)).unwrap();
        assert!(p.cancelled());
        let p = progress(Duration::ZERO);
        assert!(p.cancelled());
        assert_eq!(p.stopped(), Stopped::Deadline);
        assert!(p.deadline.message().starts_with(
            "stopped: the job ran past its time limit of 0s (job_timeout) while matching"
        ));
    }

    #[test]
    fn a_job_failed_elsewhere_while_queued_is_not_run() {
        let root = tempfile::tempdir().unwrap();
        let (_owner, _lease, store) = instance(root.path());
        let queued = record(JobState::Queued);
        let dir = root.path().join("jobs").join(&queued.id);
        fs::create_dir_all(&dir).unwrap();
        let mut judged = queued.clone();
        judged.state = JobState::Failed;
        judged.error = Some("interrupted".to_owned());
        write_record(&dir, &judged).unwrap();
        let jobs_dir = root.path().join("jobs");
        assert!(run(&jobs_dir, &dir, queued, &store, RULES, &local(), TIME_LIMIT).is_none());
        let after = read_record(&dir).unwrap();
        assert_eq!(after.state, JobState::Failed);
        assert_eq!(after.error.as_deref(), Some("interrupted"));
        assert!(after.started.is_none(), "never started");
    }

    /// A job whose end cannot be written keeps that end in memory, where
    /// `get` (and so waiters and clients) find it, instead of the stale
    /// `running` on disk. (`job.json` a directory: every write of it fails,
    /// whoever runs the test.)
    #[test]
    fn an_end_that_cannot_be_written_is_kept_in_memory() {
        let root = tempfile::tempdir().unwrap();
        let (_owner, _lease, store) = instance(root.path());
        let rec = record(JobState::Queued);
        let dir = root.path().join("jobs").join(&rec.id);
        fs::create_dir_all(dir.join("job.json")).unwrap();
        let local = local();
        let jobs_dir = root.path().join("jobs");
        assert!(
            run(
                &jobs_dir,
                &dir,
                rec.clone(),
                &store,
                RULES,
                &local,
                TIME_LIMIT
            )
            .is_none()
        );
        let kept = local
            .0
            .lock()
            .unwrap()
            .unrecorded
            .get(&rec.id)
            .cloned()
            .unwrap();
        assert_eq!(kept.state, JobState::Failed);
        assert!(
            kept.error
                .as_deref()
                .is_some_and(|e| e.starts_with("recording the job's end")),
            "{kept:?}"
        );
    }

    /// An end this instance could not write is what `list` and `counts`
    /// show, as `get` does: over a stale `running` record on disk, and in
    /// place of a record that cannot be read at all.
    #[test]
    fn list_and_counts_show_ends_that_could_not_be_written() {
        let root = tempfile::tempdir().unwrap();
        let (jobs, _lease) = jobs_sweeping_hourly(root.path());
        let owner = jobs.owner.clone();
        let (stale, _) = write_owned(root.path(), JobState::Running, owner.clone());
        let (unreadable, dir) = write_owned(root.path(), JobState::Running, owner.clone());
        fs::remove_file(dir.join("job.json")).unwrap();
        let (running, _) = write_owned(root.path(), JobState::Running, owner);
        for id in [&stale, &unreadable] {
            let mut rec = read_record(&root.path().join("jobs").join(&stale)).unwrap();
            rec.id.clone_from(id);
            rec.state = JobState::Failed;
            rec.error = Some("recording the job's end: disk full".into());
            keep_unrecorded(&jobs, rec);
        }
        let listed = jobs.list();
        let state = |id: &str| {
            listed
                .iter()
                .filter(|r| r.id == id)
                .map(|r| r.state)
                .collect::<Vec<_>>()
        };
        assert_eq!(state(&stale), [JobState::Failed]);
        assert_eq!(state(&unreadable), [JobState::Failed]);
        assert_eq!(state(&running), [JobState::Running]);
        assert_eq!(jobs.get(&stale).unwrap().state, JobState::Failed);
        let c = jobs.counts();
        assert_eq!((c.running, c.failed, c.queued, c.succeeded), (1, 2, 0, 0));
    }

    /// Keeps `rec` as an end `jobs` could not write.
    fn keep_unrecorded(jobs: &Jobs, rec: JobRecord) {
        let mut local = jobs.local.0.lock().unwrap();
        local.unrecorded.insert(rec.id.clone(), rec);
    }

    /// What this instance could not write (a job's end, a Parquet state) is
    /// what its event streams say too, as `get` does: each stream ends,
    /// where reading the stale `job.json` it would wait for ever.
    #[test]
    fn event_streams_end_with_what_could_not_be_written() {
        let root = tempfile::tempdir().unwrap();
        let (jobs, _lease) = jobs_sweeping_hourly(root.path());
        let owner = jobs.owner.clone();
        let (lost_end, dir) = write_owned(root.path(), JobState::Running, owner.clone());
        let mut end = read_record(&dir).unwrap();
        end.state = JobState::Failed;
        end.error = Some("recording the job's end: disk full".into());
        keep_unrecorded(&jobs, end);
        // A success whose Parquet state stayed `pending` on disk.
        let (lost_parquet, dir) = write_owned(root.path(), JobState::Succeeded, owner);
        let mut pending = read_record(&dir).unwrap();
        pending.parquet = Some(ParquetState::Pending);
        write_record(&dir, &pending).unwrap();
        let mut failed = pending;
        failed.parquet = Some(ParquetState::Failed);
        jobs.local.0.lock().unwrap().parquet_pending += 1;
        parquet_written(&jobs.local, Some(failed));
        assert_eq!(
            jobs.get(&lost_parquet).unwrap().parquet,
            Some(ParquetState::Failed)
        );
        for (id, expect) in [
            (&lost_end, "\"state\":\"failed\""),
            (&lost_parquet, "\"parquet\":\"failed\""),
        ] {
            let (_, lookup) = jobs.get_with_lookup(id).unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut text = String::new();
                let mut stream = crate::events::EventStream::new(lookup);
                let read = io::Read::read_to_string(&mut stream, &mut text);
                let _ = tx.send(read.map(|_| text));
            });
            let text = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("the stream ends")
                .unwrap();
            assert!(text.starts_with("event: end\n"), "{text}");
            assert!(text.contains(expect), "{text}");
        }
    }

    /// At a stop, the jobs this instance accepted and did not finish are
    /// marked interrupted; other instances' and finished ones are not.
    #[test]
    fn a_stop_interrupts_only_its_own_unfinished_jobs() {
        let root = tempfile::tempdir().unwrap();
        let (owner, _lease, store) = instance(root.path());
        let store = Arc::new(store);
        let jobs = Jobs::open(root.path(), owner.clone(), store, 1).unwrap();
        let mut ids = Vec::new();
        for (state, mine) in [
            (JobState::Queued, true),
            (JobState::Running, true),
            (JobState::Succeeded, true),
            (JobState::Running, false),
        ] {
            let mut rec = record(state);
            if mine {
                rec.owner = Some(owner.clone());
            }
            let dir = root.path().join("jobs").join(&rec.id);
            fs::create_dir_all(&dir).unwrap();
            write_record(&dir, &rec).unwrap();
            ids.push(rec.id);
        }
        let mut interrupted = jobs.interrupt_own_unfinished();
        interrupted.sort();
        let mut expect = vec![ids[0].clone(), ids[1].clone()];
        expect.sort();
        assert_eq!(interrupted, expect);
        let state = |id: &str| read_record(&root.path().join("jobs").join(id)).unwrap();
        assert_eq!(state(&ids[0]).error.as_deref(), Some("interrupted"));
        assert_eq!(state(&ids[1]).state, JobState::Failed);
        assert_eq!(state(&ids[2]).state, JobState::Succeeded);
        assert_eq!(state(&ids[3]).state, JobState::Running);
    }

    /// A stop gives up the unfinished jobs it does not see committing (and
    /// marks them interrupted); one committing past the wait keeps its end
    /// unmarked. A job thread ending after being given up commits nothing.
    #[test]
    fn a_stop_gives_up_jobs_but_never_one_committing() {
        let root = tempfile::tempdir().unwrap();
        let (jobs, _lease) = jobs_sweeping_hourly(root.path());
        let owner = jobs.owner.clone();
        let (running, _) = write_owned(root.path(), JobState::Running, owner.clone());
        let (committing, _) = write_owned(root.path(), JobState::Running, owner.clone());
        // Ended, but its end could not be written: the stop writes that end.
        let (lost, _) = write_owned(root.path(), JobState::Running, owner);
        let on_disk = |id: &str| read_record(&root.path().join("jobs").join(id)).unwrap();
        let mut lost_end = on_disk(&lost);
        lost_end.state = JobState::Failed;
        lost_end.error = Some("recording the job's end: disk full".into());
        {
            let mut local = jobs.local.0.lock().unwrap();
            local
                .unfinished
                .extend([running.clone(), committing.clone()]);
            local.committing.insert(committing.clone());
            local.unrecorded.insert(lost.clone(), lost_end.clone());
        }
        assert_eq!(
            jobs.interrupt_own_unfinished_within(Duration::ZERO),
            vec![running.clone()]
        );
        assert_eq!(on_disk(&running).error.as_deref(), Some("interrupted"));
        assert_eq!(on_disk(&committing).state, JobState::Running);
        assert_eq!(on_disk(&lost).error, lost_end.error);
        assert_eq!(jobs.committing(), 1);
        let local = &jobs.local;
        assert!(local.0.lock().unwrap().given_up.contains(&running));
        assert!(!local.0.lock().unwrap().given_up.contains(&committing));
        // Its thread's progress writes no longer land over the mark.
        let mut progress = on_disk(&running);
        progress.state = JobState::Running;
        let dir = root.path().join("jobs").join(&running);
        assert!(write_unless_given_up(local, &dir, &progress).is_none());
        assert_eq!(on_disk(&running).error.as_deref(), Some("interrupted"));

        // The given-up job's thread ends afterwards: its end (here a failure,
        // its datasets being unknown) is not committed over the mark.
        let store = &jobs.store;
        let mut rec = on_disk(&running);
        rec.state = JobState::Running;
        rec.error = None;
        write_record(&root.path().join("jobs").join(&running), &rec).unwrap();
        let jobs_dir = root.path().join("jobs");
        let dir = jobs_dir.join(&running);
        assert!(
            run(
                &jobs_dir,
                &dir,
                rec.clone(),
                store,
                RULES,
                local,
                TIME_LIMIT
            )
            .is_none()
        );
        assert_eq!(on_disk(&running).state, JobState::Running);
        assert!(local.0.lock().unwrap().committing.contains(&committing));
        assert!(!local.0.lock().unwrap().committing.contains(&running));
        // Not given up, the same end is committed.
        local.0.lock().unwrap().given_up.clear();
        assert!(run(&jobs_dir, &dir, rec, store, RULES, local, TIME_LIMIT).is_none());
        assert_eq!(on_disk(&running).state, JobState::Failed);
    }

    /// A record of `owner` in state `state`, written to `jobs/{id}` under
    /// `root`; returns its directory.
    fn write_owned(root: &Path, state: JobState, owner: Owner) -> (String, PathBuf) {
        let mut rec = record(state);
        rec.owner = Some(owner);
        let dir = root.join("jobs").join(&rec.id);
        fs::create_dir_all(&dir).unwrap();
        write_record(&dir, &rec).unwrap();
        (rec.id, dir)
    }

    /// An owner on this host whose instance is gone: no lease file, and a
    /// process id no process has.
    fn dead_owner() -> Owner {
        Owner {
            host: crate::owner::host_name(),
            pid: u32::MAX / 2,
            instance: ids::new_id(),
        }
    }

    /// A live instance's [`Jobs`] (one job thread) whose sweep is an hour
    /// away, with the lease that keeps the instance live.
    fn jobs_sweeping_hourly(root: &Path) -> (Jobs, crate::owner::Lease) {
        let (owner, lease, store) = instance(root);
        let jobs =
            Jobs::open_with_sweep(root, owner, Arc::new(store), 1, Duration::from_secs(3600))
                .unwrap();
        (jobs, lease)
    }

    /// Dropping a [`Jobs`] stops its sweep at once, however long its
    /// interval (the drop waits for the thread, so it is gone, not leaked).
    #[test]
    fn dropping_jobs_stops_its_sweep() {
        let root = tempfile::tempdir().unwrap();
        let (jobs, _lease) = jobs_sweeping_hourly(root.path());
        let (done, dropped) = mpsc::channel();
        std::thread::spawn(move || {
            drop(jobs);
            let _ = done.send(());
        });
        dropped
            .recv_timeout(Duration::from_secs(20))
            .expect("the sweep thread stopped when its Jobs was dropped");
    }

    /// A wait on a job whose owner died (here, before the wait began, the
    /// sweep being an hour away) ends at once with the job interrupted,
    /// rather than at its timeout with the job still `running`.
    #[test]
    fn a_wait_on_a_dead_instances_job_ends() {
        let root = tempfile::tempdir().unwrap();
        let (jobs, _lease) = jobs_sweeping_hourly(root.path());
        let (id, _) = write_owned(root.path(), JobState::Running, dead_owner());
        let started = Instant::now();
        let rec = jobs.wait(&id, Duration::from_secs(60)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(rec.state, JobState::Failed);
        assert_eq!(rec.error.as_deref(), Some("interrupted"));
    }

    /// An instance never judges its own jobs, even where its owner would
    /// look gone to anyone else (no lease file, an instance this process
    /// does not list as live); another instance judging the same record
    /// ends it. A record already ended by another judge keeps that end.
    #[test]
    fn an_instance_never_judges_its_own_jobs() {
        let root = tempfile::tempdir().unwrap();
        let owner = dead_owner();
        let (id, dir) = write_owned(root.path(), JobState::Running, owner.clone());
        let judge = |me: &str| Judge {
            dir: root.path().join("jobs"),
            leases: crate::owner::leases_dir(root.path()),
            me: me.to_owned(),
        };
        let rec = read_record(&dir).unwrap();
        let mine = judge(&owner.instance);
        assert_eq!(mine.verdict(&dir, &rec, &mut Seen::new()), Verdict::Leave);
        let mut settled = HashSet::new();
        mine.sweep(&mut settled);
        assert!(settled.is_empty());
        assert_eq!(read_record(&dir).unwrap().state, JobState::Running);

        let other = judge("another");
        let ended = other.settle(&dir, rec.clone(), &mut Seen::new());
        assert_eq!(ended.error.as_deref(), Some("interrupted"));
        // A second judge, holding the record from before the first's write.
        let again = other.settle(&dir, rec, &mut Seen::new());
        assert_eq!(again, ended, "the first end stands");
        assert_eq!(read_record(&dir).unwrap(), ended);
        other.sweep(&mut settled);
        assert!(settled.contains(&id), "an ended job is not read again");
    }

    /// Once a stop has begun, a queued job is not started: it stays queued
    /// for the stop to mark interrupted.
    #[test]
    fn a_stopping_instance_starts_no_queued_job() {
        let root = tempfile::tempdir().unwrap();
        let (jobs, _lease) = jobs_sweeping_hourly(root.path());
        let csv = "id,date,amount,currency,ref\nL1,2024-01-02,100.00,EUR,INV-1\n";
        let left = jobs
            .store
            .create(
                &mut csv.as_bytes(),
                recon_core::input::Format::Csv,
                &crate::store::UploadOptions::default(),
            )
            .unwrap()
            .id;
        jobs.stop_starting();
        let rec = jobs
            .submit(&left, &left, RULES, Duration::ZERO, Naming::ById)
            .unwrap();
        assert_eq!(rec.state, JobState::Queued);
        // Its job thread takes it and lets it go (it leaves `unfinished`).
        let (lock, cvar) = &*jobs.local;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut local = lock.lock().unwrap();
        while local.unfinished.contains(&rec.id) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("the job thread let the queued job go");
            local = cvar.wait_timeout(local, left).unwrap().0;
        }
        drop(local);
        let seen = read_record(&jobs.dir.join(&rec.id)).unwrap();
        assert_eq!(seen.state, JobState::Queued);
        assert!(seen.started.is_none(), "never started");
        assert_eq!(jobs.interrupt_own_unfinished(), vec![rec.id.clone()]);
        assert_eq!(
            jobs.get(&rec.id).unwrap().error.as_deref(),
            Some("interrupted")
        );
    }

    /// A judge holding a record read before its owner's last write acts on
    /// the record as it is now: a Parquet file committed (`ready`) since
    /// stays ready, a job ended since keeps its own end.
    #[test]
    fn a_judge_acts_on_the_record_as_it_is_now() {
        let root = tempfile::tempdir().unwrap();
        let judge = Judge {
            dir: root.path().join("jobs"),
            leases: crate::owner::leases_dir(root.path()),
            me: "another".to_owned(),
        };
        let (_, dir) = write_owned(root.path(), JobState::Succeeded, dead_owner());
        let mut stale = read_record(&dir).unwrap();
        stale.parquet = Some(ParquetState::Pending);
        let mut now = stale.clone();
        now.parquet = Some(ParquetState::Ready);
        write_record(&dir, &now).unwrap();
        assert_eq!(
            judge.verdict(&dir, &stale, &mut Seen::new()),
            Verdict::FailParquet
        );
        assert_eq!(judge.settle(&dir, stale, &mut Seen::new()), now);
        assert_eq!(
            read_record(&dir).unwrap().parquet,
            Some(ParquetState::Ready)
        );

        let (_, dir) = write_owned(root.path(), JobState::Running, dead_owner());
        let stale = read_record(&dir).unwrap();
        let mut ended = stale.clone();
        ended.state = JobState::Succeeded;
        write_record(&dir, &ended).unwrap();
        assert_eq!(judge.settle(&dir, stale, &mut Seen::new()), ended);
        assert_eq!(read_record(&dir).unwrap(), ended);
    }

    #[test]
    fn a_gone_writer_writes_parquet_on_the_calling_thread() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, deferred) = succeeded_job(tmp.path());
        let local = local();
        let (tx, rx) = mpsc::sync_channel::<ParquetWork>(1);
        drop(rx);
        assert!(!queue_parquet(&tx, dir.clone(), deferred, &local));
        assert_parquet_ready(&dir);
        assert_eq!(ended(&local), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lowering_the_priority_touches_the_calling_thread_only() {
        fn nice() -> i32 {
            // SAFETY: plain integers in, a plain integer out; no memory touched.
            let tid = unsafe { libc::gettid() };
            // SAFETY: as above; `tid` is the calling thread's id.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::id_t::try_from(tid).unwrap()) }
        }
        let before = nice();
        let lowered = std::thread::spawn(|| {
            lower_priority();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, 19);
        assert_eq!(nice(), before);
    }

    #[test]
    fn api_json_hides_owner_and_links() {
        let rec = record(JobState::Queued);
        let v = rec.to_api_json();
        assert!(v.get("owner").is_none());
        assert_eq!(v["state"], "queued");
        assert!(
            v["links"]["results"]
                .as_str()
                .unwrap()
                .ends_with("/results")
        );
        // A failed job will never have results: no link to them.
        let v = record(JobState::Failed).to_api_json();
        assert!(v["links"].get("results").is_none(), "{v}");
        assert!(v["links"]["events"].is_string(), "{v}");
    }
}
