//! Replays every committed fuzz input — `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` — through the target bodies, on stable, so
//! that a crash found once stays fixed.

use std::path::{Path, PathBuf};
use tour_sim::fuzz::TARGETS;

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        files.extend(entries.filter_map(Result::ok).map(|e| e.path()));
    }
    files.sort();
    files
}

#[test]
fn every_committed_input_passes_its_target() {
    for (target, body) in TARGETS {
        let files = inputs(target);
        assert!(!files.is_empty(), "fuzz/corpus/{target}/ holds no input");
        for file in files {
            let data = std::fs::read(&file).expect("a corpus file is readable");
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{target} fails on {}", file.display());
        }
    }
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    for (target, _) in TARGETS {
        let file = targets.join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&file).expect("each target has its file");
        assert!(
            text.contains(&format!("tour_sim::fuzz::{target}::run")),
            "{}",
            file.display()
        );
    }
}
