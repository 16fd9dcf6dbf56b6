//! Command line of the real-server scenarios: `bench --scenarios redis,http-plaintext,proxy`.

use super::{plaintext, proxy, redis, Run, Which};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Usage text for these scenarios (appended to the bench's).
pub const USAGE: &str = "\
real servers: --scenarios redis,http-plaintext,proxy (any of them, on their own)

  redis                  redis-benchmark against examples/redis and redis-server
  http-plaintext         wrk (plain and 16-deep pipelined) against examples/http_plaintext and nginx
  proxy                  ping-pong through examples/proxy against examples/echo_callback directly
  --rounds N             rounds, servers alternated within each (default 3)
  --redis-tests LIST     redis-benchmark -t tests, run one at a time
                         (default ping_inline,ping_mbulk,set,get,incr,lpush,lpop,mset)
  --redis-pipelines LIST pipeline depths, -P (default 1,16)
  --redis-clients C      -c (default 50)
  --redis-requests N     -n for every run (default: calibrated per test and depth)
  --redis-seconds S      target length of one calibrated run (default 1.5)
  --http-connections C   wrk -c (default 100)
  --http-threads T       wrk -t (default 1)
  --http-duration D      wrk -d, whole seconds (default 5s)
  --http-depth K         requests per batch when pipelined (default 16)
  --wrk PATH             wrk executable (default: wrk on PATH, installed when missing)
  --proxy-connections L  ping-pong connection counts (default 100,1000)
  --duration D           proxy: timed window per measurement (default 2s)
  --size S               proxy: message bytes (default 64)
  --out DIR              results directory (default bench/results)
  --smoke                1 round, short runs (redis -n 20000, wrk 1 s × 10 conns, 150 ms windows × 4 conns)
  Missing tools are installed with apt-get (redis-server, redis-tools, nginx-light, wrk).
";

/// Whether `args` ask for any real-server scenario.
pub fn wanted(args: &[String]) -> bool {
    args.windows(2)
        .any(|w| w[0] == "--scenarios" && w[1].split(',').any(|s| Which::parse(s.trim()).is_some()))
}

/// Everything the real-server scenarios need.
#[derive(Debug, Clone)]
pub struct Options {
    /// Scenarios, in order.
    pub scenarios: Vec<Which>,
    /// Rounds.
    pub rounds: usize,
    /// `redis` options.
    pub redis: redis::Options,
    /// `http-plaintext` options.
    pub http: plaintext::Options,
    /// `proxy` options.
    pub proxy: proxy::Options,
    /// Results directory.
    pub out: PathBuf,
}

fn list<T>(v: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    v.split(',')
        .map(|s| f(s.trim()).ok_or_else(|| format!("bad list item {s:?}")))
        .collect()
}

/// Parses the arguments; `None` for `--help`.
pub fn parse(args: Vec<String>) -> Result<Option<Options>, String> {
    let smoke = args.iter().any(|a| a == "--smoke");
    let mut o = Options {
        scenarios: Vec::new(),
        rounds: 3,
        redis: redis::Options::default(),
        http: plaintext::Options::default(),
        proxy: proxy::Options::default(),
        out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results")),
    };
    if smoke {
        o.rounds = 1;
        o.redis.requests = Some(20_000);
        o.http.duration = Duration::from_secs(1);
        o.http.connections = 10;
        o.proxy.duration = Duration::from_millis(150);
        o.proxy.connections = vec![4];
    }
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|_| format!("bad number {v:?}"));
        let secs = |v: String| -> Result<Duration, String> {
            let t = v.trim_end_matches('s');
            let ms = v.strip_suffix("ms").map(|m| m.parse::<u64>());
            match ms {
                Some(Ok(ms)) => Ok(Duration::from_millis(ms)),
                _ => t
                    .parse::<f64>()
                    .ok()
                    .filter(|s| (0.0..=60.0).contains(s))
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("bad duration {v:?} (up to 60s)")),
            }
        };
        match a.as_str() {
            "--smoke" => {}
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--scenarios" => {
                o.scenarios = list(&val()?, Which::parse).map_err(|e| {
                    format!("{e}: redis, http-plaintext and proxy run only among themselves")
                })?
            }
            "--rounds" => o.rounds = num(val()?)?.max(1),
            "--redis-tests" => o.redis.tests = list(&val()?, |s| Some(s.to_string()))?,
            "--redis-pipelines" => {
                o.redis.pipelines = list(&val()?, |s| s.parse().ok().filter(|&p| p > 0))?
            }
            "--redis-clients" => o.redis.clients = num(val()?)?.max(1),
            "--redis-requests" => o.redis.requests = Some(num(val()?)?.max(1) as u64),
            "--redis-seconds" => o.redis.seconds = secs(val()?)?.as_secs_f64().max(0.1),
            "--http-connections" => o.http.connections = num(val()?)?.max(1),
            "--http-threads" => o.http.threads = num(val()?)?.max(1),
            "--http-duration" => o.http.duration = secs(val()?)?,
            "--http-depth" => o.http.depth = num(val()?)?.max(1),
            "--wrk" => o.http.wrk = PathBuf::from(val()?),
            "--proxy-connections" => {
                o.proxy.connections = list(&val()?, |s| s.parse().ok().filter(|&c| c > 0))?
            }
            "--duration" => o.proxy.duration = secs(val()?)?,
            "--size" => o.proxy.msg_size = num(val()?)?.max(1),
            "--out" => o.out = PathBuf::from(val()?),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Some(o))
}

/// Runs the chosen scenarios, prints and writes the tables.
pub fn main(args: Vec<String>) -> ExitCode {
    let o = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    let mut md = format!(
        "## epoll-server against real servers\n\nMachine: {} cores, load tool on the same machine; \
         CPU from /proc/PID/stat ({} ms ticks).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        1000 / crate::sys::clock_ticks_per_sec(),
    );
    let progress = |r: &Run| eprintln!("{}", r.line());
    for &w in &o.scenarios {
        eprintln!("bench: scenario {}", w.name());
        let result = match w {
            Which::Redis => redis::run(&o.redis, o.rounds, progress)
                .map(|runs| redis::markdown(&runs, &o.redis, o.rounds)),
            Which::HttpPlaintext => ensure_wrk(&o.http)
                .and_then(|http| plaintext::run(&http, o.rounds, progress))
                .map(|runs| plaintext::markdown(&runs, &o.http, o.rounds)),
            Which::Proxy => proxy::run(&o.proxy, o.rounds, progress)
                .map(|runs| proxy::markdown(&runs, &o.proxy, o.rounds)),
        };
        match result {
            Ok(table) => {
                md += "\n";
                md += &table;
            }
            Err(e) => {
                eprintln!("bench: {} FAILED: {e}", w.name());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{md}");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let names: Vec<&str> = o.scenarios.iter().map(|w| w.name()).collect();
    let path = o.out.join(format!("real-{}-{stamp}.md", names.join("-")));
    let written = std::fs::create_dir_all(&o.out).and_then(|()| std::fs::write(&path, &md));
    if let Err(e) = written {
        eprintln!("bench: writing {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("bench: wrote {}", path.display());
    ExitCode::SUCCESS
}

fn ensure_wrk(http: &plaintext::Options) -> Result<plaintext::Options, String> {
    let wrk = crate::http::ensure_wrk(&http.wrk)?;
    Ok(plaintext::Options {
        wrk,
        ..http.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_scenarios_and_options() {
        assert!(wanted(&args("--rounds 2 --scenarios redis")));
        assert!(!wanted(&args("--scenarios pingpong,http")));
        let o = parse(args(
            "--scenarios redis,proxy --rounds 5 --redis-pipelines 1,4 --duration 500ms --http-duration 3s",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.scenarios, vec![Which::Redis, Which::Proxy]);
        assert_eq!(o.rounds, 5);
        assert_eq!(o.redis.pipelines, vec![1, 4]);
        assert_eq!(o.proxy.duration, Duration::from_millis(500));
        assert_eq!(o.http.duration, Duration::from_secs(3));
        assert!(parse(args("--scenarios redis,pingpong")).is_err());
    }
}
