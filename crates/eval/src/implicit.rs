//! The Python `implicit` library's ALS and BPR as baselines, run on the same
//! split through `scripts/implicit_baseline.py` (installed by
//! `scripts/install-baselines.sh`).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use travelrec_engine::metrics::{MetricAccumulator, MetricSet};
use travelrec_engine::split::Split;

#[derive(Debug, Clone)]
pub struct ImplicitBaseline {
    pub python: String,
    pub script: PathBuf,
    /// Extra arguments per model, e.g. `["--factors", "64"]`.
    pub als_args: Vec<String>,
    pub bpr_args: Vec<String>,
}

impl ImplicitBaseline {
    /// `scripts/implicit_baseline.py` under `repo`, run with `python3`, with
    /// hyperparameters tuned on a validation split of MovieLens 100K (not on
    /// any test split): untuned, implicit's defaults are a weak baseline.
    pub fn new(repo: &std::path::Path) -> Self {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Self {
            python: "python3".into(),
            script: repo.join("scripts/implicit_baseline.py"),
            als_args: args(&["--factors", "64", "--regularization", "20", "--alpha", "2", "--iterations", "15"]),
            bpr_args: args(&[
                "--factors",
                "64",
                "--learning-rate",
                "0.01",
                "--regularization",
                "0.003",
                "--iterations",
                "50",
                "--threads",
                "1",
            ]),
        }
    }

    /// Trains `model` (`als` or `bpr`) on the split's training part and
    /// computes the same metrics as for travelrec's own methods.
    pub fn evaluate(&self, model: &str, split: &Split, seed: u64) -> Result<MetricSet, String> {
        if !self.script.is_file() {
            return Err(format!("{} is missing", self.script.display()));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (train_path, queries_path, out_path) =
            (dir.path().join("train.tsv"), dir.path().join("queries.tsv"), dir.path().join("out.tsv"));
        let train = &split.train;
        let pairs: BTreeSet<(u32, u32)> = train.events.iter().map(|e| (e.user, e.item)).collect();
        let mut file = std::io::BufWriter::new(std::fs::File::create(&train_path).map_err(|e| e.to_string())?);
        writeln!(file, "# users={} items={}", train.users.len(), train.items.len()).map_err(|e| e.to_string())?;
        for (u, i) in &pairs {
            writeln!(file, "{u}\t{i}\t1").map_err(|e| e.to_string())?;
        }
        file.flush().map_err(|e| e.to_string())?;
        drop(file);
        let queries: String = split.test.iter().map(|(u, _)| format!("{u}\n")).collect();
        std::fs::write(&queries_path, queries).map_err(|e| e.to_string())?;

        let mut command = Command::new(&self.python);
        command
            .arg(&self.script)
            .args(["--model", model, "--k", "25", "--seed", &seed.to_string()])
            .arg("--train")
            .arg(&train_path)
            .arg("--queries")
            .arg(&queries_path)
            .arg("--out")
            .arg(&out_path)
            .args(if model == "als" { &self.als_args } else { &self.bpr_args })
            .env("OPENBLAS_NUM_THREADS", "1")
            .env("MKL_NUM_THREADS", "1");
        if split.holdout.excludes_seen() {
            command.arg("--exclude-seen");
        }
        let output = command.output().map_err(|e| format!("cannot run {}: {e}", self.python))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let hint = if output.status.code() == Some(3) { " (run scripts/install-baselines.sh)" } else { "" };
            return Err(format!("implicit {model} failed{hint}: {}", stderr.lines().last().unwrap_or("").trim()));
        }
        let text = std::fs::read_to_string(&out_path).map_err(|e| e.to_string())?;
        let mut ranked: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (user, items) = line.split_once('\t').ok_or_else(|| format!("bad output line `{line}`"))?;
            let user: u32 = user.parse().map_err(|_| format!("bad user in `{line}`"))?;
            let items: Vec<u32> = items
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().map_err(|_| format!("bad item in `{line}`")))
                .collect::<Result<_, _>>()?;
            ranked.insert(user, items);
        }
        let mut accumulator = MetricAccumulator::new(train.items.len());
        for (user, relevant) in &split.test {
            accumulator.add(ranked.get(user).map_or(&[][..], |v| v.as_slice()), relevant);
        }
        Ok(accumulator.finish())
    }
}
