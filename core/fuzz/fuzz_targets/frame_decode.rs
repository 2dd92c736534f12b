//! Any bytes given to the frame decoder: no panic, and a frame that decodes
//! encodes back to a frame, no longer, that decodes to the same message.
//! (Not always the same bytes: the body codec, postcard, accepts overlong
//! varints such as `ff 00` for 127.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::limits::MAX_FRAME;
use tessera_core::wire::{Header, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::decode(data) {
        assert!(h.frame_len() <= MAX_FRAME);
    }
    if let Ok(msg) = Message::decode(data) {
        let mut buf = [0u8; MAX_FRAME];
        let n = msg.encode(&mut buf).expect("a decoded message encodes");
        assert!(n <= data.len(), "re-encoding grew the frame");
        assert_eq!(Message::decode(&buf[..n]), Ok(msg));
    }
});
