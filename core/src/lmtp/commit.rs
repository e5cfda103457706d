//! Group commit, decided: which flushes a batch of waiting deliveries needs, which flush
//! answers which delivery, and when a recipient's reply may be sent.
//!
//! Every delivery asks for two flushes, in this order, exactly as the one-shot path does:
//! its file's data ([`Need::Data`], before the file gets its name in `new/`), then its
//! directory's entries ([`Need::Names`], before its `250`). The driver collects the requests
//! waiting at one moment into a batch and runs the [`plan`] for it:
//!
//! - **One whole-filesystem flush** ([`Flush::Filesystem`], `syncfs` on Linux) when the batch
//!   holds more than one request, all on one filesystem, some of them files' data, and the
//!   kernel reports writeback errors through that flush (Linux 5.8 and later). It makes
//!   durable every file written and every name linked on that filesystem before it started,
//!   so it answers every request of the batch at once. A delivery passes through two batches
//!   (data, then names): a batch of deliveries costs two device flushes, however many
//!   deliveries it holds. Where files are written back before they are named
//!   ([`crate::fs::Capabilities::ordered_commit`], ext4) a delivery asks only for its names,
//!   and a batch of names alone is cheaper as its directories' flushes (below): on ext4 the
//!   first is the journal commit, which the others share.
//! - **Otherwise the per-file flushes** of the one-shot path: each file's data
//!   ([`Flush::Data`]), then each distinct directory once ([`Flush::Names`]).
//!
//! A request is answered (its delivery goes on: links its file, or replies) only when every
//! flush of the plan that [`answers`] it succeeded; a failed flush fails every request it
//! answers, and the driver replies 4xx for them (the MTA retries). Replies go out in
//! `RCPT` order (RFC 2033 section 4.2), each as soon as it and every earlier one is known:
//! [`sendable`].

/// What a waiting delivery asks to be made durable.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Need {
    /// Its file's data, before the file is named in `new/`.
    Data,
    /// Its directory's entries, before its reply.
    Names,
}

/// One delivery waiting for a flush.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// What it waits for.
    pub need: Need,
    /// The filesystem (device number) holding the file and its directory.
    pub fs: u64,
    /// The directory (its inode number on `fs`): requests naming the same one share its flush.
    pub dir: u64,
}

/// One flush the driver runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Flush {
    /// Everything written on this filesystem so far, data and names (`syncfs`).
    Filesystem(u64),
    /// The file of request `i` (`fdatasync`).
    Data(usize),
    /// The directory of request `i` (`fsync`), for every request naming that directory.
    Names(usize),
}

/// What the driver's platform offers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// The whole-filesystem flush reports writeback errors of the files it flushes
    /// (Linux's `syncfs` does from 5.8 on; before, it always succeeded).
    pub filesystem_flush_reports_errors: bool,
}

/// Whether `release` (a Linux `uname -r`, e.g. `6.1.0-18-amd64`) is 5.8 or later, where
/// `syncfs` reports writeback errors. An unreadable release is taken as too old.
pub fn syncfs_reports_errors(release: &str) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let num = |p: Option<&str>| p.and_then(|s| s.parse::<u32>().ok());
    match (num(parts.next()), num(parts.next())) {
        (Some(major), Some(minor)) => (major, minor) >= (5, 8),
        _ => false,
    }
}

/// Whether one whole-filesystem flush serves the batch: it holds files' data to flush (a
/// batch of names alone costs less as its directories' flushes, one per directory: on ext4,
/// where files are written back before they are named, every batch is one).
fn whole(batch: &[Request], platform: Platform) -> bool {
    platform.filesystem_flush_reports_errors
        && batch.len() > 1
        && batch.iter().all(|r| r.fs == batch[0].fs)
        && batch.iter().any(|r| r.need == Need::Data)
}

