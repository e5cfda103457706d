//! The delivery form's common command lines parsed without building clap's command.
//!
//! An MTA runs mdeliver once per message, so building clap's definition (every option with
//! its long help) is most of a delivery's start-up. [`parse`] reads the forms MTAs write:
//! flags, `--option=value` (with `--sieve=FILE` and `--sendmail=PATH`, so a filtered delivery
//! starts as fast as a plain one), and maildir paths. Anything else (a separated value, a repeated
//! option, a subcommand, `--`, `-` as a path, a value clap would refuse or a non-UTF-8
//! value) gives `None`, and the caller parses with clap, which stays the definition of the
//! command line: every error message, the help and the man page come from it. The test
//! `quick_and_clap_agree` proves that whatever this accepts, clap parses to the same values,
//! for every option of the definition.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use mdeliver_driver::args::Args;
use mdeliver_driver::mail_args::{self, MailArgs, MboxQuoting};
use mdeliver_driver::mta_args::{self, QuotaFull};

use crate::sieve::SieveOptions;

/// The flags (options without a value) read here, with the field each one sets.
const FLAGS: [(&str, Flag); 18] = [
    ("-c", Flag::Create),
    ("--create", Flag::Create),
    ("-p", Flag::CreateParents),
    ("--create-parents", Flag::CreateParents),
    ("--folder-fallback", Flag::FolderFallback),
    ("--no-subscribe", Flag::NoSubscribe),
    ("-v", Flag::Verbose),
    ("--verbose", Flag::Verbose),
    ("--no-fsync", Flag::NoFsync),
    ("--strict-exit", Flag::StrictExit),
    ("-M", Flag::Mbox),
    ("--mbox", Flag::Mbox),
    ("--keep-from-line", Flag::KeepFromLine),
    ("--from-env", Flag::FromEnv),
    ("-n", Flag::DryRun),
    ("--dry-run", Flag::DryRun),
    ("--json", Flag::Json),
    ("--dedup", Flag::Dedup),
];

/// The options read here in their `--name=value` form only.
const VALUED: [&str; 14] = [
    "--sieve",
    "--sendmail",
    "--input",
    "--folder-encoding",
    "--host",
    "--mbox-quoting",
    "--flags",
    "--folder",
    "--info-separator",
    "--return-path",
    "--delivered-to",
    "--original-to",
    "--quota",
    "--quota-full",
];

/// Words clap takes as a subcommand when they come first.
const SUBCOMMANDS: [&str; 6] = ["list", "flag", "check", "sieve", "lmtp", "help"];

#[derive(Copy, Clone, PartialEq, Eq)]
enum Flag {
    Create,
    CreateParents,
    FolderFallback,
    NoSubscribe,
    Verbose,
    NoFsync,
    StrictExit,
    Mbox,
    KeepFromLine,
    FromEnv,
    DryRun,
    Json,
    Dedup,
}

