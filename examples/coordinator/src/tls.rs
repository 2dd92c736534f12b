//! TLS 1.3 configurations for the coordinator (server) and its clients
//! (providers and requesters), on rustls with the ring provider.
//!
//! A client trusts the server either through a CA certificate (the usual
//! WebPKI path validation, with the server name checked) or by pinning the
//! SHA-256 of the server certificate's SubjectPublicKeyInfo, which needs no CA
//! at all: what an operator prints once and hands to its providers.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// Why a TLS configuration could not be built.
#[derive(Debug)]
pub enum TlsError {
    /// A PEM input held no certificate (or no key): check the file given.
    NoPem(&'static str),
    /// A PEM input did not parse.
    BadPem(&'static str, rustls::pki_types::pem::Error),
    /// rustls refused the certificate, key or trust anchor.
    Rustls(rustls::Error),
    /// The root store refused the CA certificate.
    BadCa(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::NoPem(what) => write!(f, "no {what} found in the PEM input"),
            TlsError::BadPem(what, e) => write!(f, "the {what} PEM does not parse: {e}"),
            TlsError::Rustls(e) => write!(f, "TLS configuration refused: {e}"),
            TlsError::BadCa(e) => write!(f, "the CA certificate is not a usable trust anchor: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// How a client decides to trust the coordinator.
#[derive(Clone, Debug)]
pub enum ServerTrust {
    /// Certificates (PEM) of CAs, one of which must have issued the server's
    /// certificate for the name the client dials.
    CaPem(Vec<u8>),
    /// SHA-256 of the server certificate's SubjectPublicKeyInfo (DER). The
    /// certificate is not otherwise checked: the key is what is trusted.
    PinnedSpkiSha256([u8; 32]),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every certificate in a PEM input.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem("certificate", e))?;
    if certs.is_empty() {
        return Err(TlsError::NoPem("certificate"));
    }
    Ok(certs)
}

/// Parses the first private key in a PEM input (PKCS#8, SEC1 or PKCS#1).
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPem("private key"),
        e => TlsError::BadPem("private key", e),
    })
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo: the value to pin.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<[u8; 32], TlsError> {
    let parsed = ParsedCertificate::try_from(cert).map_err(TlsError::Rustls)?;
    Ok(tessera_core::attest::sha256(
        parsed.subject_public_key_info().as_ref(),
    ))
}

/// A TLS 1.3-only server configuration from a certificate chain and key (PEM).
pub fn server_config(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, TlsError> {
    let certs = certs_from_pem(cert_chain_pem)?;
    let key = key_from_pem(key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Rustls)?;
    // Sessions are long-lived; resumption buys nothing here.
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A TLS 1.3-only client configuration trusting the server as `trust` says.
pub fn client_config(trust: &ServerTrust) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Rustls)?;
    let config = match trust {
        ServerTrust::CaPem(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in certs_from_pem(pem)? {
                roots.add(cert).map_err(TlsError::BadCa)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        ServerTrust::PinnedSpkiSha256(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedSpki {
                pin: *pin,
                provider: provider(),
            }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// Trusts exactly one server key, whatever certificate carries it.
#[derive(Debug)]
struct PinnedSpki {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedSpki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let digest = tessera_core::attest::sha256(parsed.subject_public_key_info().as_ref());
        // Not secret: a plain comparison is fine.
        if digest == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Hex of bytes, lower case.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits into 32 bytes.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
