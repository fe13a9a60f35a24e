//! Tidy: the pure modules (`src/core`, `src/embedded`, `src/journal`) never
//! mention IO, clocks, randomness, threads, the environment or printing.
//! Reviews miss such things; a test does not.

use std::path::{Path, PathBuf};

const PURE: [&str; 3] = ["src/core", "src/embedded", "src/journal"];

const BANNED: [&str; 17] = [
    "tokio",
    "hyper",
    "std::net",
    "std::fs",
    "std::thread",
    "std::env",
    "std::process",
    "SystemTime",
    "Instant",
    "rand::",
    "rand_chacha",
    "thread_rng",
    "println!",
    "eprintln!",
    "print!(",
    "dbg!",
    "RandomState",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Banned words on lines that are not comments.
fn violations(text: &str) -> Vec<(usize, &'static str)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .flat_map(|(n, line)| {
            BANNED
                .iter()
                .filter(move |b| line.contains(*b))
                .map(move |b| (n + 1, *b))
        })
        .collect()
}

#[test]
fn the_scanner_catches_what_it_bans() {
    assert_eq!(
        violations("let t = std::time::Instant::now();"),
        [(1, "Instant")]
    );
    assert_eq!(violations("// Instant is fine in a comment"), []);
    assert_eq!(violations("println!(\"x\");"), [(1, "println!")]);
}

#[test]
fn pure_modules_stay_pure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in PURE {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        files.iter().any(|f| f.ends_with("dispatcher.rs")),
        "the scan found the core"
    );
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, word) in violations(&text) {
            found.push(format!(
                "{}:{line}: {word}",
                file.strip_prefix(root).unwrap().display()
            ));
        }
    }
    assert!(
        found.is_empty(),
        "IO, clocks, randomness or printing in a pure module:\n{}",
        found.join("\n")
    );
}
