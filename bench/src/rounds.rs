//! Modes, rounds and their summary. A mode is `NAME[:SERVER-ARG ...]`: one of the server's
//! modes, with arguments for its server alone (`sync:--max-versions-per-object=0` beside
//! `sync` compares a setting in one run). With `--rounds N` the modes run N times, taking
//! turns, so each round sees the machine as it was then; the summary gives every mode's
//! median and range, and its CPU per review against `bare` *of the same round*, which is
//! what stays steady on a shared machine when the absolute figures drift.

use anyhow::{Result, bail};

/// The modes `logistis serve` can be started in.
pub const KINDS: [&str; 5] = ["bare", "discard", "async", "sync", "postgres"];

/// One entry of `--modes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mode {
    /// As written: the label of its rows.
    pub label: String,
    /// `bare`, `discard`, `async`, `sync` or `postgres`.
    pub kind: String,
    /// Extra arguments for this mode's server only.
    pub server_args: Vec<String>,
}

impl Mode {
    pub fn parse(spec: &str) -> Result<Mode> {
        let spec = spec.trim();
        let (kind, args) = spec.split_once(':').unwrap_or((spec, ""));
        if !KINDS.contains(&kind) {
            bail!(
                "unknown mode {kind:?} in {spec:?} (modes: {}; a mode may carry server arguments after a colon, e.g. sync:--max-versions-per-object=0)",
                KINDS.join(", ")
            );
        }
        let server_args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
        if let Some(arg) = server_args.iter().find(|a| !a.starts_with('-')) {
            bail!(
                "{spec:?}: {arg:?} is not a server flag (write flags with their values, e.g. --store-memory=256Mi)"
            );
        }
        Ok(Mode {
            label: spec.to_owned(),
            kind: kind.to_owned(),
            server_args,
        })
    }
}

/// What one run of one mode measured, as far as the summary needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub reviews_per_second: f64,
    pub p99_us: u64,
    pub server_cpu_us: f64,
}

/// The median and the range of some figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no figures. The median of an even count is the mean of the middle two.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: values[0],
            max: values[n - 1],
        })
    }
}

/// Every round's rows: `rounds[r][m]` is mode `m` in round `r` (`None` if it failed).
#[derive(Debug, Default)]
pub struct Rounds {
    pub labels: Vec<String>,
    pub rounds: Vec<Vec<Option<Row>>>,
}

/// A mode's line of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub label: String,
    pub runs: usize,
    pub reviews_per_second: Spread,
    pub p99_us: Spread,
    pub server_cpu_us: Spread,
    /// CPU per review over `bare`'s of the same round, for every mode but `bare` itself
    /// (when the modes include it).
    pub cpu_over_bare: Option<Spread>,
}

impl Rounds {
    pub fn new(labels: Vec<String>) -> Rounds {
        Rounds {
            labels,
            rounds: Vec::new(),
        }
    }

    pub fn summary(&self) -> Vec<Summary> {
        let bare = self.labels.iter().position(|l| l == "bare");
        let column = |m: usize| self.rounds.iter().filter_map(move |round| round[m]);
        self.labels
            .iter()
            .enumerate()
            .filter_map(|(m, label)| {
                let rows: Vec<Row> = column(m).collect();
                let cpu_over_bare = bare.filter(|&b| b != m).and_then(|b| {
                    Spread::of(self.rounds.iter().filter_map(|round| {
                        let (this, bare) = (round[m]?, round[b]?);
                        (bare.server_cpu_us > 0.0).then(|| this.server_cpu_us / bare.server_cpu_us)
                    }))
                });
                Some(Summary {
                    label: label.clone(),
                    runs: rows.len(),
                    reviews_per_second: Spread::of(rows.iter().map(|r| r.reviews_per_second))?,
                    p99_us: Spread::of(rows.iter().map(|r| r.p99_us as f64))?,
                    server_cpu_us: Spread::of(rows.iter().map(|r| r.server_cpu_us))?,
                    cpu_over_bare,
                })
            })
            .collect()
    }
}

/// `median (min–max)`, with `decimals` after the point.
pub fn show(spread: Spread, decimals: usize) -> String {
    if spread.min == spread.max {
        return format!("{:.decimals$}", spread.median);
    }
    format!(
        "{:.decimals$} ({:.decimals$}–{:.decimals$})",
        spread.median, spread.min, spread.max
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mode_may_carry_server_arguments() {
        let plain = Mode::parse("sync").unwrap();
        assert_eq!(plain.kind, "sync");
        assert!(plain.server_args.is_empty());
        let tuned = Mode::parse("sync:--max-versions-per-object=0 --store-memory=256Mi").unwrap();
        assert_eq!(tuned.kind, "sync");
        assert_eq!(
            tuned.label,
            "sync:--max-versions-per-object=0 --store-memory=256Mi"
        );
        assert_eq!(
            tuned.server_args,
            ["--max-versions-per-object=0", "--store-memory=256Mi"]
        );
    }

    #[test]
    fn unknown_modes_and_stray_words_are_refused_with_the_reason() {
        let unknown = Mode::parse("fast").unwrap_err().to_string();
        assert!(unknown.contains("unknown mode \"fast\""), "{unknown}");
        assert!(
            unknown.contains("bare, discard, async, sync, postgres"),
            "{unknown}"
        );
        let stray = Mode::parse("sync:--store-memory 256Mi")
            .unwrap_err()
            .to_string();
        assert!(stray.contains("\"256Mi\" is not a server flag"), "{stray}");
    }

    #[test]
    fn medians_and_ranges() {
        assert_eq!(Spread::of([]), None);
        let odd = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        let even = Spread::of([4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((even.median, even.min, even.max), (2.5, 1.0, 4.0));
        assert_eq!(show(odd, 1), "2.0 (1.0–3.0)");
        assert_eq!(show(Spread::of([7.0]).unwrap(), 0), "7");
    }

    fn row(cpu: f64) -> Option<Row> {
        Some(Row {
            reviews_per_second: 1000.0 / cpu,
            p99_us: cpu as u64 * 10,
            server_cpu_us: cpu,
        })
    }

    #[test]
    fn ratios_are_taken_within_each_round() {
        // The machine slows down by half in the second round: both modes move, the ratio
        // of each round stays 3, while the ratio of the medians would not be exact.
        let mut rounds = Rounds::new(vec!["bare".into(), "sync".into()]);
        rounds.rounds.push(vec![row(40.0), row(120.0)]);
        rounds.rounds.push(vec![row(60.0), row(180.0)]);
        rounds.rounds.push(vec![row(50.0), None]);
        let summary = rounds.summary();
        assert_eq!(summary.len(), 2);
        let (bare, sync) = (&summary[0], &summary[1]);
        assert_eq!(bare.runs, 3);
        assert_eq!(bare.server_cpu_us.median, 50.0);
        assert_eq!(bare.cpu_over_bare, None);
        assert_eq!(sync.runs, 2);
        assert_eq!(sync.server_cpu_us.median, 150.0);
        let ratio = sync.cpu_over_bare.unwrap();
        assert_eq!((ratio.median, ratio.min, ratio.max), (3.0, 3.0, 3.0));
        assert_eq!(sync.p99_us.max, 1800.0);
    }

    #[test]
    fn without_bare_there_is_no_ratio_and_a_mode_that_never_ran_is_left_out() {
        let mut rounds = Rounds::new(vec!["sync".into(), "async".into()]);
        rounds.rounds.push(vec![row(100.0), None]);
        let summary = rounds.summary();
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].label, "sync");
        assert_eq!(summary[0].cpu_over_bare, None);
    }
}
