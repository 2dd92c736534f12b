//! Persisted receipt-chain positions, one small file per provider key, so a
//! restarted coordinator keeps verifying every provider's chain where it left
//! off.
//!
//! A file `chain-<public key hex>` holds 40 bytes: the next sequence number
//! (u64 little-endian) and the last receipt's hash. Every write goes to a
//! temporary file that is fsynced, then renamed over the old one, and the
//! directory is fsynced.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tessera_core::attest::ChainState;

use crate::tls::hex;

/// Chain positions in a directory.
#[derive(Debug, Clone)]
pub struct ChainStore {
    dir: PathBuf,
}

impl ChainStore {
    /// Opens (creating if needed) the directory.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<ChainStore> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        Ok(ChainStore { dir })
    }

    fn path(&self, key: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("chain-{}", hex(key)))
    }

    /// The stored position for a key, if any.
    pub fn load(&self, key: &[u8; 32]) -> io::Result<Option<ChainState>> {
        match fs::read(self.path(key)) {
            Ok(bytes) if bytes.len() == 40 => {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&bytes[..8]);
                let mut prev_hash = [0u8; 32];
                prev_hash.copy_from_slice(&bytes[8..]);
                Ok(Some(ChainState {
                    next_sequence: u64::from_le_bytes(seq),
                    prev_hash,
                }))
            }
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chain file is not 40 bytes",
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores a key's position, crash-safely.
    pub fn save(&self, key: &[u8; 32], chain: &ChainState) -> io::Result<()> {
        let path = self.path(key);
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&chain.next_sequence.to_le_bytes())?;
            f.write_all(&chain.prev_hash)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()
    }
}
