//! Measuring the server's memory (its PID comes from the harness): its
//! resident set size from `/proc/<pid>/status` (`VmRSS`), a background
//! sampler that keeps the peak while load is applied, and the one-line
//! report and bound check every scenario ends with.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// How often the sampler reads `VmRSS`.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

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
