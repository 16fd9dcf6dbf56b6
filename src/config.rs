//! Server limits and tunables, set through [`Builder`](crate::Builder).

use std::time::Duration;

/// Every tunable of a server, with the defaults [`Builder`](crate::Builder) starts from.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) backlog: i32,
    pub(crate) nodelay: bool,
    pub(crate) max_fds: Option<u64>,
    pub(crate) max_connections: usize,
    pub(crate) events_initial: usize,
    pub(crate) events_max: usize,
    pub(crate) events_shrink_after: Duration,
    pub(crate) tick: Option<Duration>,
    pub(crate) read_buffer: usize,
    pub(crate) read_budget: usize,
    pub(crate) out_high_water: usize,
    pub(crate) out_low_water: usize,
    pub(crate) out_hard_limit: usize,
    pub(crate) pause_on_backpressure: bool,
    pub(crate) shutdown_deadline: Duration,
    pub(crate) inbound_high_water: usize,
    pub(crate) incoming_capacity: usize,
    pub(crate) accept_batch: usize,
    pub(crate) accept_backoff_min: Duration,
    pub(crate) accept_backoff_max: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            backlog: 1024,
            nodelay: true,
            max_fds: None,
            max_connections: usize::MAX,
            events_initial: 4096,
            events_max: 65536,
            events_shrink_after: Duration::from_secs(10),
            tick: None,
            read_buffer: 64 * 1024,
            read_budget: 256 * 1024,
            out_high_water: 1024 * 1024,
            out_low_water: 256 * 1024,
            out_hard_limit: 4 * 1024 * 1024,
            pause_on_backpressure: true,
            shutdown_deadline: Duration::from_secs(5),
            inbound_high_water: 1024 * 1024,
            incoming_capacity: 128,
            accept_batch: 128,
            accept_backoff_min: Duration::from_millis(10),
            accept_backoff_max: Duration::from_secs(1),
        }
    }
}
