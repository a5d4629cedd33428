use super::*;

#[test]
fn durations_and_purge_interval() {
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    // Bare numbers are seconds, as before humantime.
    assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86400)));
    for bad in ["", "h", "2x", "-1s", "10 s s"] {
        let error = parse_duration(bad).unwrap_err();
        assert!(error.contains("not a duration"), "{bad}: {error}");
    }
    assert!(
        parse_duration("2x")
            .unwrap_err()
            .contains("unknown time unit")
    );
    // Overflow is refused, not wrapped (5124095576030432 h × 3600 wrapped to 3584 s).
    assert!(
        parse_duration("5124095576030432h")
            .unwrap_err()
            .contains("too long")
    );
    assert!(
        parse_duration("18446744073709551616ms")
            .unwrap_err()
            .contains("too long")
    );
    assert_eq!(parse_duration("87600h"), Ok(MAX_DURATION));
    assert!(parse_duration("87601h").is_err());
    assert_eq!(parse_rate("0.5"), Ok(0.5));
    assert!(parse_rate("-1").is_err() && parse_rate("inf").is_err());
    let mut config = Config::for_database("sqlite::memory:");
    assert_eq!(config.peer_ttl, Duration::from_secs(7200));
    // The mailbox's defaults: a week, 1000 letters or 4 MiB per mailbox, 500 per sender.
    assert_eq!(config.mailbox_ttl, Duration::from_secs(7 * 86_400));
    assert_eq!(
        (config.mailbox_max_letters, config.mailbox_max_bytes),
        (1000, 4_194_304)
    );
    assert_eq!(config.mailbox_max_per_sender, 500);
    assert_eq!(config.mailbox_max_total_bytes, 1_073_741_824);
    assert_eq!(
        (
            config.mailbox_sender_rate_per_sec,
            config.mailbox_sender_burst
        ),
        (2.0, 200)
    );
    assert_eq!(config.purge_every(), Duration::from_secs(60));
    config.peer_ttl = Duration::from_secs(90);
    assert_eq!(config.purge_every(), Duration::from_secs(9));
    config.purge_interval = Some(Duration::from_millis(200));
    assert_eq!(config.purge_every(), Duration::from_millis(200));
}

#[test]
fn ice_flags() {
    let parse = |args: &[&str]| {
        Config::try_parse_from(std::iter::once("index-service").chain(args.iter().copied()))
    };
    let config = parse(&[]).unwrap();
    assert!(config.turn_urls.is_empty() && config.turn_secret.is_none());
    assert_eq!(config.turn_credential_ttl, Duration::from_secs(86_400));
    assert!(config.ice_servers().is_empty());
    let config = parse(&[
        "--turn-url",
        "turn:192.0.2.1:3478,stun:192.0.2.1",
        "--turn-url=turn:[2001:db8::1]:3479?transport=udp",
        "--turn-secret",
        "s3cr3t",
        "--turn-credential-ttl",
        "90m",
    ])
    .unwrap();
    let urls: Vec<String> = config.ice_urls().map(ToString::to_string).collect();
    assert_eq!(
        urls,
        [
            "turn:192.0.2.1:3478",
            "stun:192.0.2.1:3478",
            "turn:[2001:db8::1]:3479"
        ]
    );
    assert_eq!(config.turn_credential_ttl, Duration::from_secs(5400));
    assert_eq!(config.validate(), Ok(()));
    assert!(
        !format!("{config:?}").contains("s3cr3t"),
        "the secret is redacted"
    );
    for (args, says) in [
        (&["--turn-url", "turns:192.0.2.1:5349"][..], "TLS"),
        (&["--turn-url", "turn:192.0.2.1?transport=tcp"], "only UDP"),
        (&["--turn-url", "turn:192.0.2.1:99999"], "port"),
        (&["--turn-secret", " x"], "white space"),
        (&["--turn-credential-ttl", "soon"], "not a duration"),
    ] {
        let error = parse(args).unwrap_err().to_string();
        assert!(error.contains(says), "{args:?}: {error}");
    }
}

#[test]
fn validation() {
    let config = Config::for_database("sqlite://index.db");
    assert_eq!(config.validate(), Ok(()));
    let with = |tweak: fn(&mut Config)| {
        let mut config = Config::for_database("sqlite://index.db");
        tweak(&mut config);
        config.validate().unwrap_err()
    };
    assert!(with(|c| c.peer_ttl = Duration::ZERO).starts_with("--peer-ttl 0"));
    assert!(with(|c| c.request_timeout = Duration::ZERO).starts_with("--request-timeout 0"));
    assert!(with(|c| c.peer_ttl = MAX_DURATION * 2).contains("ten years"));
    assert!(with(|c| c.purge_interval = Some(Duration::ZERO)).contains("--purge-interval 0"));
    assert!(with(|c| c.max_body_bytes = 0).contains("--max-body-bytes 0"));
    assert!(with(|c| c.header_timeout = Duration::ZERO).starts_with("--header-timeout 0"));
    assert!(with(|c| c.idle_timeout = Duration::ZERO).starts_with("--idle-timeout 0"));
    assert!(with(|c| c.max_connections = 0).starts_with("--max-connections 0"));
    assert!(with(|c| c.max_connections_per_ip = 0).starts_with("--max-connections-per-ip 0"));
    assert!(
        with(|c| c.turn_credential_ttl = Duration::ZERO).starts_with("--turn-credential-ttl 0")
    );
    assert!(with(|c| c.mailbox_ttl = Duration::ZERO).starts_with("--mailbox-ttl 0"));
    assert!(
        with(|c| c.turn_urls = vec![parse_ice_urls("turn:192.0.2.1").unwrap()])
            .contains("--turn-url turn:192.0.2.1:3478 needs --turn-secret")
    );
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite:x.db?mode=memory",
    ] {
        assert!(
            check_database_url(url).unwrap_err().contains("in-memory"),
            "{url}"
        );
    }
    assert!(
        check_database_url("sqlite://")
            .unwrap_err()
            .contains("names no file")
    );
    assert!(
        check_database_url("notaurl")
            .unwrap_err()
            .contains("neither a SQLite nor a PostgreSQL URL")
    );
    assert!(
        check_database_url("postgres://h/db?sslmode=bogus")
            .unwrap_err()
            .contains("not a usable PostgreSQL URL")
    );
    for url in [
        "postgres://h/db",
        "postgresql://index:secret@db.example.org:5433/index",
        "sqlite://index.db",
        "sqlite:///var/lib/x.db",
        "sqlite:rel.db?mode=rwc",
    ] {
        assert_eq!(check_database_url(url), Ok(()), "{url}");
    }
}