/// Parses `argv` (without the program name) the way clap would, or `None` when it is not one
/// of the common forms (then clap must parse it: it may be valid, or an error clap reports).
/// The third value is `--sieve FILE` with its `--sendmail PATH`.
pub fn parse(argv: &[OsString]) -> Option<(Args, MailArgs, Option<SieveOptions>)> {
    let mut sieve: Option<PathBuf> = None;
    let mut sendmail: Option<PathBuf> = None;
    let mut args = Args {
        maildirs: Vec::new(),
        create: false,
        verbose: 0,
        input: None,
        no_fsync: false,
        strict_exit: false,
        host: None,
        create_parents: false,
    };
    let mut mail = MailArgs::default();
    // Options seen, so that a repeated one (which clap refuses) falls back.
    let mut seen: Vec<&str> = Vec::new();
    for arg in argv {
        let bytes = arg.as_encoded_bytes();
        if bytes.first() != Some(&b'-') {
            if args.maildirs.is_empty() && SUBCOMMANDS.iter().any(|s| arg == OsStr::new(s)) {
                return None;
            }
            args.maildirs.push(PathBuf::from(arg));
            continue;
        }
        let arg = arg.to_str()?;
        if let Some((_, flag)) = FLAGS.iter().find(|(name, _)| *name == arg) {
            if *flag == Flag::Verbose {
                args.verbose = args.verbose.checked_add(1)?;
                continue;
            }
            let name = FLAGS.iter().find(|(_, f)| f == flag)?.0;
            if seen.contains(&name) {
                return None;
            }
            seen.push(name);
            match flag {
                Flag::Create => args.create = true,
                Flag::CreateParents => args.create_parents = true,
                Flag::FolderFallback => mail.folder_fallback = true,
                Flag::NoSubscribe => mail.no_subscribe = true,
                Flag::NoFsync => args.no_fsync = true,
                Flag::StrictExit => args.strict_exit = true,
                Flag::Mbox => mail.mbox = true,
                Flag::KeepFromLine => mail.mta.keep_from_line = true,
                Flag::FromEnv => mail.mta.from_env = true,
                Flag::DryRun => mail.mta.dry_run = true,
                Flag::Json => mail.mta.json = true,
                Flag::Dedup => mail.mta.dedup = Some(mta_args::parse_window("5d").ok()?),
                Flag::Verbose => unreachable!("counted above"),
            }
            continue;
        }
        if arg == "-vv" {
            args.verbose = args.verbose.checked_add(2)?;
            continue;
        }
        let (name, value) = arg.split_once('=')?;
        let name = if name == "--dedup" {
            "--dedup"
        } else {
            *VALUED.iter().find(|n| **n == name)?
        };
        // clap refuses a repeated option, and may read an empty value differently.
        if seen.contains(&name) || value.is_empty() {
            return None;
        }
        seen.push(name);
        match name {
            "--sieve" => sieve = Some(PathBuf::from(value)),
            "--sendmail" => sendmail = Some(PathBuf::from(value)),
            "--input" => args.input = Some(PathBuf::from(value)),
            "--host" => args.host = Some(value.to_owned()),
            "--mbox-quoting" => {
                mail.mbox_quoting = match value {
                    "mboxrd" => MboxQuoting::Mboxrd,
                    "mboxo" => MboxQuoting::Mboxo,
                    "raw" => MboxQuoting::Raw,
                    _ => return None,
                }
            }
            "--flags" => mail.flags = Some(mail_args::parse_flags(value).ok()?),
            "--folder" => mail.folder = Some(OsString::from(value)),
            "--folder-encoding" => {
                mail.folder_encoding = match value {
                    "utf7" => mail_args::FolderEncoding::Utf7,
                    "utf8" => mail_args::FolderEncoding::Utf8,
                    _ => return None,
                }
            }
            "--info-separator" => mail.info_separator = mail_args::parse_info_sep(value).ok()?,
            "--return-path" => mail.mta.return_path = Some(value.to_owned()),
            "--delivered-to" => mail.mta.delivered_to = Some(value.to_owned()),
            "--original-to" => mail.mta.original_to = Some(value.to_owned()),
            "--quota" => mail.mta.quota = Some(mta_args::parse_quota(value).ok()?),
            "--quota-full" => {
                mail.mta.quota_full = match value {
                    "defer" => QuotaFull::Defer,
                    "bounce" => QuotaFull::Bounce,
                    _ => return None,
                }
            }
            "--dedup" => mail.mta.dedup = Some(mta_args::parse_window(value).ok()?),
            _ => return None,
        }
    }
    // What clap checks beyond the values: at least one maildir, -M refuses the MTA options,
    // -p needs -c, and --sendmail needs --sieve.
    if args.maildirs.is_empty()
        || (mail.mbox && mta_given(&seen))
        || (args.create_parents && !args.create)
        || (sendmail.is_some() && sieve.is_none())
    {
        return None;
    }
    let sieve = sieve.map(|script| SieveOptions {
        script,
        sendmail: sendmail.unwrap_or_else(|| crate::sieve::SENDMAIL.into()),
        sendmail_as: None,
    });
    Some((args, mail, sieve))
}

