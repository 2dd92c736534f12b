//! TLS 1.3 configurations for the coordinator (server) and its clients
//! (providers and requesters), on rustls with the ring provider.
//!
//! A client trusts the server either through a CA certificate (the usual
//! WebPKI path validation, with the server name checked) or by pinning the
//! SHA-256 of the server certificate's SubjectPublicKeyInfo, which needs no CA
//! at all: what an operator prints once and hands to its providers.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Clients (providers and requesters) trust the coordinator the same way the
/// provider runtime does: `Trust::CaPem` or `Trust::PinnedKey`.
pub use tessera_core::net::tls::{client_config, Trust};

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
    tessera_core::net::tls::spki_sha256(cert).map_err(TlsError::Rustls)
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
