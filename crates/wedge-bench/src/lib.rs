//! What wedge's benchmarks share: the [`Row`] each one reports (a figure, its baseline measured
//! in the same run, and their ratio), [`Samples`] and the statistics printed for them, and the
//! file each bench writes its rows to (`target/bench/rows/<bench>.json`), from which
//! `cargo xtask bench` assembles one table and `target/bench/report.json`.
//!
//! Every figure is repeated; a row gives the median with the min and max, and the ratio is the
//! median of the per-round ratios (each round measures the row and its baseline back to back,
//! so a machine that slows down in between moves both).

pub mod iothub;
pub mod proc;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Median, min and max of repeated measurements.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Stats {
    /// The median (for an even count, the upper of the middle two).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// How many measurements.
    pub n: usize,
}

impl Stats {
    /// The statistics of `values`.
    ///
    /// # Panics
    /// If `values` is empty: a row without a measurement is a bug in the bench.
    pub fn of(values: &[f64]) -> Stats {
        assert!(!values.is_empty(), "no measurements");
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Stats {
            median: sorted[sorted.len() / 2],
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            n: sorted.len(),
        }
    }
}

/// The baseline a row is compared with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    /// What it is.
    pub name: String,
    /// Its figures, in the row's unit.
    pub value: Stats,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The number of the row's group and its title, e.g. `1 e2e telemetry`.
    pub group: String,
    /// What was measured.
    pub name: String,
    /// The unit of `value` and of the baseline's value.
    pub unit: String,
    /// The figures.
    pub value: Stats,
    /// The baseline measured in the same run, if the row has one.
    pub baseline: Option<Baseline>,
    /// Row ÷ baseline, per round (`None` without a baseline).
    pub ratio: Option<Stats>,
    /// The target, as text (`≥ 0.9×`, `≤ 12 MB`), if the issue sets one.
    pub target: Option<String>,
    /// Whether the target was met (`None` without a target).
    pub met: Option<bool>,
    /// How it was measured, what limits it.
    pub note: String,
}

/// Paired measurements: the row's and its baseline's, one pair per round.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// The row's measurements.
    pub value: Vec<f64>,
    /// The baseline's, in the same rounds.
    pub baseline: Vec<f64>,
}

impl Samples {
    /// Records one round.
    pub fn push(&mut self, value: f64, baseline: f64) {
        self.value.push(value);
        self.baseline.push(baseline);
    }
}

/// The rows of one bench, written to `target/bench/rows/<bench>.json` by [`Rows::write`].
pub struct Rows {
    bench: String,
    group: String,
    rows: Vec<Row>,
}

impl Rows {
    /// The rows of bench `bench`, in `group` until [`Rows::group`] changes it.
    pub fn new(bench: &str, group: &str) -> Rows {
        Rows {
            bench: bench.into(),
            group: group.into(),
            rows: Vec::new(),
        }
    }

    /// Rows added from now on belong to `group`.
    pub fn group(&mut self, group: &str) {
        self.group = group.into();
    }

    /// A row with a baseline: `samples` paired round by round.
    pub fn paired(
        &mut self,
        name: &str,
        unit: &str,
        samples: &Samples,
        baseline: &str,
        note: &str,
    ) -> &mut Row {
        let ratios: Vec<f64> = samples
            .value
            .iter()
            .zip(&samples.baseline)
            .map(|(v, b)| v / b)
            .collect();
        self.add(Row {
            group: self.group.clone(),
            name: name.into(),
            unit: unit.into(),
            value: Stats::of(&samples.value),
            baseline: Some(Baseline {
                name: baseline.into(),
                value: Stats::of(&samples.baseline),
            }),
            ratio: Some(Stats::of(&ratios)),
            target: None,
            met: None,
            note: note.into(),
        })
    }

    /// A row without a baseline (a size, a count).
    pub fn single(&mut self, name: &str, unit: &str, values: &[f64], note: &str) -> &mut Row {
        self.add(Row {
            group: self.group.clone(),
            name: name.into(),
            unit: unit.into(),
            value: Stats::of(values),
            baseline: None,
            ratio: None,
            target: None,
            met: None,
            note: note.into(),
        })
    }

    fn add(&mut self, row: Row) -> &mut Row {
        eprintln!(
            "bench {}: {} {}: {:.3} {} (min {:.3}, max {:.3}){}",
            self.bench,
            row.group,
            row.name,
            row.value.median,
            row.unit,
            row.value.min,
            row.value.max,
            match (&row.baseline, &row.ratio) {
                (Some(b), Some(r)) => format!(
                    " | {} {:.3} | ratio {:.2}",
                    b.name, b.value.median, r.median
                ),
                _ => String::new(),
            }
        );
        self.rows.push(row);
        self.rows.last_mut().expect("just pushed")
    }

