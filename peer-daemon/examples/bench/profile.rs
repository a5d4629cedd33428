//! Optional evidence of where the time goes, with `perf` attached to the daemons during a run:
//! a sampled profile (`perf record`, for `perf report`) and counts of the system calls each
//! daemon made (`perf stat` on the syscall tracepoints), reported per message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// The system calls worth counting: the datagram path, the stdin/stdout pipes, and waiting.
pub const SYSCALLS: &[&str] = &["sendto", "recvfrom", "write", "read", "epoll_wait", "futex"];

/// `perf` processes attached to some daemons for one run.
pub struct Watch {
    perf: Vec<Child>,
    counts: Vec<(String, PathBuf)>,
}

/// System calls per daemon: name → (syscall → count); `"all"` counts every one.
pub type Counts = Vec<(String, BTreeMap<String, u64>)>;

impl Watch {
    /// Attaches to `daemons` (name, pid): `perf record` into `<record>/<run>.data` when
    /// `record` is given, `perf stat` of [`SYSCALLS`] into `<counts>/<run>-<name>.txt` when
    /// `counts` is given.
    pub fn start(
        record: Option<&Path>,
        counts: Option<&Path>,
        run: &str,
        daemons: &[(&str, u32)],
    ) -> anyhow::Result<Watch> {
        let mut watch = Watch {
            perf: Vec::new(),
            counts: Vec::new(),
        };
        if let Some(dir) = record {
            std::fs::create_dir_all(dir)?;
            let pids: Vec<String> = daemons.iter().map(|(_, pid)| pid.to_string()).collect();
            watch.perf.push(perf(
                // A software clock works in VMs without a PMU; DWARF unwinding because release
                // builds have no frame pointers.
                &[
                    "record",
                    "-e",
                    "cpu-clock",
                    "-F",
                    "1999",
                    "--call-graph",
                    "dwarf",
                ],
                &dir.join(format!("{run}.data")),
                &pids.join(","),
            )?);
        }
        if let Some(dir) = counts {
            let mut events = vec!["raw_syscalls:sys_enter".to_owned()];
            events.extend(SYSCALLS.iter().map(|s| format!("syscalls:sys_enter_{s}")));
            for (name, pid) in daemons {
                let file = dir.join(format!("{run}-{name}.txt"));
                let events = events.join(",");
                watch.perf.push(perf(
                    &["stat", "-x", ",", "-e", &events],
                    &file,
                    &pid.to_string(),
                )?);
                watch.counts.push(((*name).to_owned(), file));
            }
        }
        if !watch.perf.is_empty() {
            // perf needs a moment to attach.
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(watch)
    }

    /// Stops `perf` (which then writes its files) and reads the counts.
    pub fn finish(mut self) -> Counts {
        self.stop();
        self.counts
            .iter()
            .map(|(name, file)| (name.clone(), read_counts(file)))
            .collect()
    }

    fn stop(&mut self) {
        for child in &self.perf {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
        }
        for mut child in self.perf.drain(..) {
            let _ = child.wait();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

fn perf(args: &[&str], output: &Path, pids: &str) -> anyhow::Result<Child> {
    Command::new("perf")
        .args(args)
        .arg("-o")
        .arg(output)
        .args(["-p", pids])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf (is it on PATH?)")
}

/// `perf stat -x,` lines: `count,unit,event,...`.
fn read_counts(file: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(count), Some(event)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        let name = match event.strip_prefix("syscalls:sys_enter_") {
            Some(syscall) => syscall,
            None if event.starts_with("raw_syscalls") => "all",
            None => continue,
        };
        counts.insert(name.to_owned(), count);
    }
    counts
}
