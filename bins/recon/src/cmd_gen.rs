//! `recon gen`: write a synthetic, realistic reconciliation case with its
//! ground truth (`left.csv`, `right.csv`, `rules.toml`, `truth.csv`).

use std::io::Write as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use recon_core::synth::{self, BankAmountStyle, GenOptions};

/// Arguments of `recon gen`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit codes:
  0  the case was written
  1  a file of the case could not be written
  2  bad arguments (an --out that is not a directory, say)
")]
pub struct Args {
    /// About how many records each side gets, 1 to 20,000,000 (at 1M a side
    /// the two CSV files are about 170 MB, written in about a second with
    /// under 100 MB of memory).
    #[arg(long, default_value = "10000", value_parser = records_in_range)]
    records: NonZeroUsize,
    /// Seed of the generator: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Directory to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// How the bank side writes amounts.
    #[arg(long, value_enum, default_value_t = BankAmounts::Parenthesized)]
    bank_amounts: BankAmounts,
}

/// The most records `recon gen` writes a side: beyond it a case takes
/// gigabytes of memory and disk, where a typo (`--records 5000000000`) would
/// otherwise end in an allocation failure.
const MAX_RECORDS: usize = 20_000_000;

/// Parses `--records` (digits, `_` allowed between them) within 1..=[`MAX_RECORDS`].
fn records_in_range(text: &str) -> Result<NonZeroUsize, String> {
    let digits: String = text.chars().filter(|c| *c != '_').collect();
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of records"))?;
    NonZeroUsize::new(n)
        .filter(|n| n.get() <= MAX_RECORDS)
        .ok_or_else(|| format!("{n} is not in 1..={MAX_RECORDS}"))
}

/// The bank side's amount style, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BankAmounts {
    /// One Amount column: `"1,234.56"`, `(12.30)` for negatives.
    Parenthesized,
    /// Separate Debit and Credit columns.
    DebitCredit,
}

/// Runs `recon gen`.
///
/// # Errors
/// When a file of the case cannot be written.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // A usage error, as `recon match` has it: the caller must change --out.
    if std::fs::metadata(&args.out).is_ok_and(|m| !m.is_dir()) {
        crate::report(&anyhow::anyhow!(
            "--out {} exists and is not a directory",
            args.out.display()
        ));
        return Ok(ExitCode::from(2));
    }
    let options = GenOptions {
        records: args.records.get(),
        seed: args.seed,
        bank_amounts: match args.bank_amounts {
            BankAmounts::Parenthesized => BankAmountStyle::Parenthesized,
            BankAmounts::DebitCredit => BankAmountStyle::DebitCredit,
        },
    };
    let started = Instant::now();
    let (case, paths) = synth::write_case(&options, &args.out)
        .with_context(|| format!("generating a case into {}", args.out.display()))?;
    let groups = case.truth.last().map_or(0, |t| t.group);
    // The case is written: a closed stdout (`| head -1`) does not undo it.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "wrote {} ledger and {} bank records, {} true match groups, in {:.2?}",
        case.left.len(),
        case.right.len(),
        groups,
        started.elapsed()
    );
    for path in [&paths.left, &paths.right, &paths.rules, &paths.truth] {
        let _ = writeln!(out, "  {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
