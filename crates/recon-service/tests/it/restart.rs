//! Restarts and dead replicas: datasets survive; jobs left running by a dead
//! instance are failed (`interrupted`), at the next start and, by a replica
//! that is already running, on the next read of the job or by its background
//! sweep; a live replica's jobs and scratch space are left alone.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use recon_service::App;
use recon_service::jobs::{JobState, ParquetState};

use crate::{LEDGER, config_in, send};

/// How long a test waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(20);

/// Writes `jobs/{id}/job.json` under `dir`, as an instance would: a job in
/// `state` owned by `owner` (none: a record from before jobs had owners).
fn write_job(dir: &std::path::Path, id: &str, state: &str, owner: Option<serde_json::Value>) {
    let job = dir.join("jobs").join(id);
    std::fs::create_dir_all(&job).unwrap();
    let mut rec = serde_json::json!({
        "id": id, "state": state, "left": "l", "right": "r", "rules_sha256": "",
        "progress": {"done": 5, "total": 10}, "created": "2026-01-01T00:00:00Z",
    });
    if let Some(o) = owner {
        rec["owner"] = o;
    }
    std::fs::write(job.join("job.json"), serde_json::to_vec(&rec).unwrap()).unwrap();
}

/// Writes a succeeded job whose Parquet write `owner` left `pending`.
fn write_pending_parquet(dir: &std::path::Path, id: &str, owner: Option<serde_json::Value>) {
    write_job(dir, id, "succeeded", owner);
    let path = dir.join("jobs").join(id).join("job.json");
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    rec["parquet"] = "pending".into();
    std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
}

/// `GET {path}` on `app` (200 asserted), as JSON.
fn get_json(app: &App, path: &str) -> serde_json::Value {
    send(
        app,
        http::Method::GET,
        path,
        &[],
        recon_service::RequestBody::empty(),
    )
    .expect(200)
    .json()
}

/// `GET /v1/reconciliations/{id}` on `app` (200 asserted), as JSON.
fn job(app: &App, id: &str) -> serde_json::Value {
    send(
        app,
        http::Method::GET,
        &format!("/v1/reconciliations/{id}"),
        &[],
        recon_service::RequestBody::empty(),
    )
    .expect(200)
    .json()
}

/// Dates a job's `job.json` two hours back, as if no one had written it since.
fn untouched_for_two_hours(dir: &std::path::Path, id: &str) {
    let file = std::fs::File::options()
        .write(true)
        .open(dir.join("jobs").join(id).join("job.json"))
        .unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    file.set_modified(two_hours_ago).unwrap();
}

/// An owner on this host, with this process's pid (as a replica that is pid 1
/// of its own PID namespace shares its pid with another): only its lease
/// tells whether it lives.
fn same_host_owner(instance: &str) -> serde_json::Value {
    serde_json::json!({"host": recon_service::owner::host_name(), "pid": std::process::id(), "instance": instance})
}

/// The lease file of `instance` in the data directory `dir`, created (empty,
/// unlocked: its instance is dead) if missing.
fn lease_file(dir: &Path, instance: &str) -> PathBuf {
    let owners = recon_service::owner::leases_dir(dir);
    std::fs::create_dir_all(&owners).unwrap();
    let lease = owners.join(format!("{instance}.lock"));
    if !lease.exists() {
        std::fs::write(&lease, b"{}").unwrap();
    }
    lease
}

/// Another process holding the lease file `lease` locked, as a live replica
/// does (`--no-fork`: the lock is held by the very process a test kills);
/// returns once the lock is held.
fn hold_lease(lease: &Path) -> Child {
    let holder = std::process::Command::new("flock")
        .arg("--no-fork")
        .arg(lease)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while std::process::Command::new("flock")
        .args(["--nonblock", "--conflict-exit-code", "9"])
        .arg(lease)
        .arg("true")
        .status()
        .unwrap()
        .code()
        != Some(9)
    {
        assert!(Instant::now() < deadline, "flock never held the lease");
    }
    holder
}

/// A staged (uncommitted) result file in job `id`'s directory, as a writer
/// leaves it mid-job.
fn staged_file(dir: &Path, id: &str) -> PathBuf {
    let job = dir.join("jobs").join(id);
    std::fs::create_dir_all(&job).unwrap();
    let staged = job.join(".results.csv.abc.tmp");
    std::fs::write(&staged, b"half a result").unwrap();
    staged
}

