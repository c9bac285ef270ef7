//! Compiles `proto/*.proto` with protox (a pure-Rust protobuf compiler), so a fresh
//! machine builds with `cargo build` alone and no system `protoc`.

fn main() {
    const PROTOS: [&str; 5] = [
        "proto/rpc.proto",
        "proto/hdfs.proto",
        "proto/client_namenode.proto",
        "proto/datanode_protocol.proto",
        "proto/datatransfer.proto",
    ];
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"]).expect("compile .proto files with protox");
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)
        .expect("generate Rust from .proto descriptors");
}
