//! Black-box tests live in `tests/tests/`; this library holds what several
//! test binaries share: the fault suite's operation history and checker.

pub mod history;
