//! The Linux side of `-M/--mbox`: progress on a terminal (indicatif, with the input's size for
//! an ETA). The import itself is the driver's (`run.rs`, `import.rs`).

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::time::Instant;

use crate::args::Args;
use crate::import;

/// Progress on a terminal (indicatif), nothing otherwise.
pub struct TermProgress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl TermProgress {
    /// A bar for `total` bytes (a spinner when unknown) on a terminal; nothing otherwise.
    pub fn new(total: Option<u64>) -> TermProgress {
        let started = Instant::now();
        if !std::io::stderr().is_terminal() {
            return TermProgress { bar: None, started };
        }
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let template = if total.is_some() {
            "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
        } else {
            "{spinner} {msg} {bytes} {bytes_per_sec}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        TermProgress {
            bar: Some(bar),
            started,
        }
    }
}

impl import::Progress for TermProgress {
    fn update(&mut self, messages: u64, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
            let rate = messages as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{messages} messages ({rate:.0}/s)"));
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The bytes left in the input, for the progress bar's ETA (regular files only).
pub fn input_size(args: &Args) -> Option<u64> {
    let st = match &args.input {
        Some(p) => rustix::fs::stat(p).ok()?,
        None => rustix::fs::fstat(std::io::stdin().as_fd()).ok()?,
    };
    let regular = rustix::fs::FileType::from_raw_mode(st.st_mode).is_file();
    let offset = match &args.input {
        Some(_) => 0,
        None => rustix::fs::seek(std::io::stdin().as_fd(), rustix::fs::SeekFrom::Current(0))
            .unwrap_or(0),
    };
    regular.then(|| (st.st_size as u64).saturating_sub(offset))
}
