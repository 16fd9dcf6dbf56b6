//! Drives the real read-path state machine with an arbitrary script of read outcomes and
//! pause/resume/edge events, through a fake socket, and checks its promises: the bytes delivered
//! are exactly the bytes read, in order; end of file or an error is reported once and nothing is
//! read or delivered after it; a turn never passes its budget nor a read the buffer; a paused or
//! drained state makes no read at all.
#![no_main]

use arbitrary::Arbitrary;
use epoll_server::read_path::{ReadSource, ReadState, Step};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use std::io;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Outcome {
    /// Up to this many bytes are available (the read returns min(len, buf)).
    Data(u16),
    WouldBlock,
    Interrupted,
    Eof,
    Reset,
}

#[derive(Arbitrary, Debug)]
enum Event {
    /// The socket gets these outcomes queued.
    Arrive(Vec<Outcome>),
    Edge,
    Hangup,
    /// EPOLLPRI: urgent data; reads may stop short at its mark with more data behind it.
    Urgent,
    Pause(u8),
    Resume(u8),
    /// One read turn.
    Turn,
}

#[derive(Arbitrary, Debug)]
struct Input {
    budget: u16,
    buf_len: u8,
    short_read_drains: bool,
    events: Vec<Event>,
}

/// A socket double that hands out a counting byte pattern, so any loss, duplication or
/// reordering shows up in the delivered stream.
struct Fake {
    script: VecDeque<Outcome>,
    produced: Vec<u8>,
    next: u8,
    calls: usize,
    partial: Option<usize>,
}

impl ReadSource for Fake {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        let avail = match self.partial.take() {
            Some(n) => n,
            None => match self.script.pop_front() {
                None | Some(Outcome::WouldBlock) => return Err(io::ErrorKind::WouldBlock.into()),
                Some(Outcome::Interrupted) => return Err(io::ErrorKind::Interrupted.into()),
                Some(Outcome::Eof) => return Ok(0),
                Some(Outcome::Reset) => return Err(io::ErrorKind::ConnectionReset.into()),
                Some(Outcome::Data(0)) => return Err(io::ErrorKind::WouldBlock.into()),
                Some(Outcome::Data(n)) => n as usize,
            },
        };
        let n = avail.min(buf.len());
        if avail > n {
            self.partial = Some(avail - n);
        }
        for b in &mut buf[..n] {
            *b = self.next;
            self.produced.push(self.next);
            self.next = self.next.wrapping_add(1);
        }
        Ok(n)
    }
}

fuzz_target!(|input: Input| {
    let budget = (input.budget as usize).max(1);
    let mut buf = vec![0u8; (input.buf_len as usize).max(1)];
    let mut state = ReadState::new(budget, input.short_read_drains);
    let mut src = Fake {
        script: VecDeque::new(),
        produced: Vec::new(),
        next: 0,
        calls: 0,
        partial: None,
    };
    let mut delivered = Vec::new();
    let mut terminal_reports = 0;
    // Urgent data was signalled and no read has said WouldBlock since.
    let mut urgent = false;
    for event in input.events.into_iter().take(256) {
        match event {
            Event::Arrive(outcomes) => src.script.extend(outcomes.into_iter().take(64)),
            Event::Edge => state.on_readable(),
            Event::Hangup => state.on_hangup(),
            Event::Urgent => {
                state.on_urgent();
                urgent = true;
            }
            Event::Pause(r) => state.pause(r),
            Event::Resume(r) => {
                let _ = state.resume(r);
            }
            Event::Turn => {
                state.begin_turn();
                let mut turn_bytes = 0;
                for _ in 0..10_000 {
                    let calls = src.calls;
                    let finished_before = state.is_finished();
                    let readable_before = state.is_readable();
                    match state.step(&mut src, &mut buf) {
                        Step::Data(n) => {
                            assert!(!finished_before, "data after end of file or error");
                            assert!(n > 0 && n <= buf.len(), "read of {n} bytes into {}", buf.len());
                            turn_bytes += n;
                            assert!(turn_bytes <= budget, "turn read {turn_bytes} > budget {budget}");
                            delivered.extend_from_slice(&buf[..n]);
                            if urgent {
                                // A short read may have stopped at the urgent mark.
                                assert!(state.is_readable(), "a read after EPOLLPRI counted as drained");
                            }
                        }
                        Step::Eof | Step::Error(_) => {
                            terminal_reports += 1;
                            assert_eq!(terminal_reports, 1, "end reported twice");
                            break;
                        }
                        Step::Finished => {
                            assert!(finished_before);
                            assert_eq!(src.calls, calls, "read after the end");
                            break;
                        }
                        Step::Paused => {
                            assert_eq!(src.calls, calls, "a paused state read the socket");
                            break;
                        }
                        Step::Drained => {
                            if readable_before {
                                urgent = false;
                            }
                            if !readable_before {
                                assert_eq!(src.calls, calls, "a drained state read the socket");
                            }
                            assert!(!state.is_readable());
                            break;
                        }
                        Step::Yield => {
                            assert_eq!(src.calls, calls);
                            assert!(state.is_readable(), "yielded without data pending");
                            break;
                        }
                    }
                }
            }
        }
        assert_eq!(delivered, src.produced, "delivered bytes differ from the bytes read");
    }
});
