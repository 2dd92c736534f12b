//! `tessera-certs DIR [NAME...]`: writes a throwaway CA, a server certificate
//! for localhost, 127.0.0.1 and any extra names, its key, and its key pin.

use std::path::PathBuf;
use std::process::ExitCode;

use tessera_coordinator::certs::{self, CA_CERT_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE};
use tessera_coordinator::tls::hex;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().filter(|a| a != "-h" && a != "--help") else {
        eprintln!("usage: tessera-certs DIR [EXTRA_DNS_NAME_OR_IP...]");
        eprintln!(
            "writes {CA_CERT_FILE}, {SERVER_CERT_FILE}, {SERVER_KEY_FILE} and server.pin into DIR"
        );
        return ExitCode::from(2);
    };
    let extra: Vec<String> = args.collect();
    let dir = PathBuf::from(dir);
    let bundle = match certs::generate(&extra) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tessera-certs: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = bundle.write_to(&dir) {
        eprintln!("tessera-certs: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {} (CA), {} (chain), {} (key)",
        dir.join(CA_CERT_FILE).display(),
        dir.join(SERVER_CERT_FILE).display(),
        dir.join(SERVER_KEY_FILE).display()
    );
    println!(
        "server key pin (SHA-256 of SubjectPublicKeyInfo): {}",
        hex(&bundle.server_spki_sha256)
    );
    ExitCode::SUCCESS
}
