//! The one table the benchmark prints: each figure for native, weft and
//! Twisted, the ratios (each round's, where the runs were interleaved),
//! and whether weft meets its target.

use std::fmt::Write as _;

/// Which way a figure is better.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One figure for each implementation, and weft's targets for it.
pub struct Row {
    pub name: String,
    pub better: Better,
    /// Native, weft, Twisted: the median of their runs.
    pub values: [Option<f64>; 3],
    /// How far apart their runs were: (max - min) / median.
    pub spreads: [Option<f64>; 3],
    /// weft's run over native's (0) and over Twisted's (2) in each round
    /// of interleaved runs; empty where the runs were not paired.
    pub pair_ratios: [Vec<f64>; 3],
    /// weft/native must be at least this (higher is better) or at most
    /// this (lower is better).
    pub vs_native: Option<f64>,
    /// weft/Twisted must be at least this (for throughput figures).
    pub vs_twisted: Option<f64>,
    /// weft's figure must be at most this (lower is better).
    pub absolute: Option<f64>,
}

impl Row {
    pub fn new(name: impl Into<String>, better: Better, values: [Option<f64>; 3]) -> Row {
        Row {
            name: name.into(),
            better,
            values,
            spreads: [None; 3],
            pair_ratios: Default::default(),
            vs_native: None,
            vs_twisted: None,
            absolute: None,
        }
    }

    /// A figure measured in several runs each: the medians, and the spreads.
    /// The runs are interleaved, one of each kind a round: weft's ratio to
    /// each other is the median of the rounds' ratios.
    pub fn of_runs(name: impl Into<String>, better: Better, runs: [Vec<f64>; 3]) -> Row {
        let mut row = Row::new(name, better, runs.each_ref().map(|r| median(r)));
        row.spreads = runs.each_ref().map(|r| spread(r));
        for other in [0, 2] {
            if runs[other].len() == runs[1].len() {
                row.pair_ratios[other] = runs[1]
                    .iter()
                    .zip(&runs[other])
                    .filter(|(_, base)| **base != 0.0)
                    .map(|(weft, base)| weft / base)
                    .collect();
            }
        }
        row
    }

    pub fn vs_native(mut self, target: f64) -> Row {
        self.vs_native = Some(target);
        self
    }

    pub fn vs_twisted(mut self, target: f64) -> Row {
        self.vs_twisted = Some(target);
        self
    }

    pub fn absolute(mut self, target: f64) -> Row {
        self.absolute = Some(target);
        self
    }

    fn ratio(&self, other: usize) -> Option<f64> {
        if let Some(paired) = median(&self.pair_ratios[other]) {
            return Some(paired);
        }
        let base = self.values[other].filter(|base| *base != 0.0)?;
        Some(self.values[1]? / base)
    }

    /// The lowest and highest of the rounds' ratios to `other`, "0.74-0.79",
    /// for two rounds or more.
    fn ratio_range(&self, other: usize) -> String {
        let ratios = &self.pair_ratios[other];
        if ratios.len() < 2 {
            return "-".into();
        }
        let low = ratios.iter().copied().fold(f64::MAX, f64::min);
        let high = ratios.iter().copied().fold(f64::MIN, f64::max);
        format!("{low:.2}-{high:.2}")
    }

    /// "ok" or "MISS" for each target set, or "" without targets.
    fn verdict(&self) -> String {
        let mut verdicts = Vec::new();
        let meets = |value: f64, target: f64, better: Better| match better {
            Better::Higher => value >= target,
            Better::Lower => value <= target,
        };
        if let (Some(target), Some(ratio)) = (self.vs_native, self.ratio(0)) {
            verdicts.push(format!(
                "{} native {}{target}",
                ok(meets(ratio, target, self.better)),
                sign(self.better)
            ));
        }
        if let (Some(target), Some(ratio)) = (self.vs_twisted, self.ratio(2)) {
            verdicts.push(format!(
                "{} Twisted {}{target}",
                ok(meets(ratio, target, self.better)),
                sign(self.better)
            ));
        }
        if let (Some(target), Some(value)) = (self.absolute, self.values[1]) {
            verdicts.push(format!(
                "{} {}{target}",
                ok(value <= target),
                sign(Better::Lower)
            ));
        }
        verdicts.join(", ")
    }
}

