//! Rooms' shared state survives a restart, piece by piece or stored again whole.

use crate::history::Change;
use crate::roomstate::{Limits, RoomStates};
use crate::store::Store;

#[tokio::test]
async fn room_state_survives_a_restart_and_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let identity = proto::identity::Identity::from_secret([3; 32]);
    let mut states = RoomStates::new(identity.clone(), Limits::default());
    {
        let store = Store::open(dir.path()).await.unwrap();
        for i in 0..20 {
            states
                .put("rust", &format!("k{i}"), Some(&format!("v{i}")))
                .unwrap();
            states
                .put("lobby", "topic", Some(&format!("t{i}")))
                .unwrap();
            for saved in states.take_saves() {
                store.record(Change::RoomState(saved));
            }
        }
        store.flush().await;
    }
    let store = Store::open(dir.path()).await.unwrap();
    let saved = store.load().await.unwrap();
    let rooms: Vec<&str> = saved.states.iter().map(|(room, _)| room.as_str()).collect();
    assert_eq!(rooms, ["lobby", "rust"]);
    assert!(saved.states.iter().all(|(_, pieces)| pieces.len() == 20));
    let mut again = RoomStates::new(identity.clone(), Limits::default());
    for (room, pieces) in saved.states {
        let whole = again
            .restore(&room, pieces)
            .expect("20 pieces are stored again whole");
        store.record(Change::RoomState(whole));
    }
    for room in ["lobby", "rust"] {
        assert_eq!(again.entries(room), states.entries(room));
    }
    store.flush().await;
    drop(store);
    let store = Store::open(dir.path()).await.unwrap();
    let saved = store.load().await.unwrap();
    assert!(saved.states.iter().all(|(_, pieces)| pieces.len() == 1));
    let mut third = RoomStates::new(identity, Limits::default());
    for (room, pieces) in saved.states {
        assert!(third.restore(&room, pieces).is_none());
    }
    assert_eq!(third.entries("rust"), states.entries("rust"));
    assert_eq!(third.get("lobby", "topic").unwrap().value, "t19");
}
