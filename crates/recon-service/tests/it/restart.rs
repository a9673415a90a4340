//! Restarts: datasets survive; jobs left running by a dead instance are failed
//! (`interrupted`); a live replica's jobs and scratch space are left alone.

use std::sync::Arc;

use recon_service::App;

use crate::{LEDGER, config_in, send};

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

/// Dates a job's `job.json` two hours back, as if no one had written it since.
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

fn untouched_for_two_hours(dir: &std::path::Path, id: &str) {
    let file = std::fs::File::options()
        .write(true)
        .open(dir.join("jobs").join(id).join("job.json"))
        .unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    file.set_modified(two_hours_ago).unwrap();
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
        write_job(
            dir.path(),
            id,
            "succeeded",
            Some(serde_json::json!({"host": "gone-container.invalid", "pid": 1, "instance": "z"})),
        );
        let path = dir.path().join("jobs").join(id).join("job.json");
        let mut rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        rec["parquet"] = "pending".into();
        std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
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
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    write_job(
        dir.path(),
        id,
        "running",
        Some(serde_json::json!({"host": host, "pid": std::process::id(), "instance": instance})),
    );
    let staged = dir
        .path()
        .join("jobs")
        .join(id)
        .join(".results.csv.abc.tmp");
    std::fs::write(&staged, b"half a result").unwrap();
    let owners = dir.path().join("owners");
    std::fs::create_dir_all(&owners).unwrap();
    let lease = owners.join(format!("{instance}.lock"));
    std::fs::write(&lease, b"{}").unwrap();
    // Another process holds the lease, as a live replica does (`--no-fork`:
    // the lock is held by the very process killed below).
    let mut holder = std::process::Command::new("flock")
        .arg("--no-fork")
        .arg(&lease)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::process::Command::new("flock")
        .args(["--nonblock", "--conflict-exit-code", "9"])
        .arg(&lease)
        .arg("true")
        .status()
        .unwrap()
        .code()
        != Some(9)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "flock never held the lease"
        );
    }
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
