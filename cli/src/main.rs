//! `mdeliver`: reads one message and delivers it into each maildir given. A thin driver: it
//! parses arguments and runs the shared driver ([`mdeliver_driver::run`]) with the Linux
//! adapter; every mail decision is made in `mdeliver-core`.

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
mod reader;
mod testing;

use mdeliver_driver::{args, exit, import, json, mail_args};

use std::process::ExitCode;

use crate::linux::Disabled;

fn main() -> ExitCode {
    if let Some(code) = gen::intercept() {
        return code;
    }
    let (args, mail) = match command::parse() {
        Ok(command::Parsed::Deliver(a, m)) => (a, m),
        Ok(command::Parsed::List(a)) => return list::run(&a),
        Ok(command::Parsed::Flag(a)) => return flag::run(&a),
        Ok(command::Parsed::Check(a)) => return check::run(&a),
        Ok(command::Parsed::Lmtp(a)) => return lmtp::run(*a),
        Err(code) => return code,
    };
    let disabled = match std::env::var_os(Disabled::VAR) {
        None => Disabled::default(),
        Some(v) => match Disabled::parse(&v.to_string_lossy()) {
            Ok(d) => d,
            Err(word) => {
                eprintln!(
                    "mdeliver: {}: unknown feature '{word}' (known: anonymous-tmp, \
                     rename-noreplace, hard-links)",
                    Disabled::VAR
                );
                return ExitCode::from(exit::USAGE);
            }
        },
    };
    let mut linux = adapter::Linux::new(&args, mail.info_separator, disabled);
    ExitCode::from(mdeliver_driver::run::run(&mut linux, &args, &mail))
}