/// The whole event stream of job `id` on `app`. Read on a thread of its own
/// and given up on (failing the test) after [`PATIENCE`]: a stream that never
/// ends would otherwise hang the suite.
fn events(app: &App, id: &str) -> String {
    let req = http::Request::get(format!("/v1/reconciliations/{id}/events"))
        .body(recon_service::RequestBody::empty())
        .unwrap();
    let res = app.handle(req);
    assert_eq!(res.status(), 200);
    let recon_service::ResponseBody::Stream(mut body) = res.into_body() else {
        panic!("events are streamed");
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let read = std::io::Read::read_to_string(&mut body, &mut text);
        let _ = tx.send(read.map(|_| text));
    });
    rx.recv_timeout(PATIENCE)
        .expect("the event stream never ended")
        .unwrap()
}

/// Polls `check` until it holds, failing with `what` after [`PATIENCE`].
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `job.json` of job `id` as it is on disk (read around the API, which would
/// judge the job itself).
fn on_disk(dir: &Path, id: &str) -> recon_service::jobs::JobRecord {
    recon_service::jobs::read_record(&dir.join("jobs").join(id)).unwrap()
}

#[test]
fn datasets_survive_and_dead_jobs_are_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(config_in(dir.path()));
    let first = App::new(Arc::clone(&config), Vec::new()).unwrap();
    let meta = send(
        &first,
        http::Method::POST,
        "/v1/datasets",
        &[("content-type", "text/csv")],
        recon_service::RequestBody::from_bytes(LEDGER),
    )
    .expect(201)
    .json();
    drop(first);

    let running = "00000000-0000-4000-8000-000000000001";
    let queued = "00000000-0000-4000-8000-000000000002";
    let done = "00000000-0000-4000-8000-000000000003";
    write_job(dir.path(), running, "running", None);
    write_job(dir.path(), queued, "queued", None);
    write_job(dir.path(), done, "succeeded", None);

    let second = App::new(config, Vec::new()).unwrap();
    let get = |p: &str| {
        send(
            &second,
            http::Method::GET,
            p,
            &[],
            recon_service::RequestBody::empty(),
        )
    };
    let id = meta["id"].as_str().unwrap();
    assert_eq!(get(&format!("/v1/datasets/{id}")).expect(200).json(), meta);
    for interrupted in [running, queued] {
        let job = get(&format!("/v1/reconciliations/{interrupted}"))
            .expect(200)
            .json();
        assert_eq!(job["state"], "failed");
        assert_eq!(job["error"], "interrupted");
        assert!(job.get("owner").is_none());
        get(&format!("/v1/reconciliations/{interrupted}/results")).expect(409);
    }
    let job = get(&format!("/v1/reconciliations/{done}"))
        .expect(200)
        .json();
    assert_eq!(job["state"], "succeeded");
    let status = get("/debug/status").expect(200).json();
    assert_eq!(status["jobs"]["failed"], 2);
    assert_eq!(status["datasets"]["count"], 1);
}

#[test]
fn a_live_replicas_running_job_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(config_in(dir.path()));
    let replica = App::new(Arc::clone(&config), Vec::new()).unwrap();
    // A job owned by a process on another host: this host cannot judge it.
    let remote = "00000000-0000-4000-8000-00000000000a";
    write_job(
        dir.path(),
        remote,
        "running",
        Some(serde_json::json!({"host": "other-host.invalid", "pid": 1, "instance": "x"})),
    );
    let second = App::new(config, Vec::new()).unwrap();
    for app in [&replica, &second] {
        let job = job(app, remote);
        assert_eq!(job["state"], "running");
    }
}

#[test]
fn a_foreign_job_untouched_for_hours_is_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let stale = "00000000-0000-4000-8000-00000000000b";
    write_job(
        dir.path(),
        stale,
        "running",
        Some(serde_json::json!({"host": "gone-container.invalid", "pid": 1, "instance": "y"})),
    );
    untouched_for_two_hours(dir.path(), stale);
    let app = App::new(Arc::new(config_in(dir.path())), Vec::new()).unwrap();
    let job = job(&app, stale);
    assert_eq!(job["state"], "failed");
    assert_eq!(job["error"], "interrupted");
}

