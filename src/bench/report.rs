//! What a bench run found, three ways: JSON for scripts (schema "poc-bench/1", documented in the
//! README), a Markdown table for people, and one SVG bar chart per suite (each peer as a ratio to
//! the suite's baseline, with the spread of its samples).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use super::measure::Summary;
use super::{fail, Machine, Result};

pub const SCHEMA: &str = "poc-bench/1";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub schema: String,
    pub poc_version: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub seconds: f64,
    pub machine: Machine,
    pub peers: Vec<PeerInfo>,
    pub suites: Vec<SuiteReport>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PeerInfo {
    pub name: String,
    pub version: String,
    /// Why it was not measured, when it was asked for but could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SuiteReport {
    /// sysbench, start, update or net.
    pub name: String,
    pub title: String,
    /// The peer (row name) every ratio is taken against.
    pub baseline: String,
    /// How the suite was scaled and anything a reader needs to reproduce it.
    pub notes: Vec<String>,
    pub results: Vec<Row>,
}

/// One figure of one peer in one test.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// The test (e.g. "cpu", "fileio-volume", "start").
    pub case: String,
    /// The peer or variant measured (e.g. "poc", "floor", "plain netns").
    pub peer: String,
    /// What the figure is (e.g. "events/s", "wall time").
    pub metric: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub samples: Vec<f64>,
    /// Median and spread of the samples, once the suite is finished (None before, or without
    /// samples).
    pub summary: Option<Summary>,
    /// This row's median over the baseline's median for the same case.
    pub ratio: Option<f64>,
    /// The command line of one run, as a reader would type it.
    pub command: String,
    /// Secondary figures: medians by name (e.g. "latency_avg_ms").
    pub extra: BTreeMap<String, f64>,
    /// This row is its case's baseline besides (or instead of) the suite's `baseline` peer: for
    /// suites whose cases have different baselines (net: poc without a network for start times,
    /// a plain netns for RTT and throughput).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub baseline: bool,
}

impl Row {
    pub fn new(case: &str, peer: &str, metric: &str, unit: &str, higher_is_better: bool) -> Self {
        Row {
            case: case.into(),
            peer: peer.into(),
            metric: metric.into(),
            unit: unit.into(),
            higher_is_better,
            samples: Vec::new(),
            summary: None,
            ratio: None,
            command: String::new(),
            extra: BTreeMap::new(),
            baseline: false,
        }
    }

    /// Marks the row as its case's baseline.
    pub fn baseline(mut self) -> Self {
        self.baseline = true;
        self
    }

    pub fn median(&self) -> Option<f64> {
        self.summary.map(|s| s.median)
    }
}

/// What one run measured: the row's sample, and secondary figures by name.
pub type Figures = (f64, BTreeMap<String, f64>);

/// Secondary figures of each run, by (case, peer): one map of figures per run.
pub type Extras = BTreeMap<(String, String), Vec<BTreeMap<String, f64>>>;

impl SuiteReport {
    /// Summaries and ratios, once every sample is in. `extras` are per-sample secondary figures.
    pub fn finish(&mut self, extras: &Extras) {
        for row in &mut self.results {
            row.summary = Summary::of(&row.samples);
            if let Some(samples) = extras.get(&(row.case.clone(), row.peer.clone())) {
                let mut names: Vec<&String> = samples.iter().flat_map(|m| m.keys()).collect();
                names.sort();
                names.dedup();
                for name in names {
                    let values: Vec<f64> = samples
                        .iter()
                        .filter_map(|m| m.get(name))
                        .copied()
                        .collect();
                    if let Some(s) = Summary::of(&values) {
                        row.extra.insert(name.clone(), s.median);
                    }
                }
            }
        }
        let base: BTreeMap<String, f64> = self
            .results
            .iter()
            .filter(|r| r.peer == self.baseline || r.baseline)
            .filter_map(|r| Some((r.case.clone(), r.median()?)))
            .collect();
        for row in &mut self.results {
            let case = row.case.split(':').next().unwrap_or(&row.case).to_string();
            let b = base.get(&row.case).or_else(|| base.get(&case));
            row.ratio = b
                .filter(|b| **b != 0.0)
                .and_then(|b| Some(row.median()? / b));
        }
    }

    /// The median of `peer`'s row in `case`, once finished.
    pub fn median(&self, case: &str, peer: &str) -> Option<f64> {
        self.results
            .iter()
            .find(|r| r.case == case && r.peer == peer)
            .and_then(Row::median)
    }

    /// The baseline's median for `row`'s case.
    fn baseline_of(&self, row: &Row) -> Option<f64> {
        let case = row.case.split(':').next().unwrap_or(&row.case);
        self.results
            .iter()
            .find(|r| {
                (r.peer == self.baseline || r.baseline) && (r.case == row.case || r.case == case)
            })
            .and_then(Row::median)
    }

    pub fn markdown(&self, out: &mut String) {
        let _ = writeln!(out, "## {}\n", self.title);
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        let _ = writeln!(
            out,
            "\n| test | peer | figure | median | spread (p10-p90) | n | / {} |",
            self.baseline
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|");
        for row in &self.results {
            let ratio = row.ratio.map_or("-".to_string(), |r| format!("{r:.3}"));
            let figures = match &row.summary {
                Some(s) => format!(
                    "{} | {} - {} | {}",
                    figure(s.median),
                    figure(s.p10),
                    figure(s.p90),
                    s.n
                ),
                None => "- | - | 0".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} ({}{}) | {figures} | {ratio} |",
                row.case,
                row.peer,
                row.metric,
                row.unit,
                if row.higher_is_better {
                    ", higher is better"
                } else {
                    ""
                },
            );
        }
        let with_extra: Vec<&Row> = self
            .results
            .iter()
            .filter(|r| !r.extra.is_empty())
            .collect();
        if !with_extra.is_empty() {
            out.push_str("\nSecondary figures (medians):\n\n");
            for row in with_extra {
                let parts: Vec<String> = row
                    .extra
                    .iter()
                    .map(|(k, v)| format!("{k} {}", figure(*v)))
                    .collect();
                let _ = writeln!(out, "- {} / {}: {}", row.case, row.peer, parts.join(", "));
            }
        }
        out.push_str("\nCommands (one run each):\n\n");
        for row in &self.results {
            let _ = writeln!(out, "- {} / {}: `{}`", row.case, row.peer, row.command);
        }
        out.push('\n');
    }

