//! The payer's EIP-712 authorizations that a PDP provider forwards on chain as `extraData`.
//!
//! FilecoinWarmStorageService (FWSS) checks these in its PDP-verifier callbacks: it recovers
//! the signer of a `CreateDataSet` / `AddPieces` message under the domain
//! `{name: "FilecoinWarmStorageService", version: "1", chainId, verifyingContract: FWSS}` and
//! charges that payer. The type definitions and the ABI layout of `extraData` follow
//! synapse-core `typed-data/type-definitions.ts`, `sign-create-dataset.ts` and
//! `sign-add-pieces.ts`; the golden test (`storage/tests/filcdn_eip712.rs`) compares our bytes with
//! what viem's `signTypedData` produces through synapse-core.
//!
//! Signatures are 65 bytes `r ‖ s ‖ v` with `v ∈ {27, 28}` and low `s` (RFC 6979 nonces, so
//! they are deterministic and byte-comparable with viem's).

use alloy_primitives::{Bytes, Signature, B256};
use alloy_sol_types::{SolStruct, SolValue};

/// Re-exported so users (the server, the fake provider) need no alloy dependency of their own.
pub use alloy_primitives::{Address, U256};
pub use alloy_sol_types::Eip712Domain;
use k256::ecdsa::SigningKey;

use super::piece_cid::PieceCid;

alloy_sol_types::sol! {
    /// A data-set or piece metadata key/value (FWSS limits: 10 per data set, 3 per piece).
    #[derive(Debug, PartialEq)]
    struct MetadataEntry { string key; string value; }
    /// Authorizes creating a data set paid by the signer, stored by `payee`.
    #[derive(Debug, PartialEq)]
    struct CreateDataSet { uint256 clientDataSetId; address payee; MetadataEntry[] metadata; }
    /// A binary CID (PieceCIDv2 bytes).
    #[derive(Debug, PartialEq)]
    struct Cid { bytes data; }
    #[derive(Debug, PartialEq)]
    struct PieceMetadata { uint256 pieceIndex; MetadataEntry[] metadata; }
    /// Authorizes adding pieces to the data set the signer created as `clientDataSetId`.
    #[derive(Debug, PartialEq)]
    struct AddPieces {
        uint256 clientDataSetId;
        uint256 nonce;
        Cid[] pieceData;
        PieceMetadata[] pieceMetadata;
    }
}

/// Which Filecoin network: fixes the chain id of the EIP-712 domain and the FilBeam host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Calibration,
    Mainnet,
}

impl Network {
    pub fn chain_id(self) -> u64 {
        match self {
            Network::Calibration => 314_159,
            Network::Mainnet => 314,
        }
    }

    /// FWSS proxy address per synapse-core `abis/generated.ts`
    /// (`filecoinWarmStorageServiceAddress`) at the time of writing; configurable.
    pub fn default_warm_storage(self) -> &'static str {
        match self {
            Network::Calibration => "0x02925630df557F957f70E112bA06e50965417CA0",
            Network::Mainnet => "0x8408502033C418E1bbC97cE9ac48E5528F371A9f",
        }
    }

    /// FilBeam retrieval URL template (synapse-core `chains.ts` `filbeam.retrievalDomain`).
    pub fn default_url_template(self) -> &'static str {
        match self {
            Network::Calibration => "https://{payer}.calibration.filbeam.io/{cid}",
            Network::Mainnet => "https://{payer}.filbeam.io/{cid}",
        }
    }
}

/// Errors of key handling and `extraData` (de)coding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    #[error("private key is not 32 hex bytes")]
    BadKey,
    #[error("secp256k1 signing failed: {0}")]
    Sign(String),
    #[error("extraData does not decode as {what}: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error("signature does not recover: {0}")]
    Recover(String),
}

/// The EIP-712 domain FWSS verifies against.
pub fn domain(chain_id: u64, warm_storage: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some("FilecoinWarmStorageService".into()),
        Some("1".into()),
        Some(U256::from(chain_id)),
        Some(warm_storage),
        None,
    )
}

