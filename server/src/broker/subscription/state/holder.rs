//! Read-only questions about deliveries already made, for consumers that
//! bound how many of their deliveries may be unsettled at once (the
//! Server-Sent Events subscription stream's `max_in_flight`).

use weir_protocol::Mode;

use super::{State, Status};

impl State {
    /// Whether the delivery `(partition, offset, token)` is still awaiting
    /// its ack at `now`: leased under that token and not expired (queue
    /// mode), or part of the current unexpired run and not yet committed
    /// by a cumulative ack (stream mode). Changes nothing.
    pub fn is_outstanding(&self, partition: u32, offset: u64, token: u64, now: u64) -> bool {
        let Some(part) = self.parts.get(partition as usize) else {
            return false;
        };
        if let Some(entry) = part.entries.get(&offset) {
            if let Status::Leased { token: t, deadline } = entry.status {
                return t == token && deadline > now;
            }
        }
        if self.config.mode != Mode::Stream {
            return false;
        }
        let s = &part.stream;
        s.token == token
            && !s.dead_lettering
            && offset >= part.floor
            && offset < part.next
            && s.deadline > now
    }
}
