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

/// Writes the man page: clap's title, name, description and options, a synopsis with every
/// option's value name, the manual's own sections (EXIT STATUS, RUNNING AS ROOT, ...) as real
/// sections, and the version. clap's own SUBCOMMANDS section (which points at pages such as
/// mdeliver-list(1) that do not exist) and its catch-all EXTRA section are not used.
fn man(w: &mut dyn std::io::Write) -> std::io::Result<()> {
    use roff::{bold, italic, roman, Roff};
    let cmd = command();
    let m = clap_mangen::Man::new(cmd.clone());
    m.render_title(w)?;
    m.render_name_section(w)?;
    let mut synopsis = Roff::new();
    synopsis.control("SH", ["SYNOPSIS"]);
    let mut line = vec![bold("mdeliver")];
    for a in cmd.get_arguments() {
        if a.is_positional() || matches!(a.get_id().as_str(), "help" | "version") {
            continue;
        }
        let name = match (a.get_short(), a.get_long()) {
            (Some(s), _) => format!("-{s}"),
            (None, Some(l)) => format!("--{l}"),
            (None, None) => continue,
        };
        line.push(roman(" ["));
        line.push(bold(name));
        if a.get_action().takes_values() {
            let value = a
                .get_value_names()
                .and_then(|v| v.first())
                .map_or_else(|| "VALUE".to_owned(), |v| v.to_string());
            let optional = a.get_num_args().is_some_and(|n| n.min_values() == 0);
            if optional {
                line.push(roman("[="));
                line.push(italic(value));
                line.push(roman("]"));
            } else {
                line.push(roman(" "));
                line.push(italic(value));
            }
        }
        line.push(roman("]"));
    }
    line.push(roman(" "));
    line.push(italic("MAILDIR"));
    line.push(roman("..."));
    synopsis.text(line);
    for sub in [
        "list [--json] [--info-separator C] MAILDIR",
        "flag [--info-separator C] MAILDIR KEY [+FLAGS] [-FLAGS]",
        "check [--repair] [--info-separator C] MAILDIR",
        "--generate-man | --generate-completions SHELL",
    ] {
        synopsis.control("br", [] as [&str; 0]);
        synopsis.text([bold("mdeliver"), roman(format!(" {sub}"))]);
    }
    synopsis.to_writer(w)?;
    m.render_description_section(w)?;
    m.render_options_section(w)?;
    let manual = cmd
        .get_after_long_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    manual_sections(&manual).to_writer(w)?;
    m.render_version_section(w)
}

/// The manual text of `--help` (sections headed by a line in capitals, paragraphs indented by
/// two spaces, tables and examples indented further or aligned with runs of blanks) as roff:
/// one `.SH` per section, filled paragraphs (lines not separated by a blank line continue one),
/// long indented descriptions as indented paragraphs, tables and examples kept as they are.
fn manual_sections(text: &str) -> roff::Roff {
    use roff::{roman, Roff};
    #[derive(PartialEq)]
    enum Mode {
        Start,
        Para,
        Literal,
        Indented,
    }
    let mut r = Roff::new();
    let mut mode = Mode::Start;
    let none: [&str; 0] = [];
    // Ends a literal block or an indented paragraph.
    let close = |r: &mut Roff, mode: &Mode| {
        let end = match mode {
            Mode::Literal => "fi",
            Mode::Indented => "RE",
            Mode::Start | Mode::Para => return,
        };
        r.control(end, none);
    };
    for line in text.lines() {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        let heading = !line.is_empty() && indent == 0 && !body.chars().any(char::is_lowercase);
        let kind = if heading || body.is_empty() {
            Mode::Start
        } else if indent >= 4 && line.len() > 100 {
            Mode::Indented
        } else if indent >= 3 || body.contains("  ") {
            Mode::Literal
        } else {
            Mode::Para
        };
        if mode != kind || kind == Mode::Indented {
            close(&mut r, &mode);
            match kind {
                Mode::Literal => {
                    r.control("PP", none).control("nf", none);
                }
                Mode::Indented => {
                    r.control("RS", ["4"]).control("PP", none);
                }
                Mode::Para => {
                    r.control("PP", none);
                }
                Mode::Start => {}
            }
        }
        if heading {
            r.control("SH", [line]);
        } else if kind == Mode::Literal {
            r.text([roman(line.strip_prefix("  ").unwrap_or(line))]);
        } else if !body.is_empty() {
            r.text([roman(body)]);
        }
        mode = kind;
    }
    close(&mut r, &mode);
    r
}

/// Handles `--generate-man` and `--generate-completions SHELL` in `argv` (the program name
/// first); `None` for anything else.
pub fn intercept(argv: &[std::ffi::OsString]) -> Option<ExitCode> {
    let mut argv = argv.iter().skip(1);
    let first = argv.next()?;
    match first.to_str()? {
        "--generate-man" => {
            let mut out = std::io::stdout().lock();
            Some(match man(&mut out) {
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
