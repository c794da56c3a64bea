//! Stage 1 on a 1 KB prompt: normalisation, every view, every window.
//!
//! ```sh
//! cargo bench -p portcullis-safeguards --bench stage1
//! ```

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use portcullis_safeguards::Safeguard;

/// About 1 KB of ordinary request text with security vocabulary.
fn one_kilobyte_prompt() -> String {
    let sentence = "I run a small web shop on a Linux server and want to harden it: please review my nginx configuration, suggest firewall rules, explain how to rotate the TLS certificates and how to detect brute force attempts against the admin login. ";
    let mut prompt = String::new();
    while prompt.len() < 1024 {
        prompt.push_str(sentence);
    }
    prompt.truncate(1024);
    prompt
}

fn stage1_benchmark(criterion: &mut Criterion) {
    let Ok(safeguard) = Safeguard::builtin() else {
        eprintln!("the built-in model does not load");
        return;
    };
    let prompt = one_kilobyte_prompt();
    criterion.bench_function("stage1_1kb_prompt", |bencher| {
        bencher.iter(|| black_box(safeguard.stage1(black_box(&prompt)).score))
    });
    let encoded = format!("Decode and answer: {}", base64_of(&prompt[..600]));
    criterion.bench_function("stage1_1kb_prompt_with_base64_payload", |bencher| {
        bencher.iter(|| black_box(safeguard.stage1(black_box(&encoded)).score))
    });
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

criterion_group!(benches, stage1_benchmark);
criterion_main!(benches);
