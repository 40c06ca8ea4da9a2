//! `portier check DIR`: exit codes, rendered diagnostics, and robustness against garbage input.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{self, Fixture, QUICKSTART};
use crate::harness::BIN;

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `portier check <dir>` with a 10 s limit.
fn check(dir: &Path) -> Outcome {
    let out = tempfile::tempdir().expect("temporary directory for the output");
    let (so, se) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = Command::new(BIN)
        .arg("check")
        .arg(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&so).expect("stdout file"))
        .stderr(std::fs::File::create(&se).expect("stderr file"))
        .spawn()
        .expect("spawning portier check");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("polling portier check") {
            break s;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("portier check {} did not finish within 10 s", dir.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        code: status.code(),
        stdout: std::fs::read_to_string(&so).unwrap_or_default(),
        stderr: std::fs::read_to_string(&se).unwrap_or_default(),
    }
}

#[test]
fn exit_codes_and_rendered_diagnostics() {
    let good = Path::new(QUICKSTART);
    let missing_service = Fixture::new();
    let ingress = fixture::ingress("web", Some("web.e2e.test"), &[("/", "Prefix", "nope")]);
    missing_service.write("ingress.yaml", &ingress);
    // The error points at the Service name in the backend of the only path.
    let (line, text) = ingress
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("name: nope"))
        .expect("the fixture names Service nope");
    let col = text.find("nope").expect("on that line") + 1;
    let location = format!(
        "--> {}:{}:{col}",
        missing_service.path().join("ingress.yaml").display(),
        line + 1
    );
    let nonexistent = missing_service.path().join("does-not-exist");

    // (name, directory, exit code, text stdout must contain)
    let cases: [(&str, &Path, i32, &[&str]); 3] = [
        ("good", good, 0, &["0 errors"]),
        (
            "missing Service",
            missing_service.path(),
            1,
            &[
                "error: Ingress default/web: spec.rules[0].http.paths[0].backend.service",
                "Service default/nope not found",
                &location,
                "help: ",
            ],
        ),
        ("nonexistent directory", &nonexistent, 2, &[]),
    ];
    for (name, dir, code, want) in cases {
        let out = check(dir);
        assert_eq!(
            out.code,
            Some(code),
            "{name}: exit code\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
        for w in want {
            assert!(out.stdout.contains(w), "{name}: stdout lacks {w:?}:\n{}", out.stdout);
        }
        assert!(!out.stderr.contains("panicked"), "{name}: panic:\n{}", out.stderr);
    }
}

#[test]
fn garbage_files_are_diagnostics_not_crashes() {
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let depth = 5000;
    let cases: [(&str, Vec<u8>); 6] = [
        ("binary junk", junk),
        (
            "5000-deep flow list",
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
        ),
        (
            "5000-deep flow mapping",
            format!("{}x{}", "{a: ".repeat(depth), "}".repeat(depth)).into_bytes(),
        ),
        (
            "5000-deep block list",
            format!("{}x\n", "- ".repeat(depth)).into_bytes(),
        ),
        ("alias bomb", {
            let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
            for i in 1..10 {
                let p = i - 1;
                s.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{p}"); 10].join(", ")));
            }
            s.into_bytes()
        }),
        (
            "unterminated document",
            b"apiVersion: v1\nkind: Service\nmetadata: {name: \"x".to_vec(),
        ),
    ];
    for (name, content) in cases {
        let f = Fixture::new();
        f.write_bytes("x.yaml", &content);
        let out = check(f.path());
        assert!(
            !out.stderr.contains("panicked") && matches!(out.code, Some(0 | 1)),
            "{name}: portier check must report, not crash: exit {:?}\nstdout:\n{}\nstderr:\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        assert!(
            out.stdout.contains("x.yaml"),
            "{name}: no diagnostic names x.yaml:\n{}",
            out.stdout
        );
    }
}
