//! Configuration: built-in defaults, then `config.toml` (or `--config PATH`), then environment
//! variables `STOREF_<SECTION>_<KEY>`.
//!
//! The environment override is generic: every key of every section can be set, and the value is
//! parsed as the type the key has in the defaults, so a new setting needs no extra code here.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub upload: UploadConfig,
    pub hls: HlsConfig,
    pub rtmp: RtmpConfig,
    pub live: LiveConfig,
    pub rtsp: RtspConfig,
    pub webrtc: WebrtcConfig,
    pub log: LogConfig,
    /// FilCDN (FilBeam) pinning; off by default. Nested `[filcdn.timeouts]` keys are set from
    /// the environment as `STOREF_FILCDN_TIMEOUTS_<KEY>`.
    pub filcdn: storage::filcdn::FilcdnConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebrtcConfig {
    /// Whether WHIP publishing (`POST /api/whip`) is offered.
    pub enabled: bool,
    /// The one UDP socket every WebRTC publisher sends media to.
    pub udp_addr: String,
    /// Addresses publishers reach `udp_addr` on when storef is behind NAT (empty: the bound
    /// address, or this machine's addresses).
    pub public_ips: Vec<String>,
    /// STUN/TURN URLs advertised to WHIP clients in `Link` headers.
    pub ice_servers: Vec<String>,
    /// A publisher silent for this long (or whose ICE never connects) is gone.
    #[serde(with = "humantime_serde")]
    pub ice_timeout: Duration,
    /// ICE-TCP listener (passive TCP candidates, RFC 6544) for publishers whose network blocks
    /// UDP; ranked below UDP. Empty: no TCP candidates.
    pub tcp_addr: String,
    /// Whether answers carry the UDP candidates (false: TCP only, for a firewalled UDP port).
    pub advertise_udp: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address the HTTP API listens on.
    pub addr: String,
    /// Base URL for URLs handed out (`http://media.example.com`). Empty: derived from each
    /// request's Host header.
    pub public_url: String,
    /// Origins allowed to call the API from a browser; `["*"]` allows any.
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory holding the sled database and every segment file.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret of the bearer tokens. Empty: one is generated on first start and kept in
    /// `<data_dir>/jwt_secret` (mode 0600).
    pub jwt_secret: String,
    /// Clock skew tolerated on `exp`, in seconds.
    pub leeway_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Largest accepted `video_chunk`, in bytes.
    pub max_chunk_bytes: u64,
    /// How long a missing chunk sequence is waited for before the playlist skips it.
    #[serde(with = "humantime_serde")]
    pub gap_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Target segment duration in seconds; segments close on the first keyframe after it.
    pub target_duration: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpConfig {
    /// Whether the RTMP listener runs.
    pub enabled: bool,
    /// Address the RTMP listener binds.
    pub addr: String,
    /// The RTMP application publishers connect to (`rtmp://HOST/live`).
    pub app: String,
    /// A publisher that sends nothing for this long is disconnected.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Single-threaded runtimes RTMP connections are spread over (0: one per CPU core).
    pub workers: usize,
    /// A publishing connection's socket is read this often instead of on every packet: fewer
    /// thread wakeups, up to this much added latency ("0s": read on every packet).
    #[serde(with = "humantime_serde")]
    pub read_tick: Duration,
    /// A publishing connection is woken only when about this much of its media (at the
    /// publisher's measured bitrate, at most 16 KiB) has queued: fewer thread wakeups, about
    /// this much added latency ("0s": woken on every packet).
    #[serde(with = "humantime_serde")]
    pub read_coalesce: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// How long a stream stays live after its publisher disconnects, waiting for a reconnect.
    #[serde(with = "humantime_serde")]
    pub reconnect_window: Duration,
}

/// RTSP pull (cameras): how hard a pull retries. Each failed attempt waits twice as long as the
/// one before, from `initial_backoff` up to `max_backoff`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtspConfig {
    /// Wait after the first failed attempt.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Give up after this many failed attempts in a row (then `live.reconnect_window` applies);
    /// 0 retries forever, which a camera that reboots at night needs.
    pub max_attempts: u32,
    /// Give up after this many wrong-credential answers in a row: cameras lock an account after
    /// a few failed logins.
    pub max_auth_attempts: u32,
    /// DESCRIBE + SETUP + PLAY + the first keyframe must arrive within this.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A connection with no video for this long is dropped and retried.
    #[serde(with = "humantime_serde")]
    pub frame_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter (`info`, `storef=debug,info`); `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: HttpConfig {
                addr: "0.0.0.0:5000".into(),
                public_url: String::new(),
                cors_origins: vec!["*".into()],
            },
            storage: StorageConfig {
                data_dir: PathBuf::from("./data"),
            },
            auth: AuthConfig {
                jwt_secret: String::new(),
                leeway_secs: 30,
            },
            upload: UploadConfig {
                max_chunk_bytes: 1 << 30,
                gap_timeout: Duration::from_secs(15),
            },
            hls: HlsConfig {
                target_duration: 2.0,
            },
            rtmp: RtmpConfig {
                enabled: true,
                addr: "0.0.0.0:1935".into(),
                app: "live".into(),
                idle_timeout: Duration::from_secs(30),
                workers: 0,
                read_tick: Duration::ZERO,
                read_coalesce: Duration::from_millis(10),
            },
            live: LiveConfig {
                reconnect_window: Duration::from_secs(60),
            },
            rtsp: RtspConfig {
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(30),
                max_attempts: 0,
                max_auth_attempts: 3,
                connect_timeout: Duration::from_secs(20),
                frame_timeout: Duration::from_secs(10),
            },
            webrtc: WebrtcConfig {
                enabled: true,
                udp_addr: "0.0.0.0:8189".into(),
                public_ips: Vec::new(),
                ice_servers: Vec::new(),
                ice_timeout: Duration::from_secs(10),
                tcp_addr: "0.0.0.0:8189".into(),
                advertise_udp: true,
            },
            log: LogConfig {
                filter: "info".into(),
            },
            filcdn: storage::filcdn::FilcdnConfig::default(),
        }
    }
}

macro_rules! default_from_config {
    ($($t:ident . $f:ident),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                Config::default().$f
            }
        }
    )*};
}
default_from_config!(
    HttpConfig.http,
    StorageConfig.storage,
    AuthConfig.auth,
    UploadConfig.upload,
    HlsConfig.hls,
    RtmpConfig.rtmp,
    LiveConfig.live,
    RtspConfig.rtsp,
    WebrtcConfig.webrtc,
    LogConfig.log
);

impl Config {
    /// Loads `explicit` (must exist), else `./config.toml` when present, else the defaults; then
    /// applies the environment. Returns the config and the file it came from.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>)> {
        let (text, from) = match explicit {
            Some(p) => (
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading config file {}", p.display()))?,
                Some(p.to_path_buf()),
            ),
            None => match std::fs::read_to_string("config.toml") {
                Ok(t) => (t, Some(PathBuf::from("config.toml"))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), None),
                Err(e) => return Err(e).context("reading ./config.toml"),
            },
        };
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let cfg = Self::from_parts(&text, &vars).with_context(|| match &from {
            Some(p) => format!("in {}", p.display()),
            None => "in the environment".into(),
        })?;
        Ok((cfg, from))
    }

    /// Defaults, overlaid by `toml_text`, overlaid by `STOREF_*` variables of `env`.
    pub fn from_parts(toml_text: &str, env: &[(String, String)]) -> Result<Config> {
        let mut value = toml::Value::try_from(Config::default())?;
        let file: toml::Value = toml::from_str(toml_text).context("parsing TOML")?;
        merge(&mut value, file);
        let toml::Value::Table(sections) = &mut value else {
            bail!("config root is not a table");
        };
        for (name, val) in env {
            let Some(rest) = name.strip_prefix("STOREF_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let mut hit = false;
            for (sect, table) in sections.iter_mut() {
                let Some(key) = rest.strip_prefix(&format!("{sect}_")) else {
                    continue;
                };
                let toml::Value::Table(t) = table else {
                    continue;
                };
                if let Some(slot) = find_slot(t, key) {
                    *slot = parse_like(slot, val)
                        .with_context(|| format!("environment variable {name}={val:?}"))?;
                    hit = true;
                }
            }
            if !hit {
                tracing::warn!(variable = %name, "unknown STOREF_ variable ignored");
            }
        }
        value.try_into().context("invalid configuration")
    }
}

/// Overlays `over` onto `base`, table by table.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// The setting `key` names in `t`: a key of `t`, or `<table>_<key>` of a nested table
/// (`timeouts_poll_ms` is `[filcdn.timeouts] poll_ms`).
fn find_slot<'a>(
    t: &'a mut toml::map::Map<String, toml::Value>,
    key: &str,
) -> Option<&'a mut toml::Value> {
    if t.contains_key(key) {
        return t.get_mut(key);
    }
    t.iter_mut().find_map(|(name, v)| match v {
        toml::Value::Table(sub) => key
            .strip_prefix(name.as_str())
            .and_then(|r| r.strip_prefix('_'))
            .and_then(|r| find_slot(sub, r)),
        _ => None,
    })
}

/// Parses an environment string as the same TOML type as `like`.
fn parse_like(like: &toml::Value, s: &str) -> Result<toml::Value> {
    Ok(match like {
        toml::Value::String(_) => toml::Value::String(s.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(s.trim().parse()?),
        toml::Value::Float(_) => toml::Value::Float(s.trim().parse()?),
        toml::Value::Boolean(_) => toml::Value::Boolean(match s.trim() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => bail!("expected true or false"),
        }),
        toml::Value::Array(_) => toml::Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| toml::Value::String(x.to_string()))
                .collect(),
        ),
        _ => bail!("this setting cannot be set from the environment"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn file_then_env_override_defaults() {
        let c = Config::from_parts(
            "[http]\naddr = \"127.0.0.1:9\"\n[upload]\ngap_timeout = \"3s\"\n",
            &env(&[
                ("STOREF_STORAGE_DATA_DIR", "/tmp/x"),
                ("STOREF_UPLOAD_MAX_CHUNK_BYTES", "42"),
                ("STOREF_HTTP_CORS_ORIGINS", "http://a, http://b"),
                ("STOREF_RTMP_ENABLED", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http.addr, "127.0.0.1:9");
        assert_eq!(c.upload.gap_timeout, Duration::from_secs(3));
        assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.upload.max_chunk_bytes, 42);
        assert_eq!(c.http.cors_origins, vec!["http://a", "http://b"]);
        assert!(!c.rtmp.enabled);
        assert_eq!(c.hls.target_duration, 2.0);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Config::from_parts("", &env(&[("STOREF_UPLOAD_MAX_CHUNK_BYTES", "x")])).is_err());
        assert!(Config::from_parts("[http]\nnope = 1\n", &[]).is_err());
    }

    #[test]
    fn filcdn_settings_from_env_including_nested_and_optional() {
        let c = Config::from_parts(
            "",
            &env(&[
                ("STOREF_FILCDN_ENABLED", "true"),
                ("STOREF_FILCDN_PRIVATE_KEY", "0x01"),
                ("STOREF_FILCDN_DATA_SET_ID", "7"),
                ("STOREF_FILCDN_PROVIDER_ADDRESS", "0xabc"),
                ("STOREF_FILCDN_TIMEOUTS_POLL_MS", "50"),
            ]),
        )
        .unwrap();
        assert!(c.filcdn.enabled);
        assert_eq!(c.filcdn.private_key.expose(), "0x01");
        assert_eq!(c.filcdn.data_set_id, Some(7));
        assert_eq!(c.filcdn.provider_address.as_deref(), Some("0xabc"));
        assert_eq!(c.filcdn.timeouts.poll_ms, 50);
        assert_eq!(
            Config::default().filcdn,
            storage::filcdn::FilcdnConfig::default()
        );
        assert!(!Config::default().filcdn.enabled);
    }

    #[test]
    fn shipped_filcdn_section_uncommented_is_the_defaults() {
        let text = include_str!("../config.toml");
        let start = text.find("# [filcdn]").expect("commented [filcdn] section");
        let section: String = text[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::from_parts(&section, &[]).unwrap();
        assert_eq!(c.filcdn, storage::filcdn::FilcdnConfig::default());
        assert!(section.contains("backoff_max_ms = 300000"), "{section}");
    }

    #[test]
    fn shipped_config_toml_is_the_defaults() {
        let text = include_str!("../config.toml");
        let c = Config::from_parts(text, &[]).unwrap();
        assert_eq!(
            toml::Value::try_from(&c).unwrap(),
            toml::Value::try_from(Config::default()).unwrap(),
            "config.toml must list every setting with its default"
        );
    }
}
