//! The I/O view of an async connection (`Connection::into_io`): `futures::io::AsyncRead` and
//! `AsyncBufRead` served straight from the inbound buffers, `AsyncWrite` coalesced into chunks
//! of `IO_WRITE_CHUNK` bytes. Echo through `futures::io::copy`, partial and zero-length reads,
//! end of file and reset, flush and coalescing, half-close, backpressure, tokio's codecs through
//! `tokio_util::compat`, and an executor other than tokio.

mod common_async;

use common_async::{
    assert_pattern, connect, eventually, join, pattern, read_to_eof, set_linger_zero,
    socket_queues, Watchdog,
};
use epoll_server::{Builder, Incoming, IoReadHalf, IoStream, IoWriteHalf, ServerThread};
use futures::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use futures::{FutureExt, SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Safety bound of every single wait.
const BOUND: Duration = Duration::from_secs(10);
/// Safety bound of a whole test (the watchdog aborts the binary past it).
const LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An async server on 127.0.0.1, its `incoming` stream and its thread.
fn start(builder: Builder) -> io::Result<(Incoming, ServerThread)> {
    let server = builder.bind_async("127.0.0.1:0")?.build_async()?;
    let incoming = server.incoming();
    Ok((incoming, server.spawn()?))
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Awaits `fut`, failing the test if it takes longer than `BOUND`.
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {BOUND:?}"))
}

/// The next connection of `incoming`, seen through the I/O view.
async fn next_io(incoming: &mut Incoming) -> IoStream {
    bounded("accepting a connection", incoming.next())
        .await
        .expect("a connection")
        .into_io()
}

/// A tokio client socket with Nagle off.
async fn tokio_connect(addr: std::net::SocketAddr) -> io::Result<tokio::net::TcpStream> {
    let stream = bounded("connect", tokio::net::TcpStream::connect(addr)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

// ---------------------------------------------------------------------------------------------
// 1. Echo through futures::io::copy
// ---------------------------------------------------------------------------------------------

/// Sends `len` bytes of stream `seed` in random-sized writes, half-closes, and checks that
/// exactly those bytes come back, then the end of file.
async fn echo_client(addr: std::net::SocketAddr, seed: u64, len: usize) -> io::Result<()> {
    let stream = tokio_connect(addr).await?;
    let (mut rd, mut wr) = stream.into_split();
    let data = pattern(seed, 0, len);
    let write = async {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut off = 0;
        while off < len {
            let n = rng.gen_range(1..=16 * KIB).min(len - off);
            wr.write_all(&data[off..off + n]).await?;
            off += n;
        }
        // Half-close: the echo's copy ends at our end of file.
        wr.shutdown().await?;
        io::Result::Ok(wr)
    };
    let read = async {
        let mut got = Vec::with_capacity(len);
        rd.read_to_end(&mut got).await?;
        io::Result::Ok(got)
    };
    let (_wr, got) = tokio::try_join!(write, read)?;
    assert_eq!(
        got.len(),
        len,
        "client {seed}: bytes echoed before end of file"
    );
    assert_pattern(&format!("client {seed}: echo"), seed, 0, &got);
    Ok(())
}

#[test]
fn copy_echoes_twenty_concurrent_clients_exactly_then_ends() -> io::Result<()> {
    const CLIENTS: usize = 20;
    const LEN: usize = 256 * KIB;
    let _dog = Watchdog::new("copy echo", LIMIT);
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    runtime()?.block_on(async move {
        let server = tokio::spawn(async move {
            let mut echoes = Vec::new();
            for _ in 0..CLIENTS {
                let conn = incoming.next().await.expect("a connection");
                echoes.push(tokio::spawn(async move {
                    let (reader, mut writer) = conn.into_io().split();
                    let copied = futures::io::copy(reader, &mut writer).await?;
                    writer.close().await?;
                    io::Result::Ok(copied)
                }));
            }
            echoes
        });
        let clients: Vec<_> = (0..CLIENTS as u64)
            .map(|seed| tokio::spawn(echo_client(addr, seed, LEN)))
            .collect();
        let all = async {
            for client in clients {
                client.await.expect("client task")?;
            }
            let echoes = server.await.expect("accept task");
            for echo in echoes {
                let copied = echo.await.expect("echo task")?;
                assert_eq!(copied, LEN as u64, "bytes copied by one echo");
            }
            io::Result::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(40), all)
            .await
            .expect("the echoes did not finish within 40 s")
    })?;
    running.stop_and_join()
}

// ---------------------------------------------------------------------------------------------
// 2. Partial reads, read_exact, fill_buf / consume
// ---------------------------------------------------------------------------------------------

#[test]
fn small_buffers_read_partially_in_order_and_buf_read_consumes_exactly() -> io::Result<()> {
    const LEN: usize = 1000;
    const SEED: u64 = 0x51;
    let _dog = Watchdog::new("partial reads", LIMIT);
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    let (next_tx, next_rx) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let mut stream = connect(addr);
        let local = stream.local_addr().expect("client address");
        // One write each: each arrives as one buffer, so reads are served from its middle.
        common_async::write_all(&mut stream, &pattern(SEED, 0, LEN));
        next_rx.recv().expect("the server read the first part");
        common_async::write_all(&mut stream, &pattern(SEED, LEN as u64, LEN));
        stream.shutdown(Shutdown::Write).expect("half-close");
        local
    });
    runtime()?.block_on(async {
        let conn = bounded("accept", incoming.next())
            .await
            .expect("a connection");
        let id = conn.id();
        let peer = conn.peer_addr().clone();
        let mut io = conn.into_io();
        assert_eq!(io.id(), id, "IoStream::id");
        assert_eq!(io.peer_addr(), &peer, "IoStream::peer_addr");

        // Part one: 7 bytes at a time.
        let mut got = Vec::new();
        let mut reads = 0;
        while got.len() < LEN {
            let mut buf = [0u8; 7];
            let n = bounded("a 7-byte read", io.read(&mut buf)).await?;
            assert!(n > 0, "end of file after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
            reads += 1;
        }
        assert_eq!(got.len(), LEN, "read past the first write");
        assert_pattern("7-byte reads", SEED, 0, &got);
        assert!(
            reads >= LEN.div_ceil(7),
            "{reads} reads of 7 bytes for {LEN}"
        );

        // Part two: read_exact(10), fill_buf + consume(3), then the rest.
        next_tx.send(()).expect("the client waits");
        let mut ten = [0u8; 10];
        bounded("read_exact(10)", io.read_exact(&mut ten)).await?;
        assert_pattern("read_exact(10)", SEED, LEN as u64, &ten);
        let buffered = bounded("fill_buf", io.fill_buf()).await?.to_vec();
        assert!(!buffered.is_empty(), "fill_buf before end of file is empty");
        assert!(
            buffered.len() <= LEN - 10,
            "fill_buf returned {} bytes",
            buffered.len()
        );
        assert_pattern("fill_buf", SEED, LEN as u64 + 10, &buffered);
        // fill_buf again without consuming returns the same bytes.
        let again = bounded("fill_buf again", io.fill_buf()).await?.to_vec();
        assert_eq!(again, buffered, "fill_buf without consume must not advance");
        io.consume_unpin(3);
        let mut rest = Vec::new();
        bounded("read_to_end", io.read_to_end(&mut rest)).await?;
        assert_eq!(rest.len(), LEN - 13, "bytes after consume(3)");
        assert_pattern("rest after consume(3)", SEED, LEN as u64 + 13, &rest);
        io::Result::Ok(())
    })?;
    join(client);
    running.stop_and_join()
}

#[test]
fn read_line_spans_buffers() -> io::Result<()> {
    let _dog = Watchdog::new("read_line", LIMIT);
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    let (next_tx, next_rx) = mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let mut stream = connect(addr);
        common_async::write_all(&mut stream, b"first li");
        next_rx.recv().expect("the server saw the first part");
        common_async::write_all(&mut stream, b"ne\nsecond line\nthird");
        stream.shutdown(Shutdown::Write).expect("half-close");
    });
    runtime()?.block_on(async {
        let mut io = next_io(&mut incoming).await;
        // The first buffer is in before the rest is sent.
        let head = bounded("fill_buf", io.fill_buf()).await?.to_vec();
        assert!(
            b"first li".starts_with(&head) && !head.is_empty(),
            "{head:?}"
        );
        next_tx.send(()).expect("the client waits");
        let mut line = String::new();
        bounded("read_line 1", io.read_line(&mut line)).await?;
        assert_eq!(line, "first line\n");
        line.clear();
        bounded("read_line 2", io.read_line(&mut line)).await?;
        assert_eq!(line, "second line\n");
        line.clear();
        let n = bounded("read_line 3", io.read_line(&mut line)).await?;
        assert_eq!(
            (n, line.as_str()),
            (5, "third"),
            "last line without newline"
        );
        line.clear();
        let n = bounded("read_line at end", io.read_line(&mut line)).await?;
        assert_eq!(n, 0, "read_line at end of file");
        io::Result::Ok(())
    })?;
    join(client);
    running.stop_and_join()
}