    /// Writes the rows to `<out>/rows/<bench>.json` (see [`out_dir`]).
    ///
    /// # Panics
    /// If the file cannot be written: the bench's result would be lost.
    pub fn write(&self) {
        let dir = out_dir().join("rows");
        std::fs::create_dir_all(&dir).expect("create target/bench/rows");
        let file = dir.join(format!("{}.json", self.bench));
        let json = serde_json::to_vec_pretty(&self.rows).expect("rows serialise");
        std::fs::write(&file, json).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        eprintln!(
            "bench {}: {} rows in {}",
            self.bench,
            self.rows.len(),
            file.display()
        );
    }
}

impl Row {
    /// Sets the target and whether it was met, judged on `figure` (the median of the ratio or
    /// of the value, as the target says).
    pub fn target(&mut self, target: &str, met: bool) -> &mut Row {
        self.target = Some(target.into());
        self.met = Some(met);
        self
    }
}

/// Where the benches write: `$WEDGE_BENCH_OUT`, else `<workspace>/target/bench`.
pub fn out_dir() -> PathBuf {
    let dir = std::env::var_os("WEDGE_BENCH_OUT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("create target/bench");
    // Without `..`: control sockets below it must fit in 108 bytes.
    dir.canonicalize().expect("target/bench")
}

/// A scratch directory under [`out_dir`] (not /tmp: the durable outbox's fsyncs should hit
/// the disk the host would use), removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    let dir = out_dir().join("scratch");
    std::fs::create_dir_all(&dir).expect("create target/bench/scratch");
    tempfile::tempdir_in(dir).expect("scratch dir")
}

/// A runtime over a durable store in `dir`, its upstream [`NoUpstream`].
pub fn local_runtime(
    engine: &wedge_runtime::EngineCtx,
    dir: &std::path::Path,
) -> wedge_runtime::Runtime {
    let (store, outbox) = iothub::durable_outbox(dir);
    wedge_runtime::Runtime::new(
        engine.clone(),
        std::sync::Arc::new(NoUpstream),
        store,
        outbox,
        dir.into(),
    )
}

/// The release `wedge` binary of the whole-process rows: `$WEDGE_BIN`, else
/// `target/release/wedge`.
pub fn wedge_bin() -> PathBuf {
    let wedge = std::env::var_os("WEDGE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/wedge"),
        PathBuf::from,
    );
    assert!(
        wedge.is_file(),
        "{}: build it with `cargo build --release -p wedge`",
        wedge.display()
    );
    wedge
}

/// An upstream for benches whose messages stay on the device.
pub struct NoUpstream;

#[async_trait::async_trait]
impl wedge_core::Upstream for NoUpstream {
    fn admit(&self, _message: &wedge_core::UpstreamMessage) -> Result<(), wedge_core::SendError> {
        Ok(())
    }

    async fn report(&self, _module: &str, _patch: serde_json::Value) -> Result<(), String> {
        Ok(())
    }
}

/// `wasm` with a custom section naming `variant` appended: the same module, another sha256
/// (so another compile, another cache entry, another loaded image).
pub fn variant(wasm: &[u8], variant: usize) -> Vec<u8> {
    let name = b"wedge-bench";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(format!("{variant:08}").as_bytes());
    let mut bytes = wasm.to_vec();
    // Custom section id 0, then its size (one LEB128 byte: it is short).
    bytes.extend_from_slice(&[0, section.len() as u8]);
    bytes.extend_from_slice(&section);
    bytes
}

/// Rounds of each paired measurement: `$WEDGE_BENCH_ROUNDS`, else `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("WEDGE_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// The engine of the in-process benches: Cranelift's machine code; with `$WEDGE_BENCH_PULLEY`
/// set (built with this crate's `pulley` feature), Pulley, wasmtime's interpreter, which is what
/// 32-bit ARM runs (docs/distribution.md has the comparison).
pub fn engine() -> wedge_runtime::EngineCtx {
    if std::env::var_os("WEDGE_BENCH_PULLEY").is_some() {
        eprintln!("wedge-bench: modules run on Pulley");
        wedge_runtime::EngineCtx::interpreted(wedge_runtime::Allocation::OnDemand)
    } else {
        wedge_runtime::EngineCtx::new()
    }
    .expect("engine")
}
