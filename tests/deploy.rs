//! `deploy/`: the Kubernetes manifests and the SSH script that split one `netloop stress`
//! over many machines, exercised on this one.
//!
//! The manifests are parsed as YAML (python3's `yaml`, the one YAML reader at hand; CI
//! installs it), checked for the shape an Indexed Job needs, and the stress pod's own
//! command (the manifest's shell line, its environment) is run here once per index, as
//! the pods would run it, against a local server, and the logs merged. The server's
//! command uses only options `netloop serve` has. The SSH script runs unchanged with its
//! `ssh` and `scp` replaced by local stand-ins: N "hosts" on loopback, each with its own
//! source addresses. Bounded: a few connections, one-second holds, every command waited
//! for at most `common::TIMEOUT`.

mod common;
mod stress_common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::{netloop_bin, run_bounded, run_netloop, RunOutput, Server};
use stress_common::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A python3 that can `import yaml`, if there is one (CI installs it: without one,
/// with CI=true, the test fails rather than passing unchecked).
fn python_with_yaml() -> Option<&'static str> {
    let found = ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import yaml"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no python3 with the yaml module: the manifests cannot be checked"
        );
        eprintln!("skipped: no python3 with the yaml module");
    }
    found
}

/// Every document of a YAML file, as JSON.
#[track_caller]
fn yaml_docs(python: &str, file: &Path) -> Vec<Value> {
    let out = Command::new(python)
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(file)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

#[track_caller]
fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {docs:?}"))
}

/// The `--long` options a command's `--help` lists.
fn help_options(args: &[&str]) -> BTreeSet<String> {
    let out = run_netloop(args, b"");
    assert!(out.status.success(), "{args:?}: {}", out.stderr);
    options_in(&String::from_utf8_lossy(&out.stdout))
}

/// The `--long` options named in `text`.
fn options_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == '=' || c == ',' || c == '[')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .collect()
}

