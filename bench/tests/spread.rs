//! The `spread` scenario and `--reactors` through the bench binary, tiny: they run the root
//! crate's release `echo_callback`, so they are skipped with a note until
//! `cargo build --release --examples` has built it.

use bench::servers::root_examples_dir;
use std::process::Command;

fn echo_callback_built() -> bool {
    let built = root_examples_dir().join("echo_callback").is_file();
    if !built {
        eprintln!("skipping: examples/echo_callback (release) is not built");
    }
    built
}

fn bench(args: &[&str], tag: &str) -> (String, String) {
    let out = std::env::temp_dir().join(format!("bench-{tag}-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the bench binary");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "bench failed:\n{stderr}\n{stdout}");
    let _ = std::fs::remove_dir_all(&out);
    (stdout, stderr)
}

#[test]
fn spread_counts_every_reactor_in_both_modes() {
    if !echo_callback_built() {
        return;
    }
    let (stdout, stderr) = bench(
        &[
            "--scenarios",
            "spread",
            "--rounds",
            "1",
            "--spread-connections",
            "64",
            "--no-perf",
        ],
        "spread",
    );
    assert!(stdout.contains("### spread"), "{stdout}");
    for mode in ["reuseport", "shared"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {mode} | 2 | ")))
            .unwrap_or_else(|| panic!("no {mode} row:\n{stdout}"));
        let counts: Vec<u64> = row
            .split('|')
            .nth(3)
            .unwrap()
            .split_whitespace()
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(counts.len(), 2, "{row}");
        assert_eq!(counts.iter().sum::<u64>(), 64, "{row}");
    }
    assert!(
        stderr.contains("all 64 connections accepted each time: OK"),
        "{stderr}"
    );
}

#[test]
fn reactor_list_runs_our_server_once_per_count_with_per_thread_cpu() {
    if !echo_callback_built() {
        return;
    }
    let (stdout, _) = bench(
        &[
            "--smoke",
            "--no-perf",
            "--scenarios",
            "pingpong",
            "--servers",
            "lib_callback",
            "--reactors",
            "1,2",
        ],
        "reactors",
    );
    assert!(stdout.contains("once per reactor count 1, 2"), "{stdout}");
    assert!(stdout.contains("| lib_callback_r1 |"), "{stdout}");
    assert!(stdout.contains("| lib_callback_r2 |"), "{stdout}");
    assert!(
        stdout.contains("Per-thread CPU (ms in window, median round):"),
        "{stdout}"
    );
    let r2 = stdout
        .lines()
        .find(|l| l.starts_with("- lib_callback_r2: "))
        .unwrap_or_else(|| panic!("no per-thread line for lib_callback_r2:\n{stdout}"));
    assert!(r2.contains("epoll-server-1 "), "{r2}");
}
