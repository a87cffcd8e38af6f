//! Files that are re-read when they change: the tokens file, the JWKS file
//! and the TLS certificate and key. Kubernetes rotates mounted Secrets by
//! swapping a symlink, so the contents are compared, not modification
//! times. A file that fails to parse keeps the previous value: a typo in a
//! rotated Secret never locks everyone out (the failure is logged and
//! counted in `weir_config_reload_failures_total{file}`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::metrics::METRICS;

/// Turns the contents of the watched files (in the order given) into a value.
pub type Parser<T> = fn(&[Vec<u8>]) -> Result<T, String>;

/// A value built from files, swapped when the files change.
pub struct Watched<T> {
    /// Short name for logs and the metric label (`tokens`, `jwks`, `tls`).
    name: &'static str,
    paths: Vec<PathBuf>,
    parse: Parser<T>,
    current: RwLock<Arc<T>>,
    last: Mutex<Vec<Vec<u8>>>,
}

impl<T: Send + Sync + 'static> Watched<T> {
    /// Reads and parses the files now; an error here stops the server from
    /// starting (there is no previous value to keep).
    pub fn load(
        name: &'static str,
        paths: Vec<PathBuf>,
        parse: Parser<T>,
    ) -> Result<Arc<Self>, String> {
        let contents = read_all(&paths)?;
        let value = parse(&contents)?;
        Ok(Arc::new(Watched {
            name,
            paths,
            parse,
            current: RwLock::new(Arc::new(value)),
            last: Mutex::new(contents),
        }))
    }

    /// The value from the last good version of the files.
    pub fn get(&self) -> Arc<T> {
        match self.current.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the files; swaps the value when they changed and parse.
    /// Returns true when a new value was taken.
    pub fn reload(&self) -> bool {
        let contents = match read_all(&self.paths) {
            Ok(c) => c,
            Err(e) => {
                self.failed(&e);
                return false;
            }
        };
        {
            let last = match self.last.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if *last == contents {
                return false;
            }
        }
        match (self.parse)(&contents) {
            Ok(value) => {
                match self.current.write() {
                    Ok(mut g) => *g = Arc::new(value),
                    Err(p) => *p.into_inner() = Arc::new(value),
                }
                match self.last.lock() {
                    Ok(mut g) => *g = contents,
                    Err(p) => *p.into_inner() = contents,
                }
                tracing::info!(file = self.name, "reloaded changed {} file", self.name);
                true
            }
            Err(e) => {
                // Remember the broken contents so the error is logged once
                // per change, not on every check.
                match self.last.lock() {
                    Ok(mut g) => *g = contents,
                    Err(p) => *p.into_inner() = contents,
                }
                self.failed(&e);
                false
            }
        }
    }

    fn failed(&self, error: &str) {
        METRICS
            .config_reload_failures
            .with_label_values(&[self.name])
            .inc();
        tracing::error!(
            file = self.name,
            error,
            "keeping the previous {} configuration",
            self.name
        );
    }

    /// Checks the files every `every` until the returned task is aborted.
    /// Reading happens on the blocking pool, off the async workers.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let watched = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let w = watched.clone();
                if tokio::task::spawn_blocking(move || w.reload())
                    .await
                    .is_err()
                {
                    tracing::error!(file = watched.name, "reload task failed");
                }
            }
        })
    }
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    paths
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("cannot read `{}`: {e}", p.display())))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse_number(files: &[Vec<u8>]) -> Result<u32, String> {
        String::from_utf8_lossy(&files[0])
            .trim()
            .parse()
            .map_err(|e| format!("{e}"))
    }

    #[test]
    fn changes_are_taken_and_broken_files_keep_the_previous_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        let w = Watched::load("test", vec![path.clone()], parse_number).unwrap();
        assert_eq!(*w.get(), 1);
        assert!(!w.reload());
        std::fs::write(&path, "2").unwrap();
        assert!(w.reload());
        assert_eq!(*w.get(), 2);
        std::fs::write(&path, "not a number").unwrap();
        assert!(!w.reload());
        assert_eq!(*w.get(), 2);
        std::fs::remove_file(&path).unwrap();
        assert!(!w.reload());
        assert_eq!(*w.get(), 2);
        std::fs::write(&path, "3").unwrap();
        assert!(w.reload());
        assert_eq!(*w.get(), 3);
        assert!(Watched::load("test", vec![dir.path().join("missing")], parse_number).is_err());
    }
}
