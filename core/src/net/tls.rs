//! TLS for the provider's connection to the coordinator: TLS 1.3 only (rustls
//! with ring), the server verified against a CA file or a pinned public key.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as provider, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How the provider decides the coordinator is the right one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Certificates (PEM) of the authorities that may sign the coordinator's
    /// certificate; its name must match the server name.
    CaPem(Vec<u8>),
    /// SHA-256 of the coordinator's SubjectPublicKeyInfo (DER): only a server
    /// holding that key is accepted, whatever its certificate says.
    PinnedKey([u8; 32]),
}

/// Why a TLS configuration could not be made.
#[derive(Debug)]
pub enum TlsError {
    /// The CA file could not be read.
    Io(std::io::Error),
    /// The CA file holds no usable certificate.
    NoCertificates,
    /// A certificate in the CA file was refused.
    BadCertificate(rustls::Error),
    /// rustls refused the configuration.
    Config(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Io(e) => write!(f, "cannot read the CA file: {e}"),
            TlsError::NoCertificates => f.write_str("the CA file holds no PEM certificate"),
            TlsError::BadCertificate(e) => write!(f, "a CA certificate was refused: {e}"),
            TlsError::Config(e) => write!(f, "TLS configuration refused: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

impl Trust {
    /// Trust from a CA file in PEM form.
    pub fn ca_file(path: impl AsRef<Path>) -> Result<Trust, TlsError> {
        std::fs::read(path).map(Trust::CaPem).map_err(TlsError::Io)
    }
}

/// A TLS 1.3 client configuration trusting the coordinator as `trust` says.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?;
    let config = match trust {
        Trust::CaPem(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|_| TlsError::NoCertificates)?;
                roots.add(cert).map_err(TlsError::BadCertificate)?;
            }
            if roots.is_empty() {
                return Err(TlsError::NoCertificates);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::PinnedKey(hash) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedKeyVerifier {
                spki_sha256: *hash,
                algorithms: provider::default_provider().signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// SHA-256 of a DER certificate's SubjectPublicKeyInfo, the value to pin.
pub fn spki_sha256(cert_der: &[u8]) -> Option<[u8; 32]> {
    let spki = subject_public_key_info(cert_der)?;
    Some(crate::attest::sha256(spki))
}

/// Accepts exactly the server whose certificate carries the pinned key; the
/// TLS 1.3 handshake signature proves the server holds that key.
#[derive(Debug)]
struct PinnedKeyVerifier {
    spki_sha256: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match spki_sha256(end_entity) {
            Some(h) if h == self.spki_sha256 => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// One DER element and what follows it.
struct Der<'a> {
    tag: u8,
    whole: &'a [u8],
    contents: &'a [u8],
    rest: &'a [u8],
}

fn der_element(bytes: &[u8]) -> Option<Der<'_>> {
    let tag = *bytes.first()?;
    let first = *bytes.get(1)? as usize;
    let (len, head) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7F;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *bytes.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    let whole = bytes.get(..end)?;
    Some(Der {
        tag,
        whole,
        contents: &whole[head..],
        rest: &bytes[end..],
    })
}

/// The SubjectPublicKeyInfo element of an X.509 certificate (RFC 5280 §4.1).
fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    let sequence = |bytes| der_element(bytes).filter(|d| d.tag == 0x30);
    let certificate = sequence(cert)?;
    let mut tbs = sequence(certificate.contents)?.contents;
    // Optional explicit version [0].
    if tbs.first() == Some(&0xA0) {
        tbs = der_element(tbs)?.rest;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        tbs = der_element(tbs)?.rest;
    }
    Some(sequence(tbs)?.whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_walker_refuses_garbage_without_panicking() {
        for bytes in [
            &b""[..],
            &[0x30],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x05, 1],
        ] {
            assert_eq!(spki_sha256(bytes), None);
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error() {
        assert!(matches!(
            client_config(&Trust::CaPem(b"not pem".to_vec())),
            Err(TlsError::NoCertificates)
        ));
    }
}
