//! The one table the benchmark prints: each figure for native, weft and
//! Twisted, the ratios, and whether weft meets its target.

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
    /// Native, weft, Twisted.
    pub values: [Option<f64>; 3],
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
            vs_native: None,
            vs_twisted: None,
            absolute: None,
        }
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
        Some(self.values[1]? / self.values[other]?)
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

/// The table, with a header naming the machine and how it was measured.
pub fn render(header: &[String], rows: &[Row]) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<38} {:>12} {:>12} {:>12} {:>8} {:>8}  targets",
        "figure", "native", "weft", "Twisted", "w/nat", "w/Tw"
    );
    let _ = writeln!(out, "{}", "-".repeat(110));
    for row in rows {
        let _ = writeln!(
            out,
            "{:<38} {:>12} {:>12} {:>12} {:>8} {:>8}  {}",
            row.name,
            number(row.values[0]),
            number(row.values[1]),
            number(row.values[2]),
            ratio(row.ratio(0)),
            ratio(row.ratio(2)),
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
