//! Read-only view of the leases out now, for operators (the web console's
//! subscription page, `GET .../leases`).

use weir_protocol::Mode;

use super::{State, Status};

/// One lease as the state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub partition: u32,
    pub offset: u64,
    pub count: u64,
    pub attempt: u32,
    pub deadline: u64,
    /// Stream mode: the partition's owner.
    pub owner: Option<String>,
}

impl State {
    /// Up to `limit` unexpired leases in (partition, offset) order, and
    /// whether there were more. Changes nothing.
    pub fn leases(&self, limit: usize, now: u64) -> (Vec<LeaseView>, bool) {
        let mut out = Vec::new();
        for (p, part) in self.parts.iter().enumerate() {
            let partition = p as u32;
            if self.config.mode == Mode::Stream {
                let s = &part.stream;
                if part.next > part.floor && s.deadline > now && !s.dead_lettering {
                    out.push(LeaseView {
                        partition,
                        offset: part.floor,
                        count: part.next - part.floor,
                        attempt: s.head_attempts.max(1),
                        deadline: s.deadline,
                        owner: s.owner.clone(),
                    });
                }
            } else {
                for (&offset, e) in &part.entries {
                    if let Status::Leased { deadline, .. } = e.status {
                        if deadline > now {
                            out.push(LeaseView {
                                partition,
                                offset,
                                count: 1,
                                attempt: e.attempts,
                                deadline,
                                owner: None,
                            });
                        }
                    }
                    if out.len() > limit {
                        break;
                    }
                }
            }
            if out.len() > limit {
                break;
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        (out, more)
    }
}