/// The flushes for `batch`, written into `out` in the order they must run (every
/// [`Flush::Data`] before any [`Flush::Names`]); gives how many. `out` needs room for
/// `batch.len()` flushes; a shorter `out` gets the first ones only, which answer fewer
/// requests (those get no result and are failed by [`answered`]).
pub fn plan(batch: &[Request], platform: Platform, out: &mut [Flush]) -> usize {
    if batch.is_empty() || out.is_empty() {
        return 0;
    }
    if whole(batch, platform) {
        out[0] = Flush::Filesystem(batch[0].fs);
        return 1;
    }
    let mut n = 0;
    for (i, r) in batch.iter().enumerate() {
        if r.need == Need::Data && n < out.len() {
            out[n] = Flush::Data(i);
            n += 1;
        }
    }
    for (i, r) in batch.iter().enumerate() {
        let first = batch[..i]
            .iter()
            .all(|p| !(p.need == Need::Names && p.fs == r.fs && p.dir == r.dir));
        if r.need == Need::Names && first && n < out.len() {
            out[n] = Flush::Names(i);
            n += 1;
        }
    }
    n
}

/// Whether `flush` (from the plan for `batch`) answers request `i`.
pub fn answers(flush: Flush, batch: &[Request], i: usize) -> bool {
    let r = batch[i];
    match flush {
        Flush::Filesystem(fs) => r.fs == fs,
        Flush::Data(j) => j == i,
        Flush::Names(j) => {
            let d = batch[j];
            r.need == Need::Names && d.fs == r.fs && d.dir == r.dir
        }
    }
}

/// Whether request `i` may go on: some flush of the plan answers it and every flush that
/// answers it succeeded (`ok[k]` is the result of `flushes[k]`).
pub fn answered(batch: &[Request], flushes: &[Flush], ok: &[bool], i: usize) -> bool {
    let mut any = false;
    for (k, f) in flushes.iter().enumerate() {
        if answers(*f, batch, i) {
            any = true;
            if !ok.get(k).copied().unwrap_or(false) {
                return false;
            }
        }
    }
    any
}

/// How many requests are sure to follow the batch just run at once: the delivery of each
/// answered [`Need::Data`] request links its file next and asks for [`Need::Names`]. The
/// driver may hold the next batch briefly until that many names requests wait, so that they
/// share one flush instead of each waiting for a batch that started a moment before them.
pub fn followers(batch: &[Request], flushes: &[Flush], ok: &[bool]) -> usize {
    (0..batch.len())
        .filter(|&i| batch[i].need == Need::Data && answered(batch, flushes, ok, i))
        .count()
}

