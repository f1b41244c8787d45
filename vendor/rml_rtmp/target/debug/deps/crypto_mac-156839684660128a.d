/work/main/vendor/rml_rtmp/target/debug/deps/crypto_mac-156839684660128a.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-mac-0.10.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-mac-0.10.1/src/errors.rs

/work/main/vendor/rml_rtmp/target/debug/deps/libcrypto_mac-156839684660128a.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-mac-0.10.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-mac-0.10.1/src/errors.rs

/work/main/vendor/rml_rtmp/target/debug/deps/libcrypto_mac-156839684660128a.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-mac-0.10.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-mac-0.10.1/src/errors.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-mac-0.10.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crypto-mac-0.10.1/src/errors.rs:
