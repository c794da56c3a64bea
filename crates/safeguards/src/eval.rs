//! Evaluation: recall on malicious rows and false refusals on benign rows,
//! each with a Wilson 95% interval, broken down by source, category and
//! wrapper, with latency percentiles and the stage-2 escalation rate.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::classifier::Safeguard;
use crate::dataset::{EVERYDAY_SOURCES, LabeledRow, RowLabel};
use crate::profile::SafeguardProfile;

/// A proportion with its Wilson score 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proportion {
    pub successes: usize,
    pub trials: usize,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

impl Proportion {
    /// The Wilson score interval at 95% (z = 1.96). With no trials the rate
    /// and bounds are zero and one, meaning "unknown".
    pub fn wilson(successes: usize, trials: usize) -> Self {
        if trials == 0 {
            return Self {
                successes,
                trials,
                rate: 0.0,
                low: 0.0,
                high: 1.0,
            };
        }
        let z = 1.959_964f64;
        let n = trials as f64;
        let p = successes as f64 / n;
        let denominator = 1.0 + z * z / n;
        let centre = (p + z * z / (2.0 * n)) / denominator;
        let margin = z * ((p * (1.0 - p) / n) + z * z / (4.0 * n * n)).sqrt() / denominator;
        Self {
            successes,
            trials,
            rate: p,
            low: (centre - margin).max(0.0),
            high: (centre + margin).min(1.0),
        }
    }
}

/// Counts for one group of rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupCounts {
    pub malicious: usize,
    pub malicious_blocked: usize,
    pub benign: usize,
    pub benign_blocked: usize,
    pub harmful_other: usize,
    pub harmful_other_blocked: usize,
}

impl GroupCounts {
    fn add(&mut self, label: RowLabel, blocked: bool) {
        let (total, hits) = match label {
            RowLabel::Malicious => (&mut self.malicious, &mut self.malicious_blocked),
            RowLabel::Benign => (&mut self.benign, &mut self.benign_blocked),
            RowLabel::HarmfulOther => (&mut self.harmful_other, &mut self.harmful_other_blocked),
        };
        *total += 1;
        if blocked {
            *hits += 1;
        }
    }

    /// Share of malicious rows blocked.
    pub fn recall(&self) -> Option<Proportion> {
        (self.malicious > 0).then(|| Proportion::wilson(self.malicious_blocked, self.malicious))
    }

    /// Share of benign rows blocked.
    pub fn false_refusal(&self) -> Option<Proportion> {
        (self.benign > 0).then(|| Proportion::wilson(self.benign_blocked, self.benign))
    }

    /// Share of out-of-scope harmful rows blocked (the profile should allow them).
    pub fn out_of_scope_blocked(&self) -> Option<Proportion> {
        (self.harmful_other > 0)
            .then(|| Proportion::wilson(self.harmful_other_blocked, self.harmful_other))
    }
}

/// A group's counts and derived rates, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupReport {
    pub counts: GroupCounts,
    pub recall: Option<Proportion>,
    pub false_refusal: Option<Proportion>,
    pub out_of_scope_blocked: Option<Proportion>,
}

