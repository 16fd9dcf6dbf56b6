//! The soak scenario: a 30-second run with the light mix against the root
//! crate's callback echo example (what CI runs), and clear failures when
//! the server does not start or ignores its timeouts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `target/<profile>` of this test binary (`target/<profile>/deps/soak-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// Builds (or confirms up to date) the root crate's `echo_callback` example
/// in this profile and returns its directory: `cargo test -p bench` alone
/// does not build the root crate's examples, and a stale one would lack the
/// timeout flags.
fn root_examples_dir() -> PathBuf {
    let profile = profile_dir();
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "--quiet", "--example", "echo_callback"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if profile.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .expect("run cargo build --example echo_callback");
    assert!(
        status.success(),
        "cargo build --example echo_callback failed"
    );
    let dir = profile.join("examples");
    assert!(
        dir.join("echo_callback").is_file(),
        "{} not built",
        dir.display()
    );
    dir
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .env("BENCH_BIN_DIR", profile_dir())
        .output()
        .expect("run the bench binary")
}

#[test]
fn thirty_second_soak_of_the_callback_echo_passes() {
    let examples = root_examples_dir();
    let out = std::env::temp_dir().join(format!("bench-soak-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "--soak",
            "--soak-light",
            "--soak-duration",
            "30s",
            "--soak-interval",
            "10s",
            "--soak-server",
            "echo_callback",
            "--soak-name",
            "ci",
            "--out",
        ])
        .arg(&out)
        .env("BENCH_EXAMPLES_DIR", &examples)
        .output()
        .expect("run the soak");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "soak failed:\n{stderr}\n{stdout}");
    assert!(stderr.contains("bench: soak: PASSED"), "{stderr}");
    // A sample line every 10 s, plus the baseline and the one after the load.
    let samples = stderr
        .lines()
        .filter(|l| l.contains(" rss ") && l.contains(" fds "))
        .count();
    assert_eq!(samples, 5, "{stderr}");
    let md = std::fs::read_to_string(out.join("ci.md")).expect("the markdown report");
    assert!(md.contains("# Soak: lib_callback — PASS"), "{md}");
    assert!(
        md.contains("--idle-timeout 1 --first-byte-timeout 1"),
        "{md}"
    );
    for kind in bench::soak::Kind::ALL {
        assert!(
            md.contains(&format!("| {} × ", kind.name())),
            "{kind:?}: {md}"
        );
    }
    let svg = std::fs::read_to_string(out.join("ci.svg")).expect("the chart");
    assert!(svg.contains("<svg") && svg.contains("server RSS"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_server_that_ignores_the_timeout_flags_fails_the_soak_at_once() {
    // The floor echo accepts and ignores unknown flags.
    let run = bench(&[
        "--soak",
        "--soak-light",
        "--soak-duration",
        "10s",
        "--soak-server",
        "epoll_floor",
        "--soak-slack",
        "500ms",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not apply the timeout flags"),
        "{stderr}"
    );
}

#[test]
fn a_server_that_does_not_start_is_named() {
    let run = bench(&[
        "--soak",
        "--server",
        "broken=/bin/false",
        "--soak-server",
        "broken",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("server did not start"), "{stderr}");
}

#[test]
fn dates_in_the_report_are_utc() {
    assert_eq!(bench::soak::utc_stamp(0), "1970-01-01 00:00 UTC");
    assert_eq!(
        bench::soak::utc_stamp(1_700_000_000),
        "2023-11-14 22:13 UTC"
    );
    assert_eq!(bench::soak::utc_stamp(951_782_400), "2000-02-29 00:00 UTC");
}
