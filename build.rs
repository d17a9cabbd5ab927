//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so a
//! fresh machine needs no system `protoc`: our gRPC API (`rta.v1`) and the
//! media protocols we speak (Tencent's `tencent.ad.rta`, Ocean Engine's and Meituan's). The descriptor set is
//! also written to OUT_DIR for gRPC server reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/rta/v1/rta.proto",
        "proto/rta/v1/events.proto",
        "proto/tencent/rta.proto",
        "proto/oceanengine/rta.proto",
        "proto/meituan/rta.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR not set")?);
    fs::write(out.join("rta_descriptor.bin"), fds.encode_to_vec())?;
    // Event messages also decode from JSON (topics configured `format = "json"`),
    // with enums written as lower-case names.
    let enum_fields = [
        (".rta.events.v1.ItemState.scope", "item_scope"),
        (".rta.events.v1.BehaviourEvent.action", "action"),
        (".rta.events.v1.FeedbackEvent.kind", "feedback_kind"),
        (".rta.events.v1.IdentityEvent.change", "identity_change"),
        (".rta.events.v1.BlacklistCommand.op", "blacklist_op"),
    ];
    let mut builder = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .message_attribute(
            ".rta.events.v1",
            "#[derive(serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        );
    for (field, parser) in enum_fields {
        builder = builder.field_attribute(
            field,
            format!("#[serde(deserialize_with = \"crate::ingest::json::{parser}\")]"),
        );
    }
    builder.compile_fds(fds)?;
    Ok(())
}