// ---------------------------------------------------------------------------------------------
// 3. Zero-length reads and writes
// ---------------------------------------------------------------------------------------------

#[test]
fn zero_length_read_and_write_return_zero_at_once() -> io::Result<()> {
    let _dog = Watchdog::new("zero-length", LIMIT);
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    runtime()?.block_on(async {
        let mut client = tokio_connect(addr).await?;
        let mut io = next_io(&mut incoming).await;
        // Nothing has arrived: a zero-length read must not wait for data.
        match io.read(&mut []).now_or_never() {
            Some(Ok(0)) => {}
            other => panic!("zero-length read with nothing buffered: {other:?}"),
        }
        match io.write(&[]).now_or_never() {
            Some(Ok(0)) => {}
            other => panic!("zero-length write: {other:?}"),
        }
        // With data buffered, a zero-length read is still Ok(0) and consumes nothing.
        client.write_all(b"abc").await?;
        let buffered = bounded("fill_buf", io.fill_buf()).await?.to_vec();
        assert!(!buffered.is_empty());
        match io.read(&mut []).now_or_never() {
            Some(Ok(0)) => {}
            other => panic!("zero-length read with data buffered: {other:?}"),
        }
        let mut abc = [0u8; 3];
        bounded("read_exact(3)", io.read_exact(&mut abc)).await?;
        assert_eq!(&abc, b"abc", "the zero-length read consumed nothing");
        // The connection still writes.
        io.write_all(b"ok").await?;
        bounded("flush", io.flush()).await?;
        let mut ok = [0u8; 2];
        bounded("client read", client.read_exact(&mut ok)).await?;
        assert_eq!(&ok, b"ok");
        io::Result::Ok(())
    })?;
    running.stop_and_join()
}