/// The payer's key. `Debug` never prints it.
#[derive(Clone)]
pub struct PayerKey {
    key: SigningKey,
    address: Address,
}

impl std::fmt::Debug for PayerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PayerKey({}, <redacted>)", self.address)
    }
}

impl PayerKey {
    /// From `0x`-prefixed or bare hex (surrounding whitespace ignored, as in a key file).
    pub fn from_hex(hex: &str) -> Result<Self, SignError> {
        let hex = hex.trim();
        let hex = hex.strip_prefix("0x").unwrap_or(hex);
        let bytes = alloy_primitives::hex::decode(hex).map_err(|_| SignError::BadKey)?;
        let key = SigningKey::from_slice(&bytes).map_err(|_| SignError::BadKey)?;
        let address = Address::from_private_key(&key);
        Ok(Self { key, address })
    }

    /// The payer address (checksummed by `Display`).
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs an EIP-712 digest: 65 bytes `r ‖ s ‖ v(27/28)`.
    pub fn sign_hash(&self, hash: &B256) -> Result<[u8; 65], SignError> {
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(hash.as_slice())
            .map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(Signature::from_signature_and_parity(sig, recid.is_y_odd()).as_bytes())
    }
}

/// Metadata FWSS reads on data-set creation. `withCDN` (empty value) turns FilBeam on;
/// entries are sorted by key as synapse-core `datasetMetadataObjectToEntry` does.
pub fn data_set_metadata(with_cdn: bool, extra: &[(String, String)]) -> Vec<MetadataEntry> {
    let mut entries: Vec<MetadataEntry> = extra
        .iter()
        .map(|(k, v)| MetadataEntry {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    if with_cdn && !entries.iter().any(|e| e.key == "withCDN") {
        entries.push(MetadataEntry {
            key: "withCDN".into(),
            value: String::new(),
        });
    }
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    entries
}

/// EIP-712 digest of a `CreateDataSet` message.
pub fn create_data_set_hash(
    domain: &Eip712Domain,
    client_data_set_id: U256,
    payee: Address,
    metadata: &[MetadataEntry],
) -> B256 {
    CreateDataSet {
        clientDataSetId: client_data_set_id,
        payee,
        metadata: metadata.to_vec(),
    }
    .eip712_signing_hash(domain)
}

/// `extraData` of `POST /pdp/data-sets`: `abi.encode(address payer, uint256 clientDataSetId,
/// string[] keys, string[] values, bytes signature)`.
pub fn create_data_set_extra_data(
    payer: &PayerKey,
    domain: &Eip712Domain,
    client_data_set_id: U256,
    payee: Address,
    metadata: &[MetadataEntry],
) -> Result<Vec<u8>, SignError> {
    let hash = create_data_set_hash(domain, client_data_set_id, payee, metadata);
    let sig = payer.sign_hash(&hash)?;
    let keys: Vec<String> = metadata.iter().map(|m| m.key.clone()).collect();
    let values: Vec<String> = metadata.iter().map(|m| m.value.clone()).collect();
    Ok((
        payer.address(),
        client_data_set_id,
        keys,
        values,
        Bytes::from(sig.to_vec()),
    )
        .abi_encode_params())
}

/// EIP-712 digest of an `AddPieces` message (no per-piece metadata, as storef sends none).
pub fn add_pieces_hash(
    domain: &Eip712Domain,
    client_data_set_id: U256,
    nonce: U256,
    pieces: &[PieceCid],
) -> B256 {
    AddPieces {
        clientDataSetId: client_data_set_id,
        nonce,
        pieceData: pieces
            .iter()
            .map(|p| Cid {
                data: Bytes::from(p.to_bytes()),
            })
            .collect(),
        pieceMetadata: (0..pieces.len())
            .map(|i| PieceMetadata {
                pieceIndex: U256::from(i),
                metadata: Vec::new(),
            })
            .collect(),
    }
    .eip712_signing_hash(domain)
}

/// `extraData` of `POST /pdp/data-sets/{id}/pieces`: `abi.encode(uint256 nonce,
/// string[][] keys, string[][] values, bytes signature)` with one (empty) key/value list per
/// piece.
pub fn add_pieces_extra_data(
    payer: &PayerKey,
    domain: &Eip712Domain,
    client_data_set_id: U256,
    nonce: U256,
    pieces: &[PieceCid],
) -> Result<Vec<u8>, SignError> {
    let hash = add_pieces_hash(domain, client_data_set_id, nonce, pieces);
    let sig = payer.sign_hash(&hash)?;
    let empty: Vec<Vec<String>> = vec![Vec::new(); pieces.len()];
    Ok((nonce, empty.clone(), empty, Bytes::from(sig.to_vec())).abi_encode_params())
}

/// A decoded `CreateDataSet` `extraData` (what a provider / the fake checks).
#[derive(Debug, Clone, PartialEq)]
pub struct CreateDataSetExtra {
    pub payer: Address,
    pub client_data_set_id: U256,
    pub metadata: Vec<MetadataEntry>,
    pub signature: Vec<u8>,
}

impl CreateDataSetExtra {
    pub fn decode(data: &[u8]) -> Result<Self, SignError> {
        type T = (Address, U256, Vec<String>, Vec<String>, Bytes);
        let (payer, id, keys, values, sig) =
            T::abi_decode_params(data).map_err(|e| SignError::Decode {
                what: "CreateDataSet extraData",
                reason: e.to_string(),
            })?;
        if keys.len() != values.len() {
            return Err(SignError::Decode {
                what: "CreateDataSet extraData",
                reason: format!("{} keys but {} values", keys.len(), values.len()),
            });
        }
        Ok(Self {
            payer,
            client_data_set_id: id,
            metadata: keys
                .into_iter()
                .zip(values)
                .map(|(key, value)| MetadataEntry { key, value })
                .collect(),
            signature: sig.to_vec(),
        })
    }

    /// The address that signed this message for `payee` under `domain`.
    pub fn recover_signer(
        &self,
        domain: &Eip712Domain,
        payee: Address,
    ) -> Result<Address, SignError> {
        let hash = create_data_set_hash(domain, self.client_data_set_id, payee, &self.metadata);
        recover(&self.signature, &hash)
    }
}

/// A decoded `AddPieces` `extraData`.
#[derive(Debug, Clone, PartialEq)]
pub struct AddPiecesExtra {
    pub nonce: U256,
    pub keys: Vec<Vec<String>>,
    pub values: Vec<Vec<String>>,
    pub signature: Vec<u8>,
}

impl AddPiecesExtra {
    pub fn decode(data: &[u8]) -> Result<Self, SignError> {
        type T = (U256, Vec<Vec<String>>, Vec<Vec<String>>, Bytes);
        let (nonce, keys, values, sig) =
            T::abi_decode_params(data).map_err(|e| SignError::Decode {
                what: "AddPieces extraData",
                reason: e.to_string(),
            })?;
        Ok(Self {
            nonce,
            keys,
            values,
            signature: sig.to_vec(),
        })
    }

    /// The address that signed adding `pieces` to `client_data_set_id` (metadata must be empty).
    pub fn recover_signer(
        &self,
        domain: &Eip712Domain,
        client_data_set_id: U256,
        pieces: &[PieceCid],
    ) -> Result<Address, SignError> {
        if self.keys.iter().chain(&self.values).any(|v| !v.is_empty()) {
            return Err(SignError::Decode {
                what: "AddPieces extraData",
                reason: "per-piece metadata is not supported".into(),
            });
        }
        let hash = add_pieces_hash(domain, client_data_set_id, self.nonce, pieces);
        recover(&self.signature, &hash)
    }
}

fn recover(sig: &[u8], hash: &B256) -> Result<Address, SignError> {
    let sig = Signature::from_raw(sig).map_err(|e| SignError::Recover(e.to_string()))?;
    sig.recover_address_from_prehash(hash)
        .map_err(|e| SignError::Recover(e.to_string()))
}
