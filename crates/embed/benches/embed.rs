//! Latency of one embedding at 16, 64, 128 and 256 tokens (the model's
//! window), on the calling thread alone, plus tokenisation on its own and a
//! batch of short prompts.
//!
//! Needs the model files (see `locate_model_dir`); without them it prints
//! `skipped: …` and measures nothing. Criterion reports the median; the p50
//! and p99 over the measured iterations are printed after each group.

// Test and bench code: a failed step should stop it with a message.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis_embed::{Embedder, locate_model_dir};

/// A text of exactly `token_count` model tokens, `[CLS]` and `[SEP]`
/// included, made of ordinary English words so that it looks like a prompt.
fn text_with_tokens(embedder: &Embedder, token_count: usize) -> String {
    const WORDS: [&str; 12] = [
        "please", "explain", "how", "the", "network", "scanner", "reports", "open", "ports", "on",
        "my", "server",
    ];
    let mut words: Vec<&str> = Vec::new();
    let mut index = 0;
    loop {
        let text = words.join(" ");
        let count = embedder.token_count(&text).unwrap_or(usize::MAX);
        if count >= token_count {
            assert_eq!(count, token_count, "every bench word is one token");
            return text;
        }
        words.push(WORDS[index % WORDS.len()]);
        index += 1;
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn bench_embed(criterion: &mut Criterion) {
    let model_dir: PathBuf = match locate_model_dir(None) {
        Ok(directory) => directory,
        Err(error) => {
            println!("skipped: embedding model not found ({error})");
            return;
        }
    };
    let embedder = Embedder::load(&model_dir).expect("model loads");

    let mut group = criterion.benchmark_group("embed");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(8));
    let mut percentiles = Vec::new();
    for token_count in [16usize, 64, 128, 256] {
        let text = text_with_tokens(&embedder, token_count);
        group.bench_with_input(
            BenchmarkId::from_parameter(token_count),
            &text,
            |bencher, text| bencher.iter(|| embedder.embed(text).expect("embeds")),
        );
        // Criterion reports means and medians; the tail is measured here
        // over single calls.
        let mut samples: Vec<Duration> = (0..200)
            .map(|_| {
                let start = Instant::now();
                let _ = embedder.embed(&text).expect("embeds");
                start.elapsed()
            })
            .collect();
        samples.sort();
        percentiles.push((
            token_count,
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
        ));
    }
    group.finish();
    for (token_count, p50, p99) in percentiles {
        println!(
            "embed/{token_count} tokens: p50 {:.2} ms, p99 {:.2} ms (200 single calls)",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }

    let short_prompt = text_with_tokens(&embedder, 64);
    criterion.bench_function("token_count/64", |bencher| {
        bencher.iter(|| embedder.token_count(&short_prompt).expect("tokenizes"))
    });

    let batch: Vec<String> = (0..8)
        .map(|index| format!("{short_prompt} {index}"))
        .collect();
    let batch_refs: Vec<&str> = batch.iter().map(String::as_str).collect();
    criterion.bench_function("embed_batch/8x64", |bencher| {
        bencher.iter(|| embedder.embed_batch(&batch_refs).expect("embeds"))
    });
}

criterion_group!(benches, bench_embed);
criterion_main!(benches);
