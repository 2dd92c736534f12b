//! Keeping results until the coordinator acknowledges them.
//!
//! A host stores each [`ResultRecord`] when the agent asks
//! ([`crate::Event::PersistResult`]), removes it on
//! [`crate::Event::ResultAcknowledged`], and after a restart hands every stored
//! record back with [`crate::Agent::restore_result`], oldest receipt first,
//! starting the agent from [`ResultStore::chain`]. The agent holds at most
//! [`crate::limits::MAX_JOBS`] results; a host with more stored hands the rest
//! back as acknowledgements make room. [`MemoryStore`] keeps records in fixed
//! memory (they survive reconnects, not restarts); under `std`, [`FileStore`]
//! keeps them in a directory, crash-safely (write to a temporary file, fsync,
//! rename, fsync the directory), together with the job's outputs, bound to
//! the device key.

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
pub use file::{FileStore, StoreError};

#[cfg(feature = "std")]
mod file {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::fs::{self, File};
    use std::io::{self, Read, Write};
    use std::path::{Path, PathBuf};
    use std::vec::Vec;

    use super::{newer, ResultStore};
    use crate::agent::{ResultRecord, MAX_RECORD_BYTES};
    use crate::attest::ChainState;
    use crate::wire::{JobId, KeyId};

    // The store's directory holds:
    //
    // - `job-<id>.rec`, one per result not yet acknowledged:
    //     magic "TSREC\0\0\x01" (8 bytes), record length (u32 LE), number of
    //     outputs n (u32 LE), n output lengths (u64 LE each), the record
    //     (`ResultRecord::encode`), then the n outputs back to back;
    // - `chain`, the receipt chain position after the newest receipt saved,
    //   64 bytes: magic "TSCHAIN\x01" (8), the key id of the device key
    //   whose receipts it counts (16), the next sequence number (u64 LE, 8),
    //   SHA-256 of the last signed receipt (32; zeros before the first).
    //   A 40-byte file (next sequence, hash; no magic, no key) is the format
    //   of earlier versions: it is read, and rewritten bound to the opening
    //   key;
    // - `*.tmp`: a write that did not finish (a crash); removed on opening.
    const CHAIN_FILE: &str = "chain";
    const MAGIC: &[u8; 8] = b"TSREC\x00\x00\x01";
    const CHAIN_MAGIC: &[u8; 8] = b"TSCHAIN\x01";
    const CHAIN_LEN: usize = 64;
    const OLD_CHAIN_LEN: usize = 40;
    const HEADER_LEN: usize = 16;

    /// Results and their outputs in a directory, one file per job
    /// (`job-<id>.rec`), plus the chain position (`chain`), bound to one
    /// device key. Every write is crash-safe: a temporary file is written and
    /// fsynced, renamed over the old one, and the directory is fsynced.
    ///
    /// A record is written before the chain file, so a crash between the two
    /// leaves the newest position in the record only; [`FileStore::open`]
    /// takes the highest position over the chain file and every record, so a
    /// restarted provider never signs a second receipt with a sequence number
    /// it already used.
    #[derive(Debug)]
    pub struct FileStore {
        dir: PathBuf,
        key: KeyId,
        chain: ChainState,
        /// Test hook: write steps left before a simulated crash.
        crash_in: Option<u32>,
    }

    /// Why a [`FileStore`] could not be opened or read.
    #[derive(Debug)]
    #[non_exhaustive]
    pub enum StoreError {
        /// A file or the directory could not be read or written, or a file
        /// is damaged (`InvalidData`, with what is wrong).
        Io {
            /// The file or directory.
            path: PathBuf,
            /// What failed.
            error: io::Error,
        },
        /// The chain file counts the receipts of another device key: going on
        /// would fork one of the two chains. Use the key that wrote it, or
        /// another store directory.
        OtherKey {
            /// The chain file.
            path: PathBuf,
            /// The key id it was written under.
            chain_key: KeyId,
            /// The key id of the opening agent.
            key: KeyId,
        },
        /// Two stored chain positions name different receipts with one
        /// sequence number: the directory mixes two chains.
        Conflict {
            /// The record (or chain file) that disagrees.
            path: PathBuf,
            /// The sequence number both claim.
            sequence: u64,
        },
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    impl StoreError {
        /// The number of this error in the library's shared code space
        /// ([`crate::codes`]).
        pub fn code(&self) -> u32 {
            match self {
                StoreError::Io { .. } => crate::codes::STORE_IO,
                StoreError::OtherKey { .. } => crate::codes::STORE_OTHER_KEY,
                StoreError::Conflict { .. } => crate::codes::STORE_CONFLICT,
            }
        }
    }

