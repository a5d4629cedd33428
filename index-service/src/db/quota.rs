//! Per-address quotas and the global cap on records, checked by the writer inside its
//! transaction so two registrations racing for the last slot cannot both get it.
//!
//! Live records are counted per client IP and per subnet (/24 for IPv4, /48 for IPv6, what
//! one customer of a provider usually holds), all records and named records apart. The record
//! being written never counts against itself, so a keyed record registering again, or moving
//! to another address, is not counted twice. The global cap counts every row (kept in
//! `peer_count` by triggers); when it is reached, expired rows are reclaimed first.

use std::collections::HashMap;
use std::net::IpAddr;

use sqlx::AnyConnection;

use super::clock::Now;
use super::mailbox::MailboxCaps;
use crate::Config;

/// Expired rows deleted at most when the global cap is reached, before refusing.
const RECLAIM: u32 = 256;

/// The limits; 0 turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Live records per client IP.
    pub records_per_ip: u32,
    /// Live records per /24 or /48 subnet.
    pub records_per_subnet: u32,
    /// Live named records per client IP.
    pub names_per_ip: u32,
    /// Live named records per subnet.
    pub names_per_subnet: u32,
    /// Records in the database.
    pub max_records: u64,
    /// The mailbox's caps, checked in the same transaction as the deposit they limit.
    pub mailbox: MailboxCaps,
}

impl Quotas {
    /// The limits `config` sets.
    pub fn from_config(config: &Config) -> Quotas {
        Quotas {
            records_per_ip: config.max_records_per_ip,
            records_per_subnet: config.max_records_per_subnet,
            names_per_ip: config.max_names_per_ip,
            names_per_subnet: config.max_names_per_subnet,
            max_records: config.max_records,
            mailbox: MailboxCaps::from_config(config),
        }
    }
}

/// Where a record was registered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The client IP, canonical (an IPv4-mapped IPv6 address is its IPv4 address).
    pub ip: String,
    /// Its /24 (IPv4) or /48 (IPv6) subnet, e.g. `203.0.113.0/24`.
    pub subnet: String,
}

impl Origin {
    /// The origin of a request from `ip`.
    pub fn of(ip: IpAddr) -> Origin {
        let ip = ip.to_canonical();
        let subnet = match ip {
            IpAddr::V4(v4) => format!("{}/24", std::net::Ipv4Addr::from(v4.to_bits() & !0xff)),
            IpAddr::V6(v6) => format!(
                "{}/48",
                std::net::Ipv6Addr::from(v6.to_bits() & !((1u128 << 80) - 1))
            ),
        };
        Origin {
            ip: ip.to_string(),
            subnet,
        }
    }
}

/// Which limit a write would pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    /// Too many live records from this IP.
    #[error(
        "your address {0} already has {1} live records, the most the index allows per address: \
         delete records you no longer use (DELETE /peers/{{uuid}}) or wait until they expire"
    )]
    RecordsPerIp(String, u32),
    /// Too many live records from this subnet.
    #[error(
        "the network {0} already has {1} live records, the most the index allows per subnet: \
         delete records you no longer use or wait until they expire"
    )]
    RecordsPerSubnet(String, u32),
    /// Too many live named records from this IP.
    #[error(
        "your address {0} already holds {1} names, the most the index allows per address: \
         register without a name, or free a name (PUT without name, or DELETE) first"
    )]
    NamesPerIp(String, u32),
    /// Too many live named records from this subnet.
    #[error(
        "the network {0} already holds {1} names, the most the index allows per subnet: \
         register without a name, or free a name first"
    )]
    NamesPerSubnet(String, u32),
    /// The index is full.
    #[error(
        "the index holds {0} records, as many as it is configured to store; try again once \
         records have expired"
    )]
    Full(u64),
}

/// Whether a write adds a row to the table, which the global cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NewRow {
    /// An insert.
    Yes,
    /// An update of a stored row.
    No,
    /// An upsert: only when no row with its UUID is stored (looked up only at the cap).
    UnlessStored,
}

/// Whether record `uuid` may be written from `origin` (`named`: with a name). The caller runs
/// it inside the writer's transaction.
pub(super) async fn check(
    tx: &mut AnyConnection,
    quotas: &Quotas,
    origin: &Origin,
    uuid: &str,
    named: bool,
    new_row: NewRow,
    now: &Now,
) -> sqlx::Result<Result<(), Exceeded>> {
    let limits = [
        (quotas.records_per_ip, false, false),
        (quotas.records_per_subnet, true, false),
        (quotas.names_per_ip, false, true),
        (quotas.names_per_subnet, true, true),
    ];
    for (max, by_subnet, names) in limits {
        if max == 0 || (names && !named) {
            continue;
        }
        let key = if by_subnet {
            &origin.subnet
        } else {
            &origin.ip
        };
        if count(tx, by_subnet, names, origin, uuid, now).await? >= i64::from(max) {
            let key = key.clone();
            return Ok(Err(match (by_subnet, names) {
                (false, false) => Exceeded::RecordsPerIp(key, max),
                (true, false) => Exceeded::RecordsPerSubnet(key, max),
                (false, true) => Exceeded::NamesPerIp(key, max),
                (true, true) => Exceeded::NamesPerSubnet(key, max),
            }));
        }
    }
    let max = quotas.max_records;
    if new_row != NewRow::No
        && max > 0
        && !fits(stored_rows(tx).await?, 1, max)
        // Only at the cap does it matter whether an upsert adds a row.
        && (new_row == NewRow::Yes || !is_stored(tx, uuid).await?)
        && !room_for(tx, 1, max, now).await?
    {
        return Ok(Err(Exceeded::Full(max)));
    }
    Ok(Ok(()))
}

