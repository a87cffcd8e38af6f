//! Black-box tests live in `tests/tests/`; this library holds what several
//! test binaries share: the fault suite's operation history and checker, and
//! the TCP fault-injection proxy that cluster tests route node-to-node links
//! through.

pub mod history;
pub mod proxy;
