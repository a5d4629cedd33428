//! A minimal STUN Binding client (RFC 8489), only to observe the lab's NAT mappings from
//! inside a host: the request has no attributes, and the answer is read for its
//! XOR-MAPPED-ADDRESS. The daemon uses a real STUN crate; this probe checks the lab itself.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

const MAGIC: u32 = 0x2112_A442;

/// Sends a Binding request from `socket` to `server` and returns the mapped address the
/// server saw, or an error after `timeout` (one retry halfway).
pub fn binding(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
) -> std::io::Result<SocketAddr> {
    let txid: [u8; 12] = rand_bytes();
    let mut request = Vec::with_capacity(20);
    request.extend_from_slice(&0x0001u16.to_be_bytes());
    request.extend_from_slice(&0u16.to_be_bytes());
    request.extend_from_slice(&MAGIC.to_be_bytes());
    request.extend_from_slice(&txid);
    socket.set_read_timeout(Some(timeout / 2))?;
    let mut buf = [0u8; 1500];
    for _ in 0..2 {
        socket.send_to(&request, server)?;
        loop {
            let (len, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e),
            };
            if from != server {
                continue;
            }
            if let Some(mapped) = parse_response(&buf[..len], &txid) {
                return Ok(mapped);
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no STUN Binding response from {server} within {timeout:?}"),
    ))
}

/// The XOR-MAPPED-ADDRESS (IPv4) of a Binding success response for `txid`.
fn parse_response(packet: &[u8], txid: &[u8; 12]) -> Option<SocketAddr> {
    if packet.len() < 20
        || packet[0..2] != 0x0101u16.to_be_bytes()
        || packet[4..8] != MAGIC.to_be_bytes()
        || &packet[8..20] != txid
    {
        return None;
    }
    let mut rest = &packet[20..];
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == 0x0020 && len == 8 && value[1] == 0x01 {
            let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC >> 16) as u16;
            let ip = u32::from_be_bytes([value[4], value[5], value[6], value[7]]) ^ MAGIC;
            return Some(SocketAddr::from((Ipv4Addr::from(ip), port)));
        }
        // Attributes are padded to four bytes.
        rest = rest.get(4 + len.div_ceil(4) * 4..)?;
    }
    None
}

fn rand_bytes() -> [u8; 12] {
    let mut bytes = [0u8; 12];
    rand::fill(&mut bytes);
    bytes
}
