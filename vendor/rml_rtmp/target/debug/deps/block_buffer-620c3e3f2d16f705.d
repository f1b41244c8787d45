/work/main/vendor/rml_rtmp/target/debug/deps/block_buffer-620c3e3f2d16f705.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/block-buffer-0.9.0/src/lib.rs

/work/main/vendor/rml_rtmp/target/debug/deps/libblock_buffer-620c3e3f2d16f705.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/block-buffer-0.9.0/src/lib.rs

/work/main/vendor/rml_rtmp/target/debug/deps/libblock_buffer-620c3e3f2d16f705.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/block-buffer-0.9.0/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/block-buffer-0.9.0/src/lib.rs:
