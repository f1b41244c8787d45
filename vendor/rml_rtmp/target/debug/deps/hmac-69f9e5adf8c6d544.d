/work/main/vendor/rml_rtmp/target/debug/deps/hmac-69f9e5adf8c6d544.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hmac-0.10.1/src/lib.rs

/work/main/vendor/rml_rtmp/target/debug/deps/libhmac-69f9e5adf8c6d544.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hmac-0.10.1/src/lib.rs

/work/main/vendor/rml_rtmp/target/debug/deps/libhmac-69f9e5adf8c6d544.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hmac-0.10.1/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hmac-0.10.1/src/lib.rs:
