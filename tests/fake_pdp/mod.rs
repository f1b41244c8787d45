//! A fake PDP storage provider (Curio's `/pdp` API) plus FilBeam-style retrieval, for tests.
//!
//! It checks what the real provider and chain check: PUT bytes must re-hash (CommP) to the
//! announced PieceCIDv2 and match its size; data-set creation and add-pieces must carry an
//! EIP-712 signature of the configured payer for this chain, warm-storage contract and payee;
//! pieces must be parked before they are added. Transactions stay `pending` for
//! `confirm_after` and then land whether or not anyone polls (as on chain). It can be told to
//! fail: an HTTP status for every call or the next N calls, slow parking, rejected
//! transactions, or to go down and come back on the same port.
//!
//! Use from an integration test: `#[path = "../../tests/fake_pdp/mod.rs"] mod fake_pdp;`
//! (from `storage/tests`) or `mod fake_pdp;` (from the workspace `tests/`). Needs `axum`,
//! `tokio`, `serde_json` and `storage`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use storage::filcdn::commp::{commp, MAX_UPLOAD_SIZE, MIN_UPLOAD_SIZE};
use storage::filcdn::eip712::{
    domain, AddPiecesExtra, Address, CreateDataSetExtra, Eip712Domain, U256,
};
use storage::filcdn::piece_cid::PieceCid;

/// What the fake accepts.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    pub payer: Address,
    pub payee: Address,
    pub chain_id: u64,
    pub warm_storage: Address,
    /// How long a transaction stays pending.
    pub confirm_after: Duration,
    /// How long after its PUT a piece shows as parked.
    pub park_after: Duration,
}

#[derive(Default)]
struct Faults {
    /// Every call answers this status (provider broken / rate limiting).
    all: Option<u16>,
    /// The next `n` calls answer `status`.
    next: Option<(usize, u16)>,
    /// The next `n` add-pieces transactions revert.
    reject_txs: usize,
    /// Simulated outage: surviving keep-alive connections get 503.
    down: bool,
    /// Add-pieces answers come this late (the transaction is sent at once).
    add_answer_delay: Option<Duration>,
}

struct Upload {
    piece: PieceCid,
    done: bool,
}

struct Parked {
    bytes: Bytes,
    ready_at: Instant,
}

struct DataSet {
    client_id: U256,
    pieces: Vec<(u64, String)>,
    with_cdn: bool,
}

struct CreateTx {
    at: Instant,
    client_id: U256,
    with_cdn: bool,
    data_set: Option<u64>,
}

struct AddTx {
    at: Instant,
    data_set: u64,
    pieces: Vec<String>,
    reverted: bool,
    applied: Option<Vec<u64>>,
}

#[derive(Default)]
struct Inner {
    uploads: HashMap<String, Upload>,
    parked: HashMap<String, Parked>,
    puts: HashMap<String, usize>,
    adds: HashMap<String, usize>,
    data_sets: HashMap<u64, DataSet>,
    creates: HashMap<String, CreateTx>,
    add_txs: HashMap<String, AddTx>,
    next_id: u64,
    faults: Faults,
    /// Calls answered with an injected failure status.
    injected: usize,
    /// Requests that broke a rule the real provider or chain enforces.
    violations: Vec<String>,
    requests: usize,
}

struct Shared {
    cfg: FakeConfig,
    domain: Eip712Domain,
    inner: Mutex<Inner>,
}