    /// The suite's chart: each case a group, each peer a bar of its ratio to the baseline, the
    /// whisker from the p10 to the p90 sample (over the baseline's median).
    pub fn svg(&self) -> String {
        let mut groups: Vec<(String, Vec<crate::plot::Bar>)> = Vec::new();
        for row in &self.results {
            let (Some(ratio), Some(base), Some(s)) =
                (row.ratio, self.baseline_of(row), row.summary)
            else {
                continue;
            };
            let bar = crate::plot::Bar {
                label: row.peer.clone(),
                value: ratio,
                low: s.p10 / base,
                high: s.p90 / base,
            };
            let title = format!("{} ({})", row.case, row.metric);
            match groups.iter_mut().find(|(t, _)| *t == title) {
                Some((_, bars)) => bars.push(bar),
                None => groups.push((title, vec![bar])),
            }
        }
        crate::plot::bars(
            &self.title,
            &format!(
                "ratio to {} (median; whiskers: p10-p90 of the samples)",
                self.baseline
            ),
            &groups,
            1.0,
        )
    }
}

/// A figure with about four significant digits.
fn figure(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::from("# poc bench\n\n");
        let m = &self.machine;
        let _ = writeln!(
            out,
            "- machine: {}, kernel {}, cgroup {}, {} CPUs ({}), {:.1} GiB memory",
            if m.os.is_empty() { "Linux" } else { &m.os },
            m.kernel,
            m.cgroup,
            m.cpus,
            m.cpu_model,
            m.memory_bytes as f64 / (1u64 << 30) as f64
        );
        let _ = writeln!(
            out,
            "- poc {}; started {}, took {:.0} s",
            self.poc_version, self.started, self.seconds
        );
        for peer in &self.peers {
            match &peer.skipped {
                Some(why) => {
                    let _ = writeln!(out, "- {}: not measured ({why})", peer.name);
                }
                None => {
                    let _ = writeln!(out, "- {}: {}", peer.name, peer.version);
                }
            }
        }
        out.push('\n');
        for suite in &self.suites {
            suite.markdown(&mut out);
        }
        out
    }

    /// report.md, report.json and one SVG per suite in `dir` (created); the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("create {}: {e}", dir.display())))?;
        let mut files = vec![
            (dir.join("report.md"), self.markdown()),
            (
                dir.join("report.json"),
                serde_json::to_string_pretty(self).map_err(|e| fail(e.to_string()))? + "\n",
            ),
        ];
        for suite in &self.suites {
            files.push((dir.join(format!("{}.svg", suite.name)), suite.svg()));
        }
        let mut written = Vec::new();
        for (path, text) in files {
            std::fs::write(&path, text)
                .map_err(|e| fail(format!("write {}: {e}", path.display())))?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case: &str, peer: &str, samples: &[f64]) -> Row {
        let mut r = Row::new(case, peer, "events/s", "1/s", true);
        r.samples = samples.to_vec();
        r
    }

    #[test]
    fn ratios_against_the_baseline_of_the_same_case() {
        let mut suite = SuiteReport {
            name: "sysbench".into(),
            title: "t".into(),
            baseline: "host".into(),
            notes: vec![],
            results: vec![
                row("cpu", "host", &[100.0, 100.0]),
                row("cpu", "poc", &[98.0, 99.0, 97.0]),
                row("fileio", "host", &[10.0]),
                row("fileio:volume", "poc", &[9.0]),
            ],
        };
        suite.finish(&BTreeMap::new());
        assert_eq!(suite.results[1].ratio, Some(0.98));
        assert_eq!(suite.results[3].ratio, Some(0.9));
        let md = {
            let mut s = String::new();
            suite.markdown(&mut s);
            s
        };
        assert!(md.contains("| cpu | poc | events/s"), "{md}");
        let svg = suite.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("fileio:volume"));
    }

    #[test]
    fn rows_marked_as_their_case_baseline() {
        let mut base_none = row("start", "poc none", &[10.0]);
        base_none.baseline = true;
        let mut base_plain = row("tcp", "plain", &[4.0]);
        base_plain.baseline = true;
        let mut suite = SuiteReport {
            name: "net".into(),
            title: "t".into(),
            baseline: "the test's baseline".into(),
            notes: vec![],
            results: vec![
                base_none,
                row("start", "poc bridge", &[12.0]),
                base_plain,
                row("tcp", "poc bridge", &[3.0]),
            ],
        };
        suite.finish(&BTreeMap::new());
        let ratios: Vec<Option<f64>> = suite.results.iter().map(|r| r.ratio).collect();
        assert_eq!(ratios, [Some(1.0), Some(1.2), Some(1.0), Some(0.75)]);
        assert!(suite.svg().contains("plain"));
        // Only marked rows carry the flag in JSON.
        let json = serde_json::to_value(&suite).unwrap();
        assert_eq!(json["results"][0]["baseline"], true);
        assert!(json["results"][1].get("baseline").is_none());
    }
}
