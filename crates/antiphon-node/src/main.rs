//! `antiphon-node`: the Antiphon creator node.
//!
//! Ingests audio into verified ~6 s segments, stores them in redb, and serves them to browsers
//! and any IPFS peer over Bitswap (WebRTC-direct, WebSocket, TCP) with an HTTP API beside.

// As in the library: errors carry the store's and CIDs' details, built only on failure.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use antiphon_core::Cid;
use antiphon_node::{
    catalog, content, demo_track, http, identity, ingest, network, progress, replication, store, swarm,
};

/// Where uploads are spooled before ingest, inside the data directory; emptied at start.
const UPLOAD_DIR: &str = "spool/uploads";
use anyhow::Context;
use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use tokio::sync::watch;

/// Antiphon creator node: ingest audio, store it as verified blocks, serve it to browsers and
/// IPFS peers.
#[derive(Parser)]
#[command(name = "antiphon-node", version, about, long_about = None)]
struct Cli {
    /// Directory holding the store, the node's identity key and its WebRTC certificate.
    #[arg(long, global = true, env = "ANTIPHON_DATA", default_value = "antiphon-data")]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cut an audio file into segments on frame boundaries (~1, 2, 4, then 6 s each), store
    /// them, its cover and its manifest in one transaction, and print the track CID. MP3 and
    /// ADTS AAC pass through untouched; AAC in MP4/M4A, FLAC, WAV and Ogg Vorbis are
    /// transcoded to MP3 first.
    Ingest {
        /// The audio file.
        file: PathBuf,
        /// Title recorded in the manifest [default: the file's title tag].
        #[arg(long)]
        title: Option<String>,
        /// Artist recorded in the manifest [default: the file's artist tag].
        #[arg(long)]
        artist: Option<String>,
        /// Album recorded in the manifest [default: the file's album tag].
        #[arg(long)]
        album: Option<String>,
        /// Bitrate in kbit/s of transcoded audio (128, 160, 192, 224, 256 or 320); MP3 and ADTS
        /// AAC are never re-encoded.
        #[arg(long, default_value_t = ingest::DEFAULT_KBPS, value_parser = parse_transcode_kbps)]
        kbps: u32,
        /// Target segment length in seconds. Segments over 256 KiB become multi-block UnixFS
        /// files.
        #[arg(long, value_name = "SECONDS", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=30))]
        segment_seconds: u32,
        /// Target length of the first segment in seconds: a player starts once it has the
        /// first segment, so a short one starts playback sooner. Each later segment aims at
        /// twice the one before, up to --segment-seconds. 0: no ramp.
        #[arg(long, value_name = "SECONDS", default_value_t = antiphon_core::segment::FIRST_SEGMENT_SECS, value_parser = clap::value_parser!(u32).range(0..=30))]
        first_segment_seconds: u32,
        /// Longest audio accepted, in seconds of decoded sound (counted while decoding).
        #[arg(long, value_name = "SECONDS", default_value_t = ingest::DEFAULT_MAX_DURATION_SECS)]
        max_duration_seconds: u64,
    },
    /// Print this node's peer ID (creating its identity key in the data directory if there is
    /// none yet): what other nodes list among their `replication.origins`.
    PeerId,
    /// List the stored tracks: CID, duration, segments, title and artist.
    Tracks,
    /// Print the CID `ipfs add --cid-version=1` gives FILE (256 KiB chunks, raw leaves,
    /// balanced DAG); stores nothing.
    Cid {
        /// The file.
        file: PathBuf,
    },
    /// Store FILE as a UnixFS file, as `ipfs add --cid-version=1` lays it out, and print its
    /// CID.
    Add {
        /// The file.
        file: PathBuf,
    },
    /// Write a CARv1 of CID and every block under it (a whole track, for a track CID).
    ExportCar {
        /// The root CID.
        cid: Cid,
        /// Output file; standard output if absent.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Verify and store every block of a CARv1 or CARv2 file, all or nothing; roots that are
    /// track manifests become tracks. Prints the roots.
    ImportCar {
        /// The CAR file.
        file: PathBuf,
    },
    /// Fetch a track (by its manifest CID) or a UnixFS file by Bitswap from one peer,
    /// verifying every block, and write its bytes out (a track's segments in order).
    Fetch {
        /// The track or file CID.
        cid: Cid,
        /// The peer to fetch from, e.g. /ip4/127.0.0.1/tcp/4001 or .../tcp/4002/ws.
        #[arg(long, value_name = "MULTIADDR")]
        peer: Multiaddr,
        /// Output file; standard output if absent.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Also keep every block in the store (a track becomes one of this node's tracks).
        #[arg(long)]
        store: bool,
    },
    /// Write the bytes of a stored UnixFS file (e.g. a segment) to standard output.
    Cat {
        /// The file's root CID.
        cid: Cid,
        /// First byte to write.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Most bytes to write; all the rest if absent.
        #[arg(long)]
        length: Option<u64>,
    },
    /// Serve stored tracks over libp2p (Bitswap, relay, replication) and HTTP (trustless
    /// gateway, tracks, HLS, uploads, metrics, delegated routing) until Ctrl-C or SIGTERM.
    Serve {
        /// TOML configuration; flags below override it. Every key and its default is in
        /// node.example.toml; without a file: at most 1024 connections (4 per peer, 128
        /// handshaking); relay server on (128 reservations, 16 circuits of at most 64 KiB and
        /// 120 s); no replicas, retried every 10 s; uploads up to 512 MiB, transcoded to MP3 at
        /// 320 kbit/s in 6 s segments after a 1 s first one; no upload token.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// libp2p listen address (TCP, WebSocket `/ws`, or UDP `/webrtc-direct`); repeat for
        /// several. Giving any replaces all the others [default: /ip4/127.0.0.1/tcp/4001,
        /// /ip4/127.0.0.1/tcp/4002/ws, /ip4/127.0.0.1/udp/4003/webrtc-direct].
        #[arg(long = "listen", value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
        /// HTTP API address [default: 127.0.0.1:8080].
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
        /// Directory of static files served at / (the built demo page, www/dist); a file's
        /// `.br` or `.gz` copy beside it goes to clients that accept that encoding
        /// (scripts/precompress.mjs writes them) [default: none].
        #[arg(long, value_name = "DIR")]
        www: Option<PathBuf>,
        /// Replica creator node (multiaddr ending in /p2p/<peer id>); repeat for several. Adds to
        /// the config file's list [default: none].
        #[arg(long = "replica", value_name = "MULTIADDR")]
        replicas: Vec<Multiaddr>,
        /// Creator node (peer ID) whose tracks this node keeps when asked; repeat for several.
        /// Adds to the config file's list. Replication requests from any other peer are refused
        /// [default: none].
        #[arg(long = "origin", value_name = "PEER_ID")]
        origins: Vec<libp2p::PeerId>,
        /// Bearer token uploads (POST /tracks) must carry. Without one, uploads are taken only
        /// when the HTTP API listens on loopback [default: none].
        #[arg(long, value_name = "TOKEN", env = "ANTIPHON_UPLOAD_TOKEN", hide_env_values = true)]
        upload_token: Option<String>,
    },
    /// Write the embedded default track: synthesised music encoded to MP3 with LAME.
    DemoTrack {
        /// Output file.
        #[arg(short, long, default_value = "antiphon-default.mp3")]
        output: PathBuf,
        /// Length in seconds.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=600))]
        seconds: u32,
        /// MP3 bitrate in kbit/s.
        #[arg(long, default_value_t = 128, value_parser = parse_kbps)]
        kbps: u32,
    },
    /// Fault injection for tests: flip one bit of a stored block so it no longer matches its CID.
    /// Only in builds with the `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    #[command(hide = true)]
    CorruptBlock {
        /// The block's CID.
        cid: Cid,
        /// Byte offset to flip.
        #[arg(long, default_value_t = 100)]
        offset: usize,
    },
}

fn parse_transcode_kbps(s: &str) -> Result<u32, String> {
    let kbps: u32 = s.parse().map_err(|_| "must be a number".to_string())?;
    if antiphon_node::mp3_encoder::KBPS_CHOICES.contains(&kbps) {
        Ok(kbps)
    } else {
        Err("must be 128, 160, 192, 224, 256 or 320".into())
    }
}

fn parse_kbps(s: &str) -> Result<u32, String> {
    match s {
        "128" | "192" | "256" | "320" => Ok(s.parse().expect("a listed bitrate")),
        _ => Err("must be 128, 192, 256 or 320".into()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        // Quiet defaults for the WebRTC stack: `dtls` warns "Unsupported Extension Type" for
        // every browser's ClientHello (extensions webrtc-rs does not know), once per connection.
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            "info,libp2p_swarm=warn,libp2p_webrtc=warn,webrtc=warn,dtls=error,webrtc_sctp=warn,webrtc_ice=warn,webrtc_data=warn,webrtc_mdns=warn,webrtc_srtp=warn,symphonia=warn,symphonia_core=off,symphonia_bundle_mp3=warn,symphonia_codec_aac=warn,symphonia_format_isomp4=warn,symphonia_format_ogg=warn".into()
        }))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ingest {
            file,
            title,
            artist,
            album,
            kbps,
            segment_seconds,
            first_segment_seconds,
            max_duration_seconds,
        } => ingest(
            &cli.data,
            &file,
            ingest::IngestOptions {
                title,
                artist,
                album,
                kbps,
                segment_secs: segment_seconds,
                first_segment_secs: first_segment_seconds,
                max_duration_secs: max_duration_seconds,
                deadline: None,
            },
        ),
        Command::PeerId => {
            std::fs::create_dir_all(&cli.data).with_context(|| format!("cannot create {}", cli.data.display()))?;
            println!("{}", identity::load_or_create_keypair(&cli.data)?.public().to_peer_id());
            Ok(())
        }
        Command::Tracks => {
            let store = store::Store::open_existing(&cli.data)?;
            for (cid, _added) in store.tracks()? {
                let Some(bytes) = store.block(&cid)? else { continue };
                match antiphon_core::TrackManifest::decode(&bytes) {
                    Ok(m) => println!(
                        "{cid}\t{:.1} s\t{} segments\t{}\t{}",
                        m.duration_secs(),
                        m.segments.len(),
                        m.title.as_deref().unwrap_or("-"),
                        m.artist.as_deref().unwrap_or("-")
                    ),
                    Err(e) => println!("{cid}\t(unreadable manifest: {e})"),
                }
            }
            Ok(())
        }
        Command::Cid { file } => {
            let imported = content::cid_of_file(&file)?;
            eprintln!("{}: {} bytes in {} blocks", file.display(), imported.file_size, imported.blocks);
            println!("{}", imported.root);
            Ok(())
        }
        Command::Add { file } => {
            // Check the file can be opened before creating anything.
            std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
            std::fs::create_dir_all(&cli.data).with_context(|| format!("cannot create {}", cli.data.display()))?;
            let store = store::Store::open(&cli.data)?;
            let imported = content::add_file(&store, &file)?;
            eprintln!("added {}: {} bytes in {} blocks", file.display(), imported.file_size, imported.blocks);
            println!("{}", imported.root);
            Ok(())
        }
        Command::ExportCar { cid, output } => {
            let store = store::Store::open_existing(&cli.data)?;
            let count = match &output {
                Some(path) => {
                    let file =
                        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
                    content::export_car(&store, cid, file).inspect_err(|_| {
                        let _ = std::fs::remove_file(path);
                    })?
                }
                None => content::export_car(&store, cid, std::io::stdout().lock())?,
            };
            eprintln!("exported {cid}: {count} blocks");
            Ok(())
        }
        Command::ImportCar { file } => {
            std::fs::create_dir_all(&cli.data).with_context(|| format!("cannot create {}", cli.data.display()))?;
            let db = cli.data.join(store::DB_FILE);
            let existed = db.exists();
            let store = store::Store::open(&cli.data)?;
            let imported = content::import_car(&store, &file, unix_now()).inspect_err(|_| {
                // Nothing was written; do not leave a store behind that was not there before.
                if !existed {
                    drop(store);
                    let _ = std::fs::remove_file(&db);
                }
            })?;
            eprintln!(
                "imported {}: {} blocks, {} bytes, {} track(s)",
                file.display(),
                imported.blocks,
                imported.bytes,
                imported.tracks.len()
            );
            for root in &imported.roots {
                println!("{root}");
            }
            Ok(())
        }
        Command::Fetch { cid, peer, output, store } => {
            tokio::runtime::Runtime::new()?.block_on(fetch(&cli.data, cid, peer, output, store))
        }
        Command::Cat { cid, offset, length } => {
            let store = store::Store::open_existing(&cli.data)?;
            let end = length.map_or(u64::MAX, |l| offset.saturating_add(l));
            content::cat(&store, cid, offset..end, &mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Serve { config, listen, http, www, replicas, origins, upload_token } => {
            let mut settings = match &config {
                Some(path) => antiphon_node::config::Config::load(path)?,
                None => antiphon_node::config::Config::default(),
            };
            if !listen.is_empty() {
                settings.listen.libp2p = listen;
            }
            if let Some(http) = http {
                settings.listen.http = http;
            }
            if www.is_some() {
                settings.http.www = www;
            }
            settings.replication.replicas.extend(replicas);
            settings.replication.origins.extend(origins);
            if upload_token.is_some() {
                settings.http.upload_token = upload_token;
            }
            settings.check().map_err(|message| anyhow::anyhow!("invalid settings: {message}"))?;
            tokio::runtime::Runtime::new()?.block_on(serve(&cli.data, settings))
        }
        Command::DemoTrack { output, seconds, kbps } => {
            let mp3 = demo_track::encode_mp3(seconds, kbps)?;
            std::fs::write(&output, &mp3).with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!("wrote {} ({} bytes, {seconds} s)", output.display(), mp3.len());
            Ok(())
        }
        #[cfg(feature = "fault-injection")]
        Command::CorruptBlock { cid, offset } => {
            let store = store::Store::open(&cli.data)?;
            anyhow::ensure!(store.corrupt_block(&cid, offset)?, "{cid} is not in the store");
            eprintln!("flipped a bit of {cid} at offset {offset}");
            Ok(())
        }
    }
}

use antiphon_node::unix_now;

fn ingest(data: &Path, file: &Path, options: ingest::IngestOptions) -> anyhow::Result<()> {
    // Read and check the whole file before the store is even opened: a refused file changes
    // nothing.
    let started = std::time::Instant::now();
    let bar = progress::IngestBar::new(file);
    let track = ingest::ingest_file(file, options, &mut |p| bar.update(p));
    bar.finish();
    let track = track?;
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    let store = store::Store::open(data)?;
    store.put_track(&track.manifest_block, &track.segments, unix_now())?;
    let m = &track.manifest;
    eprintln!(
        "ingested {}{}: {} segments ({} blocks), {:.1} s, {} Hz, {} channel(s), {} bytes of {}{} in {:.1} s",
        file.display(),
        if track.transcoded { " (transcoded to MP3)" } else { "" },
        m.segments.len(),
        track.segments.len(),
        m.duration_secs(),
        m.sample_rate,
        m.channels,
        m.segments.iter().map(|s| s.bytes).sum::<u64>(),
        m.codec,
        if m.cover.is_some() { ", with cover art" } else { "" },
        started.elapsed().as_secs_f64()
    );
    println!("{}", track.manifest_block.cid());
    Ok(())
}

async fn serve(data: &Path, settings: antiphon_node::config::Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    let key = identity::load_or_create_keypair(data)?;
    let cert = identity::load_or_create_certificate(data)?;
    let store = store::Store::open(data)?;
    let peer_id = key.public().to_peer_id();
    // Spool files left by a run that stopped mid-upload or mid-pull are never resumed.
    for dir in [data.join(UPLOAD_DIR), data.join(replication::SPOOL_DIR)] {
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(e).with_context(|| format!("cannot empty {}", dir.display()));
        }
    }
    let catalog = std::sync::Arc::new(catalog::Catalog::load(&store)?);
    let options = swarm::SwarmOptions {
        limits: settings.limits.clone(),
        relay: settings.relay.enabled.then(|| settings.relay.clone()),
        webrtc: Default::default(),
    };
    let webrtc_counters = options.webrtc.clone();
    let swarm = swarm::build_swarm(key, cert, store.clone(), &options).await?;

