//! deploy/ checked against the code, without a Docker engine: every compose,
//! Kubernetes, Prometheus and Grafana file parses; ports, probe paths, env var
//! names, the entrypoint, the grace period and the dashboard's metrics agree
//! with what the `recon` binary and the service really do.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

fn recon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_recon"))
}

/// Every YAML document in a file, as JSON values.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
        })
        .collect()
}

fn yaml(rel: &str) -> Value {
    let mut docs = yaml_docs(&deploy(rel));
    assert_eq!(docs.len(), 1, "{rel}: expected one document");
    docs.remove(0)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        ) {
            out.push(path);
        }
    }
}

/// The Dockerfile's instructions, continuation lines joined.
fn dockerfile_lines() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("docker/Dockerfile")).unwrap();
    text.replace("\\\n", " ")
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
}

/// `KEY=VALUE` pairs of the runtime stage's `ENV` instruction, with `${ARG}`
/// references resolved to the `ARG`'s default as `docker build` would.
fn dockerfile_env() -> Vec<(String, String)> {
    let lines = dockerfile_lines();
    let args: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ARG "))
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (format!("${{{k}}}"), v.to_owned()))
        .collect();
    let line = lines
        .iter()
        .find(|l| l.starts_with("ENV "))
        .expect("an ENV line");
    line["ENV ".len()..]
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("KEY=VALUE");
            let v = args
                .iter()
                .find(|(name, _)| name == v)
                .map_or(v, |(_, default)| default);
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The exec-form argument list of the last instruction `name` (e.g. `CMD`).
fn dockerfile_instruction(name: &str) -> Vec<String> {
    let lines = dockerfile_lines();
    let line = lines
        .iter()
        .rfind(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in the Dockerfile"));
    let json = &line[line.find('[').expect("exec form")..=line.rfind(']').unwrap()];
    serde_json::from_str(json).unwrap()
}

/// Every environment variable the deployment files set, with where.
fn deployment_env() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (k, v) in dockerfile_env() {
        out.push((k, v, "Dockerfile".to_owned()));
    }
    for file in [
        "compose/docker-compose.yml",
        "compose/docker-compose.prod.yml",
    ] {
        let doc = yaml(file);
        let env = &doc["services"]["recon"]["environment"];
        for (k, v) in env.as_object().expect("environment as a map") {
            let v = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            out.push((k.clone(), v, file.to_owned()));
        }
    }
    for (k, v) in yaml("k8s/configmap.yaml")["data"].as_object().unwrap() {
        out.push((
            k.clone(),
            v.as_str().unwrap().to_owned(),
            "k8s/configmap.yaml".to_owned(),
        ));
    }
    let deployment = yaml("k8s/deployment.yaml");
    for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
    {
        out.push((
            e["name"].as_str().unwrap().to_owned(),
            e["value"].as_str().unwrap().to_owned(),
            "k8s/deployment.yaml".to_owned(),
        ));
    }
    out
}

#[test]
fn every_yaml_file_parses() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    assert!(files.len() >= 12, "found only {files:?}");
    for f in files {
        let docs = yaml_docs(&f);
        assert!(!docs.is_empty(), "{} is empty", f.display());
        for d in docs {
            assert!(d.is_object(), "{}: top level is not a map", f.display());
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/dashboards/recon.json")).unwrap(),
    )
    .unwrap();
    assert!(!dashboard["panels"].as_array().unwrap().is_empty());
}

#[test]
fn ports_agree_everywhere() {
    let env: std::collections::BTreeMap<_, _> = dockerfile_env().into_iter().collect();
    assert_eq!(env["PORT"], "8000");
    let dockerfile = std::fs::read_to_string(deploy("docker/Dockerfile")).unwrap();
    assert!(dockerfile.contains("\nEXPOSE 8000\n"));

    let nginx = std::fs::read_to_string(deploy("nginx/nginx.conf")).unwrap();
    assert!(
        nginx.contains("server recon:8000"),
        "nginx upstream must point at recon:8000"
    );
    let prom = yaml("prometheus/prometheus.yml");
    assert_eq!(prom["scrape_configs"][0]["dns_sd_configs"][0]["port"], 8000);
    assert_eq!(prom["scrape_configs"][0]["metrics_path"], "/metrics");

    let prod = yaml("compose/docker-compose.prod.yml");
    assert_eq!(prod["services"]["recon"]["expose"][0], "8000");

    let deployment = yaml("k8s/deployment.yaml");
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"], 8000);
    assert_eq!(c["ports"][0]["name"], "http");
    let port_env = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "RECON_PORT")
        .unwrap();
    assert_eq!(port_env["value"], "8000");
    let svc = yaml("k8s/service.yaml");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    let monitor = yaml("k8s/monitoring/servicemonitor.yaml");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

