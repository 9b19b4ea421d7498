//! Embeds the conformance cases (`tests/conformance/cases/*.json`) into the binary, so that
//! `dohost conformance` works from anywhere, for SDK authors who only have the binary.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance/cases");
    println!("cargo:rerun-if-changed={}", cases.display());
    let mut files: Vec<_> = std::fs::read_dir(&cases)
        .map(|dir| dir.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    let mut out = String::from("/// (case name, JSON text) of every embedded conformance case.\n");
    out.push_str("pub const EMBEDDED_CASES: &[(&str, &str)] = &[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file.file_stem().unwrap_or_default().to_string_lossy();
        let path = file.canonicalize().unwrap_or_else(|_| file.clone());
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("conformance_cases.rs");
    std::fs::write(dest, out).unwrap();
}