/// A running fake provider.
pub struct FakePdp {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

fn tx_hash(n: u64, salt: &str) -> String {
    // Unique 32-byte hashes; their value means nothing.
    let c = commp(format!("{salt}-{n}-{salt}").as_bytes());
    let mut s = String::from("0x");
    for b in c.root {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl FakePdp {
    pub async fn start(cfg: FakeConfig) -> Self {
        let shared = Arc::new(Shared {
            domain: domain(cfg.chain_id, cfg.warm_storage),
            cfg,
            inner: Mutex::new(Inner {
                next_id: 1,
                ..Inner::default()
            }),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Self {
            shared,
            addr,
            server: Mutex::new(None),
        };
        fake.serve(listener);
        fake
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = router(self.shared.clone());
        let h = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.server.lock().unwrap() = Some(h);
    }

    /// Base URL (the provider's `serviceURL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Goes down: the listener closes and open connections get 503.
    pub fn stop(&self) {
        self.shared.inner.lock().unwrap().faults.down = true;
        if let Some(h) = self.server.lock().unwrap().take() {
            h.abort();
        }
    }

    /// Comes back on the same port with the same state.
    pub async fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.shared.inner.lock().unwrap().faults.down = false;
        self.serve(listener);
    }

    /// Every call answers `status` (None = normal).
    pub fn fail_all(&self, status: Option<u16>) {
        self.shared.inner.lock().unwrap().faults.all = status;
    }

    /// The next `n` calls answer `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared.inner.lock().unwrap().faults.next = Some((n, status));
    }

    /// The next `n` add-pieces transactions revert on chain.
    pub fn reject_next_txs(&self, n: usize) {
        self.shared.inner.lock().unwrap().faults.reject_txs = n;
    }

    /// Delays add-pieces answers (not the transactions).
    pub fn delay_add_answers(&self, d: Option<Duration>) {
        self.shared.inner.lock().unwrap().faults.add_answer_delay = d;
    }

    /// How many PUTs of this piece were accepted.
    pub fn uploads_of(&self, cid: &str) -> usize {
        self.shared
            .inner
            .lock()
            .unwrap()
            .puts
            .get(cid)
            .copied()
            .unwrap_or(0)
    }

    /// How many times this piece landed in a data set.
    pub fn adds_of(&self, cid: &str) -> usize {
        self.shared
            .inner
            .lock()
            .unwrap()
            .adds
            .get(cid)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_uploads(&self) -> usize {
        self.shared.inner.lock().unwrap().puts.values().sum()
    }

    pub fn total_adds(&self) -> usize {
        self.shared.inner.lock().unwrap().adds.values().sum()
    }

    pub fn data_set_count(&self) -> usize {
        self.shared.inner.lock().unwrap().data_sets.len()
    }

    /// Calls answered with an injected failure.
    pub fn injected_failures(&self) -> usize {
        self.shared.inner.lock().unwrap().injected
    }

    /// Add-pieces transactions that reverted.
    pub fn reverted_txs(&self) -> usize {
        let g = self.shared.inner.lock().unwrap();
        g.add_txs.values().filter(|t| t.reverted).count()
    }

    /// Add-pieces calls accepted (transactions sent), reverted or not.
    pub fn add_calls(&self) -> usize {
        self.shared.inner.lock().unwrap().add_txs.len()
    }

    pub fn request_count(&self) -> usize {
        self.shared.inner.lock().unwrap().requests
    }

    /// Rule violations seen (bad signatures, CommP mismatches, …); a correct client makes none.
    pub fn violations(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().violations.clone()
    }
}

impl Drop for FakePdp {
    fn drop(&mut self) {
        if let Some(h) = self.server.lock().unwrap().take() {
            h.abort();
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/pdp/ping", get(|| async { StatusCode::OK }))
        .route("/pdp/piece", post(post_piece).get(find_piece))
        .route("/pdp/piece/upload/{uuid}", put(put_piece))
        .route("/pdp/data-sets", post(create_data_set))
        .route("/pdp/data-sets/created/{tx}", get(create_status))
        .route("/pdp/data-sets/{id}", get(get_data_set))
        .route("/pdp/data-sets/{id}/pieces", post(add_pieces))
        .route("/pdp/data-sets/{id}/pieces/added/{tx}", get(add_status))
        .route("/piece/{cid}", get(retrieve))
        .route("/{cid}", get(retrieve))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_SIZE as usize + 1))
        .layer(middleware::from_fn_with_state(shared.clone(), faults))
        .with_state(shared)
}

async fn faults(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    {
        let mut g = s.inner.lock().unwrap();
        g.requests += 1;
        if g.faults.down {
            return err(StatusCode::SERVICE_UNAVAILABLE, "down");
        }
        if let Some(st) = g.faults.all {
            g.injected += 1;
            return err(StatusCode::from_u16(st).unwrap(), "injected failure");
        }
        if let Some((n, st)) = g.faults.next {
            g.faults.next = if n > 1 { Some((n - 1, st)) } else { None };
            g.injected += 1;
            return err(StatusCode::from_u16(st).unwrap(), "injected failure");
        }
        settle(&s.cfg, &mut g);
    }
    next.run(req).await
}

/// Lands every due transaction, polled or not (as a chain would).
fn settle(cfg: &FakeConfig, g: &mut Inner) {
    let now = Instant::now();
    let mut creates: Vec<&mut CreateTx> = g
        .creates
        .values_mut()
        .filter(|t| t.data_set.is_none() && now >= t.at + cfg.confirm_after)
        .collect();
    creates.sort_by_key(|t| t.at);
    for t in creates {
        let id = g.next_id;
        g.next_id += 1;
        t.data_set = Some(id);
        g.data_sets.insert(
            id,
            DataSet {
                client_id: t.client_id,
                pieces: Vec::new(),
                with_cdn: t.with_cdn,
            },
        );
    }
    let mut due: Vec<String> = g
        .add_txs
        .iter()
        .filter(|(_, t)| t.applied.is_none() && now >= t.at + cfg.confirm_after)
        .map(|(h, _)| h.clone())
        .collect();
    due.sort_by_key(|h| g.add_txs[h].at);
    for h in due {
        let t = g.add_txs.get_mut(&h).unwrap();
        if t.reverted {
            t.applied = Some(Vec::new());
            continue;
        }
        let ds = g.data_sets.get_mut(&t.data_set).unwrap();
        let mut ids = Vec::new();
        for p in &t.pieces {
            let id = ds.pieces.len() as u64;
            ds.pieces.push((id, p.clone()));
            ids.push(id);
            *g.adds.entry(p.clone()).or_default() += 1;
        }
        t.applied = Some(ids);
    }
}

async fn post_piece(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let Some(cid) = body.get("pieceCid").and_then(Value::as_str) else {
        return err(StatusCode::BAD_REQUEST, "Invalid request body: no pieceCid");
    };
    let piece = match PieceCid::parse(cid) {
        Ok(p) => p,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("invalid pieceCid: {e}")),
    };
    let size = piece.payload_size();
    if size < MIN_UPLOAD_SIZE {
        return err(StatusCode::BAD_REQUEST, "piece data is below the minimum");
    }
    if size > MAX_UPLOAD_SIZE {
        return err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "piece data exceeds the maximum",
        );
    }
    let mut g = s.inner.lock().unwrap();
    if g.parked.contains_key(cid) {
        return (StatusCode::OK, Json(json!({ "pieceCid": cid }))).into_response();
    }
    let uuid = format!("{:08x}-fake-{}", g.requests, g.uploads.len());
    g.uploads
        .insert(uuid.clone(), Upload { piece, done: false });
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/pdp/piece/upload/{uuid}"))],
    )
        .into_response()
}

async fn put_piece(
    State(s): State<Arc<Shared>>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> Response {
    let piece = {
        let g = s.inner.lock().unwrap();
        match g.uploads.get(&uuid) {
            None => return err(StatusCode::NOT_FOUND, "Upload UUID not found"),
            Some(u) if u.done => {
                return err(StatusCode::CONFLICT, "Data has already been uploaded")
            }
            Some(u) => u.piece,
        }
    };
    let mut g = s.inner.lock().unwrap();
    if body.len() as u64 != piece.payload_size() {
        g.violations
            .push(format!("PUT {uuid}: {} bytes for {piece}", body.len()));
        return err(
            StatusCode::BAD_REQUEST,
            "Piece size does not match the expected size",
        );
    }
    let got = PieceCid::from(commp(&body));
    if got != piece {
        g.violations.push(format!(
            "PUT {uuid}: bytes hash to {got}, announced {piece}"
        ));
        return err(
            StatusCode::BAD_REQUEST,
            "Computed hash does not match expected hash",
        );
    }
    let cid = piece.to_string();
    if let Some(u) = g.uploads.get_mut(&uuid) {
        u.done = true;
    }
    *g.puts.entry(cid.clone()).or_default() += 1;
    g.parked.insert(
        cid,
        Parked {
            bytes: body,
            ready_at: Instant::now() + s.cfg.park_after,
        },
    );
    StatusCode::NO_CONTENT.into_response()
}

async fn find_piece(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(cid) = q.get("pieceCid") else {
        return err(StatusCode::BAD_REQUEST, "Failed to parse CID");
    };
    if PieceCid::parse(cid).is_err() {
        return err(StatusCode::BAD_REQUEST, "Failed to parse CID");
    }
    let g = s.inner.lock().unwrap();
    match g.parked.get(cid) {
        Some(p) if Instant::now() >= p.ready_at => Json(json!({ "pieceCid": cid })).into_response(),
        _ => err(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_prefix("0x")?;
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

async fn create_data_set(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let keeper = body
        .get("recordKeeper")
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<Address>().ok());
    if keeper != Some(s.cfg.warm_storage) {
        return err(StatusCode::FORBIDDEN, "recordKeeper address not allowed");
    }
    let Some(extra) = body
        .get("extraData")
        .and_then(Value::as_str)
        .and_then(decode_hex)
    else {
        return err(StatusCode::BAD_REQUEST, "Invalid extraData format");
    };
    let mut g = s.inner.lock().unwrap();
    let x = match CreateDataSetExtra::decode(&extra) {
        Ok(x) => x,
        Err(e) => {
            g.violations.push(format!("create: {e}"));
            return err(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let signer = x.recover_signer(&s.domain, s.cfg.payee).ok();
    if x.payer != s.cfg.payer || signer != Some(s.cfg.payer) {
        g.violations
            .push(format!("create: payer {} signer {signer:?}", x.payer));
        return err(
            StatusCode::BAD_REQUEST,
            "signature does not verify for payer",
        );
    }
    if g.creates
        .values()
        .any(|t| t.client_id == x.client_data_set_id)
    {
        g.violations.push("create: clientDataSetId reused".into());
        return err(StatusCode::BAD_REQUEST, "ClientDataSetAlreadyRegistered");
    }
    let hash = tx_hash(g.creates.len() as u64, "create");
    let with_cdn = x.metadata.iter().any(|m| m.key == "withCDN");
    g.creates.insert(
        hash.clone(),
        CreateTx {
            at: Instant::now(),
            client_id: x.client_data_set_id,
            with_cdn,
            data_set: None,
        },
    );
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/pdp/data-sets/created/{hash}"))],
    )
        .into_response()
}

async fn create_status(State(s): State<Arc<Shared>>, Path(tx): Path<String>) -> Response {
    let g = s.inner.lock().unwrap();
    let Some(t) = g.creates.get(&tx) else {
        return err(
            StatusCode::NOT_FOUND,
            "Data set creation not found for given txHash",
        );
    };
    let body = match t.data_set {
        None => json!({"createMessageHash": tx, "dataSetCreated": false, "service": "public",
                        "txStatus": "pending", "ok": null}),
        Some(id) => json!({"createMessageHash": tx, "dataSetCreated": true, "service": "public",
                           "txStatus": "confirmed", "ok": true, "dataSetId": id}),
    };
    Json(body).into_response()
}

async fn get_data_set(State(s): State<Arc<Shared>>, Path(id): Path<u64>) -> Response {
    let g = s.inner.lock().unwrap();
    let Some(ds) = g.data_sets.get(&id) else {
        return err(StatusCode::NOT_FOUND, "Data set not found");
    };
    let pieces: Vec<Value> = ds
        .pieces
        .iter()
        .map(|(pid, cid)| {
            json!({"pieceId": pid, "pieceCid": cid, "subPieceCid": cid, "subPieceOffset": 0})
        })
        .collect();
    Json(json!({"id": id, "pieces": pieces, "nextChallengeEpoch": 0})).into_response()
}

async fn add_pieces(
    State(s): State<Arc<Shared>>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    let (resp, delay) = add_pieces_now(&s, id, &body);
    if let Some(d) = delay {
        // The transaction is already sent; only the answer is late (a crash window).
        tokio::time::sleep(d).await;
    }
    resp
}

fn add_pieces_now(s: &Shared, id: u64, body: &Value) -> (Response, Option<Duration>) {
    let mut g = s.inner.lock().unwrap();
    let delay = g.faults.add_answer_delay;
    let resp = add_pieces_locked(s, &mut g, id, body);
    let sent = resp.status() == StatusCode::CREATED;
    (resp, delay.filter(|_| sent))
}

fn add_pieces_locked(s: &Shared, g: &mut Inner, id: u64, body: &Value) -> Response {
    let Some(client_id) = g.data_sets.get(&id).map(|d| d.client_id) else {
        return err(StatusCode::NOT_FOUND, "Data set not found");
    };
    let list = body
        .get("pieces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        return err(
            StatusCode::BAD_REQUEST,
            "At least one piece must be provided",
        );
    }
    if list.len() > 40 {
        g.violations
            .push(format!("add: {} pieces in one call", list.len()));
        return err(StatusCode::BAD_REQUEST, "too many pieces");
    }
    let mut pieces = Vec::new();
    for p in &list {
        let cid = p.get("pieceCid").and_then(Value::as_str).unwrap_or("");
        let sub = p
            .get("subPieces")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|x| x.get("subPieceCid"))
            .and_then(Value::as_str);
        let Ok(piece) = PieceCid::parse(cid) else {
            return err(StatusCode::BAD_REQUEST, "Invalid pieceCid");
        };
        if sub != Some(cid) {
            return err(StatusCode::BAD_REQUEST, "Invalid subPieceCid");
        }
        if !g.parked.contains_key(cid) {
            g.violations.push(format!("add: {cid} not parked"));
            return err(StatusCode::BAD_REQUEST, "piece not found");
        }
        pieces.push(piece);
    }
    let Some(extra) = body
        .get("extraData")
        .and_then(Value::as_str)
        .and_then(decode_hex)
    else {
        return err(StatusCode::BAD_REQUEST, "Invalid extraData format");
    };
    let signer = AddPiecesExtra::decode(&extra)
        .and_then(|x| x.recover_signer(&s.domain, client_id, &pieces))
        .ok();
    if signer != Some(s.cfg.payer) {
        g.violations.push(format!("add: signer {signer:?}"));
        return err(
            StatusCode::BAD_REQUEST,
            "signature does not verify for payer",
        );
    }
    let reverted = g.faults.reject_txs > 0;
    if reverted {
        g.faults.reject_txs -= 1;
    }
    let hash = tx_hash(g.add_txs.len() as u64, "add");
    g.add_txs.insert(
        hash.clone(),
        AddTx {
            at: Instant::now(),
            data_set: id,
            pieces: pieces.iter().map(ToString::to_string).collect(),
            reverted,
            applied: None,
        },
    );
    (
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/pdp/data-sets/{id}/pieces/added/{hash}"),
        )],
    )
        .into_response()
}

async fn add_status(State(s): State<Arc<Shared>>, Path((id, tx)): Path<(u64, String)>) -> Response {
    let g = s.inner.lock().unwrap();
    let Some(t) = g.add_txs.get(&tx).filter(|t| t.data_set == id) else {
        return err(
            StatusCode::NOT_FOUND,
            "Piece addition not found for given transaction",
        );
    };
    let count = t.pieces.len();
    let body = match (&t.applied, t.reverted) {
        (None, _) => json!({"txHash": tx, "txStatus": "pending", "dataSetId": id,
            "pieceCount": count, "addMessageOk": null, "piecesAdded": false}),
        (Some(_), true) => json!({"txHash": tx, "txStatus": "confirmed", "dataSetId": id,
            "pieceCount": count, "addMessageOk": false, "piecesAdded": false}),
        (Some(ids), false) => json!({"txHash": tx, "txStatus": "confirmed", "dataSetId": id,
            "pieceCount": count, "addMessageOk": true, "piecesAdded": true,
            "confirmedPieceIds": ids}),
    };
    Json(body).into_response()
}

/// FilBeam: serves the bytes of a piece that is in a CDN data set.
async fn retrieve(State(s): State<Arc<Shared>>, Path(cid): Path<String>) -> Response {
    let g = s.inner.lock().unwrap();
    let on_cdn = g
        .data_sets
        .values()
        .any(|d| d.with_cdn && d.pieces.iter().any(|(_, c)| c == &cid));
    match g.parked.get(&cid) {
        Some(p) if on_cdn => p.bytes.clone().into_response(),
        _ => err(StatusCode::NOT_FOUND, "piece not found"),
    }
}
