/work/main/vendor/rml_rtmp/target/debug/deps/opaque_debug-ef9e2b6d872dd625.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/opaque-debug-0.3.1/src/lib.rs

/work/main/vendor/rml_rtmp/target/debug/deps/libopaque_debug-ef9e2b6d872dd625.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/opaque-debug-0.3.1/src/lib.rs

/work/main/vendor/rml_rtmp/target/debug/deps/libopaque_debug-ef9e2b6d872dd625.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/opaque-debug-0.3.1/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/opaque-debug-0.3.1/src/lib.rs:
