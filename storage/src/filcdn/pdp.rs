//! Client of a PDP storage provider's HTTP API (Curio `pdp/handlers*.go`; the calls and JSON
//! shapes synapse-core `sp/*.ts` makes). Public services need no HTTP auth.
//!
//! | call | request | answers |
//! | --- | --- | --- |
//! | `POST /pdp/piece` | `{"pieceCid": v2}` | 200 `{"pieceCid"}` already parked; 201 + `Location: /pdp/piece/upload/{uuid}` |
//! | `PUT /pdp/piece/upload/{uuid}` | raw bytes | 204; 400 when CommP or size differ from the CID |
//! | `GET /pdp/piece?pieceCid=` | | 200 `{"pieceCid"}` parked; 404 / 202 not yet |
//! | `POST /pdp/data-sets` | `{"recordKeeper", "extraData"}` | 201 + `Location: /pdp/data-sets/created/{txHash}` |
//! | `GET` that Location | | `{createMessageHash, dataSetCreated, service, txStatus, ok, dataSetId?}` |
//! | `POST /pdp/data-sets/{id}/pieces` | `{"pieces": [{"pieceCid", "subPieces": [{"subPieceCid"}]}], "extraData"}` | 201 + `Location: /pdp/data-sets/{id}/pieces/added/{txHash}` |
//! | `GET` that Location | | `{txHash, txStatus, dataSetId, pieceCount, addMessageOk, piecesAdded, confirmedPieceIds?}` |
//! | `GET /pdp/data-sets/{id}` | | `{id, pieces: [{pieceId, pieceCid, subPieceCid, subPieceOffset}], nextChallengeEpoch}` |
//!
//! `txStatus` is `pending`, `confirmed` or `rejected` (Curio `message_waits_eth.tx_status`).

use std::path::Path;
use std::time::Duration;

use alloy_primitives::{hex, Address};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::piece_cid::PieceCid;

/// A failed provider call; `op` names the call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PdpError {
    #[error("{op}: provider answered HTTP {status}: {body}")]
    Status {
        op: &'static str,
        status: u16,
        body: String,
    },
    #[error("{op}: {source}")]
    Transport {
        op: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{op}: unexpected answer: {reason}")]
    Protocol { op: &'static str, reason: String },
    #[error("{op}: reading {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad provider URL {0:?}")]
    BadUrl(String),
}

impl PdpError {
    /// HTTP status when the provider answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            PdpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Answer of `POST /pdp/piece`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostPiece {
    /// The provider already holds the piece (200): no upload needed.
    AlreadyParked,
    /// Upload the bytes with PUT to this absolute URL (201 `Location`).
    Upload(String),
}

/// Answer of `GET /pdp/piece?pieceCid=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindPiece {
    Parked,
    NotYet,
}

/// `GET /pdp/data-sets/created/{txHash}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateStatus {
    pub create_message_hash: String,
    pub data_set_created: bool,
    #[serde(default)]
    pub service: String,
    pub tx_status: String,
    pub ok: Option<bool>,
    #[serde(default)]
    pub data_set_id: Option<u64>,
}

/// `GET /pdp/data-sets/{id}/pieces/added/{txHash}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddStatus {
    pub tx_hash: String,
    pub tx_status: String,
    pub data_set_id: u64,
    pub piece_count: usize,
    pub add_message_ok: Option<bool>,
    pub pieces_added: bool,
    #[serde(default)]
    pub confirmed_piece_ids: Vec<u64>,
}

/// A piece as `GET /pdp/data-sets/{id}` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSetPiece {
    pub piece_id: u64,
    pub piece_cid: String,
    #[serde(default)]
    pub sub_piece_cid: String,
    #[serde(default)]
    pub sub_piece_offset: u64,
}

/// `GET /pdp/data-sets/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSetInfo {
    pub id: u64,
    pub pieces: Vec<DataSetPiece>,
    #[serde(default)]
    pub next_challenge_epoch: i64,
}

/// Where a transaction stands, for both status endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    Pending,
    Confirmed,
    Rejected,
}

impl CreateStatus {
    pub fn outcome(&self) -> TxOutcome {
        match (self.tx_status.as_str(), self.data_set_created, self.ok) {
            ("rejected", _, _) | (_, _, Some(false)) => TxOutcome::Rejected,
            ("confirmed", true, _) if self.data_set_id.is_some() => TxOutcome::Confirmed,
            _ => TxOutcome::Pending,
        }
    }
}

impl AddStatus {
    pub fn outcome(&self) -> TxOutcome {
        match (
            self.tx_status.as_str(),
            self.pieces_added,
            self.add_message_ok,
        ) {
            ("rejected", _, _) | (_, _, Some(false)) => TxOutcome::Rejected,
            ("confirmed", true, Some(true)) => TxOutcome::Confirmed,
            _ => TxOutcome::Pending,
        }
    }
}

/// HTTP client of one provider.
#[derive(Clone, Debug)]
pub struct PdpClient {
    http: reqwest::Client,
    base: Url,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubPiece {
    sub_piece_cid: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AddPiece {
    piece_cid: String,
    sub_pieces: Vec<SubPiece>,
}

impl PdpClient {
    /// `base` is the provider's service URL (`serviceURL` in the provider registry). Each call
    /// takes its own timeout (JSON calls are short; a PUT of a 1 GiB VOD is not).
    pub fn new(base: &str, connect_timeout: Duration) -> Result<Self, PdpError> {
        let mut base = Url::parse(base).map_err(|_| PdpError::BadUrl(base.to_string()))?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .user_agent(concat!("storef/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| PdpError::Transport {
                op: "client",
                source,
            })?;
        Ok(Self { http, base })
    }

    fn url(&self, path: &str) -> Result<Url, PdpError> {
        self.base
            .join(path)
            .map_err(|_| PdpError::BadUrl(path.to_string()))
    }

    fn location(&self, op: &'static str, resp: &reqwest::Response) -> Result<String, PdpError> {
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| PdpError::Protocol {
                op,
                reason: "no Location header".into(),
            })?;
        Ok(self.url(loc)?.to_string())
    }

    async fn fail(op: &'static str, resp: reqwest::Response) -> PdpError {
        let status = resp.status().as_u16();
        let mut body = resp.text().await.unwrap_or_default();
        body.truncate(512);
        PdpError::Status { op, status, body }
    }

    /// `POST /pdp/piece`: announce a piece.
    pub async fn post_piece(
        &self,
        piece: &PieceCid,
        timeout: Duration,
    ) -> Result<PostPiece, PdpError> {
        const OP: &str = "POST /pdp/piece";
        let resp = self
            .http
            .post(self.url("pdp/piece")?)
            .timeout(timeout)
            .json(&serde_json::json!({ "pieceCid": piece.to_string() }))
            .send()
            .await
            .map_err(|source| PdpError::Transport { op: OP, source })?;
        match resp.status() {
            StatusCode::OK => Ok(PostPiece::AlreadyParked),
            StatusCode::CREATED => Ok(PostPiece::Upload(self.location(OP, &resp)?)),
            _ => Err(Self::fail(OP, resp).await),
        }
    }

    /// `PUT` the file's bytes to an upload URL, streamed from disk.
    pub async fn put_file(
        &self,
        upload_url: &str,
        path: &Path,
        timeout: Duration,
    ) -> Result<(), PdpError> {
        const OP: &str = "PUT /pdp/piece/upload";
        let io = |source| PdpError::Io {
            op: OP,
            path: path.display().to_string(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let len = file.metadata().await.map_err(io)?.len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let url = Url::parse(upload_url).map_err(|_| PdpError::BadUrl(upload_url.into()))?;
        let resp = self
            .http
            .put(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(|source| PdpError::Transport { op: OP, source })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Self::fail(OP, resp).await)
        }
    }

    /// `GET /pdp/piece?pieceCid=`: is the piece parked?
    pub async fn find_piece(
        &self,
        piece: &PieceCid,
        timeout: Duration,
    ) -> Result<FindPiece, PdpError> {
        const OP: &str = "GET /pdp/piece";
        let mut url = self.url("pdp/piece")?;
        url.query_pairs_mut()
            .append_pair("pieceCid", &piece.to_string());
        let resp = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|source| PdpError::Transport { op: OP, source })?;
        match resp.status() {
            StatusCode::OK => Ok(FindPiece::Parked),
            StatusCode::NOT_FOUND | StatusCode::ACCEPTED => Ok(FindPiece::NotYet),
            _ => Err(Self::fail(OP, resp).await),
        }
    }

    /// `POST /pdp/data-sets`; returns the status URL to poll.
    pub async fn create_data_set(
        &self,
        record_keeper: Address,
        extra_data: &[u8],
        timeout: Duration,
    ) -> Result<String, PdpError> {
        const OP: &str = "POST /pdp/data-sets";
        let resp = self
            .http
            .post(self.url("pdp/data-sets")?)
            .timeout(timeout)
            .json(&serde_json::json!({
                "recordKeeper": record_keeper.to_string(),
                "extraData": hex::encode_prefixed(extra_data),
            }))
            .send()
            .await
            .map_err(|source| PdpError::Transport { op: OP, source })?;
        if resp.status().is_success() {
            self.location(OP, &resp)
        } else {
            Err(Self::fail(OP, resp).await)
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        url: Url,
        timeout: Duration,
    ) -> Result<T, PdpError> {
        let resp = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|source| PdpError::Transport { op, source })?;
        if !resp.status().is_success() {
            return Err(Self::fail(op, resp).await);
        }
        resp.json::<T>().await.map_err(|e| PdpError::Protocol {
            op,
            reason: e.to_string(),
        })
    }

    /// Polls a data-set creation status URL once.
    pub async fn create_status(
        &self,
        status_url: &str,
        timeout: Duration,
    ) -> Result<CreateStatus, PdpError> {
        let url = Url::parse(status_url).map_err(|_| PdpError::BadUrl(status_url.into()))?;
        self.get_json("GET /pdp/data-sets/created", url, timeout)
            .await
    }

    /// `POST /pdp/data-sets/{id}/pieces`; returns the status URL to poll.
    pub async fn add_pieces(
        &self,
        data_set_id: u64,
        pieces: &[PieceCid],
        extra_data: &[u8],
        timeout: Duration,
    ) -> Result<String, PdpError> {
        const OP: &str = "POST /pdp/data-sets/{id}/pieces";
        let body = serde_json::json!({
            "pieces": pieces.iter().map(|p| AddPiece {
                piece_cid: p.to_string(),
                sub_pieces: vec![SubPiece { sub_piece_cid: p.to_string() }],
            }).collect::<Vec<_>>(),
            "extraData": hex::encode_prefixed(extra_data),
        });
        let resp = self
            .http
            .post(self.url(&format!("pdp/data-sets/{data_set_id}/pieces"))?)
            .timeout(timeout)
            .json(&body)
            .send()
            .await
            .map_err(|source| PdpError::Transport { op: OP, source })?;
        if resp.status().is_success() {
            self.location(OP, &resp)
        } else {
            Err(Self::fail(OP, resp).await)
        }
    }

    /// Polls an add-pieces status URL once.
    pub async fn add_status(
        &self,
        status_url: &str,
        timeout: Duration,
    ) -> Result<AddStatus, PdpError> {
        let url = Url::parse(status_url).map_err(|_| PdpError::BadUrl(status_url.into()))?;
        self.get_json("GET /pdp/data-sets/{id}/pieces/added", url, timeout)
            .await
    }

    /// `GET /pdp/data-sets/{id}`: the pieces on chain (used to settle an add whose answer a
    /// crash lost).
    pub async fn data_set(&self, id: u64, timeout: Duration) -> Result<DataSetInfo, PdpError> {
        let url = self.url(&format!("pdp/data-sets/{id}"))?;
        self.get_json("GET /pdp/data-sets/{id}", url, timeout).await
    }

    /// `GET /pdp/ping`: the start-up reachability check.
    pub async fn ping(&self, timeout: Duration) -> Result<(), PdpError> {
        const OP: &str = "GET /pdp/ping";
        let resp = self
            .http
            .get(self.url("pdp/ping")?)
            .timeout(timeout)
            .send()
            .await
            .map_err(|source| PdpError::Transport { op: OP, source })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Self::fail(OP, resp).await)
        }
    }
}