/// Whether keyless registrations (no names; each a new row) from `origins` all fit, so they
/// can be written in one statement; when they do not, the writer takes them one by one and
/// [`check`] refuses exactly the ones that pass a limit.
pub(super) async fn batch_fits(
    tx: &mut AnyConnection,
    quotas: &Quotas,
    origins: &[&Origin],
    now: &Now,
) -> sqlx::Result<bool> {
    let adding = origins.len() as u64;
    if quotas.max_records > 0 && !room_for(tx, adding, quotas.max_records, now).await? {
        return Ok(false);
    }
    for (max, by_subnet) in [
        (quotas.records_per_ip, false),
        (quotas.records_per_subnet, true),
    ] {
        if max == 0 {
            continue;
        }
        let mut adding: HashMap<&str, (&Origin, i64)> = HashMap::new();
        for origin in origins {
            let key = if by_subnet {
                &origin.subnet
            } else {
                &origin.ip
            };
            adding.entry(key).or_insert((origin, 0)).1 += 1;
        }
        for (origin, n) in adding.into_values() {
            if count(tx, by_subnet, false, origin, "", now).await? + n > i64::from(max) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Live records (`names`: with a name) from `origin`'s IP (or, `by_subnet`, its subnet), other
/// than `uuid`.
async fn count(
    tx: &mut AnyConnection,
    by_subnet: bool,
    names: bool,
    origin: &Origin,
    uuid: &str,
    now: &Now,
) -> sqlx::Result<i64> {
    // Four fixed statements, so each is prepared once. One index, `(subnet, ip, last_seen)`
    // (and its partial copy over named rows), serves both the per-subnet and the per-IP
    // counts, so a registration updates one index for the quotas, not two.
    let sql = match (by_subnet, names) {
        (false, false) => {
            "SELECT count(*) FROM peers WHERE subnet = $1 AND ip = $4 AND uuid <> $2 \
             AND last_seen >= $3"
        }
        (true, false) => {
            "SELECT count(*) FROM peers WHERE subnet = $1 AND uuid <> $2 AND last_seen >= $3"
        }
        (false, true) => {
            "SELECT count(*) FROM peers WHERE subnet = $1 AND ip = $4 AND name IS NOT NULL \
             AND uuid <> $2 AND last_seen >= $3"
        }
        (true, true) => {
            "SELECT count(*) FROM peers WHERE subnet = $1 AND name IS NOT NULL AND uuid <> $2 \
             AND last_seen >= $3"
        }
    };
    let query = sqlx::query_scalar(sql)
        .bind(&origin.subnet)
        .bind(uuid)
        .bind(&now.live_since);
    let query = if by_subnet {
        query
    } else {
        query.bind(&origin.ip)
    };
    query.fetch_one(&mut *tx).await
}

/// Whether `adding` more rows stay within `max`, deleting up to [`RECLAIM`] expired rows
/// first if they would not.
async fn room_for(tx: &mut AnyConnection, adding: u64, max: u64, now: &Now) -> sqlx::Result<bool> {
    if fits(stored_rows(tx).await?, adding, max) {
        return Ok(true);
    }
    sqlx::query(
        "DELETE FROM peers WHERE uuid IN (SELECT uuid FROM peers WHERE last_seen < $1 LIMIT $2)",
    )
    .bind(&now.live_since)
    .bind(i64::from(RECLAIM))
    .execute(&mut *tx)
    .await?;
    Ok(fits(stored_rows(tx).await?, adding, max))
}

/// Whether `rows` stored and `adding` more stay within `max`.
fn fits(rows: i64, adding: u64, max: u64) -> bool {
    (rows.max(0) as u64).saturating_add(adding) <= max
}

/// Rows in the table (kept by triggers in `peer_count`: one row read).
async fn stored_rows(tx: &mut AnyConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT n FROM peer_count WHERE id = 0")
        .fetch_one(&mut *tx)
        .await
}

/// Whether a row with `uuid` is stored, live or expired.
async fn is_stored(tx: &mut AnyConnection, uuid: &str) -> sqlx::Result<bool> {
    let stored: i64 =
        sqlx::query_scalar("SELECT CAST(EXISTS (SELECT 1 FROM peers WHERE uuid = $1) AS INTEGER)")
            .bind(uuid)
            .fetch_one(&mut *tx)
            .await?;
    Ok(stored != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let v4 = Origin::of("203.0.113.77".parse().unwrap());
        assert_eq!(
            (v4.ip.as_str(), v4.subnet.as_str()),
            ("203.0.113.77", "203.0.113.0/24")
        );
        let mapped = Origin::of("::ffff:203.0.113.77".parse().unwrap());
        assert_eq!(mapped, v4);
        let v6 = Origin::of("2001:db8:aa:bb::1".parse().unwrap());
        assert_eq!(v6.subnet, "2001:db8:aa::/48");
    }
}