    impl fmt::Display for StoreError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                StoreError::Io { path, error } => write!(f, "{}: {error}", path.display()),
                StoreError::OtherKey {
                    path,
                    chain_key,
                    key,
                } => write!(
                    f,
                    "chain file {} belongs to key {}, this agent's key is {}: \
                     use the key that wrote it, or another store directory",
                    path.display(),
                    hex(chain_key),
                    hex(key)
                ),
                StoreError::Conflict { path, sequence } => write!(
                    f,
                    "{} names another receipt #{sequence} than the rest of the store: \
                     the directory mixes two receipt chains",
                    path.display()
                ),
            }
        }
    }

    impl std::error::Error for StoreError {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            match self {
                StoreError::Io { error, .. } => Some(error),
                _ => None,
            }
        }
    }

    impl From<StoreError> for io::Error {
        fn from(e: StoreError) -> io::Error {
            let kind = match &e {
                StoreError::Io { error, .. } => error.kind(),
                _ => io::ErrorKind::InvalidData,
            };
            io::Error::new(kind, e)
        }
    }

    fn invalid(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, what.to_string())
    }

    fn at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |error| StoreError::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    fn read_exact(f: &mut File, buf: &mut [u8]) -> io::Result<()> {
        f.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid("truncated record file")
            } else {
                e
            }
        })
    }

    /// Reads a record file: the record, and the outputs when `outputs`.
    fn read_record_file(path: &Path, outputs: bool) -> io::Result<(ResultRecord, Vec<Vec<u8>>)> {
        let mut f = File::open(path)?;
        let file_len = f.metadata()?.len();
        let mut head = [0u8; HEADER_LEN];
        read_exact(&mut f, &mut head)?;
        if head[..8] != MAGIC[..] {
            return Err(invalid("not a record file"));
        }
        let rec_len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        let count = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as usize;
        if count > crate::limits::MAX_BUFFERS {
            return Err(invalid("too many outputs"));
        }
        if rec_len > MAX_RECORD_BYTES {
            return Err(invalid("record too large"));
        }
        let mut len_bytes = vec![0u8; 8 * count];
        read_exact(&mut f, &mut len_bytes)?;
        let lens: Vec<u64> = len_bytes
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                u64::from_le_bytes(a)
            })
            .collect();
        let total = lens
            .iter()
            .try_fold((HEADER_LEN + 8 * count + rec_len) as u64, |a, l| {
                a.checked_add(*l)
            })
            .ok_or_else(|| invalid("length overflow"))?;
        if total > file_len {
            return Err(invalid("truncated record file"));
        }
        if total < file_len {
            return Err(invalid("trailing bytes in record file"));
        }
        let mut rec = vec![0u8; rec_len];
        read_exact(&mut f, &mut rec)?;
        let record = ResultRecord::decode(&rec).ok_or_else(|| invalid("undecodable record"))?;
        let mut out = Vec::new();
        if outputs {
            for len in lens {
                // Bounded by the file's length, checked above.
                let mut o = vec![0u8; len as usize];
                read_exact(&mut f, &mut o)?;
                out.push(o);
            }
        }
        Ok((record, out))
    }

    /// Reads the chain file: the position and whether it names a key (the
    /// 40-byte format of earlier versions does not). `None` if absent.
    fn read_chain(path: &Path, key: &KeyId) -> Result<Option<(ChainState, bool)>, StoreError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(at(path)(e)),
        };
        let mut chain = ChainState::default();
        let mut seq = [0u8; 8];
        match bytes.len() {
            CHAIN_LEN if bytes[..8] == CHAIN_MAGIC[..] => {
                let mut chain_key = KeyId::default();
                chain_key.copy_from_slice(&bytes[8..24]);
                if &chain_key != key {
                    return Err(StoreError::OtherKey {
                        path: path.to_path_buf(),
                        chain_key,
                        key: *key,
                    });
                }
                seq.copy_from_slice(&bytes[24..32]);
                chain.prev_hash.copy_from_slice(&bytes[32..64]);
                chain.next_sequence = u64::from_le_bytes(seq);
                Ok(Some((chain, true)))
            }
            OLD_CHAIN_LEN => {
                seq.copy_from_slice(&bytes[..8]);
                chain.prev_hash.copy_from_slice(&bytes[8..40]);
                chain.next_sequence = u64::from_le_bytes(seq);
                Ok(Some((chain, false)))
            }
            _ => Err(at(path)(invalid(
                "not a chain file (64 bytes starting \"TSCHAIN\\x01\")",
            ))),
        }
    }

    /// Every record file in `dir`: its chain position after the record's
    /// receipt, its job and its path, oldest receipt first.
    fn scan(dir: &Path) -> Result<Vec<(ChainState, JobId, PathBuf)>, StoreError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(at(dir))? {
            let path = entry.map_err(at(dir))?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("rec") {
                let (record, _) = read_record_file(&path, false).map_err(at(&path))?;
                found.push((record.chain_after(), record.job, path));
            }
        }
        found.sort_by_key(|(c, job, _)| (c.next_sequence, *job));
        Ok(found)
    }

    impl FileStore {
        /// Opens (creating if needed) the store in `dir` for the device key
        /// `key` ([`crate::attest::Signer::key_id`]) and recovers the chain
        /// position: the highest over the chain file and every stored record.
        /// A chain file of another key is refused ([`StoreError::OtherKey`]).
        /// Leftovers of unfinished writes are removed, and the chain file is
        /// brought up to the recovered position.
        pub fn open(dir: impl AsRef<Path>, key: KeyId) -> Result<FileStore, StoreError> {
            let dir = dir.as_ref().to_path_buf();
            fs::create_dir_all(&dir).map_err(at(&dir))?;
            for entry in fs::read_dir(&dir).map_err(at(&dir))? {
                let path = entry.map_err(at(&dir))?.path();
                if path.extension().and_then(|e| e.to_str()) == Some("tmp") {
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(at(&path)(e)),
                    }
                }
            }
            let chain_path = dir.join(CHAIN_FILE);
            let from_file = read_chain(&chain_path, &key)?;
            let mut chain = from_file.map(|(c, _)| c).unwrap_or_default();
            // Every position seen, by sequence: two different receipts with one
            // sequence number mean two chains in one directory.
            let mut seen = BTreeMap::new();
            if let Some((c, _)) = from_file {
                seen.insert(c.next_sequence, (c.prev_hash, chain_path.clone()));
            }
            for (after, _, path) in scan(&dir)? {
                match seen.get(&after.next_sequence) {
                    Some((hash, _)) if *hash != after.prev_hash => {
                        return Err(StoreError::Conflict {
                            path,
                            sequence: after.next_sequence.saturating_sub(1),
                        })
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(after.next_sequence, (after.prev_hash, path));
                    }
                }
                chain = newer(chain, after);
            }
            let mut store = FileStore {
                dir,
                key,
                chain,
                crash_in: None,
            };
            if from_file != Some((chain, true)) {
                store.write_chain(chain).map_err(at(&chain_path))?;
            }
            Ok(store)
        }

        /// Test hook: the next writes stop after `steps` more steps of the
        /// write sequence (each of: write a temporary file, fsync it, rename
        /// it, fsync the directory, remove a file), as if the process died
        /// there: that step and every later one fail without touching the
        /// disk. `None` disarms it.
        #[doc(hidden)]
        pub fn crash_after_steps(&mut self, steps: Option<u32>) {
            self.crash_in = steps;
        }

        fn step(&mut self) -> io::Result<()> {
            match &mut self.crash_in {
                Some(0) => Err(io::Error::other("simulated crash")),
                Some(n) => {
                    *n -= 1;
                    Ok(())
                }
                None => Ok(()),
            }
        }

        fn path(&self, job: JobId) -> PathBuf {
            self.dir.join(format!("job-{job}.rec"))
        }

        fn sync_dir(&mut self) -> io::Result<()> {
            self.step()?;
            File::open(&self.dir)?.sync_all()
        }

        fn write_atomic(&mut self, name: &Path, parts: &[&[u8]]) -> io::Result<()> {
            let tmp = name.with_extension("tmp");
            self.step()?;
            let mut f = File::create(&tmp)?;
            for p in parts {
                f.write_all(p)?;
            }
            self.step()?;
            f.sync_all()?;
            drop(f);
            self.step()?;
            fs::rename(&tmp, name)?;
            self.sync_dir()
        }

        fn write_chain(&mut self, chain: ChainState) -> io::Result<()> {
            let mut c = [0u8; CHAIN_LEN];
            c[..8].copy_from_slice(CHAIN_MAGIC);
            c[8..24].copy_from_slice(&self.key);
            c[24..32].copy_from_slice(&chain.next_sequence.to_le_bytes());
            c[32..].copy_from_slice(&chain.prev_hash);
            let path = self.dir.join(CHAIN_FILE);
            self.write_atomic(&path, &[&c])
        }

        /// Stores a record together with the job's read-back outputs, in one
        /// crash-safe write, then the chain position after it.
        pub fn save_with_outputs(
            &mut self,
            record: &ResultRecord,
            outputs: &[&[u8]],
        ) -> io::Result<()> {
            let mut buf = [0u8; MAX_RECORD_BYTES];
            let n = record
                .encode(&mut buf)
                .map_err(|_| invalid("record too large"))?;
            if outputs.len() > crate::limits::MAX_BUFFERS {
                return Err(invalid("too many outputs"));
            }
            let mut header = Vec::with_capacity(HEADER_LEN + 8 * outputs.len());
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&(n as u32).to_le_bytes());
            header.extend_from_slice(&(outputs.len() as u32).to_le_bytes());
            for o in outputs {
                header.extend_from_slice(&(o.len() as u64).to_le_bytes());
            }
            let mut parts: Vec<&[u8]> = vec![&header, &buf[..n]];
            parts.extend_from_slice(outputs);
            let path = self.path(record.job);
            self.write_atomic(&path, &parts)?;
            let after = newer(self.chain, record.chain_after());
            if after != self.chain {
                self.write_chain(after)?;
                self.chain = after;
            }
            Ok(())
        }

        /// Reads a job's record and outputs.
        pub fn load(&self, job: JobId) -> io::Result<(ResultRecord, Vec<Vec<u8>>)> {
            read_record_file(&self.path(job), true)
        }

        /// Reads a job's record, without its outputs.
        pub fn load_record(&self, job: JobId) -> Result<ResultRecord, StoreError> {
            let path = self.path(job);
            read_record_file(&path, false)
                .map(|(r, _)| r)
                .map_err(at(&path))
        }

        /// Every stored job, oldest receipt first (the order to deliver them
        /// in). Only ids are held, so any number of records fits.
        pub fn jobs(&self) -> Result<Vec<JobId>, StoreError> {
            Ok(scan(&self.dir)?.into_iter().map(|(_, j, _)| j).collect())
        }

        /// The key id this store's chain belongs to.
        pub fn key(&self) -> KeyId {
            self.key
        }
    }

    impl ResultStore for FileStore {
        type Error = io::Error;

        fn save(&mut self, record: &ResultRecord) -> io::Result<()> {
            self.save_with_outputs(record, &[])
        }

        fn remove(&mut self, job: JobId) -> io::Result<()> {
            let path = self.path(job);
            self.step()?;
            match fs::remove_file(path) {
                Ok(()) => self.sync_dir(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        }

        fn chain(&self) -> ChainState {
            self.chain
        }

        /// Reads one record at a time, so any number of them fits.
        fn for_each(&self, f: &mut dyn FnMut(&ResultRecord)) -> io::Result<()> {
            for (_, _, path) in scan(&self.dir)? {
                let (record, _) = read_record_file(&path, false).map_err(at(&path))?;
                f(&record);
            }
            Ok(())
        }
    }
}
