//! `antiphon-node serve --config node.toml`: every setting of a serving node, with defaults.
//!
//! Settings come from the defaults here, then the TOML file, then command-line flags. Unknown
//! keys are refused, so a typo is an error rather than a silently ignored setting. See
//! `node.example.toml` at the repository root for every key with its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where to listen.
    pub listen: Listen,
    /// Connection limits.
    pub limits: Limits,
    /// The circuit relay v2 server.
    pub relay: Relay,
    /// Replication to other creator nodes.
    pub replication: Replication,
    /// Defaults for uploads through `POST /tracks`.
    pub ingest: Ingest,
    /// The HTTP API.
    pub http: Http,
}

/// Listen addresses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// libp2p multiaddrs: TCP, WebSocket (`/ws`) and WebRTC-direct (`/udp/N/webrtc-direct`).
    pub libp2p: Vec<Multiaddr>,
    /// The HTTP API's socket address.
    pub http: SocketAddr,
}

/// Connection limits (rust-libp2p connection-limits).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Established connections in all.
    pub max_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
    /// Incoming connections still handshaking.
    pub max_pending_incoming: u32,
    /// Connections (established or handshaking) from one IP address: peer IDs cost nothing
    /// to make, addresses do.
    pub max_connections_per_ip: u32,
    /// WebRTC-direct connections from one IP address still in their handshake (ICE, DTLS,
    /// Noise): each costs DTLS work before the peer is known.
    pub max_pending_incoming_per_ip: u32,
}

/// Circuit relay v2 server limits: small, since browsers only use it to exchange signalling.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Relay {
    /// Whether the relay server runs.
    pub enabled: bool,
    /// Reservations held at once.
    pub max_reservations: usize,
    /// Circuits open at once.
    pub max_circuits: usize,
    /// Bytes a circuit may carry each way before it is closed.
    pub max_circuit_bytes: u64,
    /// Seconds a circuit may last.
    pub max_circuit_secs: u64,
    /// Reservations held at once by peers connected from one IP address.
    pub max_reservations_per_ip: usize,
    /// Circuits one peer may open at once.
    pub max_circuits_per_peer: usize,
    /// Circuits peers connected from one IP address may start within `max_circuit_secs` (so
    /// also the most they hold at once).
    pub max_circuits_per_ip: usize,
}

/// Replication settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Replication {
    /// Creator nodes that keep a copy of every track ingested here, as multiaddrs ending in
    /// `/p2p/<peer id>` (TCP or WebSocket).
    pub replicas: Vec<Multiaddr>,
    /// Seconds between attempts to reach a replica that has not confirmed a track.
    pub retry_secs: u64,
    /// Creator nodes (peer IDs) whose tracks this node keeps when they ask it to: a request
    /// from any other peer is refused. Empty: this node is nobody's replica.
    pub origins: Vec<libp2p::PeerId>,
    /// Largest track (segments and cover, as its manifest declares) pulled for an origin.
    pub max_track_bytes: u64,
    /// The store may not grow past this many bytes through replication.
    pub quota_bytes: u64,
    /// Seconds one pull may take, from the request to the stored track.
    pub pull_timeout_secs: u64,
}

/// Ingest defaults for uploads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// Bitrate of transcoded audio, kbit/s.
    pub kbps: u32,
    /// Target segment length, seconds.
    pub segment_seconds: u32,
    /// Target length of a track's first segment, seconds; later ones double up to
    /// `segment_seconds`. 0: no ramp.
    pub first_segment_seconds: u32,
    /// Largest upload accepted, bytes.
    pub max_upload_bytes: u64,
    /// Longest audio accepted, in seconds of decoded sound (counted while decoding, so a small
    /// file that decodes to days of audio is refused within seconds).
    pub max_duration_secs: u64,
    /// Uploads ingested at once; more are answered 503 with `Retry-After`.
    pub max_concurrent: usize,
    /// Seconds an upload may take, from its first byte to the stored track.
    pub timeout_secs: u64,
}

/// HTTP settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Static files served at `/` (the built demo page), if any.
    pub www: Option<PathBuf>,
    /// When set, `POST /tracks` requires `Authorization: Bearer <token>`.
    pub upload_token: Option<String>,
}

/// Where `serve` listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: [&str; 3] =
    ["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4002/ws", "/ip4/127.0.0.1/udp/4003/webrtc-direct"];