    let (addrs_tx, addrs_rx) = watch::channel(Vec::new());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (new_tracks_tx, new_tracks_rx) = tokio::sync::mpsc::channel(64);
    let metrics = std::sync::Arc::new(antiphon_node::metrics::Metrics::default().with_webrtc(webrtc_counters));
    let http_addr = settings.listen.http;
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot bind the HTTP API to {http_addr}"))?;
    let bound = listener.local_addr()?;
    let browsers =
        std::sync::Arc::new(antiphon_node::browsers::BrowserProviders::new(settings.relay.max_reservations_per_ip));
    let uploads = http::UploadAccess::new(settings.http.upload_token.as_deref(), bound);
    if matches!(uploads, http::UploadAccess::Off) {
        tracing::warn!(http = %bound, "uploads are OFF: the HTTP API listens on a non-loopback address and no upload token is set (http.upload_token or --upload-token)");
    }
    let state = http::AppState {
        peer_id,
        addrs: addrs_rx,
        http_addr: bound,
        store: store.clone(),
        metrics: metrics.clone(),
        new_tracks: new_tracks_tx,
        replicas: std::sync::Arc::new(settings.replication.replicas.clone()),
        ingest: settings.ingest.clone(),
        uploads,
        ingest_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(settings.ingest.max_concurrent)),
        upload_dir: data.join(UPLOAD_DIR),
        browsers: browsers.clone(),
        catalog: catalog.clone(),
        ledger: antiphon_node::receipts::Ledger::open(store.clone(), Default::default())?,
    };
    let app = http::router(state, settings.http.www.clone());

    let mut http_shutdown = shutdown_rx.clone();
    // No Nagle: a streamed answer (a CAR: header, then block after block) goes out as it is
    // written instead of waiting for the client's delayed ACK, which cost 40 ms per CAR.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an HTTP connection");
        }
    });
    let http_task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_shutdown.changed().await;
            })
            .await
    });
    let context = network::RunContext {
        store,
        catalog,
        pull_policy: replication::PullPolicy::new(&settings.replication, data),
        metrics,
        replicas: settings.replication.replicas.clone(),
        retry: std::time::Duration::from_secs(settings.replication.retry_secs),
        new_tracks: new_tracks_rx,
        addrs_tx,
        shutdown: shutdown_rx,
        browsers,
    };
    let listen = settings.listen.libp2p.clone();
    let net_task = tokio::spawn(async move { network::run(swarm, &listen, context).await });

    tracing::info!(%peer_id, replicas = settings.replication.replicas.len(), relay = settings.relay.enabled, "node started");
    println!("antiphon-node {peer_id} serving; open http://{bound}/");

    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    net_task.await??;
    http_task.await??;
    Ok(())
}