// ---------------------------------------------------------------------------------------------
// 4. End of file, 5. reset
// ---------------------------------------------------------------------------------------------

#[test]
fn peer_end_of_file_reads_zero_and_keeps_reading_zero() -> io::Result<()> {
    let _dog = Watchdog::new("end of file", LIMIT);
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    runtime()?.block_on(async {
        let client = tokio_connect(addr).await?;
        let mut io = next_io(&mut incoming).await;
        let (mut rd, mut wr) = client.into_split();
        wr.write_all(b"last words").await?;
        wr.shutdown().await?;
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = bounded("read to end of file", io.read(&mut buf)).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"last words");
        for attempt in 1..=2 {
            let n = bounded("read after end of file", io.read(&mut buf)).await?;
            assert_eq!(n, 0, "read {attempt} after end of file");
        }
        let buffered = bounded("fill_buf after end of file", io.fill_buf()).await?;
        assert!(
            buffered.is_empty(),
            "fill_buf after end of file: {buffered:?}"
        );
        // The write side still works after the peer's end of file.
        io.write_all(b"reply").await?;
        bounded("close", io.close()).await?;
        let mut reply = Vec::new();
        bounded("client read", rd.read_to_end(&mut reply)).await?;
        assert_eq!(reply, b"reply");
        io::Result::Ok(())
    })?;
    running.stop_and_join()
}