/// The middle value (the upper middle of an even count), if any.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// (max - min) / median, for two runs or more.
fn spread(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    let median = median(values).filter(|median| *median != 0.0)?;
    Some((max - min) / median)
}

fn ok(met: bool) -> &'static str {
    if met { "ok" } else { "MISS" }
}

fn sign(better: Better) -> &'static str {
    match better {
        Better::Higher => ">=",
        Better::Lower => "<=",
    }
}

/// A figure with thousands separators, or "-" if absent.
fn number(value: Option<f64>) -> String {
    let Some(value) = value else {
        return "-".into();
    };
    if value.abs() < 100.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |r| format!("{r:.2}"))
}

/// Native's and weft's spreads as percentages, "3/12".
fn spreads(row: &Row) -> String {
    let percent = |s: Option<f64>| s.map_or_else(|| "-".into(), |s| format!("{:.0}", s * 100.0));
    if row.spreads[..2].iter().all(Option::is_none) {
        return "-".into();
    }
    format!("{}/{}", percent(row.spreads[0]), percent(row.spreads[1]))
}

/// The table, with a header naming the machine and how it was measured.
pub fn render(header: &[String], rows: &[Row]) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<44} {:>12} {:>12} {:>12} {:>6} {:>10} {:>6} {:>10} {:>8}  targets",
        "figure", "native", "weft", "Twisted", "w/nat", "rounds", "w/Tw", "rounds", "spread%"
    );
    let _ = writeln!(out, "{}", "-".repeat(145));
    for row in rows {
        let _ = writeln!(
            out,
            "{:<44} {:>12} {:>12} {:>12} {:>6} {:>10} {:>6} {:>10} {:>8}  {}",
            row.name,
            number(row.values[0]),
            number(row.values[1]),
            number(row.values[2]),
            ratio(row.ratio(0)),
            row.ratio_range(0),
            ratio(row.ratio(2)),
            row.ratio_range(2),
            spreads(row),
            row.verdict()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_group_thousands() {
        assert_eq!(number(Some(1_234_567.4)), "1,234,567");
        assert_eq!(number(Some(512.0)), "512");
        assert_eq!(number(Some(12.34)), "12.3");
        assert_eq!(number(None), "-");
    }

    #[test]
    fn runs_give_medians_and_spreads() {
        let row = Row::of_runs(
            "r",
            Better::Higher,
            [vec![90.0, 110.0, 100.0], vec![50.0], vec![]],
        );
        assert_eq!(row.values, [Some(100.0), Some(50.0), None]);
        assert_eq!(row.spreads, [Some(0.2), None, None]);
        assert_eq!(spreads(&row), "20/-");
        assert_eq!(median(&[3.0, 1.0]), Some(3.0));
    }

    #[test]
    fn interleaved_runs_give_the_median_of_each_rounds_ratio() {
        // Rounds of 0.9x, 0.5x (a slow moment for weft's run) and 0.95x:
        // the median round is 0.9x, where the medians alone say 0.75x.
        let row = Row::of_runs(
            "r",
            Better::Higher,
            [vec![100.0, 300.0, 200.0], vec![90.0, 150.0, 190.0], vec![]],
        );
        assert_eq!(row.ratio(0), Some(0.9));
        assert_eq!(row.ratio_range(0), "0.50-0.95");
        assert_eq!(row.ratio(2), None);
        let drifting = Row::of_runs(
            "d",
            Better::Higher,
            [vec![100.0, 200.0], vec![90.0, 160.0], vec![]],
        );
        assert_eq!(drifting.ratio_range(0), "0.80-0.90");
    }

    #[test]
    fn verdicts_follow_the_direction_of_better() {
        let fast = Row::new("r", Better::Higher, [Some(100.0), Some(95.0), Some(10.0)])
            .vs_native(0.9)
            .vs_twisted(3.0);
        assert_eq!(fast.verdict(), "ok native >=0.9, ok Twisted >=3");
        let heavy = Row::new("m", Better::Lower, [Some(100.0), Some(160.0), None]).vs_native(1.5);
        assert_eq!(heavy.verdict(), "MISS native <=1.5");
        let quick = Row::new("s", Better::Lower, [None, Some(20.0), None]).absolute(50.0);
        assert_eq!(quick.verdict(), "ok <=50");
    }
}
