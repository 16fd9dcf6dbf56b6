//! The read-path state machine, driven without sockets through a scripted source.

use epoll_server::read_path::{ReadSource, ReadState, Step};
use std::collections::VecDeque;
use std::io;

/// What one `read` call returns.
enum Outcome {
    Data(Vec<u8>),
    Eof,
    Err(io::ErrorKind),
}

/// A socket double: a queue of outcomes; `WouldBlock` once the script is exhausted.
struct Script {
    outcomes: VecDeque<Outcome>,
    calls: usize,
}

impl Script {
    fn new(outcomes: Vec<Outcome>) -> Script {
        Script {
            outcomes: outcomes.into(),
            calls: 0,
        }
    }
}

impl ReadSource for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        match self.outcomes.pop_front() {
            None => Err(io::ErrorKind::WouldBlock.into()),
            Some(Outcome::Eof) => Ok(0),
            Some(Outcome::Err(kind)) => Err(kind.into()),
            Some(Outcome::Data(mut data)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                if n < data.len() {
                    self.outcomes.push_front(Outcome::Data(data.split_off(n)));
                }
                Ok(n)
            }
        }
    }
}

/// Runs one turn; returns the bytes delivered and the step that ended it.
fn turn(state: &mut ReadState, src: &mut Script, buf: &mut [u8]) -> (Vec<u8>, Step) {
    state.begin_turn();
    let mut got = Vec::new();
    loop {
        match state.step(src, buf) {
            Step::Data(n) => got.extend_from_slice(&buf[..n]),
            other => return (got, other),
        }
    }
}

#[test]
fn data_then_would_block_drains() {
    let mut src = Script::new(vec![Outcome::Data(vec![1; 10])]);
    let mut state = ReadState::new(1 << 20, false);
    let mut buf = [0u8; 64];
    let (got, end) = turn(&mut state, &mut src, &mut buf);
    assert_eq!(got, vec![1; 10]);
    assert!(matches!(end, Step::Drained));
    assert!(!state.is_readable());
}

#[test]
fn short_read_counts_as_drained_and_saves_a_call() {
    let mut src = Script::new(vec![Outcome::Data(vec![7; 10])]);
    let mut state = ReadState::new(1 << 20, true);
    let mut buf = [0u8; 64];
    let (got, end) = turn(&mut state, &mut src, &mut buf);
    assert_eq!(got.len(), 10);
    assert!(matches!(end, Step::Drained));
    assert_eq!(src.calls, 1, "no WouldBlock call after a short read");
}

#[test]
fn eof_right_after_data_is_reported_after_the_data() {
    let mut src = Script::new(vec![Outcome::Data(b"last words".to_vec()), Outcome::Eof]);
    let mut state = ReadState::new(1 << 20, false);
    let mut buf = [0u8; 64];
    let (got, end) = turn(&mut state, &mut src, &mut buf);
    assert_eq!(got, b"last words");
    assert!(matches!(end, Step::Eof));
    assert!(state.is_finished());
    // Reported once: later steps say Finished and read nothing.
    let calls = src.calls;
    state.on_readable();
    assert!(matches!(state.step(&mut src, &mut buf), Step::Finished));
    assert_eq!(src.calls, calls);
}

/// Regression: with the short-read shortcut on, data and the peer's FIN arriving in one epoll
/// event used to end the turn at the short read, and the EOF (which has no edge of its own) was
/// never seen: an async echo of 100 KB followed by a half-close never closed.
#[test]
fn eof_after_short_read_is_seen_when_hangup_was_signalled() {
    let mut src = Script::new(vec![Outcome::Data(vec![3; 10]), Outcome::Eof]);
    let mut state = ReadState::new(1 << 20, true);
    state.on_hangup();
    let mut buf = [0u8; 64];
    let (got, end) = turn(&mut state, &mut src, &mut buf);
    assert_eq!(got.len(), 10);
    assert!(matches!(end, Step::Eof), "got {end:?}");
}

