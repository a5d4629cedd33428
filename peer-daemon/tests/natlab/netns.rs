//! Running things in network namespaces: commands (`ip netns exec`), threads that enter a
//! namespace to create sockets there, and cleaning up what a lab leaves behind.

use std::process::Command;

/// Makes bridged traffic in namespace `ns` pass iptables (`bridge-nf-call-iptables`), loading
/// `br_netfilter` if needed; says loudly and returns `false` when the kernel cannot.
pub fn enable_bridge_nf(ns: &str) -> bool {
    let set = || {
        Command::new("ip")
            .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
            .arg("net.bridge.bridge-nf-call-iptables=1")
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if set() {
        return true;
    }
    let _ = Command::new("modprobe").arg("br_netfilter").output();
    if set() {
        return true;
    }
    eprintln!(
        "natlab: WARNING: br_netfilter is unavailable: traffic between hosts on one LAN is \
         neither counted nor blacked out by the router"
    );
    false
}

/// Removes the namespaces of labs whose test process died without cleaning up (killed by a
/// signal): names `nl<pid>x…` whose pid no longer runs.
pub fn sweep_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("nl")
            .and_then(|rest| rest.split_once('x'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_all_in(name);
        let _ = Command::new("ip").args(["netns", "del", name]).output();
    }
}

/// SIGKILLs every process in namespace `ns`.
pub fn kill_all_in(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Runs a command, panicking with its stderr when it fails; returns its stdout.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `tool` is an executable file in a `PATH` directory (or `/usr/sbin`, `/sbin`).
pub fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(tool).is_file())
}

/// Runs `f` on a thread that has entered namespace `ns`, so sockets it creates live there
/// (they stay in it when handed back to other threads).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(format!("/run/netns/{ns}"))
                    .unwrap_or_else(|e| panic!("opening namespace {ns}: {e}"));
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("entering namespace {ns}: {e}"));
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