/// How many replies may be sent now: `done[i]` says recipient `i` (in `RCPT` order) has its
/// outcome, and `sent` replies are out already. Replies go in order, each as soon as it and
/// all before it are known.
pub fn sendable(done: &[bool], sent: usize) -> usize {
    done.iter().skip(sent).take_while(|d| **d).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    const NEW: Platform = Platform {
        filesystem_flush_reports_errors: true,
    };
    const OLD: Platform = Platform {
        filesystem_flush_reports_errors: false,
    };

    fn req(need: Need, fs: u64, dir: u64) -> Request {
        Request { need, fs, dir }
    }

    fn planned(batch: &[Request], p: Platform) -> Vec<Flush> {
        let mut out = [Flush::Data(0); 64];
        let n = plan(batch, p, &mut out);
        out[..n].to_vec()
    }

    /// Every request of a plan is answered by some flush, data flushes come before name
    /// flushes, and no flush appears twice: over every batch of up to 4 requests drawn from
    /// two needs, two filesystems and two directories, on both platforms.
    #[test]
    fn every_plan_answers_every_request_once_data_before_names() {
        let kinds: Vec<Request> = [Need::Data, Need::Names]
            .iter()
            .flat_map(|&n| {
                [(1, 10), (1, 11), (2, 10)]
                    .into_iter()
                    .map(move |(fs, dir)| req(n, fs, dir))
            })
            .collect();
        let mut batches: Vec<Vec<Request>> = vec![Vec::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for b in &batches {
                for k in &kinds {
                    let mut b = b.clone();
                    b.push(*k);
                    next.push(b);
                }
            }
            for b in &next {
                for p in [NEW, OLD] {
                    let flushes = planned(b, p);
                    let ok = vec![true; flushes.len()];
                    for i in 0..b.len() {
                        assert!(answered(b, &flushes, &ok, i), "{b:?} {p:?} {flushes:?}");
                        // A failed flush fails whatever it answers.
                        for k in 0..flushes.len() {
                            let mut bad = ok.clone();
                            bad[k] = false;
                            assert_eq!(answered(b, &flushes, &bad, i), !answers(flushes[k], b, i));
                        }
                    }
                    let first_names = flushes.iter().position(|f| matches!(f, Flush::Names(_)));
                    if let Some(n) = first_names {
                        assert!(flushes[n..].iter().all(|f| matches!(f, Flush::Names(_))));
                    }
                    for (k, f) in flushes.iter().enumerate() {
                        assert!(!flushes[..k].contains(f), "{flushes:?}");
                    }
                    // The device-flush count: one per batch with data on one filesystem and a
                    // new kernel.
                    let one_fs = b.iter().all(|r| r.fs == b[0].fs);
                    let data = b.iter().any(|r| r.need == Need::Data);
                    if p == NEW && one_fs && data && b.len() > 1 {
                        assert_eq!(flushes, [Flush::Filesystem(b[0].fs)]);
                    } else {
                        assert!(flushes.iter().all(|f| !matches!(f, Flush::Filesystem(_))));
                    }
                }
            }
            batches = next;
        }
    }

    #[test]
    fn a_batch_of_many_deliveries_on_one_filesystem_costs_one_flush() {
        let batch: Vec<Request> = (0..32)
            .map(|i| req(if i % 2 == 0 { Need::Data } else { Need::Names }, 7, 100))
            .collect();
        assert_eq!(planned(&batch, NEW), [Flush::Filesystem(7)]);
        // The old kernel: 16 file flushes and the one directory.
        let old = planned(&batch, OLD);
        assert_eq!(old.len(), 17);
        assert_eq!(old[16], Flush::Names(1));
        // Across filesystems: the per-file way, one directory flush per filesystem.
        let mixed = [req(Need::Names, 1, 5), req(Need::Names, 2, 5)];
        assert_eq!(planned(&mixed, NEW), [Flush::Names(0), Flush::Names(1)]);
        // Names alone (files written back, ext4): each directory once, no syncfs.
        let names = [
            req(Need::Names, 7, 100),
            req(Need::Names, 7, 100),
            req(Need::Names, 7, 101),
        ];
        assert_eq!(planned(&names, NEW), [Flush::Names(0), Flush::Names(2)]);
        // A lone request keeps the one-shot path's own flush.
        assert_eq!(planned(&batch[..1], NEW), [Flush::Data(0)]);
        // No room: nothing planned, nothing answered.
        assert_eq!(plan(&batch, NEW, &mut []), 0);
        assert!(!answered(&batch, &[], &[], 0));
    }

    #[test]
    fn kernels_from_5_8_report_writeback_errors_through_syncfs() {
        for (r, yes) in [
            ("5.8.0", true),
            ("6.18.44-fc-v1300", true),
            ("6.1.0-18-amd64", true),
            ("5.7.19", false),
            ("4.19.0-26-amd64", false),
            ("10.0", true),
            ("", false),
            ("garbage", false),
            ("5", false),
        ] {
            assert_eq!(syncfs_reports_errors(r), yes, "{r}");
        }
    }

    #[test]
    fn each_answered_data_request_is_followed_by_its_names_request() {
        let batch = [
            req(Need::Data, 1, 7),
            req(Need::Names, 1, 7),
            req(Need::Data, 1, 8),
            req(Need::Data, 2, 9),
        ];
        for p in [NEW, OLD] {
            let flushes = planned(&batch, p);
            assert_eq!(followers(&batch, &flushes, &vec![true; flushes.len()]), 3);
            assert_eq!(followers(&batch, &flushes, &vec![false; flushes.len()]), 0);
        }
        // Per file: only the deliveries whose own data flush succeeded go on to link.
        let flushes = planned(&batch, OLD);
        let ok: Vec<bool> = flushes.iter().map(|f| *f != Flush::Data(2)).collect();
        assert_eq!(followers(&batch, &flushes, &ok), 2);
    }

    #[test]
    fn replies_go_in_rcpt_order_as_soon_as_each_and_all_before_are_known() {
        assert_eq!(sendable(&[], 0), 0);
        assert_eq!(sendable(&[false, true, true], 0), 0);
        assert_eq!(sendable(&[true, false, true], 0), 1);
        assert_eq!(sendable(&[true, false, true], 1), 0);
        assert_eq!(sendable(&[true, true, true], 1), 2);
        assert_eq!(sendable(&[true, true, true], 3), 0);
    }
}
