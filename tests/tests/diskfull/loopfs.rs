//! A small ext4 filesystem of its own for one test: a sparse image file,
//! `mkfs.ext4`, `mount -o loop` on a temporary directory. Dropping it
//! unmounts and detaches the loop device, even after a failed assertion.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Panics with what is missing unless loop mounts can work here.
pub fn require_loop_mounts() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "the disk-full tests mount an ext4 image with `mount -o loop` and need root \
         (effective uid {uid})"
    );
    assert!(
        Path::new("/dev/loop-control").exists(),
        "the disk-full tests need loop devices (/dev/loop-control; `modprobe loop`)"
    );
    let mkfs = Command::new("mkfs.ext4").arg("-V").output();
    assert!(
        mkfs.is_ok(),
        "the disk-full tests need mkfs.ext4 (Debian package e2fsprogs)"
    );
}

/// A mounted ext4 image.
pub struct LoopFs {
    mountpoint: PathBuf,
    image: PathBuf,
    mounted: bool,
    // Last: removed after the unmount.
    dir: tempfile::TempDir,
}

impl LoopFs {
    /// Creates and mounts an ext4 filesystem of `bytes` bytes (no blocks
    /// reserved for root, so `df` shows what everyone can use).
    pub fn new(bytes: u64) -> LoopFs {
        let dir = tempfile::tempdir().expect("temp dir");
        let image = dir.path().join("disk.img");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(bytes))
            .expect("create the image file");
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image));
        let mut fs = LoopFs {
            mountpoint,
            image,
            mounted: false,
            dir,
        };
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&fs.image)
            .arg(&fs.mountpoint));
        fs.mounted = true;
        fs
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Bytes available to a writer now (`df`).
    pub fn available(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.mountpoint)
            .output()
            .expect("run df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("cannot parse df output: {out:?}"))
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            let ok = Command::new("umount")
                .arg(&self.mountpoint)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(&self.mountpoint)
                    .status();
            }
        }
        // `mount -o loop` sets autoclear; detach anything still attached.
        if let Ok(out) = Command::new("losetup").arg("-j").arg(&self.image).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(device) = line.split(':').next() {
                    let _ = Command::new("losetup").args(["-d", device]).status();
                }
            }
        }
        let _ = &self.dir;
    }
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
