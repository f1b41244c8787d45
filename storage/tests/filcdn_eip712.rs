//! EIP-712 authorizations against a reference implementation: the vectors in
//! `storage/testdata/filcdn/eip712_vectors.rs` were produced by viem `signTypedData` through
//! `@filoz/synapse-core` 0.5.2 `signCreateDataSet` / `signAddPieces` (the code the old Node
//! server ran), see `storage/testdata/filcdn/gen_vectors.mjs` for the exact command.

use alloy_primitives::{hex, Address, U256};
use storage::filcdn::eip712::{
    add_pieces_extra_data, create_data_set_extra_data, create_data_set_hash, data_set_metadata,
    domain, AddPiecesExtra, CreateDataSetExtra, PayerKey,
};
use storage::filcdn::piece_cid::PieceCid;

include!("../testdata/filcdn/eip712_vectors.rs");

fn setup() -> (PayerKey, alloy_sol_types::Eip712Domain, Address) {
    let key = PayerKey::from_hex(EIP712_KEY).unwrap();
    let fwss: Address = EIP712_FWSS.parse().unwrap();
    (
        key,
        domain(EIP712_CHAIN_ID, fwss),
        EIP712_PAYEE.parse().unwrap(),
    )
}

#[test]
fn payer_address_matches_viem() {
    let (key, _, _) = setup();
    assert_eq!(key.address(), EIP712_PAYER.parse::<Address>().unwrap());
    // EIP-55 checksummed, as viem prints it: this is the `{payer}` of FilBeam URLs.
    assert_eq!(key.address().to_string(), EIP712_PAYER);
    // The key never shows in Debug output.
    let dbg = format!("{key:?}");
    assert!(!dbg.contains(&EIP712_KEY[2..10]), "{dbg}");
}

#[test]
fn create_data_set_digest_and_extra_data_match_viem() {
    let (key, domain, payee) = setup();
    let md = data_set_metadata(true, &[]);
    let id = U256::from(EIP712_CLIENT_DATA_SET_ID);
    let hash = create_data_set_hash(&domain, id, payee, &md);
    assert_eq!(hash.as_slice(), hex::decode(EIP712_CREATE_HASH).unwrap());
    let extra = create_data_set_extra_data(&key, &domain, id, payee, &md).unwrap();
    assert_eq!(hex::encode_prefixed(&extra), EIP712_CREATE_EXTRA);
    // And the decoder recovers the payer from viem's bytes.
    let decoded = CreateDataSetExtra::decode(&hex::decode(EIP712_CREATE_EXTRA).unwrap()).unwrap();
    assert_eq!(decoded.payer, key.address());
    assert_eq!(decoded.metadata, md);
    assert_eq!(
        decoded.recover_signer(&domain, payee).unwrap(),
        key.address()
    );
    // A different payee (another provider) does not verify as this payer.
    assert_ne!(
        decoded.recover_signer(&domain, Address::ZERO).unwrap(),
        key.address()
    );
}

#[test]
fn add_pieces_extra_data_matches_viem() {
    let (key, domain, _) = setup();
    let pieces: Vec<PieceCid> = EIP712_ADD_PIECES
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let id = U256::from(EIP712_CLIENT_DATA_SET_ID);
    let nonce = U256::from(EIP712_NONCE);
    let extra = add_pieces_extra_data(&key, &domain, id, nonce, &pieces).unwrap();
    assert_eq!(hex::encode_prefixed(&extra), EIP712_ADD_EXTRA);
    let decoded = AddPiecesExtra::decode(&extra).unwrap();
    assert_eq!(decoded.nonce, nonce);
    assert_eq!(
        decoded.recover_signer(&domain, id, &pieces).unwrap(),
        key.address()
    );
    // Reordered pieces are a different authorization.
    let swapped = [pieces[1], pieces[0]];
    assert_ne!(
        decoded.recover_signer(&domain, id, &swapped).unwrap(),
        key.address()
    );
}
