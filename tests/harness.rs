//! The test matrix of `make test` stays complete: no test file starts the agent or the
//! client around the harness (`tests/common/mod.rs`), which is what lets `QGA_BIN` and
//! `QGA_AS2632` put every integration test on each shipped binary and under the filter.

use std::path::Path;

#[test]
fn only_the_harness_names_the_cargo_built_binaries() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            // Spelled in two pieces so that this file does not match itself; the harness
            // itself is tests/common/mod.rs, not listed here.
            if text.contains(concat!("CARGO_BIN_", "EXE_")) {
                offenders.push(path.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "start the agent with common::agent_command() or Agent, the client with \
         common::client_command(), not by path: {offenders:?}"
    );
}