#[test]
fn peer_reset_reads_the_bytes_before_it_then_connection_reset() -> io::Result<()> {
    let _dog = Watchdog::new("reset", LIMIT);
    // `incoming` holds one connection: while it is full the server does not accept, so the
    // second client's bytes and reset wait together in the kernel and are read in one turn.
    let (mut incoming, running) = start(Builder::new().incoming_capacity(1))?;
    let addr = running.local_addr();
    let port = addr.port();
    let accept_queue = || socket_queues(port, None).map_or(u64::MAX, |q| q.rx);

    let _first = connect(addr);
    assert!(
        eventually(BOUND, || accept_queue() == 0),
        "the first connection was not accepted"
    );
    let mut second = connect(addr);
    common_async::write_all(&mut second, b"hello");
    set_linger_zero(&second);
    drop(second);
    assert_eq!(
        accept_queue(),
        1,
        "the second connection waits in the backlog"
    );

    runtime()?.block_on(async {
        let _first = bounded("first", incoming.next()).await.expect("first");
        let mut io = next_io(&mut incoming).await;
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 5 {
            match bounded("read before the reset", io.read(&mut buf)).await {
                Ok(0) => panic!("end of file after {got:?}, expected hello then a reset"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("error {e} after {got:?}, expected hello first"),
            }
        }
        assert_eq!(got, b"hello");
        match bounded("read at the reset", io.read(&mut buf)).await {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
            Ok(n) => panic!("expected Err(ConnectionReset) after hello, got Ok({n})"),
        }
        io::Result::Ok(())
    })?;
    running.stop_and_join()
}

// ---------------------------------------------------------------------------------------------
// 6. Flush, 7. coalescing
// ---------------------------------------------------------------------------------------------

#[test]
fn flush_after_every_small_write_delivers_it_at_once() -> io::Result<()> {
    const SEED: u64 = 0x6f;
    let _dog = Watchdog::new("flush each write", LIMIT);
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    runtime()?.block_on(async {
        let mut client = tokio_connect(addr).await?;
        let mut io = next_io(&mut incoming).await;
        for i in 0..100u64 {
            let msg = pattern(SEED, i * 10, 10);
            io.write_all(&msg).await?;
            bounded("flush", io.flush()).await?;
            // Everything flushed is in the kernel: the peer reads exactly these 10 bytes.
            let mut got = [0u8; 10];
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
                .await
                .unwrap_or_else(|_| panic!("write {i}: flushed bytes held back"))?;
            assert_eq!(&got[..], &msg[..], "write {i}");
        }
        // Nothing more than what was written.
        drop(io);
        let mut rest = Vec::new();
        bounded("client read to end", client.read_to_end(&mut rest)).await?;
        assert!(rest.is_empty(), "{} extra bytes", rest.len());
        io::Result::Ok(())
    })?;
    running.stop_and_join()
}

#[test]
fn one_byte_writes_coalesce_and_a_flush_delivers_them_in_order() -> io::Result<()> {
    const SEED: u64 = 0x7a;
    let _dog = Watchdog::new("coalescing", LIMIT);
    let chunk = epoll_server::IO_WRITE_CHUNK;
    assert!(chunk > 0, "IO_WRITE_CHUNK is {chunk}");
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    runtime()?.block_on(async {
        let client = tokio_connect(addr).await?;
        let (mut rd, _wr) = client.into_split();
        let mut io = next_io(&mut incoming).await;

        // 1000 one-byte writes, one flush.
        let data = pattern(SEED, 0, 1000);
        for (i, b) in data.iter().enumerate() {
            let n = bounded("one-byte write", io.write(std::slice::from_ref(b))).await?;
            assert_eq!(n, 1, "write {i} of one byte");
        }
        bounded("flush", io.flush()).await?;
        let mut got = vec![0u8; 1000];
        bounded("client reads 1000", rd.read_exact(&mut got)).await?;
        assert_pattern("1000 one-byte writes", SEED, 0, &got);

        // Writes of random sizes, some larger than a chunk, across many chunk boundaries.
        let start = 1000u64;
        let len = 4 * chunk + 123;
        let data = pattern(SEED, start, len);
        let write = async {
            let mut rng = StdRng::seed_from_u64(SEED);
            let mut off = 0;
            while off < len {
                let n = rng.gen_range(1..=2 * chunk).min(len - off);
                io.write_all(&data[off..off + n]).await?;
                off += n;
            }
            io.flush().await
        };
        let read = async {
            let mut got = vec![0u8; len];
            rd.read_exact(&mut got).await?;
            io::Result::Ok(got)
        };
        let ((), got) = bounded("chunked writes", async { tokio::try_join!(write, read) }).await?;
        assert_pattern("writes across chunks", SEED, start, &got);
        io::Result::Ok(())
    })?;
    running.stop_and_join()
}

// ---------------------------------------------------------------------------------------------
// 8. close: half-close
// ---------------------------------------------------------------------------------------------

#[test]
fn close_delivers_everything_then_end_of_file_and_the_read_half_keeps_working() -> io::Result<()> {
    const SEED: u64 = 0x8c;
    const LEN: usize = 100 * KIB + 7;
    let _dog = Watchdog::new("close", LIMIT);
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    let client = thread::spawn(move || {
        let mut stream = connect(addr);
        let got = read_to_eof(&mut stream, LEN);
        common_async::write_all(&mut stream, b"but I am still talking");
        stream.shutdown(Shutdown::Write).expect("half-close");
        got
    });
    runtime()?.block_on(async {
        let (mut rd, mut wr) = next_io(&mut incoming).await.split();
        bounded("write_all", wr.write_all(&pattern(SEED, 0, LEN))).await?;
        bounded("close", wr.close()).await?;
        let err = bounded("write after close", wr.write(b"too late"))
            .await
            .expect_err("a write after close must fail");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        let mut after = Vec::new();
        bounded("read after close", rd.read_to_end(&mut after)).await?;
        assert_eq!(after, b"but I am still talking");
        io::Result::Ok(())
    })?;
    let got = join(client);
    assert_eq!(got.len(), LEN, "bytes the peer read before end of file");
    assert_pattern("output before close", SEED, 0, &got);
    running.stop_and_join()
}

// ---------------------------------------------------------------------------------------------
// 9. Backpressure
// ---------------------------------------------------------------------------------------------

#[test]
fn writes_wait_above_high_water_and_resume_when_the_peer_reads() -> io::Result<()> {
    const HIGH: usize = 64 * KIB;
    const LOW: usize = 16 * KIB;
    const HARD: usize = 256 * KIB;
    const WRITE: usize = 16 * KIB;
    /// How long a write must stay pending to count as blocked.
    const STALL: Duration = Duration::from_millis(300);
    /// Far more than loopback's kernel buffers can take from a peer that does not read.
    const MAX_SENT: usize = 64 * MIB;
    /// Written after the peer starts reading.
    const AFTER: usize = 512 * KIB;
    const SEED: u64 = 0x9b;
    let _dog = Watchdog::new("backpressure", LIMIT);
    let (mut incoming, running) = start(Builder::new().output_limits(HIGH, LOW, HARD))?;
    let addr = running.local_addr();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        let mut stream = connect(addr);
        go_rx.recv().expect("the server side says go");
        read_to_eof(&mut stream, MAX_SENT + AFTER)
    });
    let sent = runtime()?.block_on(async {
        let mut io = next_io(&mut incoming).await;
        let mut sent = 0usize;
        let blocked = loop {
            if sent >= MAX_SENT {
                break false;
            }
            let buf = pattern(SEED, sent as u64, WRITE);
            match tokio::time::timeout(STALL, io.write(&buf)).await {
                Err(_elapsed) => break true,
                Ok(n) => {
                    let n = n?;
                    assert!(n > 0 && n <= WRITE, "write returned {n}");
                    sent += n;
                }
            }
        };
        assert!(blocked, "no write stayed pending after {sent} bytes");
        // What the server holds (queued for the reactor or gathered) is what was written minus
        // what the kernel holds: the server's send queue and the peer's receive queue (read in
        // that order, so a byte moving between them is counted twice, never missed).
        let (server_port, client_port) = (addr.port(), io.peer_addr().as_tcp().unwrap().port());
        let in_server = socket_queues(server_port, Some(client_port)).map(|q| q.tx);
        let in_client = socket_queues(client_port, Some(server_port)).map(|q| q.rx);
        let (Some(in_server), Some(in_client)) = (in_server, in_client) else {
            panic!("sockets not found in /proc/net/tcp: {in_server:?} {in_client:?}");
        };
        let held = (sent as u64).saturating_sub(in_server + in_client);
        eprintln!(
            "a write stayed pending for {STALL:?} after {sent} bytes: {in_server} in the \
             server's send queue, {in_client} in the peer's receive queue, {held} held"
        );
        let allowed = (HIGH + 2 * epoll_server::IO_WRITE_CHUNK) as u64;
        assert!(
            held <= allowed,
            "the server holds {held} bytes of output (high water {HIGH} + two chunks = {allowed})"
        );
        // The peer reads: writes make progress again.
        go_tx.send(()).expect("the reader waits");
        let target = sent + AFTER;
        while sent < target {
            let buf = pattern(SEED, sent as u64, WRITE.min(target - sent));
            let n = bounded("write after the peer reads", io.write(&buf)).await?;
            assert!(n > 0, "write returned 0");
            sent += n;
        }
        bounded("close", io.close()).await?;
        io::Result::Ok(sent)
    })?;
    let received = join(reader);
    assert_eq!(received.len(), sent, "bytes the peer read");
    assert_pattern("output read by the peer", SEED, 0, &received);
    running.stop_and_join()
}

