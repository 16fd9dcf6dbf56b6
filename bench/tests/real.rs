//! The real-server scenarios (`--scenarios redis,http-plaintext,proxy`), tiny,
//! through the bench binary: each runs when its tools and the root crate's
//! release examples are there, and is skipped with a note otherwise (the test
//! never installs packages).

use bench::real::which;
use bench::servers::root_examples_dir;
use std::process::Command;

fn missing(tools: &[&str], examples: &[&str]) -> Option<String> {
    let mut gone: Vec<String> = tools
        .iter()
        .filter(|t| which(t).is_none())
        .map(|t| t.to_string())
        .collect();
    gone.extend(
        examples
            .iter()
            .filter(|e| !root_examples_dir().join(e).is_file())
            .map(|e| format!("examples/{e} (release)")),
    );
    (!gone.is_empty()).then(|| gone.join(", "))
}

fn smoke(scenario: &str, tools: &[&str], examples: &[&str], table: &str) {
    if let Some(m) = missing(tools, examples) {
        eprintln!("skipping the {scenario} smoke run: missing {m}");
        return;
    }
    let out = std::env::temp_dir().join(format!("bench-real-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--smoke", "--scenarios", scenario])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the bench binary");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "{scenario} failed:\n{stderr}\n{stdout}"
    );
    assert!(stdout.contains(&format!("### {scenario}")), "{stdout}");
    assert!(stdout.contains(table), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn redis_scenario_smoke() {
    smoke(
        "redis",
        &["redis-server", "redis-benchmark"],
        &["redis"],
        "| mset | 16 |",
    );
}

#[test]
fn http_plaintext_scenario_smoke() {
    smoke(
        "http-plaintext",
        &["nginx", "wrk"],
        &["http_plaintext"],
        "| pipelined |",
    );
}

#[test]
fn proxy_scenario_smoke() {
    smoke("proxy", &[], &["proxy", "echo_callback"], "| pingpong 4 |");
}
