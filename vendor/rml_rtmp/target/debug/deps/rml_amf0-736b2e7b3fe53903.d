/work/main/vendor/rml_rtmp/target/debug/deps/rml_amf0-736b2e7b3fe53903.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/deserialization.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/errors.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/serialization.rs

/work/main/vendor/rml_rtmp/target/debug/deps/librml_amf0-736b2e7b3fe53903.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/deserialization.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/errors.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/serialization.rs

/work/main/vendor/rml_rtmp/target/debug/deps/librml_amf0-736b2e7b3fe53903.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/deserialization.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/errors.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/serialization.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/deserialization.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/errors.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/rml_amf0-0.3.0/src/serialization.rs:
