//! Measures recall on name variants derived from the OFAC SDN sample and the
//! false-match rate on ordinary names, across thresholds. This is how the
//! default threshold was chosen; rerun it when the scoring changes:
//!
//! ```sh
//! cargo run --release -p portcullis-screening --example threshold_sweep
//! ```

#[path = "../tests/it/common/mod.rs"]
mod common;

use portcullis_screening::{ComparableName, Screener, ScreeningConfig, name_similarity};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(screening_dir) = common::shared_screening_dir() else {
        return Ok(());
    };
    let list = common::shared_sdn_list(&screening_dir);
    let mut exact = Vec::new();
    let mut aliases = Vec::new();
    let mut reordered = Vec::new();
    let mut misspelt = Vec::new();
    for (seed, entry) in list.entries().iter().step_by(17).enumerate() {
        if matches!(entry.entry_type.as_deref(), Some("vessel" | "aircraft")) {
            continue;
        }
        exact.push(entry.primary_name.clone());
        if let Some(alias) = entry.aliases.first() {
            aliases.push(alias.clone());
        }
        if let Some((surname, given)) = entry.primary_name.split_once(", ") {
            reordered.push(format!("{surname} {given}"));
        }
        misspelt.push(common::misspell(&entry.primary_name, seed));
    }
    let ordinary = common::ordinary_names();
    println!(
        "list {} with {} distinct names",
        list.list_version(),
        list.indexed_name_count()
    );
    // A low threshold also lowers the token pre-filter, so every threshold
    // below is judged on the same candidates.
    let screener = Screener::new(
        list,
        ScreeningConfig {
            potential_match_threshold: 0.5,
        },
    )?;
    let best_scores = |names: &[String]| -> Vec<f64> {
        names
            .iter()
            .map(|name| screener.screen_name(name).score().unwrap_or(0.0))
            .collect()
    };
    let categories: Vec<(&str, &[String], Vec<f64>)> = [
        ("exact", exact.as_slice()),
        ("alias", aliases.as_slice()),
        ("reordered", reordered.as_slice()),
        ("misspelt", misspelt.as_slice()),
    ]
    .into_iter()
    .map(|(label, names)| (label, names, best_scores(names)))
    .collect();
    let ordinary_scores = best_scores(&ordinary);

    print!("{:>9}", "threshold");
    for (label, names, _) in &categories {
        print!(" {:>13}", format!("{label}/{}", names.len()));
    }
    println!(" {:>13}", format!("flagged/{}", ordinary.len()));
    for step in 0..=18 {
        let threshold = 0.80 + f64::from(step) * 0.01;
        print!("{threshold:>9.2}");
        for (_, _, scores) in &categories {
            let found = scores.iter().filter(|score| **score >= threshold).count();
            print!(" {:>13.3}", found as f64 / scores.len() as f64);
        }
        let flagged = ordinary_scores
            .iter()
            .filter(|score| **score >= threshold)
            .count();
        println!(" {flagged:>13}");
    }

    let mut closest: Vec<(f64, &String)> = ordinary_scores.iter().copied().zip(&ordinary).collect();
    closest.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("ordinary names closest to a listed name:");
    for (score, name) in closest.iter().take(12) {
        let matched = screener
            .screen_name(name)
            .closest_match
            .map(|found| found.matched_name)
            .unwrap_or_default();
        println!("  {score:.3} {name} -> {matched}");
    }
    for (label, names, scores) in &categories {
        let mut lowest: Vec<(f64, &String)> = scores.iter().copied().zip(names.iter()).collect();
        lowest.sort_by(|a, b| a.0.total_cmp(&b.0));
        println!("lowest-scoring {label} variants:");
        for (score, name) in lowest.iter().take(5) {
            println!("  {score:.3} {name}");
        }
    }

    let pairs = std::fs::read_to_string(screening_dir.join("cross_script_pairs.csv"))?;
    println!("cross-script pairs:");
    for line in pairs
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() < 3 {
            continue;
        }
        let score = name_similarity(
            &ComparableName::from_raw(fields[0]),
            &ComparableName::from_raw(fields[1]),
        );
        println!(
            "  {score:.3} (min {}) {} -> {}",
            fields[2], fields[0], fields[1]
        );
    }
    Ok(())
}
