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
