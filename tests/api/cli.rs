//! The `portcullis` binary itself: offline `validate` and `check` exit
//! codes, config errors exit 64, and `serve` exits 0 on SIGTERM.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::helpers::{ALICE, BOB, ONBOARDING, WRITE, repo_path};

fn portcullis(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    // Run outside the repository so config/portcullis.toml is not picked up.
    command.current_dir(std::env::temp_dir()).args(args);
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().expect("run portcullis")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn check(principal: &str, entities: &Path, context: &str) -> Output {
    let policies = repo_path("policies");
    portcullis(
        &[
            "check",
            "--policies",
            path(&policies),
            "--principal",
            principal,
            "--action",
            WRITE,
            "--resource",
            ONBOARDING,
            "--entities",
            path(entities),
            "--context",
            context,
        ],
        &[],
    )
}

#[test]
fn validate_accepts_the_sample_policies() {
    let out = portcullis(
        &["validate", "--policies", path(&repo_path("policies"))],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("9 policies valid"),
        "{out:?}"
    );
}

#[test]
fn validate_names_file_and_line_of_an_invalid_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policies = repo_path("policies");
    std::fs::copy(
        policies.join("docs.cedarschema"),
        dir.path().join("docs.cedarschema"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.cedar"),
        "permit (principal, action, resource);\n\npermit (principal, action == Docs::Action::\"fly\", resource);\n",
    )
    .unwrap();
    let out = portcullis(&["validate", "--policies", path(dir.path())], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.cedar:3:"), "{stderr}");
    assert!(stderr.contains("fly"), "{stderr}");
}

#[test]
fn check_exits_0_on_allow_1_on_deny_2_on_error() {
    let entities = repo_path("policies/examples/entities.json");
    let allow = check(ALICE, &entities, "{}");
    assert_eq!(allow.status.code(), Some(0), "{allow:?}");
    assert!(String::from_utf8_lossy(&allow.stdout).contains("\"Allow\""));

    let deny = check(BOB, &entities, "{}");
    assert_eq!(deny.status.code(), Some(1), "{deny:?}");
    assert!(String::from_utf8_lossy(&deny.stdout).contains("\"Deny\""));

    let error = check(ALICE, &entities, "not json");
    assert_eq!(error.status.code(), Some(2), "{error:?}");
    let missing = check(ALICE, Path::new("/nonexistent/entities.json"), "{}");
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
}

#[test]
fn unknown_config_key_exits_64_naming_the_key() {
    let out = portcullis(&["serve"], &[("PORTCULLIS_CACHE__DECISION_CAPACITYY", "1")]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("decision_capacityy"));
}

#[test]
fn serve_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .current_dir(dir.path())
        .arg("serve")
        .env("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0")
        .env("PORTCULLIS_STORE__PATH", dir.path().join("db.sqlite"))
        .env("PORTCULLIS_POLICIES__DIR", repo_path("policies"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    // Wait until it listens: it logs that line once the socket is bound.
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("serve starts listening");
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "serve must exit 0 on SIGTERM");
}