// ---------------------------------------------------------------------------------------------
// 10. tokio compatibility
// ---------------------------------------------------------------------------------------------

/// A client that sends `lines` lines, half-closes, and expects each echoed, then end of file.
async fn line_client(addr: std::net::SocketAddr, lines: usize) -> io::Result<()> {
    let client = tokio_connect(addr).await?;
    let (rd, mut wr) = client.into_split();
    let write = async {
        for i in 0..lines {
            wr.write_all(format!("line {i} {}\n", "x".repeat(i)).as_bytes())
                .await?;
        }
        wr.shutdown().await?;
        io::Result::Ok(wr)
    };
    let read = async {
        let mut echoed = tokio::io::BufReader::new(rd).lines();
        let mut got = Vec::new();
        while let Some(line) = echoed.next_line().await? {
            got.push(line);
        }
        io::Result::Ok(got)
    };
    let (_wr, got) = bounded("line client", async { tokio::try_join!(write, read) }).await?;
    let want: Vec<String> = (0..lines)
        .map(|i| format!("line {i} {}", "x".repeat(i)))
        .collect();
    assert_eq!(got, want, "echoed lines");
    Ok(())
}

#[test]
fn tokio_codec_lines_echo_over_compat_stream() -> io::Result<()> {
    use tokio_util::codec::{Framed, LinesCodec};
    use tokio_util::compat::FuturesAsyncReadCompatExt;
    let _dog = Watchdog::new("tokio compat", LIMIT);
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    runtime()?.block_on(async {
        let server = async {
            let io = next_io(&mut incoming).await;
            let mut framed = Framed::new(io.compat(), LinesCodec::new());
            let mut echoed = 0;
            while let Some(line) = framed.next().await {
                let line = line.map_err(io::Error::other)?;
                framed.send(line).await.map_err(io::Error::other)?;
                echoed += 1;
            }
            // Flush, then shut down: the client's lines reader ends.
            SinkExt::<String>::close(&mut framed)
                .await
                .map_err(io::Error::other)?;
            io::Result::Ok(echoed)
        };
        let (echoed, ()) = bounded("line echo", async {
            tokio::try_join!(server, line_client(addr, 100))
        })
        .await?;
        assert_eq!(echoed, 100, "lines the server echoed");
        io::Result::Ok(())
    })?;
    running.stop_and_join()
}

