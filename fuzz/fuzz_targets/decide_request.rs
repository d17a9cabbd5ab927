//! A gRPC `DecideRequest` as protobuf bytes: prost's decode, then the
//! validation `Decide` runs before deciding (ids, types, OS, list limits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rta_engine::serve::grpc::check_request;
use rta_engine::serve::limits::MAX_DEVICE_IDS;
use rta_engine::serve::pb::DecideRequest;

fuzz_target!(|bytes: &[u8]| {
    let Ok(req) = DecideRequest::decode(bytes) else {
        return;
    };
    match check_request(&req) {
        Ok(()) => assert!((1..=MAX_DEVICE_IDS).contains(&req.device_ids.len())),
        Err(e) => assert!(!e.field.is_empty()),
    }
});
