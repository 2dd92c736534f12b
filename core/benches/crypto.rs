//! End-to-end sealing's cost beside the raw primitive it is built on,
//! measured in the same run on the same bytes: `crypto.seal_rate` is GB/s
//! sealing a 64 MiB output for a requester (the HPKE context set up, the
//! job's key exported, every 65,520-byte segment sealed in place with its
//! tag), beside peer `ring_aead`, ring's AES-256-GCM sealing the same 64 MiB
//! in one call. `crypto.open_rate` is the provider's side, opening the
//! sealed stream segment by segment, beside ring opening it in one call.
//! Rates are the best of several passes. Prints one JSON object per line.
//!
//! `cargo bench -p tessera-core --bench crypto`

use std::hint::black_box;
use std::time::Instant;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use tessera_core::e2e::{self, KeyPair, Receiver, Sender, SEGMENT_LEN};

const BYTES: usize = 64 << 20;
const RUNS: usize = 7;

fn best_gbs(mut f: impl FnMut()) -> f64 {
    f();
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            BYTES as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn line(name: &str, ours: f64, peer: f64) {
    println!(
        "{{\"name\": \"{name}\", \"value\": {ours:.3}, \"unit\": \"GB/s\", \"peers\": {{\"ring_aead\": {peer:.3}}}, \"ratio\": {:.3}}}",
        ours / peer
    );
}

fn main() {
    let requester = KeyPair::derive(&[1; 32]);
    let info = e2e::requester_info(&[2; 32], &[3; 32]);
    let (job, n) = e2e::job_bytes(&[4; 32], &[6; 32], Some(&[5; 16]));
    let job = &job[..n];
    let plain: Vec<u8> = (0..BYTES).map(|i| (i * 31 + 7) as u8).collect();
    let sealed_len = e2e::sealed_len(BYTES as u64).expect("length") as usize;

    // Ours: the provider lays the output out segment by segment (as it
    // reads it back) and seals each in place.
    let mut laid_out = vec![0u8; sealed_len];
    for (seg, piece) in laid_out
        .chunks_mut(SEGMENT_LEN)
        .zip(plain.chunks(e2e::SEGMENT_PLAIN_LEN))
    {
        seg[..piece.len()].copy_from_slice(piece);
    }
    // Sealing again what was sealed costs the same, so neither side copies
    // fresh plaintext in between.
    let mut work = laid_out.clone();
    let seal = best_gbs(|| {
        let (_, sender) = Sender::new(requester.public(), &info, &[4; 32]).expect("sender");
        let key = sender.stream(job, 0, BYTES as u64).expect("stream key");
        for (i, seg) in work.chunks_mut(SEGMENT_LEN).enumerate() {
            key.seal_segment(i as u64, seg).expect("seal");
        }
        black_box(&work);
    });
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[5; 32]).expect("key"));
    let mut raw = plain.clone();
    let ring_seal = best_gbs(|| {
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([6; 12]),
                Aad::empty(),
                &mut raw,
            )
            .expect("seal");
        let _ = black_box(tag);
    });
    line("crypto.seal_rate", seal, ring_seal);

    // Opening, in place, segment by segment; both sides copy the sealed
    // bytes back before each pass.
    work.copy_from_slice(&laid_out);
    let (enc, sender) = Sender::new(requester.public(), &info, &[4; 32]).expect("sender");
    let seal_key = sender.stream(job, 0, BYTES as u64).expect("stream key");
    for (i, seg) in work.chunks_mut(SEGMENT_LEN).enumerate() {
        seal_key.seal_segment(i as u64, seg).expect("seal");
    }
    let sealed = work.clone();
    let receiver = Receiver::new(&requester, &enc, &info).expect("receiver");
    let open_key = receiver.stream(job, 0, BYTES as u64).expect("stream key");
    let open = best_gbs(|| {
        work.copy_from_slice(&sealed);
        for (i, seg) in work.chunks_mut(SEGMENT_LEN).enumerate() {
            black_box(open_key.open_segment(i as u64, seg).expect("open"));
        }
    });
    raw.copy_from_slice(&plain);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([6; 12]),
            Aad::empty(),
            &mut raw,
        )
        .expect("seal");
    let mut raw_sealed = raw.clone();
    raw_sealed.extend_from_slice(tag.as_ref());
    let mut raw_work = raw_sealed.clone();
    let ring_open = best_gbs(|| {
        raw_work.copy_from_slice(&raw_sealed);
        black_box(
            key.open_in_place(
                Nonce::assume_unique_for_key([6; 12]),
                Aad::empty(),
                &mut raw_work,
            )
            .expect("open")
            .len(),
        );
    });
    line("crypto.open_rate", open, ring_open);
}
