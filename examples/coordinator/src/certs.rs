//! Throwaway certificates for a coordinator: a CA, and a server certificate
//! for `localhost` and 127.0.0.1 signed by it. Good for tests, demos and a
//! private network; a public coordinator uses a certificate from a real CA.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

/// File name of the CA certificate that clients trust.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the server certificate chain (server certificate, then CA).
pub const SERVER_CERT_FILE: &str = "server.pem";
/// File name of the server's private key.
pub const SERVER_KEY_FILE: &str = "server.key";
/// File name holding the hex SHA-256 of the server's SubjectPublicKeyInfo.
pub const SERVER_PIN_FILE: &str = "server.pin";

/// A CA and a server certificate signed by it, all PEM.
#[derive(Clone)]
pub struct CertBundle {
    /// The CA certificate (what clients trust).
    pub ca_pem: String,
    /// The server certificate followed by the CA certificate.
    pub server_chain_pem: String,
    /// The server's private key (PKCS#8).
    pub server_key_pem: String,
    /// SHA-256 of the server certificate's SubjectPublicKeyInfo (what a client
    /// may pin instead of trusting the CA).
    pub server_spki_sha256: [u8; 32],
}

impl fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertBundle")
            .field(
                "server_spki_sha256",
                &crate::tls::hex(&self.server_spki_sha256),
            )
            .finish_non_exhaustive()
    }
}

/// Why certificates could not be made or written.
#[derive(Debug)]
pub enum CertError {
    /// rcgen could not generate a key or sign a certificate.
    Generate(rcgen::Error),
    /// The certificate just made did not parse back (a bug; please report).
    Parse(crate::tls::TlsError),
    /// Writing a file failed: check the directory exists and is writable.
    Write(PathBuf, io::Error),
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Generate(e) => write!(f, "could not generate a certificate: {e}"),
            CertError::Parse(e) => write!(f, "generated certificate does not parse: {e}"),
            CertError::Write(p, e) => write!(f, "could not write {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for CertError {}

/// Makes a fresh CA and a server certificate for `localhost`, 127.0.0.1 and
/// any `extra_names` (DNS names or IP addresses), in memory.
pub fn generate(extra_names: &[String]) -> Result<CertBundle, CertError> {
    let ca_key = KeyPair::generate().map_err(CertError::Generate)?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Tessera throwaway CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params
        .self_signed(&ca_key)
        .map_err(CertError::Generate)?;

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(extra_names.iter().cloned());
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(CertError::Generate)?;
    for name in &names {
        let san = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into().map_err(CertError::Generate)?),
        };
        params.subject_alt_names.push(san);
    }
    params
        .distinguished_name
        .push(DnType::CommonName, "Tessera coordinator");
    params.is_ca = IsCa::ExplicitNoCa;
    let server_key = KeyPair::generate().map_err(CertError::Generate)?;
    let server = params
        .signed_by(&server_key, &ca, &ca_key)
        .map_err(CertError::Generate)?;
    let server_spki_sha256 = crate::tls::spki_sha256(server.der()).map_err(CertError::Parse)?;
    Ok(CertBundle {
        ca_pem: ca.pem(),
        server_chain_pem: format!("{}{}", server.pem(), ca.pem()),
        server_key_pem: server_key.serialize_pem(),
        server_spki_sha256,
    })
}

/// Writes `bytes` to `path`, replacing what was there. A `private` file is
/// readable by its owner only (mode 0600) before its new contents go in,
/// also when it existed with a wider mode: the mode is set explicitly, not
/// left to the umask or to the file's creation.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), CertError> {
    let fail = |e| CertError::Write(path.to_path_buf(), e);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(fail)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(fail)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    f.write_all(bytes).map_err(fail)?;
    f.sync_all().map_err(fail)
}

impl CertBundle {
    /// Writes the bundle into `dir` (created if needed): [`CA_CERT_FILE`],
    /// [`SERVER_CERT_FILE`], [`SERVER_KEY_FILE`] (mode 0600, also over an
    /// existing file with a wider mode) and [`SERVER_PIN_FILE`]; then fsyncs
    /// `dir`.
    pub fn write_to(&self, dir: &Path) -> Result<(), CertError> {
        fs::create_dir_all(dir).map_err(|e| CertError::Write(dir.to_path_buf(), e))?;
        write_file(&dir.join(CA_CERT_FILE), self.ca_pem.as_bytes(), false)?;
        write_file(
            &dir.join(SERVER_CERT_FILE),
            self.server_chain_pem.as_bytes(),
            false,
        )?;
        write_file(
            &dir.join(SERVER_KEY_FILE),
            self.server_key_pem.as_bytes(),
            true,
        )?;
        let pin = format!("{}\n", crate::tls::hex(&self.server_spki_sha256));
        write_file(&dir.join(SERVER_PIN_FILE), pin.as_bytes(), false)?;
        // The files' names survive a crash too.
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| CertError::Write(dir.to_path_buf(), e))
    }
}
