//! The man page and shell completions, generated from the same clap definition that parses the
//! command line (so they cannot drift): `mdeliver --generate-man` writes mdeliver.1 (roff) to
//! standard output; `mdeliver --generate-completions SHELL` writes a completion script for
//! bash, zsh, fish, elvish or powershell. Recognised only as the first argument, before the
//! normal parse, so they never clash with delivery options or maildir names.

use std::process::ExitCode;

use crate::exit;

/// The whole command line (delivery form and subcommands).
fn command() -> clap::Command {
    crate::command::definition()
}

/// Handles `--generate-man` and `--generate-completions SHELL` in `argv` (the program name
/// first); `None` for anything else.
pub fn intercept(argv: &[std::ffi::OsString]) -> Option<ExitCode> {
    let mut argv = argv.iter().skip(1);
    let first = argv.next()?;
    match first.to_str()? {
        "--generate-man" => {
            let man = clap_mangen::Man::new(command());
            let mut out = std::io::stdout().lock();
            Some(match man.render(&mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mdeliver: writing the man page: {e}");
                    ExitCode::from(exit::TEMPFAIL)
                }
            })
        }
        "--generate-completions" => {
            use clap::ValueEnum;
            let shell = argv
                .next()
                .and_then(|s| clap_complete::Shell::from_str(&s.to_string_lossy(), true).ok());
            let Some(shell) = shell else {
                eprintln!(
                    "mdeliver: --generate-completions SHELL: SHELL is one of bash, zsh, fish, \
                     elvish, powershell"
                );
                return Some(ExitCode::from(exit::USAGE));
            };
            let mut cmd = command();
            clap_complete::generate(shell, &mut cmd, "mdeliver", &mut std::io::stdout());
            Some(ExitCode::SUCCESS)
        }
        _ => None,
    }
}
