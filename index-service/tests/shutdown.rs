//! Graceful shutdown: once it is requested the index stops accepting connections, lets a
//! request already in flight finish (and commit), stops its background task and returns.

mod common;

use std::time::Duration;

use index_service::{Config, Service};
use proto::identity::Identity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn in_flight_requests_finish_then_everything_stops() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("index.db").display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(index_service::run(
        Config::for_database(url.clone()),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));

    // A registration whose body is only half sent when the shutdown begins.
    let body = common::keyed_registration(
        &Identity::from_secret([4; 32]),
        4242,
        Some("late"),
        common::unix_now(),
    )
    .to_string()
    .into_bytes();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /register HTTP/1.1\r\nHost: index\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    stop.send(()).unwrap();
    // New connections are refused once the shutdown has begun…
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !server.is_finished(),
        "the in-flight request holds the shutdown"
    );

    // …but the request in flight is finished and answered.
    stream.write_all(&body[10..]).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("the answer arrives and the connection closes")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let json = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let record: serde_json::Value = serde_json::from_str(json).unwrap();

    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("run() returns once the last connection closed")
        .unwrap()
        .unwrap();

    // The registration answered during the shutdown was committed.
    let service = Service::open(Config::for_database(url)).await.unwrap();
    let uuid = record["uuid"].as_str().unwrap().parse().unwrap();
    let stored = index_service::db::find_peer(&service.state().pool, uuid, &service.state().now())
        .await
        .unwrap();
    assert_eq!(stored.unwrap().record.name.as_deref(), Some("late"));
    service.shutdown().await;
}
