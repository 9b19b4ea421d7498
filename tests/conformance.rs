//! Runs the conformance suite (`dohost conformance`) against every conformance object in the
//! repository, each built from source, exactly as an SDK author would.

mod support;

use std::process::Command;

/// Builds `tests/conformance/objects/<lang>` and runs the suite against it with its
/// expectations file, if it has one.
fn conformance(lang: &str) {
    let dir = format!("tests/conformance/objects/{lang}");
    let component = support::build_guest(&dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dohost"));
    cmd.arg("conformance").arg(&component);
    let expectations = support::workspace_root()
        .join(&dir)
        .join("expectations.txt");
    if expectations.exists() {
        cmd.arg("--expect").arg(expectations);
    }
    let out = cmd.output().expect("run dohost conformance");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "conformance failures for {lang}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.ends_with("0 failed, 0 skipped") || lang != "rust",
        "{summary}"
    );
}

#[test]
fn rust_sdk_conforms() {
    conformance("rust");
}

#[test]
fn js_sdk_conforms() {
    conformance("js");
}

#[test]
fn go_sdk_conforms() {
    conformance("go");
}

#[test]
fn python_sdk_conforms() {
    conformance("python");
}