/// Run `sh -c SCRIPT` with `env` (through `env`, so the common bounded runner does it).
#[track_caller]
fn sh_with_env(script: &str, env: &[(String, String)]) -> RunOutput {
    let mut args: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    args.extend(["sh".into(), "-c".into(), script.into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_bounded(Path::new("/usr/bin/env"), &args, b"")
}

/// `PATH` with netloop's directory first, as in the image.
fn path_with_netloop() -> String {
    let bin = netloop_bin();
    format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn kubernetes_manifests_parse_and_the_job_runs_as_its_pods_would() {
    let Some(python) = python_with_yaml() else {
        return;
    };
    let dir = repo("deploy/kubernetes");
    let server = yaml_docs(python, &dir.join("server.yaml"));
    let job_docs = yaml_docs(python, &dir.join("stress-job.yaml"));
    let logs = yaml_docs(python, &dir.join("logs.yaml"));

    // The server: only options `netloop serve` has; the Service reaches its port.
    let deployment = find(&server, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let command: Vec<&str> = container["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(&command[..2], ["netloop", "serve"], "{command:?}");
    let serve_options = help_options(&["serve", "--help"]);
    for option in options_in(&command.join(" ")) {
        assert!(
            serve_options.contains(&option),
            "netloop serve has no {option}"
        );
    }
    let port = container["ports"][0]["containerPort"].as_u64().unwrap();
    assert!(
        command.join(" ").contains(&format!(":{port}")),
        "{command:?}"
    );
    let service = find(&server, "Service");
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"].as_u64(),
        Some(port)
    );

    // The Job: indexed, all segments at once, never retried, logs on the shared claim.
    let job = find(&job_docs, "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["backoffLimit"], 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let stress = &pod["containers"][0];
    let env: Vec<(String, String)> = stress["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let var = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {env:?}"))
    };
    let segments: u64 = var("SEGMENTS").parse().unwrap();
    assert_eq!(spec["completions"].as_u64(), Some(segments));
    assert_eq!(spec["parallelism"].as_u64(), Some(segments));
    let mount = &stress["volumeMounts"][0];
    assert_eq!(mount["mountPath"].as_str(), Some(var("LOG_DIR").as_str()));
    let claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"].clone();
    assert_eq!(
        find(&logs, "PersistentVolumeClaim")["metadata"]["name"],
        claim
    );
    assert_eq!(stress["command"], serde_json::json!(["sh", "-c"]));
    let script = stress["args"][0].as_str().expect("the pod's shell line");
    let stress_options = help_options(&["stress", "--help"]);
    for option in options_in(script) {
        assert!(
            stress_options.contains(&option),
            "netloop stress has no {option}"
        );
    }

    // Run the pods' command here, one per index, against a local server: the
    // manifest's line and environment, with the target, the counts, the start time and
    // the log directory of this test.
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let log_dir = common::TempPath::new("k8s-logs");
    std::fs::create_dir_all(&log_dir.0).unwrap();
    let start_at = (unix_now() + 4).to_string();
    let (idle, active) = (10u64, 4u64);
    let outputs: Vec<RunOutput> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..segments)
            .map(|k| {
                let mut env = env.clone();
                let mut set = |name: &str, value: String| {
                    env.retain(|(n, _)| n != name);
                    env.push((name.to_string(), value));
                };
                set("TARGET", server.addr().to_string());
                set("IDLE", idle.to_string());
                set("ACTIVE", active.to_string());
                set("HOLD", "1".into());
                set("START_AT", start_at.clone());
                set("LOG_DIR", log_dir.as_str().to_string());
                set("JOB_COMPLETION_INDEX", k.to_string());
                set("PATH", path_with_netloop());
                scope.spawn(move || sh_with_env(script, &env))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (k, out) in outputs.iter().enumerate() {
        assert!(out.status.success(), "pod {k}: {}", out.stderr);
        let v: Value = serde_json::from_slice(&out.stdout).expect("the pod's JSON report");
        assert_eq!(v["segments"][0], format!("{k}/{segments}"), "{v}");
    }
    let run_dir = log_dir.0.join(&start_at);
    let files: Vec<String> = (0..segments)
        .map(|k| run_dir.join(format!("seg-{k}.hlog")).display().to_string())
        .collect();
    let mut args = vec!["stress", "merge", "--json"];
    args.extend(files.iter().map(String::as_str));
    let merged = run_netloop(&args, b"");
    assert!(merged.status.success(), "{}", merged.stderr);
    let v: Value = serde_json::from_slice(&merged.stdout).expect("merged JSON");
    assert_eq!(v["conns_requested"].as_u64(), Some(idle + active), "{v}");
    assert_eq!(v["active"].as_u64(), Some(active), "{v}");
    assert!(!merged.stderr.contains("missing"), "{}", merged.stderr);
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_dir(&run_dir);
    let _ = std::fs::remove_dir(&log_dir.0);
}

#[test]
fn ssh_script_runs_one_segment_per_host_and_merges() {
    let echoed = Arc::new(AtomicU64::new(0));
    let peers: Arc<Mutex<BTreeSet<IpAddr>>> = Arc::default();
    let server = {
        let (echoed, peers) = (echoed.clone(), peers.clone());
        ThreadServer::start(move |s, _| {
            peers.lock().unwrap().insert(s.peer_addr().unwrap().ip());
            echo_counting(s, &echoed)
        })
    };
    // Local stand-ins for ssh (HOST COMMAND: run COMMAND here) and scp (HOST:PATH LOCAL).
    let ssh = common::TempPath::new("ssh");
    let scp = common::TempPath::new("scp");
    std::fs::write(&ssh.0, "#!/bin/sh\nexec bash -c \"$2\"\n").unwrap();
    std::fs::write(&scp.0, "#!/bin/sh\nexec cp \"${1#*:}\" \"$2\"\n").unwrap();
    for f in [&ssh, &scp] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = common::TempPath::new("ssh-run");
    let bin = netloop_bin().display().to_string();
    let addr = server.addr();
    let env = [
        format!("NETLOOP_SSH={}", ssh.as_str()),
        format!("NETLOOP_SCP={}", scp.as_str()),
        format!("NETLOOP_REMOTE={bin}"),
        format!("NETLOOP={bin}"),
    ];
    let script = repo("deploy/ssh/run.sh").display().to_string();
    let mut args: Vec<&str> = env.iter().map(String::as_str).collect();
    args.extend([
        "bash",
        &script,
        "--lead",
        "4",
        "--out",
        out.as_str(),
        "--json",
        "--plot",
        "hostA=127.0.0.30",
        "hostB=127.0.0.31",
        "hostC=127.0.0.32-127.0.0.33",
        "--",
        &addr,
        "--idle",
        "30",
        "--active",
        "6",
        "--hold",
        "1",
    ]);
    let run = run_bounded(Path::new("/usr/bin/env"), &args, b"");
    let listing: Vec<PathBuf> = std::fs::read_dir(&out.0)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    let cleanup = || {
        for f in &listing {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir(&out.0);
    };
    if !run.status.success() {
        let outs: Vec<String> = listing
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "out"))
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect();
        cleanup();
        panic!("run.sh failed: {}\nhosts: {outs:#?}", run.stderr);
    }
    let v: Value = serde_json::from_slice(&run.stdout).expect("merged JSON on stdout");
    assert_report_shape(&v);
    assert_eq!(v["conns_requested"], 36, "{v}");
    assert_eq!(v["conns_open"], 36, "{v}");
    assert_eq!(v["active"], 6, "{v}");
    assert_eq!(
        v["source_ips"], "127.0.0.30, 127.0.0.31, 127.0.0.32-127.0.0.33",
        "every host's addresses: {v}"
    );
    assert!(
        run.stderr.contains("segments: 0/3 1/3 2/3"),
        "{}",
        run.stderr
    );
    // Each "host" connected from its own addresses, and only from those.
    let seen = peers.lock().unwrap().clone();
    let allowed: BTreeSet<IpAddr> = (30..=33)
        .map(|i| format!("127.0.0.{i}").parse().unwrap())
        .collect();
    assert!(seen.is_subset(&allowed), "{seen:?}");
    for i in [30, 31] {
        assert!(
            seen.contains(&format!("127.0.0.{i}").parse().unwrap()),
            "{seen:?}"
        );
    }
    assert!(
        seen.iter()
            .any(|ip| ip.to_string() == "127.0.0.32" || ip.to_string() == "127.0.0.33"),
        "{seen:?}"
    );
    // The picture of the whole test.
    let svg = std::fs::read_to_string(out.0.join("latency.svg")).expect("latency.svg");
    roxmltree::Document::parse(&svg).expect("the SVG parses");
    cleanup();
}

/// The indented command lines of a Markdown file, continuation lines (`\`) joined.
fn commands_in(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in markdown.lines() {
        let Some(code) = line.strip_prefix("    ") else {
            continue;
        };
        let code = code.trim();
        match code.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(code);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// The commands to copy in README.md and deploy/README.md use only options that exist:
/// `netloop stress`, `stress merge`, `serve` and `deploy/ssh/run.sh` (its own before
/// `--`, the stress options after).
#[test]
fn documented_commands_use_only_options_the_cli_has() {
    let stress = help_options(&["stress", "--help"]);
    let merge = help_options(&["stress", "merge", "--help"]);
    let serve = help_options(&["serve", "--help"]);
    let script = std::fs::read_to_string(repo("deploy/ssh/run.sh")).unwrap();
    let usage = script
        .lines()
        .find(|l| l.contains("deploy/ssh/run.sh ["))
        .expect("run.sh's usage line");
    let run_sh = options_in(usage.split("HOST").next().unwrap());
    let mut checked = 0;
    for doc in ["README.md", "deploy/README.md"] {
        let text = std::fs::read_to_string(repo(doc)).unwrap();
        for command in commands_in(&text) {
            // Comments are not commands.
            let command = command.split(" # ").next().unwrap().to_string();
            let (known, what): (Vec<&BTreeSet<String>>, &str) =
                if command.contains("netloop stress merge") {
                    (vec![&merge], "netloop stress merge")
                } else if command.contains("netloop stress") {
                    (vec![&stress], "netloop stress")
                } else if command.contains("netloop serve") {
                    (vec![&serve], "netloop serve")
                } else if command.contains("deploy/ssh/run.sh") {
                    let (own, theirs) = command.split_once(" -- ").expect("run.sh ... -- ...");
                    for option in options_in(own) {
                        assert!(run_sh.contains(&option), "{doc}: run.sh has no {option}");
                    }
                    for option in options_in(theirs) {
                        assert!(stress.contains(&option), "{doc}: stress has no {option}");
                    }
                    checked += 1;
                    continue;
                } else {
                    continue;
                };
            for option in options_in(&command) {
                assert!(
                    known.iter().any(|k| k.contains(&option)),
                    "{doc}: {what} has no {option}: {command}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} commands found");
}
