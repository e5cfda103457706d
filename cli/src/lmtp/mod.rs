//! `mdeliver lmtp`: an LMTP (RFC 2033) delivery server. The protocol's decisions are the
//! core's ([`mdeliver_core::lmtp`]); this driver owns the sockets, the sessions' threads, the
//! spool files, signal handling and the group commit ([`commit`]). Each recipient's message
//! goes through the same core delivery as the one-shot path (trace fields, loop check, quota,
//! duplicates, publish), with its flushes batched across sessions.

/// Writes one line to standard error in one system call (`eprintln!` makes one per piece of
/// its format), so the log lines of concurrent sessions cost little and never interleave.
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("{}\n", format_args!($($arg)*));
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}

mod commit;
mod conn;
mod kept;
mod listen;
mod owner;
mod session;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use mdeliver_core::lmtp::address::{self, Recipient};
use mdeliver_core::machine::deliver::Durability;
use mdeliver_core::machine::quota::Limits;
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::Options;

use crate::env::LinuxEnv;
use crate::linux::{Disabled, StrategyKnobs};
use mdeliver_driver::envelope::Settings;
use mdeliver_driver::exit;
use mdeliver_driver::mta_args::{parse_quota, parse_window, MtaArgs, QuotaFull};

const ABOUT: &str = "Run an LMTP delivery server: an MTA hands over messages on a socket, and \
each recipient's copy goes into its maildir";

const LONG_ABOUT: &str = "\
Run an LMTP (RFC 2033) delivery server. An MTA (Postfix: virtual_transport = \
lmtp:unix:/run/mdeliver/lmtp) hands over messages on a socket; each recipient's copy is \
delivered into its maildir exactly as the one-shot mdeliver delivers it (Return-Path and \
Delivered-To added, loops refused, quota checked), and its reply (250 or an RFC 3463 4.x.x / \
5.x.x status) is sent only once the message is durable. Concurrent deliveries share their \
disk flushes (group commit).

Without --listen (and without systemd socket activation), one session is served on standard \
input and output (inetd style).";

const AFTER_LONG_HELP: &str = "\
RECIPIENTS
  --maildir '/var/vmail/{domain}/{local}/Maildir' maps each recipient to a maildir: {local} is \
the local part without its +subaddress, {domain} the domain, {rcpt} local@domain, all \
lower-cased. An address with a slash, a backslash, a leading dot or non-ASCII characters is \
refused (553 5.1.3). With --map FILE, only the addresses in FILE are accepted (others: 550 \
5.1.1); each line is ADDRESS [MAILDIR] ('@domain' accepts a whole domain; without MAILDIR the \
template applies; '#' starts a comment).

  A maildir that is missing (without -c) is answered 450 4.2.0 at RCPT, so the MTA retries \
(550 5.2.0 with --strict-exit). A failure after DATA (a maildir that cannot be written, quota, \
a loop, a full disk) is answered for that recipient alone, with the one-shot path's status.

RUNNING AS ROOT
  Without --user, a root server writes each recipient's files as the owner of its maildir (of \
the nearest existing directory above one -c creates), with that user's groups, as the one-shot \
mdeliver does; a maildir owned by root is written as root. A maildir its owner cannot write \
is answered 450 4.2.0 for that recipient alone. With --user NAME, everything is written as \
NAME.

SIGNALS
  SIGTERM, SIGINT, SIGHUP  stop accepting; sessions finish the message in flight, then get
                           421 4.3.2

EXIT STATUS
   0  stopped by a signal (or the standard-input session ended)
  64  usage error
  75  cannot listen, or the map file cannot be read";

/// `mdeliver lmtp` arguments.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP,
    max_term_width = 100
)]
pub struct LmtpArgs {
    /// Listen on unix:PATH, HOST:PORT or PORT (127.0.0.1); repeatable. Without it (and without
    /// systemd's LISTEN_FDS), serve one session on standard input and output
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,

