/work/main/vendor/rml_rtmp/target/debug/deps/subtle-ae8aa887cf22d0aa.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/subtle-2.4.1/src/lib.rs

/work/main/vendor/rml_rtmp/target/debug/deps/libsubtle-ae8aa887cf22d0aa.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/subtle-2.4.1/src/lib.rs

/work/main/vendor/rml_rtmp/target/debug/deps/libsubtle-ae8aa887cf22d0aa.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/subtle-2.4.1/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/subtle-2.4.1/src/lib.rs:
