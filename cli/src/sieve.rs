//! `mdeliver sieve check FILE` and `mdeliver sieve test FILE MESSAGE`: compile a Sieve script
//! and report its errors with line and column, or print the actions it decides for a message.
//! The language lives in `mdeliver_core::sieve`; this file reads files and prints.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mdeliver_core::sieve::{
    compile, run_with, Action, Context, Extensions, Limits, Message, MessageReader, Node, Outcome,
    Script,
};

use crate::exit;

const ABOUT: &str =
    "Compile a Sieve script (check) or show the actions it takes for a message (test)";

const AFTER_LONG_HELP: &str = "\
EXIT STATUS
   0  the script compiles (test: and the actions were printed)
   1  the script does not compile (the error, with line:column, is on stderr)
  66  the script or the message cannot be read

EXAMPLES
  mdeliver sieve check ~/.dovecot.sieve
  mdeliver sieve test --envelope-from alice@example.org --envelope-to bob@example.com \\
      filter.sieve message.eml";

/// `mdeliver sieve` arguments.
#[derive(Debug, Clone, clap::Parser)]
#[command(about = ABOUT, after_long_help = AFTER_LONG_HELP, max_term_width = 100)]
pub struct SieveArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SieveCommand,
}

/// The `sieve` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SieveCommand {
    /// Compile the script and report the first error with its line and column
    Check {
        /// The Sieve script
        #[arg(value_name = "FILE")]
        script: PathBuf,
    },
    /// Print the actions the script takes for a message (nothing is delivered or sent)
    Test {
        /// The Sieve script
        #[arg(value_name = "FILE")]
        script: PathBuf,
        /// The message (RFC 5322)
        #[arg(value_name = "MESSAGE")]
        message: PathBuf,
        /// The envelope sender the `envelope` test sees (empty: the null sender)
        #[arg(long, value_name = "ADDRESS", default_value = "")]
        envelope_from: String,
        /// The envelope recipient the `envelope` test sees
        #[arg(long, value_name = "ADDRESS", default_value = "")]
        envelope_to: String,
        /// The time `currentdate` sees, in seconds since 1970 UTC (default: now); dates
        /// are shown in UTC
        #[arg(long, value_name = "SECONDS")]
        now: Option<i64>,
    },
}

/// The largest header block kept for the tests (fields past it are not seen, and `sieve
/// test` says so).
const HEADER_MAX: usize = 1 << 20;

/// The largest body kept for the `body` test (read only when the script requires `body`;
/// past it, the test sees the start of the body, and `sieve test` says so).
const BODY_MAX: usize = 16 << 20;

/// Runs `mdeliver sieve`.
pub fn run_command(a: &SieveArgs) -> ExitCode {
    let script_path = match &a.action {
        SieveCommand::Check { script } | SieveCommand::Test { script, .. } => script,
    };
    let src = match std::fs::read(script_path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mdeliver: cannot read {}: {e}", script_path.display());
            return ExitCode::from(exit::NOINPUT);
        }
    };
    let limits = Limits::default();
    let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
    let mut strings = vec![0u8; Limits::strings_for(src.len())];
    let script = match compile(&src, &limits, &mut nodes, &mut strings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}:{e}", script_path.display());
            return ExitCode::from(1);
        }
    };
    match &a.action {
        SieveCommand::Check { .. } => {
            println!("{}: ok", script_path.display());
            ExitCode::SUCCESS
        }
        SieveCommand::Test {
            message,
            envelope_from,
            envelope_to,
            now,
            ..
        } => test(
            &script,
            &limits,
            message,
            (envelope_from.as_bytes(), envelope_to.as_bytes()),
            *now,
        ),
    }
}

fn test(
    script: &Script<'_>,
    limits: &Limits,
    path: &Path,
    (from, to): (&[u8], &[u8]),
    now: Option<i64>,
) -> ExitCode {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mdeliver: cannot read {}: {e}", path.display());
            return ExitCode::from(exit::NOINPUT);
        }
    };
    let mut header = vec![0u8; HEADER_MAX];
    let body_max = if script.extensions.has(Extensions::BODY) {
        BODY_MAX
    } else {
        0
    };
    let mut body = vec![0u8; body_max];
    let mut reader = MessageReader::with_body(&mut header, &mut body);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reader.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("mdeliver: cannot read {}: {e}", path.display());
                return ExitCode::from(exit::NOINPUT);
            }
        }
    }
    if reader.truncated() {
        eprintln!(
            "mdeliver: the header block is longer than {HEADER_MAX} bytes: fields past it are \
             not seen"
        );
    }
    if reader.body_truncated() {
        eprintln!(
            "mdeliver: the body is longer than {BODY_MAX} bytes: the body test sees its start"
        );
    }
    let now = now.or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok())
    });
    let ctx = Context {
        body: reader.body(),
        now,
        local_zone: 0,
        seen: None,
    };
    let msg = Message {
        header: reader.header(),
        size: reader.size(),
        envelope_from: from,
        envelope_to: to,
    };
    let mut out = Box::new(Outcome::new());
    let mut scratch = vec![0u8; HEADER_MAX];
    run_with(script, &msg, &ctx, limits, &mut scratch, &mut out);
    print!("{}", render(&out));
    ExitCode::SUCCESS
}

/// The actions of an outcome, one line each, as `sieve test` prints them.
pub fn render(out: &Outcome) -> String {
    use std::fmt::Write;
    let s = |t| String::from_utf8_lossy(out.text(t)).into_owned();
    let flags = |f: String| {
        if f.is_empty() {
            String::new()
        } else {
            format!(" flags \"{f}\"")
        }
    };
    let mut o = String::new();
    if let Some(e) = out.error() {
        let _ = writeln!(o, "runtime error: {e}; the implicit keep applies");
    }
    for a in out.actions() {
        let _ = match *a {
            Action::Store {
                mailbox: None,
                flags: f,
                ..
            } => writeln!(o, "keep{}", flags(s(f))),
            Action::Store {
                mailbox: Some(m),
                flags: f,
                create,
            } => writeln!(
                o,
                "fileinto{} \"{}\"{}",
                if create { " :create" } else { "" },
                s(m).escape_debug(),
                flags(s(f))
            ),
            Action::Redirect { address } => writeln!(o, "redirect \"{}\"", s(address)),
            Action::Reject { reason, extended } => writeln!(
                o,
                "{} \"{}\"",
                if extended { "ereject" } else { "reject" },
                s(reason).escape_debug()
            ),
            Action::Discard => writeln!(o, "discard"),
            Action::Track { key, seconds } => writeln!(
                o,
                "duplicate: remember \"{}\" for {seconds} s",
                s(key).escape_debug()
            ),
            Action::Vacation {
                to,
                from,
                subject,
                reason,
                mime,
                handle,
                seconds,
                ..
            } => writeln!(
                o,
                "vacation to \"{}\"{} subject \"{}\"{} handle \"{}\" for {seconds} s: \"{}\"",
                s(to).escape_debug(),
                from.map_or(String::new(), |f| format!(" from \"{}\"", s(f).escape_debug())),
                s(subject).escape_debug(),
                if mime { " :mime" } else { "" },
                s(handle).escape_debug(),
                s(reason).escape_debug()
            ),
        };
    }
    if out.implicit_keep() {
        let _ = writeln!(
            o,
            "implicit keep{}",
            flags(String::from_utf8_lossy(out.implicit_flags()).into_owned())
        );
    }
    o
}
