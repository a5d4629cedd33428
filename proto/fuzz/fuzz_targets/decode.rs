//! Any bytes: the decoders never panic, and whatever decodes encodes back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::chat::ChatMessage;
use proto::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = wire::decode(data) {
        assert_eq!(wire::decode(&wire::encode(&packet)), Ok(packet));
    }
    if let Ok(sealed) = wire::decode_sealed(data) {
        assert_eq!(wire::decode_sealed(&wire::encode_sealed(&sealed)), Ok(sealed));
    }
    if let Ok(message) = ChatMessage::decode(data) {
        let again = ChatMessage::decode(&message.encode()).expect("re-decodes");
        assert_eq!(again, message);
    }
});