/// The words after nginx directive `name` in `conf`, up to its `;`
/// (comments dropped); `None` when the file has no such directive.
fn nginx_directive(conf: &str, name: &str) -> Option<Vec<String>> {
    conf.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|rest| {
            rest.trim_end_matches(';')
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
}

/// An nginx size (`64k`, `1m`, `512`) in bytes.
fn nginx_size(text: &str) -> u64 {
    let (digits, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
    let n: u64 = digits.parse().unwrap();
    match unit.to_ascii_lowercase().as_str() {
        "" => n,
        "k" => n << 10,
        "m" => n << 20,
        other => panic!("nginx size unit {other}"),
    }
}

/// What one replica of docker-compose.prod.yml runs with, by `recon config
/// show` under the service's environment and resource limits.
fn prod_replica_config() -> Value {
    let service = &yaml("compose/docker-compose.prod.yml")["services"]["recon"];
    let limits = &service["deploy"]["resources"]["limits"];
    let mut cmd = recon();
    cmd.args(["config", "show", "--format", "json", "--vcpus"])
        .arg(limits["cpus"].as_str().unwrap())
        .arg("--memory")
        .arg(limits["memory"].as_str().unwrap())
        .current_dir(root())
        .env_clear();
    for (k, v) in service["environment"].as_object().unwrap() {
        cmd.env(k, v.as_str().unwrap());
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// nginx's limits agree with the replicas behind it (docker-compose.prod.yml):
/// its idle upstream pool, counted against each replica's `connection_limit`,
/// stays well below it and lets go of idle connections before recon's
/// `channel_timeout` and well before nginx's default 60 s; its header
/// buffers pass every head recon accepts, so recon's 431 is what a client
/// sees past `max_request_header_size`.
#[test]
fn nginx_limits_fit_the_replicas_behind_it() {
    let conf = std::fs::read_to_string(deploy("nginx/nginx.conf")).unwrap();
    let directive = |name: &str| {
        nginx_directive(&conf, name).unwrap_or_else(|| panic!("nginx.conf: no {name}"))
    };
    let replica = prod_replica_config();
    let value = |key: &str| replica[key]["value"].as_str().unwrap().to_owned();

    let workers: u64 = directive("worker_processes")[0]
        .parse()
        .expect("worker_processes a number, not auto: each worker has its own pool");
    let pool: u64 = directive("keepalive")[0].parse().unwrap();
    let limit: u64 = value("connection_limit").parse().unwrap();
    assert!(
        2 * pool * workers <= limit,
        "nginx may hold {pool} x {workers} idle connections to one replica, \
         not well below its connection_limit {limit}"
    );
    let idle = tuning::units::parse_duration(&directive("keepalive_timeout")[0]).unwrap();
    let channel = tuning::units::parse_duration(&value("channel_timeout")).unwrap();
    assert!(
        idle < Duration::from_secs(60) && idle < channel,
        "keepalive_timeout {idle:?}: shorter than nginx's default 60 s and \
         than recon's channel_timeout {channel:?}"
    );

    let buffers = directive("large_client_header_buffers");
    let header_limit = tuning::units::parse_size(&value("max_request_header_size")).unwrap();
    assert!(
        nginx_size(&buffers[1]) >= header_limit,
        "large_client_header_buffers {buffers:?}: a header line recon accepts \
         ({header_limit} bytes) must fit one buffer"
    );
}

#[test]
fn kubernetes_objects_reference_each_other() {
    let kustomization = yaml("k8s/kustomization.yaml");
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let manifests = |dir: &str| -> BTreeSet<String> {
        std::fs::read_dir(deploy(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect()
    };
    assert_eq!(
        listed,
        manifests("k8s"),
        "kustomization.yaml must list every manifest"
    );
    // The ServiceMonitor is an optional component (it needs the Prometheus
    // operator's CRD), named in a comment of the base for those who have it.
    let component = yaml("k8s/monitoring/kustomization.yaml");
    assert_eq!(component["kind"], "Component");
    let in_component: BTreeSet<String> = component["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(in_component, manifests("k8s/monitoring"));
    let base = std::fs::read_to_string(deploy("k8s/kustomization.yaml")).unwrap();
    assert!(base.contains("#   - monitoring"), "{base}");
    // The image is one kustomize can point at a registry.
    assert_eq!(kustomization["images"][0]["name"], "recon");

    let deployment = yaml("k8s/deployment.yaml");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for file in [
        "k8s/service.yaml",
        "k8s/pdb.yaml",
        "k8s/monitoring/servicemonitor.yaml",
    ] {
        let doc = yaml(file);
        let sel = &doc["spec"]["selector"];
        let sel = if sel["matchLabels"].is_object() {
            &sel["matchLabels"]
        } else {
            sel
        };
        for (k, v) in sel.as_object().unwrap() {
            assert_eq!(
                &labels[k], v,
                "{file}: selector {k} does not match the pod labels"
            );
        }
    }
    assert_eq!(
        yaml("k8s/hpa.yaml")["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
    assert_eq!(
        volumes[0]["persistentVolumeClaim"]["claimName"],
        yaml("k8s/pvc.yaml")["metadata"]["name"]
    );
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["envFrom"][0]["configMapRef"]["name"],
        yaml("k8s/configmap.yaml")["metadata"]["name"]
    );
}

#[test]
fn grace_periods_exceed_the_drain_timeout() {
    let seconds = |key: &str| -> u64 {
        yaml("k8s/configmap.yaml")["data"][key]
            .as_str()
            .map_or(0, |v| v.parse().unwrap())
    };
    // The stop's last step may wait this long past the timeout for a job's
    // end being written (jobs.rs, `COMMIT_GRACE`).
    const COMMIT_GRACE: u64 = 2;
    let drain = seconds("RECON_DRAIN_DELAY") + seconds("RECON_SHUTDOWN_TIMEOUT") + COMMIT_GRACE;
    let probe =
        &yaml("k8s/deployment.yaml")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"];
    let unready_after =
        probe["periodSeconds"].as_u64().unwrap() * probe["failureThreshold"].as_u64().unwrap();
    assert!(
        seconds("RECON_DRAIN_DELAY") >= unready_after,
        "RECON_DRAIN_DELAY must cover the readiness probe's {unready_after} s to notice"
    );
    let grace =
        yaml("k8s/deployment.yaml")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
    assert!(
        grace > drain,
        "terminationGracePeriodSeconds {grace} must exceed drain delay + timeout {drain}"
    );

    let prod = yaml("compose/docker-compose.prod.yml");
    let drain: u64 = prod["services"]["recon"]["environment"]["RECON_SHUTDOWN_TIMEOUT"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap()
        + COMMIT_GRACE;
    let grace = prod["services"]["recon"]["stop_grace_period"]
        .as_str()
        .unwrap();
    let grace: u64 = grace.trim_end_matches('s').parse().unwrap();
    assert!(
        grace > drain,
        "stop_grace_period {grace}s must exceed the drain timeout {drain}s"
    );
}

#[test]
fn entrypoint_and_health_check_are_real_subcommands() {
    let entrypoint = dockerfile_instruction("ENTRYPOINT");
    let cmd = dockerfile_instruction("CMD");
    assert_eq!(entrypoint, ["recon"]);
    let status = recon().args(&cmd).arg("--help").output().unwrap();
    assert!(
        status.status.success(),
        "`recon {cmd:?} --help` failed: the image's CMD is not a subcommand"
    );

    let health = dockerfile_instruction("HEALTHCHECK");
    assert_eq!(health[0], "recon");
    let out = recon().args(&health[1..]).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "`recon {:?} --help` failed",
        &health[1..]
    );

    for file in [
        "compose/docker-compose.yml",
        "compose/docker-compose.prod.yml",
    ] {
        let test = &yaml(file)["services"]["recon"]["healthcheck"]["test"];
        let argv: Vec<&str> = test
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(argv[..2], ["CMD", "recon"], "{file}");
        assert_eq!(
            argv[2..],
            health[1..],
            "{file}: health check differs from the image's"
        );
    }
    let args = &yaml("k8s/deployment.yaml")["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args[0], cmd[0].as_str());
}

#[test]
fn every_env_var_is_one_the_config_accepts() {
    for (name, value, file) in deployment_env() {
        let out = recon()
            .args(["config", "show", "--format", "json"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(&name, &value)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{file}: {name}={value} rejected: {stderr}"
        );
        assert!(
            stdout.contains(&name),
            "{file}: {name} is not read by the configuration (it is not named as a source):\n{stdout}"
        );
    }
}

/// Metric names a PromQL expression uses (recon's prefixes only).
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("http_") || t.starts_with("recon_") || t.starts_with("process_"))
        .map(|t| {
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = t.strip_suffix(suffix) {
                    return base.to_owned();
                }
            }
            t.to_owned()
        })
        .collect()
}

fn source_text(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_text(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn dashboard_queries_only_metrics_the_service_emits() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/dashboards/recon.json")).unwrap(),
    )
    .unwrap();
    let mut code = String::new();
    source_text(&root().join("crates/recon-service/src"), &mut code);
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            names.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        let emitted = code.match_indices(&name).any(|(i, _)| {
            let before = code[..i].chars().next_back();
            let after = code[i + name.len()..].chars().next();
            let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            !ident(before) && !ident(after)
        });
        assert!(
            emitted,
            "the dashboard queries {name}, which recon-service never emits"
        );
    }
}

#[test]
fn probe_paths_answer_on_a_real_server_of_each_engine() {
    let deployment = yaml("k8s/deployment.yaml");
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    let probes: Vec<String> = ["livenessProbe", "readinessProbe", "startupProbe"]
        .iter()
        .map(|p| c[p]["httpGet"]["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(probes, ["/health", "/ready", "/health"]);
    for &engine in crate::support::ENGINES {
        let server = crate::support::Server::start(engine);
        let agent = crate::support::agent();
        for path in &probes {
            let res = agent.get(&server.url(path)).call().unwrap();
            assert_eq!(res.status(), 200, "{} {path}", engine.as_str());
        }
        // The image's HEALTHCHECK command, pointed at this server; a URL
        // without a path probes /health, a timeout may have a unit.
        let bare = server.url("/");
        for url in [server.url("/health"), bare.trim_end_matches('/').to_owned()] {
            let out = recon()
                .args(["healthcheck", "--url", &url, "--timeout", "2s"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "recon healthcheck --url {url} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // As the image runs it, without --url: the port comes from the same
        // environment serve reads, here the image's own PORT overridden by a
        // user's UVICORN_PORT.
        let port = server
            .url("/")
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        let out = recon()
            .arg("healthcheck")
            .current_dir(std::env::temp_dir())
            .env_clear()
            .envs([
                ("HOST", "0.0.0.0"),
                ("PORT", "1"),
                ("UVICORN_PORT", port.as_str()),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "recon healthcheck without --url failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        drop(server);
        let out = recon()
            .args([
                "healthcheck",
                "--url",
                "http://127.0.0.1:1/health",
                "--timeout",
                "1",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "a probe of a dead port must fail");
    }
}

/// The justfile's dev recipes point RECON_CONFIG at files that exist and
/// load, for their engine, with nothing to warn about; the recipes pass no
/// setting as a flag, so the user's environment still applies.
#[test]
fn dev_config_files_load_for_their_engine() {
    let justfile = std::fs::read_to_string(root().join("justfile")).unwrap();
    for engine in ["threaded", "async"] {
        let rel = format!("deploy/dev/{engine}.toml");
        let recipe = justfile
            .lines()
            .find(|l| l.contains(&rel) && l.contains("RECON_CONFIG="))
            .unwrap_or_else(|| panic!("no recipe uses {rel}"));
        assert!(
            recipe.contains(&format!("serve --engine {engine} {{{{ARGS}}}}")),
            "{recipe}"
        );
        let out = recon()
            .args([
                "config", "show", "--format", "json", "--vcpus", "2", "--memory", "4GiB",
            ])
            .current_dir(root())
            .env_clear()
            .env("RECON_CONFIG", &rel)
            .env("SERVER_TYPE", engine)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.is_empty(), "{rel}: {stderr}");
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["log_level"]["value"], "debug", "{rel}");
        assert_eq!(json["connection_limit"]["value"], "64", "{rel}");
    }
    assert!(
        !justfile.contains("--port"),
        "a recipe fixes the port as a flag"
    );
}

/// The prod recipes' comment names the variables that win over their
/// `HOST=0.0.0.0`: each is one recon reads for `host`, and does win.
#[test]
fn prod_recipes_name_only_host_variables_that_win() {
    let justfile = std::fs::read_to_string(root().join("justfile")).unwrap();
    let comment: String = justfile
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#'))
        .collect::<Vec<_>>()
        .join(" ");
    let mut clauses = 0;
    for clause in comment.split("the lowest-ranked env name:").skip(1) {
        let (winners, _) = clause
            .split_once("still win")
            .unwrap_or_else(|| panic!("no `still win` after: {clause}"));
        clauses += 1;
        let names: Vec<&str> = winners
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|w| w.ends_with("_HOST"))
            .collect();
        assert!(!names.is_empty(), "{winners}");
        for name in names {
            assert!(
                tuning::env_names("host").contains(&name),
                "the justfile says {name} wins over HOST, but recon does not read it"
            );
            let out = recon()
                .args([
                    "config", "show", "--format", "json", "--vcpus", "2", "--memory", "4GiB",
                ])
                .current_dir(root())
                .env_clear()
                .env("HOST", "0.0.0.0")
                .env(name, "10.1.2.3")
                .output()
                .unwrap();
            let json: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(json["host"]["value"], "10.1.2.3", "{name}");
        }
    }
    assert_eq!(clauses, 2, "one per prod recipe");
}