#[test]
fn tokio_codec_lines_echo_over_compat_halves() -> io::Result<()> {
    use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};
    use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};
    let _dog = Watchdog::new("tokio compat halves", LIMIT);
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    runtime()?.block_on(async {
        let server = async {
            let (rd, wr) = next_io(&mut incoming).await.split();
            let mut lines = FramedRead::new(rd.compat(), LinesCodec::new());
            let mut out = FramedWrite::new(wr.compat_write(), LinesCodec::new());
            let mut echoed = 0;
            while let Some(line) = lines.next().await {
                let line = line.map_err(io::Error::other)?;
                out.send(line).await.map_err(io::Error::other)?;
                echoed += 1;
            }
            SinkExt::<String>::close(&mut out)
                .await
                .map_err(io::Error::other)?;
            io::Result::Ok(echoed)
        };
        let (echoed, ()) = bounded("line echo", async {
            tokio::try_join!(server, line_client(addr, 100))
        })
        .await?;
        assert_eq!(echoed, 100, "lines the server echoed");
        io::Result::Ok(())
    })?;
    running.stop_and_join()
}

// ---------------------------------------------------------------------------------------------
// Executor independence: futures::executor + smol
// ---------------------------------------------------------------------------------------------

#[test]
fn copy_echo_on_futures_executor_and_smol() -> io::Result<()> {
    const LEN: usize = 300 * KIB;
    const SEED: u64 = 0xe5;
    let _dog = Watchdog::new("futures executor + smol", LIMIT);
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    futures::executor::block_on(async {
        // The client runs on smol's reactor (its own thread) from inside futures' executor.
        let client = smol::net::TcpStream::connect(addr).await?;
        client.set_nodelay(true)?;
        let conn = incoming.next().await.expect("a connection");
        // The echo runs on smol's global executor.
        let echo = smol::spawn(async move {
            let (reader, mut writer) = conn.into_io().split();
            let copied = futures::io::copy(reader, &mut writer).await?;
            writer.close().await?;
            io::Result::Ok(copied)
        });
        let data = pattern(SEED, 0, LEN);
        let mut wr = client.clone();
        let mut rd = client;
        let write = async {
            for piece in data.chunks(7 * KIB + 3) {
                wr.write_all(piece).await?;
            }
            wr.shutdown(Shutdown::Write)?;
            io::Result::Ok(())
        };
        let read = async {
            let mut got = Vec::new();
            rd.read_to_end(&mut got).await?;
            io::Result::Ok(got)
        };
        let ((), got) = futures::try_join!(write, read)?;
        assert_eq!(got.len(), LEN, "bytes echoed");
        assert_pattern("echo on smol", SEED, 0, &got);
        assert_eq!(echo.await?, LEN as u64, "bytes copied");
        io::Result::Ok(())
    })?;
    running.stop_and_join()
}

