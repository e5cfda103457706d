//! `mdeliver`: reads one message and delivers it into each maildir given. A thin driver: it
//! parses arguments and runs the shared driver ([`mdeliver_driver::run`]) with the Linux
//! adapter; every mail decision is made in `mdeliver-core`. The process enters through
//! `start.rs` (std's start-up is not run), which calls [`run`].
#![cfg_attr(not(test), no_main)]

mod adapter;
mod check;
mod command;
mod env;
mod flag;
mod folder;
mod gen;
mod import_linux;
mod input;
mod linux;
mod list;
mod lmtp;
mod maillog;
mod privilege;
mod quick_args;
mod reader;
mod sieve;
mod signals;
#[cfg(not(test))]
mod start;
mod testing;

use mdeliver_driver::{args, exit, import, json, mail_args, report, status};

use std::ffi::OsString;
use std::process::ExitCode;

use crate::linux::Disabled;

/// Runs the command line `argv` (the program name first) and gives the exit code.
pub fn run(argv: &[OsString]) -> ExitCode {
    if let Some(code) = gen::intercept(argv) {
        return code;
    }
    let (args, mail, linux) = match command::parse(argv) {
        Ok(command::Parsed::Deliver(a, m, l)) => (a, m, l),
        Ok(command::Parsed::List(a)) => return list::run(&a),
        Ok(command::Parsed::Flag(a)) => return flag::run(&a),
        Ok(command::Parsed::Check(a)) => return check::run(&a),
        Ok(command::Parsed::Sieve(a)) => return sieve::run_command(&a),
        Ok(command::Parsed::Lmtp(a)) => return lmtp::run(*a),
        Err(code) => return code,
    };
    let refuse = |message: String| ExitCode::from(args::refuse(args.strict_exit, message));
    if let Some(message) = args::nested_create(&args) {
        return refuse(message);
    }
    let disabled = match Disabled::from_env() {
        Ok(d) => d,
        Err(message) => return refuse(message),
    };
    match privilege::become_owner(linux.user.as_deref(), &args.maildirs) {
        Ok(()) => {}
        // A maildir that cannot even be examined fails as its opening would without root.
        Err(privilege::Refused::Maildir { index, error }) => {
            let maildir = &args.maildirs[index];
            let failure = report::Failure::Open {
                kind: linux::io_error_kind(&error),
                part: mdeliver_core::Dir::Root,
                create: report::Create::of(args.create, mail.mta.dry_run).at(maildir),
            };
            let code = status::code(&failure, args.strict_exit, mail.mta.quota_full);
            eprintln!("{}", status::line(&failure, code, None));
            eprintln!("mdeliver: {}: {failure}", maildir.display());
            return ExitCode::from(code);
        }
        Err(refused) => return refuse(refused.message(&args.maildirs)),
    }
    let knobs = match linux::StrategyKnobs::from_env() {
        Ok(k) => k,
        Err(message) => return refuse(message),
    };
    if mail.mbox {
        signals::catch();
    } else {
        signals::arm();
    }
    let sieve = linux.sieve;
    let mut linux = adapter::Linux::new(&args, &mail, disabled, linux.syslog, knobs);
    if let Some(sieve) = &sieve {
        return ExitCode::from(sieve::deliver(&mut linux, &args, &mail, sieve));
    }
    ExitCode::from(mdeliver_driver::run::run(&mut linux, &args, &mail))
}
