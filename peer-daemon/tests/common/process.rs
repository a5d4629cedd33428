//! A `peer-daemon` process as the tests and the benchmark start it, and what `/proc` tells about
//! it (Linux): the command line with nothing inherited from the caller's `PEER_*` settings, the
//! UDP socket it really bound, and the CPU time it spent.
//!
//! Shared by `tests/` (through `common`) and `examples/bench.rs` (through `#[path]`), hence
//! only `std` and no dependency on anything else in `common`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// `bin --listen 127.0.0.1:0 --index <index_url> --name <name> --state-dir <state_dir>`, with
/// every `PEER_*` variable of this environment removed, so that a setting exported where the
/// tests run (a deadline, a public port, a control address) cannot change what they test.
/// LAN discovery and the DHT are off (`PEER_NO_MDNS`, `PEER_NO_DHT`): nothing multicasts on
/// the machine's interfaces or reaches for the public DHT; a test of either removes the
/// variable. Callers add `--json` or further arguments, the environment they need and the
/// pipes.
pub fn daemon_command(bin: &Path, index_url: &str, name: &str, state_dir: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--index",
            index_url,
            "--name",
            name,
        ])
        .arg("--state-dir")
        .arg(state_dir);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("PEER_") {
            command.env_remove(var);
        }
    }
    command.env("PEER_NO_MDNS", "1").env("PEER_NO_DHT", "1");
    command
}

/// User CPU time plus system CPU time of process `pid` so far, in clock ticks (fields 14 and
/// 15 of `/proc/<pid>/stat`; a tick is 10 ms on every Linux this runs on).
pub fn cpu_ticks(pid: u32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let malformed = || std::io::Error::other(format!("/proc/{pid}/stat is not as expected"));
    // The command name (field 2) is in parentheses and may contain spaces.
    let after_name = &stat[stat.rfind(')').ok_or_else(malformed)? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field 14 is at index 11.
    let field = |i: usize| -> std::io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(malformed)
    };
    Ok(field(11)? + field(12)?)
}

/// The one UDP address process `pid` has bound, which differs from what a daemon registered
/// when it was started with `--public-port` (behind a relay).
pub fn bound_udp_addr(pid: u32) -> std::io::Result<SocketAddr> {
    match udp_sockets_of(pid)?[..] {
        [addr] => Ok(addr),
        ref other => Err(std::io::Error::other(format!(
            "process {pid} has the UDP sockets {other:?}, expected one"
        ))),
    }
}

/// The IPv4 UDP sockets process `pid` has bound, read from `/proc` (Linux).
pub fn udp_sockets_of(pid: u32) -> std::io::Result<Vec<SocketAddr>> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor closed meanwhile is simply not a socket of interest.
        let Ok(link) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        if let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inodes.push(inode.to_owned());
        }
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/udp"))?;
    let mut found = Vec::new();
    // Columns: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(inode)) = (fields.get(1), fields.get(9)) else {
            continue;
        };
        if !inodes.iter().any(|i| i == inode) {
            continue;
        }
        let Some((ip, port)) = local.split_once(':') else {
            continue;
        };
        // The address is the network-order word printed as a native integer; the port is plain.
        let (Ok(ip), Ok(port)) = (u32::from_str_radix(ip, 16), u16::from_str_radix(port, 16))
        else {
            continue;
        };
        let ip = std::net::Ipv4Addr::from(u32::from_be(ip));
        found.push(SocketAddr::from((ip, port)));
    }
    Ok(found)
}
