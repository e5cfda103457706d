//! The Linux side of `-M/--mbox`: opens the one maildir (or its folder) through the Linux
//! adapter, shows progress on a terminal (indicatif, with the input's size for an ETA), and
//! runs the portable import of `import.rs`.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Instant;

use crate::args::Args;
use crate::env::LinuxEnv;
use crate::import;
use crate::input::Input;
use crate::linux::{Disabled, LinuxFs, OpenOptions};
use crate::mail_args::MailArgs;

/// Progress on a terminal (indicatif), nothing otherwise.
struct TermProgress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl TermProgress {
    fn new(total: Option<u64>) -> TermProgress {
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
fn input_size(args: &Args) -> Option<u64> {
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

/// `mdeliver -M`: checks the arguments, opens the one maildir (or its folder) and imports.
pub fn main(args: &Args, mail: &MailArgs, disabled: Disabled, input: &mut Input) -> ExitCode {
    let maildir = match import::one_maildir(args) {
        Ok(m) => m,
        Err(code) => return ExitCode::from(code),
    };
    let open = OpenOptions {
        create: args.create,
        sync: !args.no_fsync,
        disabled,
        keep_readable: false,
    };
    let target = match crate::folder::target(args, mail, maildir, open) {
        Ok(t) => t,
        Err(refused) => {
            let mut out = crate::status::Output::default();
            refused.report(&mut out, maildir);
            out.flush();
            return ExitCode::from(refused.code);
        }
    };
    let mut fs = match LinuxFs::open(&target, open) {
        Ok(fs) => fs,
        Err((kind, part)) => return ExitCode::from(import::cannot_open(args, &target, kind, part)),
    };
    let mut env = LinuxEnv::new().with_host(args.host.as_deref());
    let mut progress = TermProgress::new(input_size(args));
    let code = import::run(args, mail, &mut fs, &mut env, &target, input, &mut progress);
    ExitCode::from(code)
}
