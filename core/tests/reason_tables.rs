//! The kernel rejection codes of `docs/PROTOCOL.md` and `docs/VULKAN.md`,
//! derived from `tessera_core::reasons` itself: each document lists every
//! rule once, with its code, name, argument and meaning. The test fails when
//! a document differs; `TESSERA_BLESS=1` rewrites the table in place
//! (between its `<!-- table:kernel-rules -->` markers).

use tessera_core::reasons::{Argument, ComplexityLimit, KernelRule};

fn rules_table() -> String {
    let mut out =
        String::from("| code | rule | argument (high 16 bits) | meaning |\n|---:|---|---|---|\n");
    for rule in KernelRule::ALL {
        let argument = match rule.argument() {
            None => "—",
            Some(Argument::Opcode) => "opcode",
            Some(Argument::Capability) => "capability",
            Some(Argument::StorageClass) => "storage class",
            Some(Argument::Decoration) => "decoration",
            Some(Argument::ExecutionModel) => "execution model",
            Some(Argument::ExecutionMode) => "execution mode",
            Some(Argument::BuiltIn) => "built-in",
            Some(Argument::ExtInst) => "GLSL.std.450 instruction",
            Some(Argument::Binding) => "binding",
            Some(Argument::Buffer) => "buffer index",
            Some(Argument::Limit) => "limit (below)",
            Some(Argument::Version) => "version, major << 8 \\| minor",
        };
        out += &format!(
            "| {} | `{}` | {} | {} |\n",
            *rule as u16,
            rule.name(),
            argument,
            rule.text()
        );
    }
    out += "\n| limit | what |\n|---:|---|\n";
    for code in 1..=u16::MAX {
        let Some(l) = ComplexityLimit::from_code(code) else {
            break;
        };
        out += &format!("| {code} | {} |\n", l.text());
    }
    out
}

/// Checks (or, under `TESSERA_BLESS=1`, writes) the table in `doc`.
fn check_table(doc: &str, name: &str, table: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{doc}: {e}"));
    let open = format!("<!-- table:{name} -->\n");
    let close = format!("<!-- /table:{name} -->");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("no {open} in {doc}"))
        + open.len();
    let end = start + text[start..].find(&close).expect("closing marker");
    assert_eq!(
        text.matches(&open).count(),
        1,
        "{doc} lists the {name} table more than once"
    );
    if std::env::var_os("TESSERA_BLESS").is_some_and(|v| v == "1") {
        let new = format!("{}{}{}", &text[..start], table, &text[end..]);
        std::fs::write(&path, new).expect("write the document");
        return;
    }
    assert_eq!(
        &text[start..end],
        table,
        "docs/{doc} table {name} is out of date (TESSERA_BLESS=1 rewrites it)"
    );
}

#[test]
fn kernel_rule_tables_are_the_code() {
    let table = rules_table();
    check_table("PROTOCOL.md", "kernel-rules", &table);
    check_table("VULKAN.md", "kernel-rules", &table);
}

/// The shared code space of `tessera_core::codes`, every number it names.
fn codes_table() -> String {
    use tessera_core::codes;
    let mut out = String::from("| code | name | meaning |\n|---:|---|---|\n");
    for code in 0..codes::KERNEL_BASE {
        if let Some(name) = codes::name(code) {
            let text = codes::describe(code).expect("every named code is described");
            out += &format!("| {code} | `{name}` | {text} |\n");
        }
    }
    out += &format!(
        "| {} + rule | `kernel_rejected` | the kernel broke the rule (table in PROTOCOL.md, \"Kernel rejection codes\") |\n",
        codes::KERNEL_BASE
    );
    out
}

#[test]
fn code_space_table_is_the_code() {
    check_table("CODES.md", "codes", &codes_table());
}

#[test]
fn every_error_has_a_named_code() {
    use tessera_core::attest::{KeyError, SignError, VerifyError};
    use tessera_core::wire::{DecodeError, FailReason, MessageType};
    use tessera_core::{codes, ConfigError, Error, ErrorCode, PeerError, UsageError};
    let errors = [
        Error::Peer(PeerError::Decode(DecodeError::BadMagic)),
        Error::Peer(PeerError::Decode(DecodeError::Malformed(
            MessageType::Hello,
        ))),
        Error::Peer(PeerError::UnexpectedMessage(MessageType::Ready)),
        Error::Peer(PeerError::UnknownJob(1)),
        Error::Peer(PeerError::BadAssignment(1)),
        Error::Peer(PeerError::ChunkOutOfOrder(1)),
        Error::Peer(PeerError::UnsupportedVersion(9)),
        Error::Usage(UsageError::NotConnected),
        Error::Usage(UsageError::AlreadyConnected),
        Error::Usage(UsageError::UnknownJob(1)),
        Error::Usage(UsageError::InvalidJobState(1)),
        Error::Usage(UsageError::OutputOutOfOrder(1)),
        Error::Usage(UsageError::OutputIncomplete(1)),
        Error::Usage(UsageError::OutputMismatch(1)),
        Error::Usage(UsageError::CapacityExceeded),
        Error::Usage(UsageError::NoInput(1)),
        Error::WouldBlock,
        Error::EventsPending,
        Error::BufferTooSmall(4),
        Error::Config(ConfigError {
            field: "f",
            rule: "r",
        }),
        Error::Signer(SignError::Unavailable),
        Error::Signer(SignError::Failed(3)),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for e in errors {
        let code = e.code();
        assert!(codes::name(code).is_some(), "{e:?} -> unnamed code {code}");
        seen.insert(code);
    }
    // Distinct errors of the agent have distinct numbers.
    assert_eq!(seen.len(), errors.len());
    for c in ErrorCode::ALL {
        assert!(codes::name(codes::PEER_BASE + *c as u32).is_some(), "{c:?}");
    }
    for k in [
        KeyError::Rejected,
        KeyError::Mismatch,
        KeyError::NoRandomness,
    ] {
        assert!(codes::name(k.code()).is_some(), "{k:?}");
    }
    for v in [
        VerifyError::Malformed,
        VerifyError::BadSignature,
        VerifyError::UnknownKey,
        VerifyError::WrongNonce,
        VerifyError::Replayed,
        VerifyError::OutOfOrder,
        VerifyError::BrokenChain,
        VerifyError::ChunkProofMismatch,
    ] {
        assert!(codes::name(v.code()).is_some(), "{v:?}");
    }
    for r in 1..=7u8 {
        let reason = FailReason::from_u8(r).expect("reasons 1 to 7");
        assert!(codes::name(codes::failure(reason)).is_some(), "{reason:?}");
    }
    for rule in tessera_core::reasons::KernelRule::ALL {
        let code = codes::kernel_rejection(*rule as u32);
        assert_eq!(codes::name(code), Some("kernel_rejected"));
        assert_eq!(codes::describe(code), Some(rule.text()));
    }
}
