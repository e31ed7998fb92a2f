//! `berth fsck`: checks a registry's storage for consistency (`berth_gc::fsck`), with the same
//! settings as `berth serve` (so it runs beside a server on the same root or bucket), prints one
//! line per problem and a summary, and exits non-zero when it found any. It writes nothing
//! unless `--repair`, which removes what cannot be right so that clients push it again.

use berth_app::Settings;
use berth_gc::fsck::{self, FsckOptions};

/// Arguments of `berth fsck`.
#[derive(clap::Args)]
pub struct FsckArgs {
    /// Check references only: do not read and hash every blob.
    #[arg(long)]
    no_hash: bool,
    /// Remove what cannot be right (corrupt blobs, links to missing blobs, corrupt records, tags
    /// naming missing manifests, abandoned upload state), then check again.
    #[arg(long)]
    repair: bool,
    #[command(flatten)]
    settings: Box<Settings>,
}

/// Runs the check (and the repair); an error when problems are left (they are printed first).
pub async fn run(args: &FsckArgs) -> Result<(), String> {
    let store = berth_app::storage(&args.settings).await.map_err(|e| e.to_string())?;
    // Sessions older than the grace are what garbage collection removes: abandoned.
    let options = FsckOptions { hash_blobs: !args.no_hash, upload_age: args.settings.gc_grace };
    let failed = |e| format!("storage failed: {e}");
    let report = if args.repair {
        let (repaired, report) = fsck::repair(store.as_ref(), &options).await.map_err(failed)?;
        for finding in &repaired {
            println!("repaired: {finding}");
        }
        report
    } else {
        fsck::check(store.as_ref(), &options).await.map_err(failed)?
    };
    println!("{report}");
    match report.findings.len() {
        0 => Ok(()),
        n => Err(format!("{n} problem{} found", if n == 1 { "" } else { "s" })),
    }
}
