//! The Nexmark harness at a small scale: every query the engine supports, created as a view
//! over 20 000 generated events, must equal DataFusion running the same query in batch (the
//! harness exits non-zero otherwise); the ones it refuses must be listed with a reason.

use std::process::Command;

#[test]
fn every_supported_nexmark_query_equals_the_batch_query() {
    let json = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_nexmark"))
        .args(["--events", "20000", "--json"])
        .arg(json.path())
        .output()
        .expect("run the harness");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "harness failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let results: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();
    // Every query file is reported: q0–q22 but q10 is a sink, listed as not applicable.
    assert_eq!(results.len(), 23, "{stdout}");
    let supported: Vec<&str> = results.iter().filter(|r| r["status"] == "ok").map(|r| r["query"].as_str().unwrap()).collect();
    for query in ["q0", "q1", "q2", "q11", "q14", "q15", "q16", "q17", "q18", "q19", "q21", "q22"] {
        assert!(supported.contains(&query), "{query} should run as a view:\n{stdout}");
    }
    for result in &results {
        let status = result["status"].as_str().unwrap();
        assert!(status == "ok" || status.starts_with("unsupported: ") || status.starts_with("not applicable"), "{result}");
        if status == "ok" {
            assert_eq!(result["check"], "equal", "{result}");
            assert!(result["result_rows"].as_u64().unwrap() > 0, "{result}");
        }
    }
}