/// Whether an option `-M` conflicts with was given (`seen` holds each flag's first name in
/// [`FLAGS`]).
fn mta_given(seen: &[&str]) -> bool {
    const MTA_ONLY: [&str; 9] = [
        "--keep-from-line",
        "--return-path",
        "--delivered-to",
        "--original-to",
        "--from-env",
        "--quota-full",
        "--dedup",
        "-n",
        "--json",
    ];
    seen.iter().any(|s| MTA_ONLY.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words taken as subcommands here are clap's (a new subcommand must be added here,
    /// or its command lines would be read as deliveries into maildirs named like its words).
    #[test]
    fn subcommands_are_clap_s() {
        let mut clap: Vec<String> = crate::command::definition()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .chain(["help".to_string()])
            .collect();
        clap.sort();
        clap.dedup();
        let mut ours: Vec<String> = SUBCOMMANDS.iter().map(|s| s.to_string()).collect();
        ours.sort();
        assert_eq!(ours, clap);
    }

    /// What clap makes of `argv`: the delivery form's values, or `None` for anything else (an
    /// error, help, a subcommand).
    fn clap(argv: &[OsString]) -> Option<String> {
        let full: Vec<OsString> = std::iter::once(OsString::from("mdeliver"))
            .chain(argv.iter().cloned())
            .collect();
        let m = crate::command::definition()
            .try_get_matches_from(&full)
            .ok()?;
        if m.subcommand().is_some() {
            return None;
        }
        let sieve = m.get_one::<PathBuf>("sieve").map(|script| SieveOptions {
            script: script.clone(),
            sendmail: m
                .get_one::<PathBuf>("sendmail")
                .cloned()
                .unwrap_or_else(|| crate::sieve::SENDMAIL.into()),
            sendmail_as: None,
        });
        crate::args::from_matches(&m, &full)
            .ok()
            .map(|(a, mail)| format!("{:?}", (a, mail, sieve)))
    }

    fn quick(argv: &[OsString]) -> Option<String> {
        parse(argv).map(|v| format!("{v:?}"))
    }

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    /// A valid value for each option that takes one (by clap's long name).
    fn sample(long: &str) -> &'static str {
        match long {
            "input" => "/tmp/in.eml",
            "host" => "mx.example.org",
            "mbox-quoting" => "mboxo",
            "flags" => "SF",
            "folder" => "Archive/2019",
            "info-separator" => ";",
            "return-path" | "delivered-to" | "original-to" => "bob@example.org",
            "quota" => "100M,5000",
            "quota-full" => "bounce",
            "dedup" => "12h",
            "folder-encoding" => "utf8",
            "sieve" => "/home/bob/.dovecot.sieve",
            "sendmail" => "/usr/lib/sendmail",
            other => panic!("no sample value for --{other}: add one"),
        }
    }

    /// Every option of clap's definition, in every form MTAs write, alone and with the others:
    /// the quick parser reads each one (no option is left to the slow path by oversight), and
    /// reads it exactly as clap does.
    #[test]
    fn quick_and_clap_agree() {
        let def = crate::command::definition();
        let mut forms: Vec<Vec<String>> = Vec::new();
        for a in def.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            // The other Linux-only options (the system log, the user to deliver as) are
            // not the delivery form's values: clap reads them, and `command::parse` falls
            // back to it.
            if matches!(long, "help" | "version" | "syslog" | "no-syslog" | "user") {
                continue;
            }
            // -p needs -c, --sendmail needs --sieve.
            let with = |f: String| match long {
                "create-parents" => vec!["-c".to_owned(), f],
                "sendmail" => vec!["--sieve=/f.sieve".to_owned(), f],
                _ => vec![f],
            };
            let takes_value = a.get_action().takes_values();
            if takes_value {
                forms.push(with(format!("--{long}={}", sample(long))));
            }
            if !takes_value || long == "dedup" {
                forms.push(with(format!("--{long}")));
                if let Some(s) = a.get_short() {
                    forms.push(with(format!("-{s}")));
                }
            }
        }
        assert!(forms.len() >= 25, "{forms:?}");
        let maildirs = ["/var/mail/bob/Maildir", "./list", "Maildir two"];
        for form in &forms {
            let mut argv = form.clone();
            argv.extend(maildirs.iter().map(|s| s.to_string()));
            let argv: Vec<OsString> = argv.into_iter().map(OsString::from).collect();
            let q = quick(&argv);
            assert!(q.is_some(), "the quick parser leaves {form:?} to clap");
            assert_eq!(q, clap(&argv), "{form:?}");
        }
        // All the options at once that do not conflict, and -M with what it allows.
        let together = os(&[
            "-c",
            "-vv",
            "--no-fsync",
            "--strict-exit",
            "--host=h",
            "--input=/dev/null",
            "--keep-from-line",
            "--from-env",
            "--return-path=a@b",
            "--delivered-to=c@d",
            "--original-to=e@f",
            "--quota=1G",
            "--quota-full=defer",
            "--dedup=5d",
            "-n",
            "--json",
            "-X",
            "S",
            "--folder=A.B",
            "--info-separator=!",
            "M",
        ]);
        assert_eq!(quick(&together), None, "-X S is a separated value: clap's");
        let mut together: Vec<OsString> = together;
        together.retain(|a| a != "-X" && a != "S");
        assert!(quick(&together).is_some());
        assert_eq!(quick(&together), clap(&together));
        let import = os(&["-M", "--mbox-quoting=raw", "--flags=FS", "-v", "-c", "M"]);
        assert!(quick(&import).is_some());
        assert_eq!(quick(&import), clap(&import));
    }

    /// What the quick parser refuses falls back to clap, whether clap accepts it or not.
    #[test]
    fn unusual_forms_fall_back() {
        for argv in [
            &["--host", "h", "M"][..],
            &["-cv", "M"],
            &["-c", "-c", "M"],
            &["--host=a", "--host=b", "M"],
            &["--host=", "M"],
            &["list", "M"],
            &["lmtp", "--maildir=/v/{local}"],
            &["help"],
            &["--", "-M"],
            &["-"],
            &[],
            &["-c"],
            &["--quota=lots", "M"],
            &["--quota-full=never", "M"],
            &["--dedup=0", "M"],
            &["--info-separator=::", "M"],
            &["--flags=S1", "M"],
            &["-M", "--json", "M"],
            &["-M", "--dedup", "M"],
            &["--help"],
            &["--version"],
            &["--bogus", "M"],
            &["--create=yes", "M"],
            &["--sendmail=/usr/lib/sendmail", "M"],
            &["--sieve", "f.sieve", "M"],
            &["--sieve=", "M"],
            &["--sieve=a", "--sieve=b", "M"],
        ] {
            assert_eq!(quick(&os(argv)), None, "{argv:?}");
        }
        // A maildir path that is not UTF-8 is read here; an option value that is not falls back.
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(b"Mail\xff".to_vec());
        let argv = vec![OsString::from("-c"), odd.clone()];
        assert!(quick(&argv).is_some());
        assert_eq!(quick(&argv), clap(&argv));
        let mut host = b"--host=".to_vec();
        host.push(0xff);
        assert_eq!(quick(&[OsString::from_vec(host), odd]), None);
    }

    /// Random command lines from a vocabulary of valid, invalid and borderline words: whatever
    /// the quick parser accepts, clap parses to the same values.
    #[test]
    fn random_command_lines_agree() {
        let words = [
            "-c",
            "--create",
            "-v",
            "-vv",
            "--verbose",
            "--no-fsync",
            "--strict-exit",
            "-M",
            "--mbox",
            "--keep-from-line",
            "--from-env",
            "-n",
            "--dry-run",
            "--json",
            "--dedup",
            "--dedup=3h",
            "--dedup=x",
            "--host=a",
            "--input=/x",
            "--mbox-quoting=raw",
            "--mbox-quoting=no",
            "--flags=RS",
            "--flags=",
            "--folder=F",
            "--info-separator=;",
            "--return-path=<>",
            "--return-path=",
            "--delivered-to=d@x",
            "--original-to=o@x",
            "--quota=5C",
            "--quota=1,2,3",
            "--quota-full=bounce",
            "-X",
            "S",
            "--",
            "-",
            "list",
            "Maildir",
            "/abs/Maildir",
            "a=b",
            "-i",
            "--help",
            "-h",
            "-V",
            "--host=-x",
            "-vvv",
            "--input=",
            "--folder=.x",
            "--dedup=2d",
            "--sieve=/s.sieve",
            "--sieve=",
            "--sendmail=/x",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..10_000 {
            let len = (next() % 6) as usize;
            let argv: Vec<OsString> = (0..len)
                .map(|_| OsString::from(words[(next() % words.len() as u64) as usize]))
                .collect();
            if let Some(q) = quick(&argv) {
                accepted += 1;
                assert_eq!(Some(q), clap(&argv), "{argv:?}");
            }
        }
        assert!(
            accepted > 500,
            "only {accepted} command lines took the quick path"
        );
    }
}
