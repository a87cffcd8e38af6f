//! Measuring the server's memory: its PID (found among this process's
//! children), its resident set size from `/proc/<pid>/status` (`VmRSS`), a
//! background sampler that keeps the peak while load is applied, and the
//! one-line report and bound check every scenario ends with.
//!
//! The harness does not expose the child's PID, so [`server_pid`] finds it:
//! the one `weir-server` process whose parent is this test process (the
//! scenarios run one at a time, see `serial` in `rss.rs`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// How often the sampler reads `VmRSS`.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// The PID of the running `weir-server` child of this process.
pub fn server_pid() -> u32 {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc") {
        let entry = entry.expect("a /proc entry");
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes may exit while we look: skip what cannot be read.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((comm, state, ppid)) = parse_stat(&stat) {
            if ppid == me && comm == "weir-server" && state != 'Z' {
                found.push(pid);
            }
        }
    }
    assert_eq!(
        found.len(),
        1,
        "expected exactly one running weir-server child of {me}, found {found:?}"
    );
    found[0]
}

/// `(comm, state, ppid)` of a `/proc/<pid>/stat` line. The command name is
/// in parentheses and may itself contain spaces or parentheses.
fn parse_stat(stat: &str) -> Option<(&str, char, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, state, ppid))
}

/// The resident set size of `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> u64 {
    read_rss(pid).unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status (server gone?)"))
}

/// `VmRSS` of `pid` in bytes, `None` when the process is gone.
fn read_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    Some(kib * 1024)
}

/// Samples `VmRSS` of one process on a thread until [`Sampler::finish`].
pub struct Sampler {
    pid: u32,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_peak, thread_stop) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut samples = 0;
            while !thread_stop.load(Ordering::Relaxed) {
                // The server may be stopped on purpose: stop sampling then.
                let Some(rss) = read_rss(pid) else { break };
                thread_peak.fetch_max(rss, Ordering::Relaxed);
                samples += 1;
                std::thread::sleep(SAMPLE_EVERY);
            }
            samples
        });
        Sampler {
            pid,
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The current RSS (also counted towards the peak).
    pub fn now(&self) -> u64 {
        let rss = rss_bytes(self.pid);
        self.peak.fetch_max(rss, Ordering::Relaxed);
        rss
    }

    /// The highest RSS seen so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Stops sampling; returns the peak and the number of samples taken.
    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self
            .thread
            .take()
            .map_or(0, |t| t.join().expect("sampler thread"));
        (self.peak(), samples)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    // Display only: the precision lost above 2^52 bytes is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let value = bytes as f64 / MIB as f64;
    format!("{value:.1} MiB")
}

/// Writes one line to the real stderr, past the test harness's capture, so
/// the numbers show in every run (not only failing ones).
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Prints a scenario's numbers and asserts `peak - baseline <= bound`.
pub fn check_growth(scenario: &str, baseline: u64, peak: u64, last: u64, bound: u64, why: &str) {
    if let Some(problem) = growth_problem(scenario, baseline, peak, last, bound, why) {
        panic!("{problem}");
    }
}

/// Prints a scenario's numbers; describes the problem when `peak -
/// baseline` exceeds `bound` (for scenarios that check more afterwards).
pub fn growth_problem(
    scenario: &str,
    baseline: u64,
    peak: u64,
    last: u64,
    bound: u64,
    why: &str,
) -> Option<String> {
    let growth = peak.saturating_sub(baseline);
    say(&format!(
        "rss {scenario}: baseline {} peak {} final {} growth {} bound {} ({why})",
        mib(baseline),
        mib(peak),
        mib(last),
        mib(growth),
        mib(bound),
    ));
    (growth > bound).then(|| {
        format!(
            "{scenario}: RSS grew by {} (baseline {}, peak {}), more than the bound {} ({why})",
            mib(growth),
            mib(baseline),
            mib(peak),
            mib(bound),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::parse_stat;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (weir-server) S 17 4242 17 0 -1 4194560";
        assert_eq!(parse_stat(line), Some(("weir-server", 'S', 17)));
        let odd = "7 (a) b (c) R 1 7 7";
        assert_eq!(parse_stat(odd), Some(("a) b (c", 'R', 1)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