async fn fetch(data: &Path, cid: Cid, addr: Multiaddr, output: Option<PathBuf>, keep: bool) -> anyhow::Result<()> {
    let (client, peer) = antiphon_node::fetch::connect(addr.clone()).await?;
    eprintln!("connected to {peer} at {addr}");
    let store = if keep {
        std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
        Some(store::Store::open(data)?)
    } else {
        None
    };
    let mut batch = store.as_ref().map(store::Store::batch).transpose()?;
    let keep = |block: &antiphon_core::Block| match batch.as_mut() {
        Some(batch) => batch.put(block).map_err(antiphon_node::fetch::SinkError::Store),
        None => Ok(()),
    };
    let mut out: Box<dyn std::io::Write> = match &output {
        Some(path) => {
            Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut last = std::time::Instant::now();
    let progress = |bytes: u64, blocks: u64| {
        if last.elapsed() >= std::time::Duration::from_secs(1) {
            last = std::time::Instant::now();
            eprintln!("  {bytes} bytes, {blocks} blocks");
        }
    };
    let sinks = antiphon_node::fetch::Sinks { keep, progress, max_bytes: u64::MAX };
    let result = antiphon_node::fetch::fetch(&client, peer, cid, &mut out, sinks).await;
    drop(out);
    let fetched = match result {
        Ok(f) => f,
        Err(e) => {
            if let Some(path) = &output {
                let _ = std::fs::remove_file(path);
            }
            return Err(e.into());
        }
    };
    if let Some(mut batch) = batch {
        if fetched.manifest.is_some() {
            batch.add_track(&cid, unix_now())?;
        }
        batch.commit()?;
    }
    let secs = fetched.elapsed.as_secs_f64();
    eprintln!(
        "fetched {cid}{}: {} bytes in {} blocks, {:.2} s ({:.1} MB/s), every block verified",
        fetched.manifest.as_ref().map_or(String::new(), |m| format!(" (a track of {} segments)", m.segments.len())),
        fetched.bytes,
        fetched.blocks,
        secs,
        fetched.bytes as f64 / secs.max(1e-9) / 1e6
    );
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
