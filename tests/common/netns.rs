//! GStreamer `whipsink` publishers for the WHIP tests of both the root crate (the storef binary)
//! and `ingest` (its tests include this file with `#[path]`): the plugin built from crates.io on
//! first use, and a network namespace with a veth pair, because libnice never pairs with a
//! 127.0.0.1 candidate and gathers nothing at all with only `lo`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root, from either crate's manifest directory.
fn workspace_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if dir.join("ingest/testdata").is_dir() {
        dir
    } else {
        dir.join("..")
    }
}

fn run_ok(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

/// Deletes the namespace however the test ends.
pub struct Netns(pub String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The directory holding `libgstwebrtchttp.so` (whipsink), for `GST_PLUGIN_PATH`: built by
/// ingest/testdata/whip/build-whipsink.sh into $WHIPSINK_CACHE (scripts/test.sh points it
/// outside the clone; default target/whipsink), once.
pub fn plugin_dir() -> PathBuf {
    let root = workspace_root();
    let cache = std::env::var_os("WHIPSINK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/whipsink"));
    let script = root.join("ingest/testdata/whip/build-whipsink.sh");
    run_ok(Command::new("sh").arg(script).arg(&cache));
    cache.join("target/release")
}

/// A network namespace with `lo` up and a veth pair 10.99.0.1 (v0) ↔ 10.99.0.2 (v1): libnice
/// pairs nothing with loopback candidates, and gathers nothing with only `lo`.
pub fn netns_with_veth(prefix: &str) -> Netns {
    let ns = Netns(format!("{prefix}{}", std::process::id()));
    run_ok(Command::new("ip").args(["netns", "add", &ns.0]));
    let ip = |args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns.0, "ip"]).args(args);
        run_ok(&mut c);
    };
    ip(&["link", "set", "lo", "up"]);
    ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ip(&["addr", "add", "10.99.0.1/24", "dev", "v0"]);
    ip(&["addr", "add", "10.99.0.2/24", "dev", "v1"]);
    ip(&["link", "set", "v0", "up"]);
    ip(&["link", "set", "v1", "up"]);
    ns
}

/// The command that runs this test binary's test `test` again inside `ns`, with `inner_env` set
/// (the test's "I am the inner run" flag) and the whipsink plugins on `GST_PLUGIN_PATH`: the
/// publishers and the server must share the namespace's veth addresses.
pub fn rerun_inside(ns: &Netns, test: &str, inner_env: &str, plugins: &Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.0])
        .arg(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", test, "--nocapture"])
        .env(inner_env, "1")
        .env("GST_PLUGIN_PATH", plugins);
    c
}

/// For a test that must run inside a namespace: creates one with a veth pair, runs this test
/// binary's test `test` again inside it with `inner_env` set (the inner run's flag) and the
/// whipsink plugins on `GST_PLUGIN_PATH`, and fails if that run fails. The inner run's output is
/// shown indented, so scripts/test.sh does not count its "test result:" line a second time.
pub fn rerun_in_netns(prefix: &str, test: &str, inner_env: &str) {
    let plugins = plugin_dir();
    let ns = netns_with_veth(prefix);
    let out = rerun_inside(&ns, test, inner_env, &plugins)
        .output()
        .expect("running the test inside the namespace");
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        eprintln!("  | {line}");
    }
    assert!(out.status.success(), "the test inside the namespace failed");
}

/// The runtime an inner run drives its async body on (two workers, as `#[tokio::test]` would).
pub fn block_on<F: std::future::Future>(body: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(body)
}
