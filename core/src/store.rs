//! Keeping results until the coordinator acknowledges them.
//!
//! A host stores each [`ResultRecord`] when the agent asks
//! ([`crate::Event::PersistResult`]), removes it on
//! [`crate::Event::ResultAcknowledged`], and after a restart hands every stored
//! record back with [`crate::Agent::restore_result`], starting the agent from
//! [`ResultStore::chain`]. [`MemoryStore`] keeps records in fixed memory (they
//! survive reconnects, not restarts); under `std`, [`FileStore`] keeps them in
//! a directory, crash-safely (write to a temporary file, fsync, rename, fsync
//! the directory), together with the job's outputs.

use crate::agent::ResultRecord;
use crate::attest::ChainState;
use crate::wire::JobId;

/// Durable storage of results not yet acknowledged, and of the receipt chain.
pub trait ResultStore {
    /// What can go wrong (an I/O error, a full flash sector, ...).
    type Error;

    /// Stores `record` durably (replacing one for the same job) and records its
    /// chain position; returns once the record would survive a crash.
    fn save(&mut self, record: &ResultRecord) -> Result<(), Self::Error>;

    /// Forgets a job's record (the coordinator acknowledged it). The chain
    /// position is kept.
    fn remove(&mut self, job: JobId) -> Result<(), Self::Error>;

    /// The chain position after the newest receipt ever saved.
    fn chain(&self) -> ChainState;

    /// Calls `f` with every stored record, oldest receipt first.
    fn for_each(&self, f: &mut dyn FnMut(&ResultRecord)) -> Result<(), Self::Error>;
}

/// Records in fixed memory, for hosts without durable storage: results survive
/// reconnects (the agent keeps them anyway) but not a restart.
#[derive(Debug, Default)]
pub struct MemoryStore<const N: usize> {
    records: heapless::Vec<ResultRecord, N>,
    chain: ChainState,
}

/// Why a [`MemoryStore`] refused a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreFull;

impl<const N: usize> MemoryStore<N> {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            records: heapless::Vec::new(),
            chain: ChainState::default(),
        }
    }
}

fn newer(a: ChainState, b: ChainState) -> ChainState {
    if b.next_sequence > a.next_sequence {
        b
    } else {
        a
    }
}

impl<const N: usize> ResultStore for MemoryStore<N> {
    type Error = StoreFull;

    fn save(&mut self, record: &ResultRecord) -> Result<(), StoreFull> {
        if let Some(r) = self.records.iter_mut().find(|r| r.job == record.job) {
            *r = record.clone();
        } else {
            self.records.push(record.clone()).map_err(|_| StoreFull)?;
        }
        self.chain = newer(self.chain, record.chain_after());
        Ok(())
    }

    fn remove(&mut self, job: JobId) -> Result<(), StoreFull> {
        self.records.retain(|r| r.job != job);
        Ok(())
    }

    fn chain(&self) -> ChainState {
        self.chain
    }

    fn for_each(&self, f: &mut dyn FnMut(&ResultRecord)) -> Result<(), StoreFull> {
        let mut order: heapless::Vec<usize, N> = (0..self.records.len()).collect();
        order.sort_unstable_by_key(|&i| self.records[i].next_sequence);
        for i in order {
            f(&self.records[i]);
        }
        Ok(())
    }
}

#[cfg(feature = "std")]
pub use file::FileStore;

#[cfg(feature = "std")]
mod file {
    use std::fs::{self, File};
    use std::io::{self, Read, Write};
    use std::path::{Path, PathBuf};
    use std::vec::Vec;

    use super::{newer, ResultStore};
    use crate::agent::{ResultRecord, MAX_RECORD_BYTES};
    use crate::attest::ChainState;
    use crate::wire::JobId;

    const CHAIN_FILE: &str = "chain";
    const MAGIC: &[u8; 8] = b"TSREC\x00\x00\x01";

    /// Results and their outputs in a directory, one file per job
    /// (`job-<id>.rec`), plus the chain position (`chain`). Every write is
    /// crash-safe: a temporary file is written and fsynced, renamed over the
    /// old one, and the directory is fsynced.
    #[derive(Debug)]
    pub struct FileStore {
        dir: PathBuf,
        chain: ChainState,
    }

    fn invalid(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, what.to_string())
    }

    impl FileStore {
        /// Opens (creating if needed) the store in `dir` and reads the chain
        /// position.
        pub fn open(dir: impl AsRef<Path>) -> io::Result<FileStore> {
            let dir = dir.as_ref().to_path_buf();
            fs::create_dir_all(&dir)?;
            let mut chain = ChainState::default();
            match fs::read(dir.join(CHAIN_FILE)) {
                Ok(bytes) if bytes.len() == 40 => {
                    let mut seq = [0u8; 8];
                    seq.copy_from_slice(&bytes[..8]);
                    chain.next_sequence = u64::from_le_bytes(seq);
                    chain.prev_hash.copy_from_slice(&bytes[8..]);
                }
                Ok(_) => return Err(invalid("chain file is not 40 bytes")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            Ok(FileStore { dir, chain })
        }

        fn path(&self, job: JobId) -> PathBuf {
            self.dir.join(format!("job-{job}.rec"))
        }

        fn write_atomic(&self, name: &Path, parts: &[&[u8]]) -> io::Result<()> {
            let tmp = name.with_extension("tmp");
            {
                let mut f = File::create(&tmp)?;
                for p in parts {
                    f.write_all(p)?;
                }
                f.sync_all()?;
            }
            fs::rename(&tmp, name)?;
            File::open(&self.dir)?.sync_all()
        }

        /// Stores a record together with the job's read-back outputs, in one
        /// crash-safe write.
        pub fn save_with_outputs(
            &mut self,
            record: &ResultRecord,
            outputs: &[&[u8]],
        ) -> io::Result<()> {
            let mut buf = [0u8; MAX_RECORD_BYTES];
            let n = record
                .encode(&mut buf)
                .map_err(|_| invalid("record too large"))?;
            let mut header = Vec::with_capacity(16 + 8 * outputs.len());
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&(n as u32).to_le_bytes());
            header.extend_from_slice(&(outputs.len() as u32).to_le_bytes());
            for o in outputs {
                header.extend_from_slice(&(o.len() as u64).to_le_bytes());
            }
            let mut parts: Vec<&[u8]> = vec![&header, &buf[..n]];
            parts.extend_from_slice(outputs);
            self.write_atomic(&self.path(record.job), &parts)?;
            let after = newer(self.chain, record.chain_after());
            if after != self.chain {
                let mut c = [0u8; 40];
                c[..8].copy_from_slice(&after.next_sequence.to_le_bytes());
                c[8..].copy_from_slice(&after.prev_hash);
                self.write_atomic(&self.dir.join(CHAIN_FILE), &[&c])?;
                self.chain = after;
            }
            Ok(())
        }

        /// Reads a job's record and outputs.
        pub fn load(&self, job: JobId) -> io::Result<(ResultRecord, Vec<Vec<u8>>)> {
            Self::read_file(&self.path(job))
        }

        fn read_file(path: &Path) -> io::Result<(ResultRecord, Vec<Vec<u8>>)> {
            let mut bytes = Vec::new();
            File::open(path)?.read_to_end(&mut bytes)?;
            let take = |bytes: &[u8], at: usize, n: usize| -> io::Result<Vec<u8>> {
                bytes
                    .get(
                        at..at
                            .checked_add(n)
                            .ok_or_else(|| invalid("length overflow"))?,
                    )
                    .map(|s| s.to_vec())
                    .ok_or_else(|| invalid("truncated record file"))
            };
            if bytes.get(..8) != Some(&MAGIC[..]) {
                return Err(invalid("not a record file"));
            }
            let u32_at = |at: usize| -> io::Result<usize> {
                let b = take(&bytes, at, 4)?;
                Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            };
            let rec_len = u32_at(8)?;
            let outputs = u32_at(12)?;
            if outputs > crate::limits::MAX_BUFFERS {
                return Err(invalid("too many outputs"));
            }
            let mut lens = Vec::with_capacity(outputs);
            for i in 0..outputs {
                let b = take(&bytes, 16 + 8 * i, 8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(&b);
                lens.push(u64::from_le_bytes(a) as usize);
            }
            let mut at = 16 + 8 * outputs;
            let record = ResultRecord::decode(&take(&bytes, at, rec_len)?)
                .ok_or_else(|| invalid("undecodable record"))?;
            at += rec_len;
            let mut out = Vec::with_capacity(outputs);
            for len in lens {
                out.push(take(&bytes, at, len)?);
                at += len;
            }
            if at != bytes.len() {
                return Err(invalid("trailing bytes in record file"));
            }
            Ok((record, out))
        }
    }

    impl ResultStore for FileStore {
        type Error = io::Error;

        fn save(&mut self, record: &ResultRecord) -> io::Result<()> {
            self.save_with_outputs(record, &[])
        }

        fn remove(&mut self, job: JobId) -> io::Result<()> {
            match fs::remove_file(self.path(job)) {
                Ok(()) => File::open(&self.dir)?.sync_all(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        }

        fn chain(&self) -> ChainState {
            self.chain
        }

        fn for_each(&self, f: &mut dyn FnMut(&ResultRecord)) -> io::Result<()> {
            let mut records = Vec::new();
            for entry in fs::read_dir(&self.dir)? {
                let path = entry?.path();
                if path.extension().and_then(|e| e.to_str()) == Some("rec") {
                    records.push(Self::read_file(&path)?.0);
                }
            }
            records.sort_by_key(|r| r.next_sequence);
            for r in &records {
                f(r);
            }
            Ok(())
        }
    }
}