// ---------------------------------------------------------------------------------------------
// 11. Send + Unpin, and the traits
// ---------------------------------------------------------------------------------------------

fn assert_send_unpin<T: Send + Unpin + 'static>() {}
fn assert_reader<T: AsyncRead + AsyncBufRead>() {}
fn assert_writer<T: AsyncWrite>() {}

#[test]
fn io_types_are_send_unpin_and_implement_the_io_traits() {
    assert_send_unpin::<IoStream>();
    assert_send_unpin::<IoReadHalf>();
    assert_send_unpin::<IoWriteHalf>();
    assert_reader::<IoStream>();
    assert_reader::<IoReadHalf>();
    assert_writer::<IoStream>();
    assert_writer::<IoWriteHalf>();
}

/// Bytes written and never flushed are not lost when the I/O view is dropped: the reactor
/// writes them before the connection closes, as it does for a dropped sink.
#[test]
fn dropping_the_io_view_writes_what_was_not_flushed() -> io::Result<()> {
    let _dog = Watchdog::new("drop without flush", LIMIT);
    let (mut incoming, running) = start(Builder::new())?;
    let addr = running.local_addr();
    runtime()?.block_on(async {
        let mut client = tokio_connect(addr).await?;
        let mut io = next_io(&mut incoming).await;
        io.write_all(b"written, never flushed").await?;
        drop(io);
        let mut got = Vec::new();
        bounded("client read to end", client.read_to_end(&mut got)).await?;
        assert_eq!(&got[..], b"written, never flushed");
        io::Result::Ok(())
    })?;
    running.stop_and_join()
}
