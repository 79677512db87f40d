//! The node's DTLS certificate: generated once, kept in the data directory, so the `/certhash/`
//! in its WebRTC-direct address survives restarts.
//!
//! The file is PEM in the layout `libp2p-webrtc` wrote (an `EXPIRES` block, the PKCS#8 key as
//! `PRIVATE_KEY`, then the certificate), so a node that ran the old listener keeps its address.

use std::time::{Duration, SystemTime};

use libp2p_webrtc_utils::Fingerprint;
use sha2::{Digest, Sha256};
use str0m::config::DtlsCert;

/// Why a certificate file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// Not PEM at all.
    #[error("not PEM: {0}")]
    Pem(#[from] pem::PemError),
    /// PEM, but without the key or the certificate.
    #[error("no {0} block")]
    Missing(&'static str),
    /// The crypto provider could not make a certificate.
    #[error("cannot generate a DTLS certificate")]
    Generate,
}

/// A DTLS certificate and its private key.
#[derive(Clone)]
pub struct Certificate {
    dtls: DtlsCert,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate").field("fingerprint", &self.fingerprint().to_sdp_format()).finish()
    }
}

impl Certificate {
    /// A fresh ECDSA P-256 certificate.
    pub fn generate() -> Result<Self, CertificateError> {
        let provider = str0m::crypto::from_feature_flags();
        let dtls = provider.dtls_provider.generate_certificate().ok_or(CertificateError::Generate)?;
        Ok(Self { dtls })
    }

    /// Reads the PEM [`to_pem`](Self::to_pem) writes.
    pub fn from_pem(text: &str) -> Result<Self, CertificateError> {
        let blocks = pem::parse_many(text)?;
        let find = |tags: &[&str]| blocks.iter().find(|b| tags.contains(&b.tag())).map(|b| b.contents().to_vec());
        let private_key = find(&["PRIVATE_KEY", "PRIVATE KEY"]).ok_or(CertificateError::Missing("PRIVATE_KEY"))?;
        let certificate = find(&["CERTIFICATE"]).ok_or(CertificateError::Missing("CERTIFICATE"))?;
        Ok(Self { dtls: DtlsCert { certificate, private_key } })
    }

    /// The certificate and key as PEM.
    pub fn to_pem(&self) -> String {
        // The old listener refuses a file without an expiry; a browser never checks it.
        let expires = SystemTime::now() + Duration::from_secs(10 * 365 * 24 * 3600);
        let secs = expires.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let expires = pem::Pem::new("EXPIRES", secs.to_le_bytes().to_vec());
        let key_and_cert = [
            pem::Pem::new("PRIVATE_KEY", self.dtls.private_key.clone()),
            pem::Pem::new("CERTIFICATE", self.dtls.certificate.clone()),
        ];
        // The old reader splits the expiry from the rest at the first blank line.
        format!("{}\n{}", pem::encode(&expires), pem::encode_many(&key_and_cert))
    }

    /// The sha-256 fingerprint of the certificate, as `/certhash/` and the Noise prologue
    /// carry it.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::raw(Sha256::digest(&self.dtls.certificate).into())
    }

    pub(crate) fn dtls(&self) -> &DtlsCert {
        &self.dtls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_survives_pem_and_keeps_its_fingerprint() {
        let cert = Certificate::generate().unwrap();
        let back = Certificate::from_pem(&cert.to_pem()).unwrap();
        assert_eq!(back.fingerprint(), cert.fingerprint());
        assert_eq!(back.dtls.private_key, cert.dtls.private_key);
    }

    #[cfg(feature = "libp2p-webrtc")]
    #[test]
    fn the_old_listener_reads_the_same_file_to_the_same_fingerprint() {
        let cert = Certificate::generate().unwrap();
        let old = libp2p_webrtc::tokio::Certificate::from_pem(&cert.to_pem()).unwrap();
        assert_eq!(old.fingerprint().to_multihash(), cert.fingerprint().to_multihash());
    }

    #[test]
    fn a_file_without_a_key_is_refused_by_name() {
        let cert = Certificate::generate().unwrap();
        let only_cert = pem::encode(&pem::Pem::new("CERTIFICATE", cert.dtls.certificate.clone()));
        assert!(matches!(Certificate::from_pem(&only_cert), Err(CertificateError::Missing("PRIVATE_KEY"))));
        assert!(matches!(
            Certificate::from_pem("not pem"),
            Err(CertificateError::Missing(_)) | Err(CertificateError::Pem(_))
        ));
    }
}
