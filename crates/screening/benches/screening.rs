//! Screening throughput against the OFAC SDN sample: 10,000 names, most of
//! them ordinary (as real sign-ups are) and one in ten a misspelt listed name.
//!
//! ```sh
//! cargo bench -p portcullis-screening --bench screening
//! ```
//!
//! Needs the shared reference data; without it the bench prints why it
//! skipped and measures nothing.

#[path = "../tests/it/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_screening::{Screener, ScreeningConfig};

/// Ten thousand distinct names: given names crossed with surnames taken from
/// the ordinary-name fixture, with every tenth replaced by a misspelt primary
/// name from the list so the scoring of real candidates is exercised too.
fn benchmark_names(screener: &Screener) -> Vec<String> {
    let ordinary = common::ordinary_names();
    let people: Vec<Vec<&str>> = ordinary
        .iter()
        .map(|name| name.split_whitespace().collect::<Vec<_>>())
        .filter(|parts| parts.len() >= 2)
        .collect();
    let given_names: Vec<&str> = people.iter().map(|parts| parts[0]).collect();
    let surnames: Vec<&str> = people.iter().map(|parts| parts[parts.len() - 1]).collect();
    let entries = screener.list().entries();
    let mut names = Vec::with_capacity(10_000);
    let mut seed = 0usize;
    'fill: for given in &given_names {
        for surname in surnames.iter().rev() {
            if names.len() == 10_000 {
                break 'fill;
            }
            if names.len() % 10 == 9 {
                let entry = &entries[(seed * 7919) % entries.len()];
                names.push(common::misspell(&entry.primary_name, seed));
                seed += 1;
            } else {
                names.push(format!("{given} {surname}"));
            }
        }
    }
    names
}

fn screening_benchmarks(criterion: &mut Criterion) {
    let Some(screening_dir) = common::shared_screening_dir() else {
        return;
    };
    let list = common::shared_sdn_list(&screening_dir);
    let screener = match Screener::new(list, ScreeningConfig::default()) {
        Ok(screener) => screener,
        Err(error) => {
            eprintln!("invalid default screening config: {error}");
            return;
        }
    };
    let names = benchmark_names(&screener);
    assert_eq!(names.len(), 10_000);
    let flagged = names
        .iter()
        .filter(|name| {
            screener.screen_name(name).status == portcullis_domain::ScreeningStatus::PotentialMatch
        })
        .count();
    println!(
        "{} names against {} listed names ({}), {flagged} potential matches",
        names.len(),
        screener.list().indexed_name_count(),
        screener.list().list_version()
    );

    let parties: Vec<Vec<String>> = names.iter().map(|name| vec![name.clone()]).collect();
    let mut group = criterion.benchmark_group("screening");
    group.sample_size(10);
    // Re-screening a known population when the list changes: name parts that
    // recur across people are compared with the index once.
    group.bench_function("screen_batch_10000_names_against_sdn_sample", |bencher| {
        bencher.iter(|| screener.screen_batch(&parties))
    });
    // Screening each name on its own, as on a principal's first sight.
    group.bench_function("screen_name_10000_times_against_sdn_sample", |bencher| {
        bencher.iter(|| {
            names
                .iter()
                .map(|name| screener.screen_name(name).score().unwrap_or(0.0))
                .sum::<f64>()
        })
    });
    group.finish();
}

criterion_group!(benches, screening_benchmarks);
criterion_main!(benches);