#[test]
fn reset_with_data_pending_delivers_the_data_then_the_error_once() {
    let mut src = Script::new(vec![
        Outcome::Data(vec![9; 100]),
        Outcome::Err(io::ErrorKind::ConnectionReset),
        Outcome::Data(vec![1; 5]),
    ]);
    let mut state = ReadState::new(1 << 20, false);
    let mut buf = [0u8; 64];
    let (got, end) = turn(&mut state, &mut src, &mut buf);
    assert_eq!(got, vec![9; 100]);
    match end {
        Step::Error(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected the reset, got {other:?}"),
    }
    state.on_readable();
    let (after, end) = turn(&mut state, &mut src, &mut buf);
    assert!(after.is_empty(), "nothing is delivered after the error");
    assert!(matches!(end, Step::Finished));
}

#[test]
fn interrupted_reads_are_retried() {
    let mut src = Script::new(vec![
        Outcome::Err(io::ErrorKind::Interrupted),
        Outcome::Data(vec![5; 8]),
        Outcome::Err(io::ErrorKind::Interrupted),
        Outcome::Eof,
    ]);
    let mut state = ReadState::new(1 << 20, false);
    let mut buf = [0u8; 64];
    let (got, end) = turn(&mut state, &mut src, &mut buf);
    assert_eq!(got, vec![5; 8]);
    assert!(matches!(end, Step::Eof));
}

#[test]
fn pause_with_data_pending_keeps_it_readable_and_resume_asks_for_a_turn() {
    let mut src = Script::new(vec![Outcome::Data(vec![1; 200])]);
    let mut state = ReadState::new(1 << 20, false);
    let mut buf = [0u8; 64];
    state.begin_turn();
    assert!(matches!(state.step(&mut src, &mut buf), Step::Data(64)));
    state.pause(4);
    assert!(matches!(state.step(&mut src, &mut buf), Step::Paused));
    assert!(
        state.is_readable(),
        "unread data stays pending while paused"
    );
    assert!(
        !state.resume(1),
        "lifting a reason that was not set changes nothing"
    );
    assert!(
        state.resume(4),
        "resuming with data pending needs a turn without an edge"
    );
    let (rest, end) = turn(&mut state, &mut src, &mut buf);
    assert_eq!(rest.len(), 136);
    assert!(matches!(end, Step::Drained));
    assert!(!state.resume(4));
}

#[test]
fn two_pause_reasons_must_both_be_lifted() {
    let mut state = ReadState::new(1024, false);
    state.pause(1);
    state.pause(2);
    assert!(!state.resume(1));
    assert!(!state.wants_read());
    assert!(state.resume(2));
    assert!(state.wants_read());
}

#[test]
fn budget_spent_yields_with_data_still_pending() {
    let mut src = Script::new(vec![Outcome::Data(vec![2; 1000])]);
    let mut state = ReadState::new(100, false);
    let mut buf = [0u8; 64];
    let (got, end) = turn(&mut state, &mut src, &mut buf);
    assert_eq!(got.len(), 100, "a turn reads no more than its budget");
    assert!(matches!(end, Step::Yield));
    assert!(state.is_readable());
    let mut total = got.len();
    for _ in 0..20 {
        let (more, end) = turn(&mut state, &mut src, &mut buf);
        assert!(more.len() <= 100);
        total += more.len();
        if matches!(end, Step::Drained) {
            break;
        }
    }
    assert_eq!(total, 1000, "every byte arrives over later turns");
}

#[test]
fn drained_state_reads_nothing_until_the_next_edge() {
    let mut src = Script::new(vec![]);
    let mut state = ReadState::new(1024, false);
    let mut buf = [0u8; 16];
    let (_, end) = turn(&mut state, &mut src, &mut buf);
    assert!(matches!(end, Step::Drained));
    let calls = src.calls;
    assert!(matches!(state.step(&mut src, &mut buf), Step::Drained));
    assert_eq!(src.calls, calls, "no read without an edge");
    src.outcomes.push_back(Outcome::Data(vec![1]));
    state.on_readable();
    let (got, _) = turn(&mut state, &mut src, &mut buf);
    assert_eq!(got, vec![1]);
}
