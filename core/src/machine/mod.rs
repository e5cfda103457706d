//! The state machines: each decides one job over the [`Fs`] vocabulary and never
//! performs I/O itself. Its driver asks it for the next operation, performs it, and feeds the
//! result back, so the same machine runs under the Linux binary, the WASI module and the
//! simulator, which interleaves many of them and crashes them at every step.
//!
//! - [`deliver`]: one message written into tmp/ and published into new/ (or cur/).
//! - [`scan`]: a complete listing of new/ and cur/ under concurrent renames, and a reader's
//!   never-clobbering rename ([`scan::Move`]).
//! - [`quota`]: the Maildir++ `maildirsize` check and recalculation.
//! - [`dedup`]: the duplicate-suppression index that makes an MTA's retries exactly-once.
//! - [`flagchange`]: a reader's flag change on one message.
//! - [`trust`]: the strategy a filesystem gets: `Locked` where exclusive create and link
//!   replies cannot be trusted.
//! - [`mta`]: the MTA's delivery as one machine: duplicate check, quota check, publish, quota
//!   accounting and duplicate commit, in that order.
//! - [`unit`](mod@unit): several actions on one message (a Sieve script's copies and
//!   redirects) as one exactly-once unit: a record, then one [`mta`] delivery per copy under
//!   its own key. What only its driver can do (a copy into another maildir, a message to
//!   send) is its output, answered before [`run`] resumes it.
//!
//! # The protocol
//! Every machine speaks the one vocabulary of [`Op`] and [`OpResult`] and implements
//! [`Machine`]: [`Machine::poll`] says what it wants ([`Step::Op`], or [`Step::Done`] with its
//! output), the driver performs that one operation and hands the result back with
//! [`Machine::feed`], together with the bytes the operation read (an entry's name, a small
//! file's contents). [`run`] is that loop for a driver that owns the filesystem; the simulator
//! and the WASI stepping ABI interleave or marshal the same two calls.

use crate::env::Env;
use crate::error::ErrorKind;
use crate::fs::{perform, Fs, Op, OpResult, Slots};

pub mod dedup;
pub mod deliver;
pub mod flagchange;
pub mod mta;
pub mod quota;
pub mod scan;
pub mod trust;
pub mod unit;

/// What a machine wants next.
// The output may carry a name buffer by value: there is no heap to box it in.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<'a, T> {
    /// Perform this operation and feed its result.
    Op(Op<'a>),
    /// Finished, with this output.
    Done(T),
}

/// A sans-io state machine over the [`Op`] vocabulary.
pub trait Machine {
    /// What it produces when done.
    type Output;
    /// The next step. Calling it again without feeding returns the same step.
    fn poll(&self) -> Step<'_, Self::Output>;
    /// Reports the result of the operation last returned by [`poll`](Machine::poll), with the
    /// bytes it read (`Read`: the file's start; `NextEntry`: the name; otherwise empty).
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, data: &[u8], env: &mut E);
    /// Sees the message's bytes as `WriteMessage` streams them into tmp/ (what the duplicate
    /// index keys a message by); machines that do not care ignore them.
    fn observe(&mut self, chunk: &[u8]);
}

/// A message source that shows every chunk it gives to a machine ([`Machine::observe`]).
struct Observed<'a, M: ?Sized, R: ?Sized> {
    machine: &'a mut M,
    source: &'a mut R,
}

impl<M: ?Sized, R: embedded_io::ErrorType + ?Sized> embedded_io::ErrorType for Observed<'_, M, R> {
    type Error = R::Error;
}

impl<M: Machine + ?Sized, R: embedded_io::Read + ?Sized> embedded_io::Read for Observed<'_, M, R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = self.source.read(buf)?;
        self.machine.observe(&buf[..n]);
        Ok(n)
    }
}

/// Runs `machine` to completion on `fs`: performs each operation it asks for and feeds back
/// the result. The message streams from `source` through `buf`, which also receives what
/// small files and listings read: give it at least
/// [`RECALC_SIZE`](quota::RECALC_SIZE) bytes when the machine checks a quota or a duplicate
/// index.
pub fn run<M, F, E, R>(
    machine: &mut M,
    fs: &mut F,
    env: &mut E,
    source: &mut R,
    buf: &mut [u8],
) -> M::Output
where
    M: Machine + ?Sized,
    F: Fs + ?Sized,
    E: Env + ?Sized,
    R: embedded_io::Read + ?Sized,
{
    let mut slots = Slots::default();
    run_in(machine, fs, env, &mut slots, source, buf)
}

/// [`run`] with the driver's slots lent (a driver that performs something between machines
/// on the same open file).
pub fn run_in<M, F, E, R>(
    machine: &mut M,
    fs: &mut F,
    env: &mut E,
    slots: &mut Slots<F>,
    source: &mut R,
    buf: &mut [u8],
) -> M::Output
where
    M: Machine + ?Sized,
    F: Fs + ?Sized,
    E: Env + ?Sized,
    R: embedded_io::Read + ?Sized,
{
    loop {
        let (r, n) = if matches!(machine.poll(), Step::Op(Op::WriteMessage)) {
            let mut tap = Observed {
                machine: &mut *machine,
                source: &mut *source,
            };
            perform(fs, env, slots, Op::WriteMessage, &mut tap, buf)
        } else {
            match machine.poll() {
                Step::Done(out) => return out,
                Step::Op(op) => perform(fs, env, slots, op, source, buf),
            }
        };
        machine.feed(r, &buf[..n], env);
    }
}

/// One operation as a machine: a driver's step between machines (an import's window flush).
struct One<'a>(Op<'a>, Option<OpResult>);

impl Machine for One<'_> {
    type Output = OpResult;
    fn poll(&self) -> Step<'_, OpResult> {
        self.1.map_or(Step::Op(self.0), Step::Done)
    }
    fn feed<E: Env + ?Sized>(&mut self, result: OpResult, _: &[u8], _: &mut E) {
        self.1 = Some(result);
    }
    fn observe(&mut self, _: &[u8]) {}
}

/// Performs the one operation `op` (which reads nothing and streams no message) on `fs`
/// through [`run`].
pub fn run_op<F, E>(fs: &mut F, env: &mut E, op: Op<'_>) -> Result<(), ErrorKind>
where
    F: Fs + ?Sized,
    E: Env + ?Sized,
{
    run(&mut One(op, None), fs, env, &mut &b""[..], &mut [])
        .err()
        .map_or(Ok(()), Err)
}
