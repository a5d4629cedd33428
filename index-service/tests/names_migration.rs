//! The migration that made names unique keeps the newest of duplicate names, and the database
//! itself then backs the rule (a unique name key, a name only with its key, memberships tied to
//! records).

mod common;

use std::borrow::Cow;

use common::sqlite_url;
use index_service::db;

#[tokio::test]
async fn the_migration_keeps_the_newest_of_duplicate_names_and_the_index_backs_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    // A database as the previous release left it: two records share a name.
    let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
        .unwrap()
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../migrations"
    )))
    .await
    .unwrap();
    let before: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version < 20261126000000)
        .cloned()
        .collect();
    assert_eq!(before.len(), 2);
    migrator.migrations = Cow::Owned(before);
    migrator.run(&pool).await.unwrap();
    for (uuid, name, last_seen) in [
        (
            "00000000-0000-0000-0000-000000000001",
            "dup",
            "2026-01-01T00:00:00.000Z",
        ),
        (
            "00000000-0000-0000-0000-000000000002",
            "DUP",
            "2026-01-02T00:00:00.000Z",
        ),
        (
            "00000000-0000-0000-0000-000000000003",
            "Dup",
            "2025-12-31T00:00:00.000Z",
        ),
        (
            "00000000-0000-0000-0000-000000000004",
            "solo",
            "2025-12-31T00:00:00.000Z",
        ),
        // A look-alike of `solo` (Cyrillic ѕ), seen earlier: the name keys drop it.
        (
            "00000000-0000-0000-0000-000000000006",
            "\u{0455}olo",
            "2025-12-30T00:00:00.000Z",
        ),
        // No longer acceptable as a name (a zero-width space).
        (
            "00000000-0000-0000-0000-000000000007",
            "zero\u{200B}width",
            "2025-12-30T00:00:00.000Z",
        ),
        // Keyless: names need a key now.
        (
            "00000000-0000-0000-0000-000000000008",
            "keyless",
            "2026-01-03T00:00:00.000Z",
        ),
    ] {
        let keyless = uuid.ends_with('8');
        sqlx::query(
            "INSERT INTO peers (uuid, addr, name, registered_at, last_seen, public_key)
             VALUES (?1, '192.0.2.1:1', ?2, ?3, ?3, ?4)",
        )
        .bind(uuid)
        .bind(name)
        .bind(last_seen)
        .bind((!keyless).then(|| format!("{:0>64}", &uuid[35..])))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let pool = db::connect(db::Backend::Sqlite, &url, 2).await.unwrap();
    type Row = (String, Option<String>, Option<String>, Option<String>);
    let names: Vec<Row> =
        sqlx::query_as("SELECT uuid, name, name_key, subnet FROM peers ORDER BY uuid")
            .fetch_all(&pool)
            .await
            .unwrap();
    let keys: Vec<Option<&str>> = names.iter().map(|(_, _, k, _)| k.as_deref()).collect();
    assert!(
        names
            .iter()
            .all(|(.., subnet)| subnet.as_deref() == Some("192.0.2.0/24"))
    );
    let names: Vec<Option<&str>> = names.iter().map(|(_, n, _, _)| n.as_deref()).collect();
    assert_eq!(
        names,
        [None, Some("DUP"), None, Some("solo"), None, None, None]
    );
    assert_eq!(
        keys,
        [None, Some("dup"), None, Some("solo"), None, None, None]
    );

    // Whatever writes the database, two records never share a name (key), and a name
    // always comes with its key.
    let error = sqlx::query(
        "INSERT INTO peers (uuid, addr, name, name_key, registered_at, last_seen)
         VALUES ('00000000-0000-0000-0000-000000000005', '192.0.2.1:1', 'Solo', 'solo', 'x', 'x')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(db::names::is_name_conflict(&error), "{error}");
    let error = sqlx::query(
        "INSERT INTO peers (uuid, addr, name, registered_at, last_seen)
         VALUES ('00000000-0000-0000-0000-000000000005', '192.0.2.1:1', 'other', 'x', 'x')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(error.to_string().contains("needs its key"), "{error}");
    // The room table is there, tied to the records.
    let error = sqlx::query(
        "INSERT INTO room_members (room, uuid, joined_at) VALUES ('lobby', 'no-such-peer', 'x')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(error.to_string().contains("FOREIGN KEY"), "{error}");
}

/// Start-up must not take longer as the index grows (issue 16): every query the start-up
/// backfill reads the table with goes through an index, never over every row. (A plan, not a
/// timing: `ORDER BY last_seen` on the name-key query once made SQLite walk all 10 M rows of
/// the benchmark, 6 s, instead of the empty partial index.)
#[tokio::test]
async fn start_up_reads_indexes_not_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let pool = db::connect(db::Backend::Sqlite, &url, 1).await.unwrap();
    for query in db::backfill::QUERIES {
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {query}")))
                .fetch_all(&pool)
                .await
                .unwrap();
        let steps: Vec<&str> = plan.iter().map(|(.., detail)| detail.as_str()).collect();
        // A SEARCH reads a range of an index; a SCAN reads all of it, which is fine only for
        // the partial index holding nothing but the rows to repair.
        let bounded = |step: &&str| {
            step.starts_with("SEARCH peers USING")
                || step.starts_with("SCAN peers USING INDEX peers_unkeyed_names")
        };
        assert!(
            steps.iter().all(bounded),
            "{query}\nreads every row: {steps:?}"
        );
    }
}
