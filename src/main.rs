//! storef: a live-ingest media server. Publishers push video in (RTMP, WHIP, RTSP pull, or MP4
//! chunks over HTTP); storef cuts it into keyframe-aligned fMP4 segments, stores each one, serves
//! HLS while the stream is live and turns it into a VOD when it stops.

mod api;
mod app;
mod auth;
mod config;
mod files;
mod ids;
mod live;
mod metrics;
mod pin;
mod pull;
mod recorder;
mod stop;
mod upload;
mod web;
mod whip_api;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "storef",
    version,
    about = "Live-ingest media server: RTMP / WHIP / RTSP / MP4 chunk uploads in, fMP4 HLS and VOD out",
    long_about = "Live-ingest media server.\n\n\
        Publishers push video in: OBS/ffmpeg over RTMP, browsers over WHIP, IP cameras pulled over \
        RTSP, or MP4 chunks uploaded over HTTP. storef cuts it into keyframe-aligned fMP4 segments, \
        stores each one durably, serves live.m3u8 to HLS players while the stream is live, and \
        turns the stream into a VOD (one MP4 + a playlist) when it stops.\n\n\
        Settings come from config.toml (every key documented there), overridden by environment \
        variables STOREF_<SECTION>_<KEY> (e.g. STOREF_HTTP_ADDR=127.0.0.1:8080)."
)]
struct Cli {
    /// Configuration file. Default: ./config.toml when it exists, else built-in defaults.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (what a bare `storef` does).
    Serve,
    /// Print an HS256 bearer token (claims id, iat, exp) signed with the configured secret, for
    /// calling the API as user ID.
    Token {
        /// The user id to put in the `id` claim.
        #[arg(long)]
        user: String,
        /// How long the token is valid: 30m, 24h, 7d …
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Print the PieceCIDv2 (FRC-0069) of FILE, as FilBeam URLs name it, to check a pinned
    /// segment against the network (`-` or /dev/stdin reads standard input).
    PieceCid {
        file: PathBuf,
        /// Print the legacy v1 form (`baga6ea4seaq…`, the old FilCDN URLs) instead.
        #[arg(long)]
        v1: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let (cfg, from) = config::Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            init_logging(&cfg.log.filter);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(serve(cfg, from))
        }
        Command::Token { user, ttl } => {
            let (secret, _) = jwt_secret(&cfg)?;
            let a = auth::Auth::new(&secret, cfg.auth.leeway_secs);
            println!(
                "{}",
                a.issue(&user, ids::now_ms() / 1000, ttl.as_secs() as i64)
            );
            Ok(())
        }
        Command::PieceCid { file, v1 } => {
            let file = if file.as_os_str() == "-" {
                PathBuf::from("/dev/stdin")
            } else {
                file
            };
            pin::piece_cid_command(&file, v1)
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
}

/// The configured JWT secret, or the one generated on first start and kept in the data
/// directory. The bool says whether it was generated just now.
fn jwt_secret(cfg: &config::Config) -> Result<(Vec<u8>, bool)> {
    if !cfg.auth.jwt_secret.is_empty() {
        return Ok((cfg.auth.jwt_secret.as_bytes().to_vec(), false));
    }
    let dir = &cfg.storage.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("jwt_secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok((s.trim().as_bytes().to_vec(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    let secret = hex::encode(b);
    write_private(&path, &secret)?;
    Ok((secret.into_bytes(), true))
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

async fn serve(cfg: config::Config, from: Option<PathBuf>) -> Result<()> {
    match &from {
        Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        None => tracing::info!("no config.toml: using built-in defaults"),
    }
    let (secret, generated) = jwt_secret(&cfg)?;
    if generated {
        tracing::warn!(
            path = %cfg.storage.data_dir.join("jwt_secret").display(),
            "no [auth] jwt_secret configured: generated one and saved it (mode 0600). \
             Get a token with: storef token --user <USER_ID>"
        );
    }
    let db_dir = cfg.storage.data_dir.join("db");
    let db = storage::Db::open(&db_dir)
        .with_context(|| format!("opening the database in {}", db_dir.display()))?;
    let whip = start_whip(&cfg).await?;
    let app = app::App::new(
        cfg.clone(),
        db,
        auth::Auth::new(&secret, cfg.auth.leeway_secs),
        whip,
    );

    // Streams that were live when the server went down stay live; their gaps and reconnect
    // windows start again from now.
    let live = app.db.live_streams()?;
    let mut with_publisher = Vec::new();
    for s in &live {
        let sess = app.session(&s.id);
        let mut sess = sess.lock().await;
        if upload::has_pending(&app, &s.id)? {
            sess.gap_since = Some(std::time::Instant::now());
            // Chunks left pending by a crash right after their predecessor was committed are
            // next in line now.
            if let Err(e) = upload::drain_pending(&app, &mut sess).await {
                tracing::error!(stream = %s.id, error = %e.message, "packaging pending chunks after restart failed");
            }
        }
        if s.live_protocol.is_some() && s.pull.is_none() {
            with_publisher.push(s.id.clone());
        }
    }
    live::arm_after_restart(&app, &with_publisher);
    // Cameras are pulled by storef itself: nobody else would reconnect them.
    let pulls = pull::resume_after_restart(&app, &live);
    if pulls > 0 {
        tracing::info!(pulls, "resumed RTSP pulls");
    }
    if !live.is_empty() {
        tracing::info!(streams = live.len(), "resumed live streams");
    }

    tokio::spawn(upload::gap_ticker(app.clone()));
    tokio::spawn(stop::reconnect_ticker(app.clone()));
    pin::start(&app).await?;

    let listener = tokio::net::TcpListener::bind(&cfg.http.addr)
        .await
        .with_context(|| format!("binding HTTP on {}", cfg.http.addr))?;
    let http_addr = listener.local_addr()?;
    let shown = display_host(http_addr);
    tracing::info!(
        "storef {} listening: HTTP API on http://{shown}, data in {}",
        env!("CARGO_PKG_VERSION"),
        cfg.storage.data_dir.display()
    );
    tracing::info!(
        "players: http://{shown}/api/streams/<streamId>/live.m3u8 — start a stream with \
         POST http://{shown}/api/streams/start (bearer token from `storef token --user ID`)"
    );
    if app.whip.0.is_some() {
        tracing::info!(
            "browsers: http://{shown}/ (the studio page); OBS 30+ WHIP: Server http://{shown}/api/whip, \
             Bearer Token: the streamKey"
        );
    }
    if cfg.rtmp.enabled {
        let rtmp = tokio::net::TcpListener::bind(&cfg.rtmp.addr)
            .await
            .with_context(|| format!("binding RTMP on {}", cfg.rtmp.addr))?;
        let rtmp_addr = rtmp.local_addr()?;
        let rcfg = ingest::rtmp::RtmpConfig {
            app: cfg.rtmp.app.clone(),
            idle_timeout: cfg.rtmp.idle_timeout,
            workers: match cfg.rtmp.workers {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
            read_tick: cfg.rtmp.read_tick,
            read_coalesce: cfg.rtmp.read_coalesce,
            ..Default::default()
        };
        let gate: std::sync::Arc<dyn ingest::publish::PublishGate> =
            std::sync::Arc::new(live::Gate { app: app.clone() });
        tokio::spawn(async move {
            if let Err(e) = ingest::rtmp::serve(rtmp, gate, rcfg).await {
                tracing::error!(error = %e, "RTMP listener failed");
            }
        });
        tracing::info!(
            "OBS / ffmpeg: Server rtmp://{}/{}  Stream Key: the streamKey from POST /api/streams/start",
            display_host(rtmp_addr),
            cfg.rtmp.app
        );
    }
    let router = api::router(app.clone());
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await?;
    app.db.flush().await?;
    Ok(())
}

/// Starts the WHIP UDP task when `[webrtc]` is enabled.
async fn start_whip(cfg: &config::Config) -> Result<whip_api::Whip> {
    if !cfg.webrtc.enabled {
        return Ok(whip_api::Whip(None));
    }
    let w = &cfg.webrtc;
    let wcfg = ingest::whip::WhipConfig {
        udp_addr: w
            .udp_addr
            .parse()
            .with_context(|| format!("[webrtc] udp_addr {:?}", w.udp_addr))?,
        public_ips: w
            .public_ips
            .iter()
            .map(|s| {
                s.parse()
                    .with_context(|| format!("[webrtc] public_ips: {s:?}"))
            })
            .collect::<Result<_>>()?,
        ice_servers: w
            .ice_servers
            .iter()
            .map(|u| ingest::whip::IceServer {
                url: u.clone(),
                username: None,
                credential: None,
            })
            .collect(),
        ice_timeout: w.ice_timeout,
        tcp_addr: match w.tcp_addr.trim() {
            "" => None,
            a => Some(
                a.parse()
                    .with_context(|| format!("[webrtc] tcp_addr {:?}", w.tcp_addr))?,
            ),
        },
        advertise_udp: w.advertise_udp,
        ..Default::default()
    };
    let (handle, _task) = ingest::whip::WhipServer::start(wcfg)
        .await
        .with_context(|| format!("starting WHIP on UDP {} / TCP {:?}", w.udp_addr, w.tcp_addr))?;
    tracing::info!(
        udp = %handle.local_addr(),
        candidates = ?handle.candidates(),
        tcp = %handle.tcp_local_addr().map_or_else(|| "off".to_string(), |a| a.to_string()),
        tcp_candidates = ?handle.tcp_candidates(),
        "WHIP media sockets bound"
    );
    Ok(whip_api::Whip(Some(std::sync::Arc::new(handle))))
}

/// `0.0.0.0:5000` is where storef listens, not an address to give a player: show localhost.
fn display_host(a: std::net::SocketAddr) -> String {
    if a.ip().is_unspecified() {
        format!("localhost:{}", a.port())
    } else {
        a.to_string()
    }
}