/// A Parquet write left `pending` by another host is failed once its job has
/// been untouched for hours (no write takes that long); a recent one is left to
/// its owner.
#[test]
fn a_foreign_parquet_write_pending_for_hours_is_failed() {
    let dir = tempfile::tempdir().unwrap();
    let stale = "00000000-0000-4000-8000-00000000000c";
    let recent = "00000000-0000-4000-8000-00000000000d";
    for id in [stale, recent] {
        write_pending_parquet(
            dir.path(),
            id,
            Some(serde_json::json!({"host": "gone-container.invalid", "pid": 1, "instance": "z"})),
        );
    }
    untouched_for_two_hours(dir.path(), stale);
    let app = App::new(Arc::new(config_in(dir.path())), Vec::new()).unwrap();
    assert_eq!(job(&app, stale)["parquet"], "failed");
    assert_eq!(job(&app, recent)["parquet"], "pending");
}

/// Two replicas on one host can have the same host name and pid (each pid 1
/// in its own PID namespace): the lease decides. A job of this host and pid
/// whose owner still holds its lease (`owners/{instance}.lock`, locked here
/// by another process: `flock`) is left alone; once the lease is released,
/// the next start interrupts it and removes the results it was writing.
#[test]
fn a_same_pid_replica_holding_its_lease_is_alive() {
    let dir = tempfile::tempdir().unwrap();
    let id = "00000000-0000-4000-8000-00000000000e";
    let instance = "0123456789abcdef0123456789abcdef";
    write_job(dir.path(), id, "running", Some(same_host_owner(instance)));
    let staged = staged_file(dir.path(), id);
    let lease = lease_file(dir.path(), instance);
    let mut holder = hold_lease(&lease);
    let config = Arc::new(config_in(dir.path()));
    let app = App::new(Arc::clone(&config), Vec::new()).unwrap();
    assert_eq!(job(&app, id)["state"], "running");
    assert!(staged.exists(), "a live writer's staged file is kept");
    drop(app);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let app = App::new(config, Vec::new()).unwrap();
    let job = job(&app, id);
    assert_eq!(job["state"], "failed");
    assert_eq!(job["error"], "interrupted");
    assert!(!staged.exists(), "a dead writer's staged file is removed");
    assert!(!lease.exists(), "a dead instance's lease is swept");
}

/// The black-box report: a replica killed (SIGKILL) while another on the same
/// host runs. Its job is `running` while the lease is held, however long it
/// has been quiet; once the lease holder is killed, the next read through the
/// surviving instance shows the job failed (`interrupted`), without a restart,
/// and the staged files it was writing are gone.
#[test]
fn a_replica_killed_while_another_runs_is_judged_on_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(Arc::new(config_in(dir.path())), Vec::new()).unwrap();
    let id = "00000000-0000-4000-8000-000000000010";
    let instance = "1123456789abcdef0123456789abcdef";
    let lease = lease_file(dir.path(), instance);
    let mut holder = hold_lease(&lease);
    write_job(dir.path(), id, "running", Some(same_host_owner(instance)));
    let staged = staged_file(dir.path(), id);
    // Quiet for hours but its lease held: its owner lives.
    untouched_for_two_hours(dir.path(), id);
    assert_eq!(job(&app, id)["state"], "running");
    assert_eq!(get_json(&app, "/debug/status")["jobs"]["running"], 1);
    assert!(staged.exists(), "a live writer's staged file is kept");
    holder.kill().unwrap();
    holder.wait().unwrap();
    let seen = job(&app, id);
    assert_eq!(seen["state"], "failed");
    assert_eq!(seen["error"], "interrupted");
    assert!(seen["finished"].is_string());
    assert!(!staged.exists(), "a dead writer's staged file is removed");
    assert_eq!(
        on_disk(dir.path(), id).error.as_deref(),
        Some("interrupted")
    );
}

