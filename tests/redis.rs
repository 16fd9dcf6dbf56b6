//! The `redis` example end to end, as a separate process on a loopback port: every command
//! through the `redis` crate (an independent RESP client), pipelining, each class of error, and
//! on raw sockets the exact bytes Redis 7 sends, inline requests, protocol errors and size
//! limits (answered, then only that connection closes), QUIT and a graceful stop.
//!
//! The expected bytes were recorded from redis-server 7.0.15; no test needs a Redis server.

mod common_process;

use common_process::Example;
use redis::{Connection, RedisError, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The longest any single read or wait may take.
const WAIT: Duration = Duration::from_secs(10);

fn client(example: &Example) -> Connection {
    let url = format!("redis://{}/", example.addr);
    let con = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(WAIT))
        .expect("connect with the redis crate");
    con.set_read_timeout(Some(WAIT)).unwrap();
    con.set_write_timeout(Some(WAIT)).unwrap();
    con
}

/// Runs one command given as words and returns its reply.
fn run<T: redis::FromRedisValue>(con: &mut Connection, words: &[&str]) -> T {
    let mut cmd = redis::cmd(words[0]);
    for word in &words[1..] {
        cmd.arg(*word);
    }
    cmd.query(con)
        .unwrap_or_else(|e| panic!("{words:?} failed: {e}"))
}

/// Runs one command that must fail, and returns the error's code and text.
#[track_caller]
fn fails(con: &mut Connection, words: &[&str]) -> (String, String) {
    let mut cmd = redis::cmd(words[0]);
    for word in &words[1..] {
        cmd.arg(*word);
    }
    let err: RedisError = cmd
        .query::<Value>(con)
        .expect_err(&format!("{words:?} should fail"));
    (
        err.code().unwrap_or_default().to_string(),
        err.detail().unwrap_or_default().to_string(),
    )
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// Up to 100 bytes of `bytes` as text, for failure messages.
fn show(bytes: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(100)]).into_owned();
    if bytes.len() > 100 {
        format!("{shown:?}... ({} bytes)", bytes.len())
    } else {
        format!("{shown:?}")
    }
}

/// Sends `request` and reads exactly as many bytes as `expected` holds, then compares them.
#[track_caller]
fn exchange(stream: &mut TcpStream, request: &[u8], expected: &[u8]) {
    stream.write_all(request).unwrap();
    let mut got = vec![0u8; expected.len()];
    stream.read_exact(&mut got).unwrap_or_else(|e| {
        panic!(
            "waiting for {} after {}: {e}",
            show(expected),
            show(request)
        )
    });
    assert!(
        got == expected,
        "reply to {}: got {}, expected {}",
        show(request),
        show(&got),
        show(expected)
    );
}

/// Everything the server sends until it closes the connection (end of file, or a reset after
/// its last bytes), within `WAIT`.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(Instant::now() < deadline, "the server did not close");
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading until the server closes: {e}"),
        }
    }
}

/// A request in RESP multibulk form.
fn multibulk(words: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        out.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
        out.extend_from_slice(word);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn strings_and_counters_through_the_redis_crate() {
    let example = Example::start("redis", &[]);
    let mut con = client(&example);

    assert_eq!(run::<String>(&mut con, &["PING"]), "PONG");
    assert_eq!(run::<String>(&mut con, &["ping", "hello"]), "hello");
    assert_eq!(run::<String>(&mut con, &["ECHO", "hi there"]), "hi there");

    assert_eq!(run::<String>(&mut con, &["SET", "greeting", "hello"]), "OK");
    assert_eq!(run::<String>(&mut con, &["GET", "greeting"]), "hello");
    assert_eq!(run::<Option<String>>(&mut con, &["GET", "missing"]), None);
    // NX sets only a missing key, XX only an existing one.
    assert_eq!(
        run::<Value>(&mut con, &["SET", "greeting", "x", "NX"]),
        Value::Nil
    );
    assert_eq!(
        run::<Value>(&mut con, &["set", "fresh", "1", "nx"]),
        Value::Okay
    );
    assert_eq!(
        run::<Value>(&mut con, &["SET", "absent", "x", "XX"]),
        Value::Nil
    );
    assert_eq!(
        run::<Value>(&mut con, &["SET", "greeting", "hey", "XX"]),
        Value::Okay
    );
    assert_eq!(run::<String>(&mut con, &["GET", "greeting"]), "hey");
    // Binary-safe values, empty and with every byte.
    let binary: Vec<u8> = (0..=255u8).collect();
    let _: () = redis::cmd("SET")
        .arg("bin")
        .arg(binary.as_slice())
        .query(&mut con)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("bin").query(&mut con).unwrap();
    assert_eq!(back, binary);
    assert_eq!(run::<String>(&mut con, &["SET", "empty", ""]), "OK");
    assert_eq!(run::<String>(&mut con, &["GET", "empty"]), "");
    // A long value is sent by reference, not copied: it must still arrive whole.
    let long = "v".repeat(100_000);
    assert_eq!(run::<String>(&mut con, &["SET", "long", &long]), "OK");
    assert_eq!(run::<String>(&mut con, &["GET", "long"]), long);

    assert_eq!(
        run::<i64>(&mut con, &["EXISTS", "greeting", "greeting", "missing"]),
        2
    );
    assert_eq!(
        run::<i64>(&mut con, &["DEL", "greeting", "missing", "fresh"]),
        2
    );
    assert_eq!(run::<i64>(&mut con, &["EXISTS", "greeting"]), 0);

    assert_eq!(run::<i64>(&mut con, &["INCR", "counter"]), 1);
    assert_eq!(run::<i64>(&mut con, &["INCRBY", "counter", "41"]), 42);
    assert_eq!(run::<i64>(&mut con, &["DECR", "counter"]), 41);
    assert_eq!(run::<i64>(&mut con, &["INCRBY", "counter", "-50"]), -9);
    assert_eq!(run::<i64>(&mut con, &["DECRBY", "counter", "1"]), -10);
    assert_eq!(run::<String>(&mut con, &["GET", "counter"]), "-10");
    assert_eq!(run::<String>(&mut con, &["SET", "counter", "100"]), "OK");
    assert_eq!(run::<i64>(&mut con, &["incr", "counter"]), 101);

    assert_eq!(
        run::<String>(&mut con, &["MSET", "a", "1", "b", "two", "a", "3"]),
        "OK"
    );
    assert_eq!(
        run::<Vec<Option<String>>>(&mut con, &["MGET", "a", "b", "nope", "counter"]),
        [
            Some("3".into()),
            Some("two".into()),
            None,
            Some("101".into())
        ]
    );
    // A key of another type reads as nil in MGET.
    assert_eq!(run::<i64>(&mut con, &["LPUSH", "list", "x"]), 1);
    assert_eq!(
        run::<Value>(&mut con, &["MGET", "list"]),
        Value::Array(vec![Value::Nil])
    );

    // bin, empty, long, counter, a, b, list
    assert_eq!(run::<i64>(&mut con, &["DBSIZE"]), 7);
    assert_eq!(run::<String>(&mut con, &["FLUSHALL"]), "OK");
    assert_eq!(run::<i64>(&mut con, &["DBSIZE"]), 0);
    assert_eq!(run::<String>(&mut con, &["FLUSHALL", "ASYNC"]), "OK");
}

#[test]
fn lists_sets_and_hashes_through_the_redis_crate() {
    let example = Example::start("redis", &[]);
    let mut con = client(&example);

    assert_eq!(run::<i64>(&mut con, &["LPUSH", "l", "b", "a"]), 2);
    assert_eq!(run::<i64>(&mut con, &["RPUSH", "l", "c", "d", "e"]), 5);
    assert_eq!(
        run::<Vec<String>>(&mut con, &["LRANGE", "l", "0", "-1"]),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(
        run::<Vec<String>>(&mut con, &["LRANGE", "l", "1", "2"]),
        ["b", "c"]
    );
    assert_eq!(
        run::<Vec<String>>(&mut con, &["LRANGE", "l", "-2", "100"]),
        ["d", "e"]
    );
    assert!(run::<Vec<String>>(&mut con, &["LRANGE", "l", "3", "1"]).is_empty());
    assert!(run::<Vec<String>>(&mut con, &["LRANGE", "nolist", "0", "-1"]).is_empty());
    assert_eq!(run::<String>(&mut con, &["LPOP", "l"]), "a");
    assert_eq!(run::<String>(&mut con, &["RPOP", "l"]), "e");
    assert_eq!(
        run::<Vec<String>>(&mut con, &["LPOP", "l", "2"]),
        ["b", "c"]
    );
    assert_eq!(run::<Vec<String>>(&mut con, &["RPOP", "l", "5"]), ["d"]);
    // The emptied list is gone.
    assert_eq!(run::<i64>(&mut con, &["EXISTS", "l"]), 0);
    assert_eq!(run::<Value>(&mut con, &["LPOP", "l"]), Value::Nil);
    assert_eq!(run::<Value>(&mut con, &["RPOP", "l", "2"]), Value::Nil);

    assert_eq!(run::<i64>(&mut con, &["SADD", "s", "x", "y", "x"]), 2);
    assert_eq!(run::<i64>(&mut con, &["SADD", "s", "y", "z"]), 1);
    let mut popped = vec![run::<String>(&mut con, &["SPOP", "s"])];
    popped.extend(run::<Vec<String>>(&mut con, &["SPOP", "s", "5"]));
    popped.sort();
    assert_eq!(popped, ["x", "y", "z"]);
    assert_eq!(run::<i64>(&mut con, &["EXISTS", "s"]), 0);
    assert_eq!(run::<Value>(&mut con, &["SPOP", "s"]), Value::Nil);

    assert_eq!(
        run::<i64>(&mut con, &["HSET", "h", "f1", "v1", "f2", "v2"]),
        2
    );
    assert_eq!(
        run::<i64>(&mut con, &["HSET", "h", "f1", "new", "f3", "v3"]),
        1
    );
    assert_eq!(run::<String>(&mut con, &["HGET", "h", "f1"]), "new");
    assert_eq!(run::<String>(&mut con, &["HGET", "h", "f3"]), "v3");
    assert_eq!(
        run::<Value>(&mut con, &["HGET", "h", "nofield"]),
        Value::Nil
    );
    assert_eq!(
        run::<Value>(&mut con, &["HGET", "nohash", "f1"]),
        Value::Nil
    );
    assert_eq!(run::<i64>(&mut con, &["DBSIZE"]), 1);
}

#[test]
fn config_command_client_and_case_insensitive_names() {
    let example = Example::start("redis", &[]);
    let mut con = client(&example);
    // What redis-benchmark asks at start.
    assert_eq!(
        run::<Value>(&mut con, &["CONFIG", "GET", "save"]),
        Value::Array(vec![bulk("save"), bulk("")])
    );
    assert_eq!(
        run::<Value>(&mut con, &["config", "get", "appendonly"]),
        Value::Array(vec![bulk("appendonly"), bulk("no")])
    );
    assert_eq!(
        run::<Value>(&mut con, &["CONFIG", "GET", "no-such-option"]),
        Value::Array(vec![])
    );
    assert_eq!(run::<Value>(&mut con, &["COMMAND"]), Value::Array(vec![]));
    assert_eq!(
        run::<Value>(&mut con, &["COMMAND", "DOCS"]),
        Value::Array(vec![])
    );
    assert_eq!(
        run::<Value>(&mut con, &["command", "docs", "get"]),
        Value::Array(vec![])
    );
    assert_eq!(
        run::<String>(&mut con, &["CLIENT", "SETNAME", "tester"]),
        "OK"
    );
    assert_eq!(run::<String>(&mut con, &["SeT", "k", "v"]), "OK");
    assert_eq!(run::<String>(&mut con, &["gEt", "k"]), "v");
    assert_eq!(run::<String>(&mut con, &["PiNg"]), "PONG");
}

#[test]
fn keys_expire_after_ex_or_px_and_leave_dbsize() {
    let example = Example::start("redis", &[]);
    let mut con = client(&example);
    assert_eq!(
        run::<String>(&mut con, &["SET", "short", "v", "PX", "50"]),
        "OK"
    );
    assert_eq!(
        run::<String>(&mut con, &["SET", "long", "v", "EX", "1000"]),
        "OK"
    );
    assert_eq!(
        run::<String>(&mut con, &["SET", "list-holder", "v", "px", "50"]),
        "OK"
    );
    assert_eq!(run::<String>(&mut con, &["SET", "plain", "v"]), "OK");
    assert_eq!(run::<i64>(&mut con, &["DBSIZE"]), 4);
    // Overwriting drops the time to live; KEEPTTL keeps it.
    assert_eq!(run::<String>(&mut con, &["SET", "long", "w"]), "OK");
    assert_eq!(
        run::<String>(&mut con, &["SET", "kept", "v", "PX", "50"]),
        "OK"
    );
    assert_eq!(
        run::<String>(&mut con, &["SET", "kept", "w", "KEEPTTL"]),
        "OK"
    );

    let deadline = Instant::now() + WAIT;
    while run::<Option<String>>(&mut con, &["GET", "short"]).is_some() {
        assert!(
            Instant::now() < deadline,
            "a key set with PX 50 did not expire"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Expired keys are not counted, even those never touched again.
    let deadline = Instant::now() + WAIT;
    while run::<i64>(&mut con, &["DBSIZE"]) != 2 {
        assert!(
            Instant::now() < deadline,
            "DBSIZE still counts expired keys"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        run::<i64>(&mut con, &["EXISTS", "short", "kept", "list-holder"]),
        0
    );
    assert_eq!(run::<String>(&mut con, &["GET", "long"]), "w");
    // An expired key is a missing key to every command.
    assert_eq!(run::<i64>(&mut con, &["LPUSH", "list-holder", "x"]), 1);
    assert_eq!(
        run::<Value>(&mut con, &["SET", "kept", "again", "NX"]),
        Value::Okay
    );
    assert_eq!(run::<i64>(&mut con, &["DBSIZE"]), 4);
}

#[test]
fn a_pipeline_of_many_commands_is_answered_in_order() {
    let example = Example::start("redis", &[]);
    let mut con = client(&example);
    let mut pipe = redis::pipe();
    let mut expected = Vec::new();
    for i in 0..500i64 {
        let key = format!("key:{i}");
        pipe.cmd("SET").arg(&key).arg(i);
        expected.push(Value::Okay);
        pipe.cmd("GET").arg(&key);
        expected.push(bulk(&i.to_string()));
        pipe.cmd("INCR").arg(&key);
        expected.push(Value::Int(i + 1));
        pipe.cmd("RPUSH").arg("log").arg(i);
        expected.push(Value::Int(i + 1));
        pipe.cmd("ECHO").arg(format!("echo {i}"));
        expected.push(bulk(&format!("echo {i}")));
    }
    pipe.cmd("LRANGE").arg("log").arg(0).arg(2);
    expected.push(Value::Array(vec![bulk("0"), bulk("1"), bulk("2")]));
    pipe.cmd("DBSIZE");
    expected.push(Value::Int(501));
    pipe.cmd("PING");
    expected.push(Value::SimpleString("PONG".into()));
    let replies: Vec<Value> = pipe.query(&mut con).expect("the pipeline");
    assert_eq!(replies.len(), expected.len());
    for (i, (got, want)) in replies.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "reply {i}");
    }
}

#[test]
fn each_class_of_error_through_the_redis_crate() {
    let example = Example::start("redis", &[]);
    let mut con = client(&example);
    let err = |code: &str, detail: &str| (code.to_string(), detail.to_string());

    assert_eq!(
        fails(&mut con, &["FOO", "a", "b"]),
        err(
            "ERR",
            "unknown command 'FOO', with args beginning with: 'a' 'b' "
        )
    );
    assert_eq!(
        fails(&mut con, &["GET"]),
        err("ERR", "wrong number of arguments for 'get' command")
    );
    assert_eq!(
        fails(&mut con, &["MSET", "a", "1", "b"]),
        err("ERR", "wrong number of arguments for 'mset' command")
    );
    run::<i64>(&mut con, &["LPUSH", "list", "x"]);
    let wrongtype = err(
        "WRONGTYPE",
        "Operation against a key holding the wrong kind of value",
    );
    assert_eq!(fails(&mut con, &["GET", "list"]), wrongtype);
    assert_eq!(fails(&mut con, &["INCR", "list"]), wrongtype);
    assert_eq!(fails(&mut con, &["HGET", "list", "f"]), wrongtype);
    assert_eq!(fails(&mut con, &["SADD", "list", "m"]), wrongtype);
    run::<String>(&mut con, &["SET", "word", "abc"]);
    assert_eq!(fails(&mut con, &["LPOP", "word"]), wrongtype);
    let not_integer = err("ERR", "value is not an integer or out of range");
    assert_eq!(fails(&mut con, &["INCR", "word"]), not_integer);
    assert_eq!(fails(&mut con, &["INCRBY", "n", "1.5"]), not_integer);
    assert_eq!(
        fails(&mut con, &["SET", "k", "v", "EX", "soon"]),
        not_integer
    );
    assert_eq!(fails(&mut con, &["LRANGE", "list", "0", "x"]), not_integer);
    let syntax = err("ERR", "syntax error");
    assert_eq!(fails(&mut con, &["SET", "k", "v", "NX", "XX"]), syntax);
    assert_eq!(
        fails(&mut con, &["SET", "k", "v", "EX", "1", "PX", "1"]),
        syntax
    );
    assert_eq!(fails(&mut con, &["SET", "k", "v", "EX"]), syntax);
    assert_eq!(fails(&mut con, &["FLUSHALL", "now"]), syntax);
    assert_eq!(
        fails(&mut con, &["SET", "k", "v", "EX", "0"]),
        err("ERR", "invalid expire time in 'set' command")
    );
    run::<String>(&mut con, &["SET", "big", &i64::MAX.to_string()]);
    assert_eq!(
        fails(&mut con, &["INCR", "big"]),
        err("ERR", "increment or decrement would overflow")
    );
    // The connection is still in use after errors.
    assert_eq!(run::<String>(&mut con, &["PING"]), "PONG");
}

#[test]
fn replies_are_byte_for_byte_those_of_redis() {
    let example = Example::start("redis", &[]);
    let mut s = raw(example.addr);
    // Recorded from redis-server 7.0.15.
    let cases: &[(&[&[u8]], &[u8])] = &[
        (&[b"PING"], b"+PONG\r\n"),
        (&[b"PING", b"hi"], b"$2\r\nhi\r\n"),
        (&[b"SET", b"k", b"v"], b"+OK\r\n"),
        (&[b"GET", b"k"], b"$1\r\nv\r\n"),
        (&[b"GET", b"nokey"], b"$-1\r\n"),
        (&[b"INCR", b"n"], b":1\r\n"),
        (&[b"MGET", b"k", b"nokey"], b"*2\r\n$1\r\nv\r\n$-1\r\n"),
        (&[b"LPOP", b"nolist", b"2"], b"*-1\r\n"),
        (&[b"LRANGE", b"nolist", b"0", b"-1"], b"*0\r\n"),
        (
            &[b"CONFIG", b"GET", b"save"],
            b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n",
        ),
        (
            &[b"CONFIG", b"GET", b"appendonly"],
            b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
        ),
        (
            &[b"foo", b"a", b"b"],
            b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n",
        ),
        (
            &[b"foo"],
            b"-ERR unknown command 'foo', with args beginning with: \r\n",
        ),
        (
            &[b"foo", b"x\r\ny"],
            b"-ERR unknown command 'foo', with args beginning with: 'x  y' \r\n",
        ),
        (
            &[b"get"],
            b"-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            &[b"CONFIG", b"GET"],
            b"-ERR wrong number of arguments for 'config|get' command\r\n",
        ),
        (
            &[b"Config", b"bAr"],
            b"-ERR unknown subcommand 'bAr'. Try CONFIG HELP.\r\n",
        ),
        (
            &[b"LPUSH", b"k", b"x"],
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        (
            &[b"INCR", b"k"],
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (&[b"SET", b"k", b"v", b"foo"], b"-ERR syntax error\r\n"),
        (
            &[b"SET", b"k", b"v", b"PX", b"-5"],
            b"-ERR invalid expire time in 'set' command\r\n",
        ),
        (
            &[b"LPOP", b"k", b"-1"],
            b"-ERR value is out of range, must be positive\r\n",
        ),
        (
            &[b"DECRBY", b"n", b"-9223372036854775808"],
            b"-ERR decrement would overflow\r\n",
        ),
        (&[b"SET", b"n", b"9223372036854775807"], b"+OK\r\n"),
        (
            &[b"INCR", b"n"],
            b"-ERR increment or decrement would overflow\r\n",
        ),
        (
            &[b"CLIENT", b"SETNAME", b"a b"],
            b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
        ),
        (&[b"DBSIZE"], b":2\r\n"),
    ];
    for (words, expected) in cases {
        exchange(&mut s, &multibulk(words), expected);
    }
    // A long argument in an unknown command is cut at 128 bytes, as Redis cuts it.
    let long = vec![b'a'; 200];
    let mut expected = b"-ERR unknown command 'foo', with args beginning with: '".to_vec();
    expected.extend_from_slice(&long[..128]);
    expected.extend_from_slice(b"' \r\n");
    exchange(&mut s, &multibulk(&[b"foo", &long, b"b"]), &expected);
}

#[test]
fn inline_requests_with_quotes_and_empty_lines() {
    let example = Example::start("redis", &[]);
    let mut s = raw(example.addr);
    exchange(&mut s, b"PING\r\n", b"+PONG\r\n");
    exchange(&mut s, b"ping\n", b"+PONG\r\n");
    // Empty requests get no reply at all: the PING's is the next one.
    exchange(&mut s, b"\r\n   \r\n*0\r\n*-1\r\nPING\r\n", b"+PONG\r\n");
    exchange(&mut s, b"set k \"a b\\x41\\n\"\r\n", b"+OK\r\n");
    exchange(&mut s, b"GET k\r\n", b"$5\r\na bA\n\r\n");
    exchange(
        &mut s,
        b"set k 'it\\'s'\r\nget k\r\n",
        b"+OK\r\n$4\r\nit's\r\n",
    );
    // Blanks of every kind make no request; a line may start with a blank, `-` or, after a
    // blank, `*`, and stays an inline request.
    exchange(&mut s, b" \t\x0b\x0c\r\n  PING\r\n", b"+PONG\r\n");
    exchange(
        &mut s,
        b"-ERR x\r\n *1\r\n",
        b"-ERR unknown command '-ERR', with args beginning with: 'x' \r\n\
          -ERR unknown command '*1', with args beginning with: \r\n",
    );
    // A short value, a long one and a number, each read back and counted on.
    let long = "v".repeat(39);
    for value in ["x".repeat(38).as_str(), &long, "41"] {
        let set = format!("set k {value}\r\nget k\r\n");
        let reply = format!("+OK\r\n${}\r\n{value}\r\n", value.len());
        exchange(&mut s, set.as_bytes(), reply.as_bytes());
    }
    exchange(&mut s, b"incr k\r\n", b":42\r\n");
    exchange(
        &mut s,
        b"set k 'abc'\r\nincr k\r\nget k\r\n",
        b"+OK\r\n-ERR value is not an integer or out of range\r\n$3\r\nabc\r\n",
    );
    // A request split into single bytes decodes the same.
    for byte in b"*2\r\n$4\r\nECHO\r\n$5\r\nsplit\r\n" {
        s.write_all(&[*byte]).unwrap();
    }
    exchange(&mut s, b"", b"$5\r\nsplit\r\n");
}

#[test]
fn a_protocol_error_is_answered_then_the_connection_closes() {
    let example = Example::start("redis", &[]);
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"*1\r\nx\r\n",
            b"-ERR Protocol error: expected '$', got 'x'\r\n",
        ),
        (
            b"*x\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*3000000000\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$-1\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$04\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"\"unbalanced\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (
            b"\"a\"b\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        // The requests of the same read after unbalanced quotes are not run.
        (
            b"PING\r\nset k 'a\r\nSET after 1\r\nPING\r\n",
            b"+PONG\r\n-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        // Requests before the fault are answered; those after it are not run.
        (
            b"*1\r\n$4\r\nPING\r\n*1\r\n$abc\r\n*1\r\n$4\r\nPING\r\n",
            b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n",
        ),
    ];
    for (request, expected) in cases {
        let mut s = raw(example.addr);
        s.write_all(request).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&read_until_closed(&mut s)),
            String::from_utf8_lossy(expected),
            "after {:?}",
            String::from_utf8_lossy(request)
        );
    }
    let mut s = raw(example.addr);
    exchange(&mut s, b"PING\r\n", b"+PONG\r\n");
    exchange(&mut s, b"EXISTS after\r\n", b":0\r\n");
}

/// `oversize` must make the server answer `expected` and close that connection, while another
/// connection, opened before, keeps working.
fn assert_closes_only_that_connection(example: &Example, oversize: &[u8], expected: &[u8]) {
    let mut bystander = raw(example.addr);
    exchange(&mut bystander, b"SET calm yes\r\n", b"+OK\r\n");
    let mut s = raw(example.addr);
    s.write_all(oversize).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read_until_closed(&mut s)),
        String::from_utf8_lossy(expected)
    );
    exchange(&mut bystander, b"GET calm\r\n", b"$3\r\nyes\r\n");
}

#[test]
fn an_over_limit_bulk_length_closes_only_that_connection() {
    let example = Example::start("redis", &[]);
    // 512 MiB is allowed, one byte more is not: a request cut short after an allowed length
    // is dropped without a reply at the client's end of file.
    let mut s = raw(example.addr);
    s.write_all(b"*2\r\n$4\r\nECHO\r\n$536870912\r\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_until_closed(&mut s), b"");
    assert_closes_only_that_connection(
        &example,
        b"*2\r\n$4\r\nECHO\r\n$536870913\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    );

    let example = Example::start("redis", &["--proto-max-bulk-len", "1024"]);
    let mut s = raw(example.addr);
    let at_limit = vec![b'x'; 1024];
    let mut expected = b"$1024\r\n".to_vec();
    expected.extend_from_slice(&at_limit);
    expected.extend_from_slice(b"\r\n");
    exchange(&mut s, &multibulk(&[b"ECHO", &at_limit]), &expected);
    assert_closes_only_that_connection(
        &example,
        &multibulk(&[b"ECHO", &[b'x'; 1025]]),
        b"-ERR Protocol error: invalid bulk length\r\n",
    );
}

#[test]
fn an_over_limit_inline_request_closes_only_that_connection() {
    let example = Example::start("redis", &[]);
    // 64 KiB on one line is allowed.
    let mut s = raw(example.addr);
    let mut line = b"ECHO ".to_vec();
    line.resize(64 * 1024, b'y');
    line.extend_from_slice(b"\r\n");
    let mut expected = format!("${}\r\n", 64 * 1024 - 5).into_bytes();
    expected.resize(expected.len() + 64 * 1024 - 5, b'y');
    expected.extend_from_slice(b"\r\n");
    exchange(&mut s, &line, &expected);

    assert_closes_only_that_connection(
        &example,
        &vec![b'x'; 64 * 1024 + 1],
        b"-ERR Protocol error: too big inline request\r\n",
    );
    // A length line that never ends, too.
    let mut count = b"*".to_vec();
    count.resize(64 * 1024 + 1, b'1');
    assert_closes_only_that_connection(
        &example,
        &count,
        b"-ERR Protocol error: too big mbulk count string\r\n",
    );
}

#[test]
fn quit_answers_ok_then_closes_without_running_what_follows() {
    let example = Example::start("redis", &[]);
    let mut s = raw(example.addr);
    s.write_all(b"SET before 1\r\nQUIT\r\nSET after 1\r\n")
        .unwrap();
    assert_eq!(read_until_closed(&mut s), b"+OK\r\n+OK\r\n");
    let mut con = client(&example);
    assert_eq!(run::<i64>(&mut con, &["EXISTS", "before", "after"]), 1);
    assert_eq!(run::<String>(&mut con, &["QUIT"]), "OK");
}

#[test]
fn stops_gracefully_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let example = Example::start("redis", &[]);
        let mut con = client(&example);
        assert_eq!(run::<String>(&mut con, &["PING"]), "PONG");
        let status = example.stop_with(signal, Duration::from_secs(5));
        assert!(status.success(), "exit status after SIG{signal}: {status}");
    }
}
