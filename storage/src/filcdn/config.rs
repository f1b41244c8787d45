//! `[filcdn]` settings. Deserializable so the server can embed it in its TOML config.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::eip712::Network;

/// The payer's private key. `Debug` and `Serialize` never reveal it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The key text, for [`super::eip712::PayerKey::from_hex`] only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl Serialize for Secret {
    /// An empty key serializes as `""` so that the server's config defaults survive a round
    /// trip through `toml::Value` (its environment-override mechanism) without becoming a key.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.is_empty() { "" } else { "<redacted>" })
    }
}

/// `Option<T>` as a TOML-friendly value: `None` is `""` rather than an absent key (TOML has no
/// null), so every key exists in the server's defaults and can be overridden from the
/// environment (`STOREF_FILCDN_DATA_SET_ID=7`, a string) as well as written `data_set_id = 7`.
mod empty_is_none {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use std::{fmt::Display, str::FromStr};

    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_str(""),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Str(String),
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Int(n)) => n.to_string().parse().map(Some).map_err(D::Error::custom),
            Some(Raw::Str(s)) if s.trim().is_empty() => Ok(None),
            Some(Raw::Str(s)) => s.trim().parse().map(Some).map_err(D::Error::custom),
        }
    }
}

/// Timeouts and retry pacing, in milliseconds so TOML stays plain integers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilcdnTimeouts {
    /// TCP connect timeout.
    pub connect_ms: u64,
    /// Every JSON call (announce, poll, add).
    pub request_ms: u64,
    /// One PUT of piece bytes (segments are MBs; a VOD up to 1 GiB).
    pub upload_ms: u64,
    /// Polling interval for parking and transaction status.
    pub poll_ms: u64,
    /// A piece announced and uploaded but still not parked after this is uploaded again.
    pub park_ms: u64,
    /// First retry delay after an error; doubles per attempt.
    pub backoff_initial_ms: u64,
    /// Retry delay cap: a provider down for hours is retried at this pace.
    pub backoff_max_ms: u64,
    /// A parked piece waits at most this long for a batch to fill.
    pub batch_linger_ms: u64,
}

impl Default for FilcdnTimeouts {
    fn default() -> Self {
        Self {
            connect_ms: 10_000,
            request_ms: 60_000,
            upload_ms: 600_000,
            poll_ms: 4_000,
            park_ms: 600_000,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 300_000,
            batch_linger_ms: 10_000,
        }
    }
}

impl FilcdnTimeouts {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub fn request(&self) -> Duration {
        Duration::from_millis(self.request_ms)
    }
    pub fn upload(&self) -> Duration {
        Duration::from_millis(self.upload_ms)
    }
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
}

/// `[filcdn]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilcdnConfig {
    /// Off by default: everything stays local.
    pub enabled: bool,
    pub network: Network,
    /// The provider's PDP service URL (its `serviceURL` in the provider registry).
    pub provider_url: String,
    /// The provider's payee address; signed into `CreateDataSet`. Needed only when storef
    /// creates the data set itself.
    #[serde(with = "empty_is_none")]
    pub provider_address: Option<String>,
    /// The payer's secp256k1 key, hex. Load it from a file or the environment.
    pub private_key: Secret,
    /// FilecoinWarmStorageService address (the EIP-712 verifying contract and record keeper).
    /// Empty = the network's known deployment.
    pub warm_storage_address: String,
    /// An existing data set; with it, `client_data_set_id` (its nonce chosen at creation) is
    /// required too. Absent: storef creates one (with `withCDN`) and remembers it in sled.
    #[serde(with = "empty_is_none")]
    pub data_set_id: Option<u64>,
    #[serde(with = "empty_is_none")]
    pub client_data_set_id: Option<u64>,
    /// Retrieval URL. `{payer}` = payer address, `{cid}` / `{pieceCidV2}` = PieceCIDv2,
    /// `{pieceCidV1}` = legacy v1 CID. Empty = FilBeam for the network; the legacy FilCDN form
    /// is `https://{payer}.calibration.filcdn.io/{pieceCidV1}`.
    pub url_template: String,
    /// Pieces per add-pieces transaction (FWSS/synapse cap: 40).
    pub batch_size: usize,
    /// Uploads in flight at once.
    pub upload_concurrency: usize,
    pub timeouts: FilcdnTimeouts,
    /// Keep the local file once its piece is on chain (else it is deleted after `on_pinned`).
    pub keep_local_after_pin: bool,
}

impl Default for FilcdnConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            network: Network::Calibration,
            provider_url: String::new(),
            provider_address: None,
            private_key: Secret::default(),
            warm_storage_address: String::new(),
            data_set_id: None,
            client_data_set_id: None,
            url_template: String::new(),
            batch_size: 32,
            upload_concurrency: 2,
            timeouts: FilcdnTimeouts::default(),
            keep_local_after_pin: true,
        }
    }
}

/// Largest batch an add-pieces call may carry (synapse-core `MAX_ADD_PIECES_BATCH_SIZE`:
/// on-chain calls fail above 41).
pub const MAX_BATCH: usize = 40;

impl FilcdnConfig {
    /// The URL template in effect.
    pub fn url_template(&self) -> &str {
        if self.url_template.trim().is_empty() {
            self.network.default_url_template()
        } else {
            &self.url_template
        }
    }

    /// The warm-storage address in effect.
    pub fn warm_storage(&self) -> &str {
        if self.warm_storage_address.trim().is_empty() {
            self.network.default_warm_storage()
        } else {
            &self.warm_storage_address
        }
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size.clamp(1, MAX_BATCH)
    }
}

/// Fills a retrieval URL template.
pub fn render_url(template: &str, payer: &str, piece: &super::piece_cid::PieceCid) -> String {
    let v2 = piece.to_string();
    template
        .replace("{payer}", payer)
        .replace("{pieceCidV2}", &v2)
        .replace("{pieceCidV1}", &piece.to_v1_string())
        .replace("{cid}", &v2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filcdn::commp::commp;
    use crate::filcdn::piece_cid::PieceCid;

    #[test]
    fn url_templates_filbeam_and_legacy_filcdn() {
        let piece = PieceCid::from(commp(&[0u8; 127]));
        let payer = "0xC11af1a53f16c1863d0BB06857c87Ae433445C49";
        let cal = FilcdnConfig::default();
        assert_eq!(
            render_url(cal.url_template(), payer, &piece),
            "https://0xC11af1a53f16c1863d0BB06857c87Ae433445C49.calibration.filbeam.io/\
             bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy"
        );
        let main = FilcdnConfig {
            network: Network::Mainnet,
            ..FilcdnConfig::default()
        };
        assert!(render_url(main.url_template(), payer, &piece)
            .starts_with("https://0xC11af1a53f16c1863d0BB06857c87Ae433445C49.filbeam.io/bafkzcib"));
        // The seed's form (shared/seed/session.txt): legacy host, v1 CID.
        let legacy = "https://{payer}.calibration.filcdn.io/{pieceCidV1}";
        assert_eq!(
            render_url(legacy, payer, &piece),
            "https://0xC11af1a53f16c1863d0BB06857c87Ae433445C49.calibration.filcdn.io/\
             baga6ea4seaqdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy"
        );
    }

    #[test]
    fn secret_never_printed_and_config_parses() {
        let cfg: FilcdnConfig = serde_json::from_str(
            r#"{"enabled": true, "network": "mainnet", "private_key": "0xdeadbeef",
                "data_set_id": 7, "client_data_set_id": 9, "batch_size": 500}"#,
        )
        .unwrap();
        assert!(cfg.enabled);
        assert_eq!(cfg.network, Network::Mainnet);
        assert_eq!(cfg.batch_size(), MAX_BATCH);
        assert_eq!(cfg.timeouts, FilcdnTimeouts::default());
        assert_eq!(cfg.warm_storage(), Network::Mainnet.default_warm_storage());
        let shown = format!("{cfg:?} {}", serde_json::to_string(&cfg).unwrap());
        assert!(!shown.contains("deadbeef"), "{shown}");
    }

    #[test]
    fn defaults_round_trip_through_toml_and_optionals_accept_strings() {
        let d = FilcdnConfig::default();
        let v = toml::Value::try_from(&d).unwrap();
        let t = v.as_table().unwrap();
        assert_eq!(t["private_key"].as_str(), Some(""));
        assert_eq!(t["data_set_id"].as_str(), Some(""));
        assert_eq!(v.try_into::<FilcdnConfig>().unwrap(), d);
        // What the server's env override produces: strings in place of the "" defaults.
        let cfg: FilcdnConfig = toml::from_str(
            "data_set_id = \"7\"\nclient_data_set_id = 9\nprovider_address = \"0xab\"\n",
        )
        .unwrap();
        assert_eq!(cfg.data_set_id, Some(7));
        assert_eq!(cfg.client_data_set_id, Some(9));
        assert_eq!(cfg.provider_address.as_deref(), Some("0xab"));
        assert!(toml::from_str::<FilcdnConfig>("data_set_id = \"x\"").is_err());
    }
}
