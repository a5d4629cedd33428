//! The routers' packet counters: iptables rules without a target, each named by a comment,
//! that count what a router forwards (or drops) by direction and destination, read back with
//! `iptables -L -v -x -n`. The lab judges a conversation's path by them, not by the daemon's
//! word.

use std::fmt;

use crate::netns::run;

/// The chain counting a router's forwarded UDP, jumped to first from FORWARD.
pub const COUNT_CHAIN: &str = "NLCOUNT";

/// Packets and bytes one counting rule has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Packets.
    pub packets: u64,
    /// Bytes (IP packets, headers included).
    pub bytes: u64,
}

impl Count {
    fn since(self, earlier: Count) -> Count {
        Count {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }

    fn plus(self, other: Count) -> Count {
        Count {
            packets: self.packets + other.packets,
            bytes: self.bytes + other.bytes,
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} pkt/{} B", self.packets, self.bytes)
    }
}

/// UDP traffic a router's iptables rules have counted in its FORWARD chain (and INPUT, for
/// drops). Bridged traffic between two hosts on its LAN passes FORWARD too
/// (`bridge-nf-call-iptables` is on). Daemons pack several messages into one datagram, so
/// bytes say more about where a conversation went than packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// UDP between two hosts on the router's LAN bridge (no hairpin through the wan).
    pub lan_lan: Count,
    /// UDP from the LAN out to the TURN server's address (relay, STUN, TURN refreshes).
    pub to_turn: Count,
    /// UDP from the LAN out to any other address: direct paths to other routers.
    pub to_direct: Count,
    /// UDP from the TURN server's address into the LAN.
    pub from_turn: Count,
    /// UDP from any other internet address into the LAN (accepted answers).
    pub from_direct: Count,
    /// Anything from the wan dropped by the "no unsolicited inbound" rules (FORWARD, INPUT).
    pub dropped_inbound: Count,
}

impl Counters {
    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        self.zip(earlier, Count::since)
    }

    /// Both routers' counters added up.
    pub fn plus(&self, other: &Counters) -> Counters {
        self.zip(other, Count::plus)
    }

    fn zip(&self, other: &Counters, f: impl Fn(Count, Count) -> Count) -> Counters {
        Counters {
            lan_lan: f(self.lan_lan, other.lan_lan),
            to_turn: f(self.to_turn, other.to_turn),
            to_direct: f(self.to_direct, other.to_direct),
            from_turn: f(self.from_turn, other.from_turn),
            from_direct: f(self.from_direct, other.from_direct),
            dropped_inbound: f(self.dropped_inbound, other.dropped_inbound),
        }
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lan↔lan {}, →turn {}, →direct {}, turn→ {}, direct→ {}, dropped inbound {}",
            self.lan_lan,
            self.to_turn,
            self.to_direct,
            self.from_turn,
            self.from_direct,
            self.dropped_inbound
        )
    }
}

/// Reads the counting rules of the router in namespace `ns` (by their comments, in the
/// counting chain, FORWARD and INPUT).
pub fn read(ns: &str) -> Counters {
    let mut counters = Counters::default();
    for chain in [COUNT_CHAIN, "FORWARD", "INPUT"] {
        let listing = run(&[
            "ip", "netns", "exec", ns, "iptables", "-w", "-L", chain, "-v", "-x", "-n",
        ]);
        for line in listing.lines() {
            let mut fields = line.split_whitespace();
            let (Some(Ok(packets)), Some(Ok(bytes))) = (
                fields.next().map(str::parse::<u64>),
                fields.next().map(str::parse::<u64>),
            ) else {
                continue;
            };
            let Some(comment) = line
                .split("/* ")
                .nth(1)
                .and_then(|rest| rest.split(" */").next())
            else {
                continue;
            };
            let slot = match comment {
                "lan_lan" => &mut counters.lan_lan,
                "to_turn" => &mut counters.to_turn,
                "to_direct" => &mut counters.to_direct,
                "from_turn" => &mut counters.from_turn,
                "from_direct" => &mut counters.from_direct,
                "dropped_inbound" => &mut counters.dropped_inbound,
                _ => continue,
            };
            *slot = slot.plus(Count { packets, bytes });
        }
    }
    counters
}