/// The HTTP API's default address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";

impl Default for Listen {
    fn default() -> Self {
        Self {
            libp2p: DEFAULT_LISTEN.iter().map(|a| a.parse().expect("a valid default multiaddr")).collect(),
            http: DEFAULT_HTTP.parse().expect("a valid default address"),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_peer: 4,
            max_pending_incoming: 128,
            max_connections_per_ip: 32,
            max_pending_incoming_per_ip: 8,
        }
    }
}

impl Default for Relay {
    fn default() -> Self {
        Self {
            enabled: true,
            max_reservations: 128,
            max_circuits: 16,
            max_circuit_bytes: 64 * 1024,
            max_circuit_secs: 120,
            max_reservations_per_ip: 8,
            max_circuits_per_peer: 4,
            max_circuits_per_ip: 4,
        }
    }
}

impl Default for Replication {
    fn default() -> Self {
        Self {
            replicas: Vec::new(),
            retry_secs: 10,
            origins: Vec::new(),
            max_track_bytes: 2 * 1024 * 1024 * 1024,
            quota_bytes: 256 * 1024 * 1024 * 1024,
            pull_timeout_secs: 600,
        }
    }
}

impl Default for Ingest {
    fn default() -> Self {
        Self {
            kbps: crate::ingest::DEFAULT_KBPS,
            segment_seconds: antiphon_core::segment::TARGET_SEGMENT_SECS,
            first_segment_seconds: antiphon_core::segment::FIRST_SEGMENT_SECS,
            max_upload_bytes: 512 * 1024 * 1024,
            max_duration_secs: 6 * 3600,
            max_concurrent: 2,
            timeout_secs: 900,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path} is not a valid node configuration: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads `path` over the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config = Self::read(path)?;
        config.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(config)
    }

    /// Checks a configuration assembled from defaults, a file and flags.
    pub fn check(&self) -> Result<(), String> {
        self.validate()
    }

    fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let config: Self =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if !crate::mp3_encoder::KBPS_CHOICES.contains(&self.ingest.kbps) {
            return Err(format!(
                "ingest.kbps = {} is not one of {:?}",
                self.ingest.kbps,
                crate::mp3_encoder::KBPS_CHOICES
            ));
        }
        if !(1..=30).contains(&self.ingest.segment_seconds) {
            return Err("ingest.segment_seconds must be 1 to 30".into());
        }
        if self.ingest.first_segment_seconds > 30 {
            return Err("ingest.first_segment_seconds must be 0 to 30".into());
        }
        for replica in &self.replication.replicas {
            if !replica.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_))) {
                return Err(format!("replica {replica} must end in /p2p/<peer id>"));
            }
        }
        if self.replication.retry_secs == 0 {
            return Err("replication.retry_secs must be at least 1".into());
        }
        if self.replication.pull_timeout_secs == 0 {
            return Err("replication.pull_timeout_secs must be at least 1".into());
        }
        if self.ingest.max_concurrent == 0 {
            return Err("ingest.max_concurrent must be at least 1".into());
        }
        if self.ingest.max_duration_secs == 0 || self.ingest.timeout_secs == 0 {
            return Err("ingest.max_duration_secs and ingest.timeout_secs must be at least 1".into());
        }
        if self.limits.max_connections_per_ip == 0 {
            return Err("limits.max_connections_per_ip must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_to_the_defaults_plus_its_replicas() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../node.example.toml");
        let config = Config::load(&path).unwrap();
        let mut expected = Config::default();
        expected.replication.replicas = config.replication.replicas.clone();
        expected.replication.origins = config.replication.origins.clone();
        assert_eq!(config, expected, "node.example.toml documents the defaults");
        assert_eq!(config.replication.replicas.len(), 2);
        assert_eq!(config.replication.origins.len(), 1);
    }

    #[test]
    fn typos_and_bad_values_are_refused_with_the_key_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[limits]\nmax_conections = 5\n").unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("max_conections"), "{e}");
        std::fs::write(&path, "[ingest]\nkbps = 100\n").unwrap();
        assert!(Config::load(&path).unwrap_err().to_string().contains("ingest.kbps"));
        std::fs::write(&path, "[replication]\nreplicas = [\"/ip4/127.0.0.1/tcp/1\"]\n").unwrap();
        assert!(Config::load(&path).unwrap_err().to_string().contains("/p2p/"));
    }
}