impl From<&GroupCounts> for GroupReport {
    fn from(counts: &GroupCounts) -> Self {
        Self {
            counts: counts.clone(),
            recall: counts.recall(),
            false_refusal: counts.false_refusal(),
            out_of_scope_blocked: counts.out_of_scope_blocked(),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyMicros {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencyMicros {
    pub fn from_samples(samples: &mut [f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |quantile: f64| {
            let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
            samples.get(index).copied().unwrap_or(0.0)
        };
        Self {
            p50: at(0.5),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or(0.0),
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
        }
    }
}

/// One misclassified row, for error analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Misclassified {
    pub id: String,
    pub source: String,
    pub label: RowLabel,
    pub score: f32,
    pub wrapper: Option<String>,
}

/// The full evaluation report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub profile: String,
    pub rows: usize,
    pub unlabelled_rows: usize,
    pub overall: GroupReport,
    /// The everyday benign sources (see [`EVERYDAY_SOURCES`]) together.
    pub everyday: GroupReport,
    pub by_source: BTreeMap<String, GroupReport>,
    /// Keyed `source/category`.
    pub by_category: BTreeMap<String, GroupReport>,
    /// Keyed by wrapper label; unwrapped rows are under `none`.
    pub by_wrapper: BTreeMap<String, GroupReport>,
    pub latency_micros: LatencyMicros,
    pub escalation_rate: Proportion,
    /// Escalations over the everyday benign rows only.
    pub everyday_escalation_rate: Proportion,
    pub stage2_missing: usize,
    /// Up to 100 misclassified rows, worst first.
    pub misclassified: Vec<Misclassified>,
}

/// Classifies every labelled row of `rows` and reports. `progress` is called
/// after each row with (done, total), for a progress bar.
pub fn evaluate(
    rows: &[LabeledRow],
    safeguard: &Safeguard,
    profile: &SafeguardProfile,
    progress: &mut dyn FnMut(usize, usize),
) -> EvalReport {
    let mut overall = GroupCounts::default();
    let mut everyday = GroupCounts::default();
    let mut by_source: BTreeMap<String, GroupCounts> = BTreeMap::new();
    let mut by_category: BTreeMap<String, GroupCounts> = BTreeMap::new();
    let mut by_wrapper: BTreeMap<String, GroupCounts> = BTreeMap::new();
    let mut latencies = Vec::with_capacity(rows.len());
    let mut escalated = 0usize;
    let mut everyday_rows = 0usize;
    let mut everyday_escalated = 0usize;
    let mut stage2_missing = 0usize;
    let mut unlabelled_rows = 0usize;
    let mut misclassified = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        progress(index + 1, rows.len());
        let Some(label) = row.label else {
            unlabelled_rows += 1;
            continue;
        };
        let started = Instant::now();
        let verdict = safeguard.classify_exchange(&row.exchange, profile);
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        let blocked = verdict.malicious;
        let is_everyday = EVERYDAY_SOURCES.contains(&row.source.as_str());
        if verdict.escalated {
            escalated += 1;
        }
        if verdict.stage2_missing {
            stage2_missing += 1;
        }
        if is_everyday && label == RowLabel::Benign {
            everyday.add(label, blocked);
            everyday_rows += 1;
            if verdict.escalated {
                everyday_escalated += 1;
            }
        }
        overall.add(label, blocked);
        by_source
            .entry(row.source.clone())
            .or_default()
            .add(label, blocked);
        by_category
            .entry(format!("{}/{}", row.source, row.category))
            .or_default()
            .add(label, blocked);
        by_wrapper
            .entry(row.wrapper.clone().unwrap_or_else(|| "none".to_owned()))
            .or_default()
            .add(label, blocked);
        if blocked != label.should_block() {
            misclassified.push(Misclassified {
                id: row.id.clone(),
                source: row.source.clone(),
                label,
                score: verdict.score,
                wrapper: row.wrapper.clone(),
            });
        }
    }
    misclassified.sort_by(|a, b| {
        let distance = |m: &Misclassified| {
            if m.label.should_block() {
                m.score
            } else {
                1.0 - m.score
            }
        };
        distance(a).total_cmp(&distance(b))
    });
    misclassified.truncate(100);
    let labelled = rows.len() - unlabelled_rows;
    let convert = |map: BTreeMap<String, GroupCounts>| {
        map.iter()
            .map(|(k, v)| (k.clone(), GroupReport::from(v)))
            .collect()
    };
    EvalReport {
        profile: profile.name.clone(),
        rows: rows.len(),
        unlabelled_rows,
        overall: GroupReport::from(&overall),
        everyday: GroupReport::from(&everyday),
        by_source: convert(by_source),
        by_category: convert(by_category),
        by_wrapper: convert(by_wrapper),
        latency_micros: LatencyMicros::from_samples(&mut latencies),
        escalation_rate: Proportion::wilson(escalated, labelled),
        everyday_escalation_rate: Proportion::wilson(everyday_escalated, everyday_rows),
        stage2_missing,
        misclassified,
    }
}

fn percent(proportion: Option<Proportion>) -> String {
    match proportion {
        Some(p) => format!(
            "{:6.2}% [{:5.2}-{:5.2}] {}/{}",
            p.rate * 100.0,
            p.low * 100.0,
            p.high * 100.0,
            p.successes,
            p.trials
        ),
        None => "-".to_owned(),
    }
}

impl EvalReport {
    /// A human-readable table for the terminal.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "profile `{}`: {} rows ({} unlabelled)\n",
            self.profile, self.rows, self.unlabelled_rows
        ));
        out.push_str(&format!(
            "{:<44} {:>34} {:>34} {:>34}\n",
            "group",
            "recall (malicious blocked)",
            "false refusals (benign blocked)",
            "out-of-scope blocked"
        ));
        let mut line = |name: &str, group: &GroupReport| {
            out.push_str(&format!(
                "{:<44} {:>34} {:>34} {:>34}\n",
                name,
                percent(group.recall),
                percent(group.false_refusal),
                percent(group.out_of_scope_blocked)
            ));
        };
        line("ALL", &self.overall);
        line("everyday benign sets", &self.everyday);
        for (name, group) in &self.by_source {
            line(&format!("source {name}"), group);
        }
        for (name, group) in &self.by_wrapper {
            line(&format!("wrapper {name}"), group);
        }
        out.push_str(&format!(
            "latency µs: p50 {:.1}  p99 {:.1}  max {:.1}  mean {:.1}\n",
            self.latency_micros.p50,
            self.latency_micros.p99,
            self.latency_micros.max,
            self.latency_micros.mean
        ));
        out.push_str(&format!(
            "escalated to stage 2: {:.2}% of all rows, {:.2}% of everyday benign rows; stage 2 missing for {} rows\n",
            self.escalation_rate.rate * 100.0,
            self.everyday_escalation_rate.rate * 100.0,
            self.stage2_missing
        ));
        out
    }

    /// The per-category table, which is long, separately.
    pub fn category_table(&self) -> String {
        let mut out = String::new();
        for (name, group) in &self.by_category {
            out.push_str(&format!(
                "{:<70} {:>34} {:>34}\n",
                name,
                percent(group.recall),
                percent(group.false_refusal)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_matches_reference_values() {
        // Reference: 97 of 100 gives [0.9154, 0.9897] (Wilson, z = 1.96).
        let p = Proportion::wilson(97, 100);
        assert!((p.low - 0.9154).abs() < 5e-4, "{p:?}");
        assert!((p.high - 0.9897).abs() < 5e-4, "{p:?}");
        let zero = Proportion::wilson(0, 250);
        assert!(zero.low < 1e-12);
        assert!((zero.high - 0.0151).abs() < 5e-4, "{zero:?}");
        assert_eq!(Proportion::wilson(0, 0).high, 1.0);
    }

    #[test]
    fn latency_percentiles() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let latency = LatencyMicros::from_samples(&mut samples);
        assert_eq!(latency.p50, 51.0);
        assert_eq!(latency.p99, 99.0);
        assert_eq!(latency.max, 100.0);
    }
}
