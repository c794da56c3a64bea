//! The full input pipeline on the everyday benign mix (arena-hard, OASST,
//! CyberSecEval instruct and CyberSOCEval prompts, XSTest safe prompts), and
//! stage 2 alone on a prompt of up to 256 tokens.
//!
//! ```sh
//! cargo bench -p portcullis-safeguards --bench pipeline
//! ```
//!
//! Stage 2 runs when the embedding model is found (the gateway's lookup
//! order); the shared data is found as the tests find it. Besides
//! criterion's timings, the bench prints the escalation rate and per-request
//! p50/p99 over the mix.

use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use portcullis_safeguards::dataset::{
    EVERYDAY_SOURCES, LoadOptions, RowLabel, load_dataset, locate_shared_data,
};
use portcullis_safeguards::{Exchange, Safeguard};

fn everyday_mix() -> Vec<Exchange> {
    let Some(data) = locate_shared_data(Path::new(env!("CARGO_MANIFEST_DIR"))) else {
        eprintln!("skipped: shared data not found; using a built-in mix");
        return [
            "Write a poem about the sea.",
            "How do I sort a list in Python?",
            "Explain photosynthesis.",
        ]
        .iter()
        .map(|text| Exchange::from_user_text(text))
        .collect();
    };
    let mut mix = Vec::new();
    for source in EVERYDAY_SOURCES {
        let path = data.join("safeguards").join(format!("{source}.jsonl"));
        if let Ok(rows) = load_dataset(&path, LoadOptions::default()) {
            mix.extend(
                rows.into_iter()
                    .filter(|row| row.label == Some(RowLabel::Benign))
                    .map(|row| row.exchange),
            );
        }
    }
    mix
}

fn pipeline_benchmark(criterion: &mut Criterion) {
    let Ok(mut safeguard) = Safeguard::builtin() else {
        eprintln!("the built-in model does not load");
        return;
    };
    match safeguard.attach_embedding_model(None) {
        Ok(()) => eprintln!("stage 2 attached"),
        Err(error) => eprintln!("stage 2 not attached, measuring stage 1 alone: {error}"),
    }
    let mut profile = safeguard.default_cyber_profile();
    profile.allow_stage1_only = true;
    let mix = everyday_mix();

    // One pass over the whole mix for the escalation rate and percentiles.
    let mut latencies = Vec::with_capacity(mix.len());
    let mut escalated = 0usize;
    let mut blocked = 0usize;
    for exchange in &mix {
        let started = Instant::now();
        let verdict = safeguard.classify_exchange(exchange, &profile);
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        escalated += usize::from(verdict.escalated);
        blocked += usize::from(verdict.malicious);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "everyday mix: {} prompts, escalated {} ({:.2}%), blocked {} ({:.2}%), p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        mix.len(),
        escalated,
        100.0 * escalated as f64 / mix.len().max(1) as f64,
        blocked,
        100.0 * blocked as f64 / mix.len().max(1) as f64,
        at(0.5),
        at(0.99),
        latencies.last().copied().unwrap_or(0.0)
    );

    let mut group = criterion.benchmark_group("pipeline");
    group.sample_size(10);
    group.bench_function("everyday_mix_full_pass", |bencher| {
        bencher.iter(|| {
            for exchange in &mix {
                black_box(safeguard.classify_exchange(exchange, &profile).score);
            }
        })
    });
    group.finish();

    if let (Some(head), Ok(embedder)) = (
        safeguard.stage2_head().cloned(),
        portcullis_safeguards::MiniLmEmbedder::locate_and_load(None),
    ) {
        let stage2 = portcullis_safeguards::Stage2::new(std::sync::Arc::new(embedder), head);
        // About 200 tokens of ordinary English.
        let prompt = "Please review the following deployment plan for our web application and point out risks. ".repeat(12);
        criterion.bench_function("stage2_256_token_prompt", |bencher| {
            bencher.iter(|| black_box(stage2.probability(black_box(&prompt)).ok()))
        });
    }
}

criterion_group!(benches, pipeline_benchmark);
criterion_main!(benches);
