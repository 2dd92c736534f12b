//! TLS for the provider's connection to the coordinator: TLS 1.3 only (rustls
//! with ring), the server verified against a CA file or a pinned public key.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as provider, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Whether a read from a TLS connection's socket that fills less than its
/// buffer shows the socket had nothing more, so that an event loop may end
/// its turn there rather than read again to find nothing (a system call):
/// where mio's readiness is edge-triggered (epoll, kqueue), bytes arriving
/// after the read raise a new event (epoll(7)). Not for the peer's end or
/// an error, which raise none. (A peer can make a read stop short with
/// urgent data; that delays only its own bytes, to its next event, as if
/// it had sent them later.) Elsewhere (Windows, where readiness comes
/// back only after a read finds nothing) reads go on until `WouldBlock`.
/// The agent's runtime and the reference coordinator read so.
pub const SHORT_READ_DRAINS: bool = cfg!(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
));

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

/// SHA-256 of a certificate's SubjectPublicKeyInfo (DER), the value to pin.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<[u8; 32], rustls::Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    Ok(crate::attest::sha256(
        parsed.subject_public_key_info().as_ref(),
    ))
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
        // Not secret: a plain comparison is fine.
        if spki_sha256(end_entity)? == self.spki_sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_certificates_are_errors_not_panics() {
        for bytes in [
            &b""[..],
            &[0x30],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x05, 1],
        ] {
            assert!(spki_sha256(&CertificateDer::from(bytes.to_vec())).is_err());
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
