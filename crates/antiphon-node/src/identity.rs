//! The node's persistent identity: its libp2p key and its WebRTC certificate.
//!
//! Both live in the data directory, so the peer ID and the `/certhash/` in the node's
//! WebRTC-direct address survive restarts (browsers can keep dialling the same address).

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::webrtc::Certificate;
use anyhow::Context;
use libp2p::identity::Keypair;

const KEY_FILE: &str = "identity.key";
const CERT_FILE: &str = "webrtc-cert.pem";

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Loads the ed25519 identity from `data_dir`, creating it on first use.
pub fn load_or_create_keypair(data_dir: &Path) -> anyhow::Result<Keypair> {
    let path = data_dir.join(KEY_FILE);
    if path.exists() {
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return Keypair::from_protobuf_encoding(&bytes)
            .with_context(|| format!("{} is not a libp2p private key", path.display()));
    }
    let key = Keypair::generate_ed25519();
    write_private(&path, &key.to_protobuf_encoding()?)?;
    Ok(key)
}

/// Loads the WebRTC certificate from `data_dir`, creating it on first use.
pub fn load_or_create_certificate(data_dir: &Path) -> anyhow::Result<Certificate> {
    let path = data_dir.join(CERT_FILE);
    if path.exists() {
        let pem = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return Certificate::from_pem(&pem).with_context(|| format!("{} is not a WebRTC certificate", path.display()));
    }
    let cert = Certificate::generate()?;
    write_private(&path, cert.to_pem().as_bytes())?;
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_certificate_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_keypair(dir.path()).unwrap();
        let b = load_or_create_keypair(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        let c = load_or_create_certificate(dir.path()).unwrap();
        let d = load_or_create_certificate(dir.path()).unwrap();
        assert_eq!(c.fingerprint(), d.fingerprint());
    }
}
