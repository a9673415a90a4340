//! The Python peers: a Flask app on Waitress (8 threads) and a FastAPI app on
//! Uvicorn (2 workers), from benches/peers/, run from a venv made by
//! `just bench-peers-setup`.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::cli::Args;
use crate::server::{Kind, ServerSpec};

/// The modules the peers import; checked before running them.
const MODULES: &str = "flask, waitress, fastapi, uvicorn, pandas, pyarrow";

/// A free port on 127.0.0.1 (the peers are given a port: Uvicorn's
/// multi-worker mode does not report a port it picked itself).
fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a probe port")?;
    Ok(l.local_addr().context("reading the probe port")?.port())
}

/// The peers' server specs.
///
/// # Errors
/// When the interpreter is missing or lacks a package, or an app file is
/// missing: the harness then runs the recon columns only and says why.
pub fn specs(
    args: &Args,
    cpus: Option<String>,
    logs: &Path,
    data: &Path,
) -> anyhow::Result<Vec<ServerSpec>> {
    let python = &args.python;
    if !python.exists() {
        bail!(
            "{} not found (run `just bench-peers-setup`, or pass --python)",
            python.display()
        );
    }
    let check = Command::new(python)
        .arg("-c")
        .arg(format!("import {MODULES}"))
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !check.status.success() {
        bail!(
            "{} cannot import {MODULES}: {}",
            python.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        );
    }
    let mut specs = Vec::new();
    for (key, label, script, tuning, flag, n) in [
        (
            "waitress",
            "Waitress",
            "waitress_app.py",
            "8 threads",
            "--threads",
            "8",
        ),
        (
            "uvicorn",
            "Uvicorn",
            "uvicorn_app.py",
            "2 workers",
            "--workers",
            "2",
        ),
    ] {
        let app = args.peers_dir.join(script);
        if !app.exists() {
            bail!("{} is missing", app.display());
        }
        let port = free_port()?;
        specs.push(ServerSpec {
            key: key.to_owned(),
            label: label.to_owned(),
            kind: Kind::Peer,
            program: python.clone(),
            args: vec![
                app.into_os_string(),
                "--port".into(),
                port.to_string().into(),
                flag.into(),
                n.into(),
                "--data-dir".into(),
                data.join(key).into_os_string(),
            ],
            env: vec![("PYTHONUNBUFFERED".into(), "1".into())],
            fixed_port: Some(port),
            cpus: cpus.clone(),
            log: logs.join(format!("{key}.log")),
            tuning: tuning.to_owned(),
        });
    }
    Ok(specs)
}