/// Jobs left `running` and `queued` by a dead instance of this host (its
/// lease file there, unlocked), appearing while this instance runs, are
/// failed (`interrupted`) on the first read, whichever route reads them: the
/// job, the list, the event stream (which ends), the results (a dead writer's
/// Parquet file is not waited for) and `/debug/status`'s counts.
#[test]
fn a_dead_replicas_jobs_end_on_every_read_route() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(Arc::new(config_in(dir.path())), Vec::new()).unwrap();
    let instance = "2123456789abcdef0123456789abcdef";
    lease_file(dir.path(), instance);
    let dead = || Some(same_host_owner(instance));
    let by_get = "00000000-0000-4000-8000-000000000011";
    let by_list = "00000000-0000-4000-8000-000000000012";
    let by_events = "00000000-0000-4000-8000-000000000013";
    let by_results = "00000000-0000-4000-8000-000000000014";
    let by_counts = "00000000-0000-4000-8000-00000000001a";

    write_job(dir.path(), by_get, "running", dead());
    let seen = job(&app, by_get);
    assert_eq!(seen["state"], "failed");
    assert_eq!(seen["error"], "interrupted");

    write_job(dir.path(), by_list, "queued", dead());
    let listed = get_json(&app, "/v1/reconciliations");
    let listed = listed["reconciliations"].as_array().unwrap();
    let entry = listed.iter().find(|j| j["id"] == by_list).unwrap();
    assert_eq!(entry["state"], "failed");
    assert_eq!(entry["error"], "interrupted");

    write_job(dir.path(), by_events, "running", dead());
    let staged = staged_file(dir.path(), by_events);
    let stream = events(&app, by_events);
    assert!(stream.contains("event: end"), "{stream}");
    assert!(stream.contains("\"interrupted\""), "{stream}");
    assert!(!staged.exists(), "a dead writer's staged file is removed");

    // A Parquet write left `pending` by the dead instance is failed before
    // the route would wait for it (and answer 409 after a while): the answer
    // is at once that there is no Parquet file.
    write_pending_parquet(dir.path(), by_results, dead());
    send(
        &app,
        http::Method::GET,
        &format!("/v1/reconciliations/{by_results}/results?format=parquet"),
        &[],
        recon_service::RequestBody::empty(),
    )
    .expect(404);
    assert_eq!(
        on_disk(dir.path(), by_results).parquet,
        Some(ParquetState::Failed)
    );

    write_job(dir.path(), by_counts, "queued", dead());
    let counts = &get_json(&app, "/debug/status")["jobs"];
    assert_eq!(counts["failed"], 4, "{counts}");
    assert_eq!(counts["succeeded"], 1, "{counts}");
    assert_eq!(counts["running"], 0, "{counts}");
    assert_eq!(counts["queued"], 0, "{counts}");
}

/// A job of another host whose `job.json` goes quiet for an hour while this
/// instance runs is failed (`interrupted`) on the next read, and so is a
/// Parquet write of another host left `pending` that long; while recent,
/// both are left to their owner.
#[test]
fn a_foreign_job_going_stale_while_this_one_runs_ends_on_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(Arc::new(config_in(dir.path())), Vec::new()).unwrap();
    let owner = serde_json::json!({"host": "gone-container.invalid", "pid": 1, "instance": "w"});
    let running = "00000000-0000-4000-8000-000000000015";
    let writing = "00000000-0000-4000-8000-000000000016";
    write_job(dir.path(), running, "running", Some(owner.clone()));
    write_pending_parquet(dir.path(), writing, Some(owner));

    assert_eq!(job(&app, running)["state"], "running");
    assert_eq!(job(&app, writing)["parquet"], "pending");
    untouched_for_two_hours(dir.path(), running);
    untouched_for_two_hours(dir.path(), writing);
    let seen = job(&app, running);
    assert_eq!(seen["state"], "failed");
    assert_eq!(seen["error"], "interrupted");
    let seen = job(&app, writing);
    assert_eq!(seen["state"], "succeeded");
    assert_eq!(seen["parquet"], "failed");
}