    /// The maildir of a recipient: a template with {local}, {domain} and {rcpt}
    #[arg(long, value_name = "TEMPLATE")]
    pub maildir: Option<String>,

    /// Filter each recipient's copy through its own Sieve script: a template with {local},
    /// {domain} and {rcpt}, as --maildir; a recipient whose script does not exist is delivered
    /// unfiltered (see mdeliver --sieve)
    #[arg(long, value_name = "TEMPLATE")]
    pub sieve: Option<String>,

    /// Filter through Dovecot's per-user script: .dovecot.sieve in the directory that holds
    /// the recipient's maildir (its home, for HOME/Maildir)
    #[arg(long, conflicts_with = "sieve")]
    pub sieve_dovecot: bool,

    /// The MTA's sendmail that Sieve redirects go through [default: /usr/sbin/sendmail]
    #[arg(long, value_name = "PATH")]
    pub sendmail: Option<PathBuf>,

    /// Accept only the addresses in FILE (lines: ADDRESS [MAILDIR])
    #[arg(long, value_name = "FILE")]
    pub map: Option<PathBuf>,

    /// Create a missing maildir and its tmp/, new/ and cur/ (mode 0700); the parent must exist
    #[arg(short = 'c', long)]
    pub create: bool,

    /// With -c, also create the missing directories above the maildir (mode 0700), following
    /// no symbolic link on the way (e.g. a new domain's directory)
    #[arg(short = 'p', long, requires = "create")]
    pub create_parents: bool,

    /// Refuse messages over SIZE bytes (suffix k, M or G) with 552 5.3.4
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,

    /// Serve at most N sessions at once; more get 421 4.3.2
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_sessions: usize,

    /// Close a session silent for SECS seconds (421 4.4.2)
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub idle_timeout: u64,

    /// Close a session open for SECS seconds, after its message in flight (421 4.4.2)
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub session_timeout: u64,

    /// Where messages over 64 KiB are spooled while they arrive (unnamed files; default
    /// /var/tmp, which is on disk where /tmp may be memory); smaller ones are held in memory
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,

    /// The permissions of unix sockets created by --listen (octal)
    #[arg(long, value_name = "MODE", default_value = "0660", value_parser = parse_mode)]
    pub socket_mode: u32,

    /// As root, serve as user NAME (its uid and groups) once the sockets are bound, so the
    /// maildirs (and the spool) are written as that user, e.g. vmail
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Skip every flush: fast, NOT durable (tests, tmpfs)
    #[arg(long)]
    pub no_fsync: bool,

    /// Answer a missing or unwritable maildir with 5.x.x (as the one-shot path's
    /// --strict-exit bounces it) instead of 4.x.x
    #[arg(long)]
    pub strict_exit: bool,

    /// The host name in delivered file names and the greeting (default: the system's)
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,

    /// Maildir++ quota for every maildir, as in the delivery form's --quota
    #[arg(long, value_name = "SIZE[,COUNT]", value_parser = parse_quota)]
    pub quota: Option<Limits>,

    /// What a message over quota gets: "defer" (452 4.2.2) or "bounce" (552 5.2.2)
    #[arg(long, value_name = "ACTION", value_enum, default_value_t = QuotaFull::Defer,
          hide_possible_values = true)]
    pub quota_full: QuotaFull,

    /// Store a message at most once per WINDOW per maildir, as in the delivery form's --dedup
    #[arg(long, value_name = "WINDOW", num_args = 0..=1, require_equals = true,
          default_missing_value = "5d", value_parser = parse_window)]
    pub dedup: Option<u64>,

    /// Whether each recipient's copy gets its own Delivered-To: header: "rcpt" (the default;
    /// it also stops mail loops) or "none", as Dovecot's lmtp_hdr_delivery_address = none:
    /// the copies for a message's recipients are then identical and stored as hard links to
    /// one file where their maildirs share a filesystem
    #[arg(long, value_name = "WHAT", value_enum, default_value_t = DeliveredTo::Rcpt,
          hide_possible_values = true)]
    pub delivered_to: DeliveredTo,

    /// Log every delivery on standard error; at exit, the group commit's counters
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--delivered-to`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeliveredTo {
    /// `Delivered-To: <recipient>` on each copy (and the loop check on it).
    #[default]
    Rcpt,
    /// No `Delivered-To:`: identical copies, stored as hard links.
    None,
}

fn parse_size(s: &str) -> Result<u64, String> {
    match parse_quota(s) {
        Ok(Limits {
            bytes: Some(b),
            count: None,
        }) => Ok(b),
        _ => Err("expected a size such as 10M, 512k or 1048576".to_owned()),
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("expected an octal mode such as 0660; got {s:?}"))
}

/// Where a recipient's mail goes.
#[derive(Debug)]
struct Routes {
    template: Option<String>,
    /// Address (or `@domain`) → its own maildir, or `None` for the template's.
    map: Option<HashMap<String, Option<PathBuf>>>,
}

impl Routes {
    /// The Sieve script of `r` whose maildir is `maildir`, with `--sieve TEMPLATE` or
    /// `--sieve-dovecot`; None without either, or when the file does not exist.
    pub(crate) fn script(args: &LmtpArgs, r: &Recipient, maildir: &Path) -> Option<PathBuf> {
        let path = match (&args.sieve, args.sieve_dovecot) {
            (Some(t), _) => {
                let mut s = String::new();
                address::expand(t, r, &mut s).ok()?;
                PathBuf::from(s)
            }
            (None, true) => maildir.parent()?.join(".dovecot.sieve"),
            (None, false) => return None,
        };
        // Looked at as the identity that delivers (a root server: the maildir's owner). One it
        // cannot reach is still its script: the delivery then fails on it, and the message is
        // deferred, not delivered unfiltered.
        match std::fs::metadata(&path) {
            Ok(m) => m.is_file().then_some(path),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(path),
            Err(_) => None,
        }
    }

    /// The maildir of `r`, or `None` for an unknown recipient.
    fn maildir(&self, r: &Recipient) -> Option<PathBuf> {
        let template = |t: &str| {
            let mut s = String::new();
            address::expand(t, r, &mut s).ok().map(|_| PathBuf::from(s))
        };
        match &self.map {
            None => template(self.template.as_deref()?),
            Some(m) => match m.get(r.key()).or_else(|| m.get(r.domain_key()))? {
                Some(p) => Some(p.clone()),
                None => template(self.template.as_deref()?),
            },
        }
    }
}

fn load_map(path: &Path, template: bool) -> Result<HashMap<String, Option<PathBuf>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the map file: {e}", path.display()))?;
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let addr = words.next().unwrap_or("").to_ascii_lowercase();
        let maildir = words.next().map(PathBuf::from);
        let at = |msg: &str| format!("{}:{}: {msg}", path.display(), n + 1);
        if words.next().is_some() {
            return Err(at("expected ADDRESS [MAILDIR]"));
        }
        if !addr.contains('@') {
            return Err(at(
                "the address needs an @ (write @domain for a whole domain)",
            ));
        }
        // Recipients are looked up without their subaddress: a key with one would never
        // match, and its mail would bounce as unknown.
        if addr.split('@').next().is_some_and(|l| l.contains('+')) {
            return Err(at(
                "recipients are looked up without their +subaddress: write the address without it",
            ));
        }
        if maildir.is_none() && !template {
            return Err(at("no MAILDIR on this line and no --maildir template"));
        }
        map.insert(addr, maildir);
    }
    Ok(map)
}

/// Everything the sessions share.
pub struct Server {
    routes: Routes,
    settings: Settings,
    opts: Options,
    args: LmtpArgs,
    disabled: Disabled,
    /// The testing knobs `MDELIVER_STRATEGY` and `MDELIVER_TEST_LOCK_STALE`.
    knobs: StrategyKnobs,
    host: String,
    /// Host name and pid, read once; cloned for each delivery.
    env: LinuxEnv,
    spool: PathBuf,
    committer: commit::Committer,
    /// Root without `--user`: each recipient's files are written as its maildir's owner.
    owners: owner::Owners,
    /// Maildirs kept open between deliveries.
    kept: kept::Kept,
    shutdown: Arc<AtomicBool>,
}

/// Runs `mdeliver lmtp`.
pub fn run(args: LmtpArgs) -> ExitCode {
    raise_open_files();
    match setup(args) {
        Ok(server) => listen::serve(server),
        Err((code, message)) => {
            log!("mdeliver lmtp: {message}");
            ExitCode::from(code)
        }
    }
}

/// Raises the soft limit on open files to the hard one: each recipient holds its maildir's
/// directories and its file open until the message's replies are sent, so 64 sessions of many
/// recipients need far more than the usual soft limit of 1024 (systemd's default hard limit
/// is 524288). A limit reached anyway is `4.3.0 mail system overloaded` for that recipient.
fn raise_open_files() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

fn setup(args: LmtpArgs) -> Result<Server, (u8, String)> {
    let usage = |m: String| (exit::USAGE, m);
    if args.maildir.is_none() && args.map.is_none() {
        return Err(usage(
            "give --maildir TEMPLATE (e.g. '/var/vmail/{domain}/{local}/Maildir') or --map FILE"
                .into(),
        ));
    }
    if let Some(t) = &args.maildir {
        address::check_template(t).map_err(|e| usage(format!("--maildir {t:?}: {e}")))?;
    }
    if args.max_sessions == 0 || args.idle_timeout == 0 || args.session_timeout == 0 {
        return Err(usage(
            "--max-sessions, --idle-timeout and --session-timeout must be at least 1".into(),
        ));
    }
    let map = match &args.map {
        Some(p) => Some(load_map(p, args.maildir.is_some()).map_err(|m| (exit::TEMPFAIL, m))?),
        None => None,
    };
    let disabled = match std::env::var_os(Disabled::VAR) {
        None => Disabled::default(),
        Some(v) => Disabled::parse(&v.to_string_lossy()).map_err(|w| {
            usage(format!(
                "{}: unknown feature '{w}' (known: {})",
                Disabled::VAR,
                Disabled::KNOWN
            ))
        })?,
    };
    let knobs = StrategyKnobs::from_env().map_err(usage)?;
    let mta = MtaArgs {
        quota: args.quota,
        quota_full: args.quota_full,
        dedup: args.dedup,
        ..MtaArgs::default()
    };
    let mut settings =
        Settings::new(&mta, InfoSep::COLON, |n| std::env::var_os(n)).map_err(usage)?;
    // LMTP carries no mbox framing: a first line `From ...` is the message's own.
    settings.unframed = true;
    let opts = Options {
        durability: if args.no_fsync {
            Durability::None
        } else {
            Durability::Full
        },
        ..Options::default()
    };
    let host = match &args.host {
        Some(h) => h.clone(),
        None => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    let spool = args
        .spool
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    Ok(Server {
        routes: Routes {
            template: args.maildir.clone(),
            map,
        },
        settings,
        opts,
        disabled,
        knobs,
        env: LinuxEnv::new().with_host(Some(&host)),
        host,
        spool,
        committer: commit::Committer::start(commit::Committer::platform()),
        owners: owner::Owners::new(args.user.is_none() && crate::privilege::started_as_root()),
        kept: kept::Kept::default(),
        shutdown: Arc::new(AtomicBool::new(false)),
        args,
    })
}

impl Server {
    fn idle(&self) -> Duration {
        Duration::from_secs(self.args.idle_timeout)
    }
}