/// The background sweep ends a dead replica's jobs that nobody reads (the
/// test reads `job.json` around the API), and leaves a live replica's job
/// running. The sweep runs every few milliseconds here.
#[test]
fn the_sweep_ends_jobs_nobody_reads() {
    use recon_service::jobs::Jobs;
    use recon_service::owner::{self, Owner};
    use recon_service::store::DatasetStore;

    let dir = tempfile::tempdir().unwrap();
    let leases = owner::leases_dir(dir.path());
    let (me, _my_lease) = Owner::register(&leases).unwrap();
    let (live, _live_lease) = Owner::register(&leases).unwrap();
    let live_job = "00000000-0000-4000-8000-000000000017";
    write_job(
        dir.path(),
        live_job,
        "running",
        Some(serde_json::to_value(&live).unwrap()),
    );
    let live_staged = staged_file(dir.path(), live_job);
    let store = Arc::new(DatasetStore::open(dir.path(), &me, 4096, 1 << 20).unwrap());
    let jobs = Jobs::open_with_sweep(dir.path(), me, store, 1, Duration::from_millis(10)).unwrap();

    // Written after start-up: only the sweep can end them.
    let dead = "3123456789abcdef0123456789abcdef";
    lease_file(dir.path(), dead);
    for id in [
        "00000000-0000-4000-8000-000000000018",
        "00000000-0000-4000-8000-000000000019",
    ] {
        // Staged before the record appears, as a writer does.
        let staged = staged_file(dir.path(), id);
        write_job(dir.path(), id, "running", Some(same_host_owner(dead)));
        eventually("the sweep interrupts the dead replica's job", || {
            on_disk(dir.path(), id).state == JobState::Failed
        });
        assert_eq!(
            on_disk(dir.path(), id).error.as_deref(),
            Some("interrupted")
        );
        // The record is marked before the staged files go.
        eventually("the sweep removes a dead writer's staged file", || {
            !staged.exists()
        });
    }
    // Every pass read the live job (written before the sweep started), and
    // passes have run: they ended both dead jobs.
    assert_eq!(on_disk(dir.path(), live_job).state, JobState::Running);
    assert!(live_staged.exists(), "a live writer's staged file is kept");
    drop(jobs);
}

/// A job whose `job.json` does not read is unknown on every route: 404 for
/// the job, its events and its results alike (its files stay on disk).
#[test]
fn an_unreadable_job_is_404_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let id = "00000000-0000-4000-8000-00000000000f";
    let job = dir.path().join("jobs").join(id);
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(job.join("job.json"), b"{\"id\": \"0000").unwrap();
    std::fs::write(job.join("results.csv"), b"kept\n").unwrap();
    let app = App::new(Arc::new(config_in(dir.path())), Vec::new()).unwrap();
    for path in ["", "/events", "/results", "/rejects?side=left"] {
        send(
            &app,
            http::Method::GET,
            &format!("/v1/reconciliations/{id}{path}"),
            &[],
            recon_service::RequestBody::empty(),
        )
        .expect(404);
    }
    assert!(job.join("results.csv").exists());
}

/// A data directory whose layout is blocked (a file where a directory must
/// be) refuses to start, naming the entry, not only "File exists".
#[test]
fn a_blocked_data_directory_names_the_entry() {
    for entry in ["datasets", "tmp", "jobs", "owners"] {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join(entry);
        std::fs::write(&blocked, b"not a directory").unwrap();
        let err = App::new(Arc::new(config_in(dir.path())), Vec::new()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("creating {}", blocked.display())),
            "{entry}: {text}"
        );
    }
}

/// A clean stop's `close` removes the instance's scratch directory and its
/// lease file, so the next start finds nothing of it to sweep; with work
/// still in flight it keeps both, the lease file outliving the application
/// (unlocked once the process ends), so the next start recovers at once.
#[test]
fn close_leaves_no_scratch_or_lease_behind() {
    let dir = tempfile::tempdir().unwrap();
    let entries = |sub: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    // A handler still running (a drain cut short): nothing is closed.
    let busy = App::new(Arc::new(config_in(dir.path())), Vec::new()).unwrap();
    busy.state().worker_busy();
    assert!(!busy.close());
    drop(busy);
    assert_eq!(entries("tmp").len(), 1, "its scratch is kept");
    assert_eq!(entries("owners").len(), 1, "its lease file is kept");

    // (Its lock goes only with the process, so the next start, a process of
    // its own, finds the file free and sweeps both.)

    // A clean stop in a data directory of its own leaves nothing.
    let dir = tempfile::tempdir().unwrap();
    let entries = |sub: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let app = App::new(Arc::new(config_in(dir.path())), Vec::new()).unwrap();
    assert_eq!(entries("tmp").len(), 1);
    assert_eq!(entries("owners").len(), 1);
    assert!(app.close());
    assert_eq!(entries("tmp"), Vec::<std::path::PathBuf>::new());
    assert_eq!(entries("owners"), Vec::<std::path::PathBuf>::new());
    drop(app);
}
