//! Failing filesystems, for real: as root, a 256 KiB tmpfs is mounted, then filled (or
//! remounted read-only) and delivered into through every publish path. Delivery must fail with
//! 75 (temporary: the MTA retries; 77 for read-only with --strict-exit), say why, and leave
//! tmp/, new/ and cur/ exactly as they were. Skipped, with the reason printed, when not root
//! or when mounting is not permitted (e.g. an unprivileged container).

mod cli_support;

use cli_support::*;

#[test]
fn full_filesystem_defers_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(t.path(), "256k", "0700") else {
        return;
    };
    let md = fs.mnt.join("Maildir");
    make_maildir(&md);
    fs.fill();
    let msg = b"Subject: full\n\nthere is no room for this\n".repeat(100);
    let mut first = None;
    for (disable, _) in PATHS {
        for strict in [false, true] {
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&md];
            if strict {
                args.insert(0, &"--strict-exit");
            }
            let r = run(&args, &msg, &[("MDELIVER_DISABLE", disable)]);
            assert_eq!(r.code, 75, "{disable} strict={strict}: {}", r.stderr);
            let said = normalize(&r.stderr, t.path());
            assert_eq!(
                first.get_or_insert_with(|| said.clone()),
                &said,
                "{disable}"
            );
            assert_untouched(&md, "md");
        }
    }
    insta::assert_snapshot!("no_space", first.unwrap());
}

#[test]
fn message_larger_than_the_filesystem_defers_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(t.path(), "256k", "0700") else {
        return;
    };
    let md = fs.mnt.join("Maildir");
    make_maildir(&md);
    let msg: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for (disable, _) in PATHS {
        let r = run(&[&md], &msg, &[("MDELIVER_DISABLE", disable)]);
        assert_eq!(r.code, 75, "{disable}: {}", r.stderr);
        assert!(r.stderr.contains("no space left on device"), "{}", r.stderr);
        assert_untouched(&md, "md");
        // The space is free again: a small message still fits afterwards.
        let r = run(&[&md], b"small\n", &[("MDELIVER_DISABLE", disable)]);
        assert_eq!(r.code, 0, "{disable}: {}", r.stderr);
        assert_delivered_once(&md, b"small\n");
        for n in names(&md.join("new")) {
            std::fs::remove_file(md.join("new").join(n)).unwrap();
        }
    }
}

#[test]
fn read_only_filesystem_defers_or_reports_no_permission() {
    let t = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(t.path(), "256k", "0700") else {
        return;
    };
    let md = fs.mnt.join("Maildir");
    make_maildir(&md);
    fs.remount("ro");
    let mut said = Vec::new();
    for (disable, _) in PATHS {
        let r = run(&[&md], b"hello\n", &[("MDELIVER_DISABLE", disable)]);
        assert_eq!(r.code, 75, "{disable}: {}", r.stderr);
        let r2 = run(
            &[&"--strict-exit", &md],
            b"hello\n",
            &[("MDELIVER_DISABLE", disable)],
        );
        assert_eq!(r2.code, 77, "{disable}: {}", r2.stderr);
        // The same message after the status line, whose class follows the exit code.
        let (status, rest) = r.stderr.split_once('\n').unwrap();
        let (status2, rest2) = r2.stderr.split_once('\n').unwrap();
        assert_eq!(rest, rest2);
        assert_eq!(
            (&status[..2], &status2[..2]),
            ("4.", "5."),
            "{status} / {status2}"
        );
        said.push(format!("{disable:?}: {}", normalize(&r.stderr, t.path())));
        assert_untouched(&md, "md");
    }
    insta::assert_snapshot!("read_only", said.concat());
}

/// With a pipe as input, a delivery that fails halfway consumed part of the message: later
/// maildirs cannot get it and say so (75, so the MTA retries). With `--input FILE` the input is
/// read again from the start and later maildirs get the whole message.
#[test]
fn a_delivery_failing_halfway_and_the_maildirs_after_it() {
    let t = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(t.path(), "256k", "0700") else {
        return;
    };
    let small = fs.mnt.join("Maildir");
    make_maildir(&small);
    let roomy = t.path().join("Roomy");
    make_maildir(&roomy);
    let msg: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();

    let r = run(&[&small, &roomy], &msg, &[]);
    assert_eq!(r.code, 75);
    assert_untouched(&small, "small");
    assert_untouched(&roomy, "roomy");
    insta::assert_snapshot!(
        "pipe_consumed_by_failed_delivery",
        normalize(&r.stderr, t.path())
    );

    let file = t.path().join("msg.eml");
    std::fs::write(&file, &msg).unwrap();
    let r = run(&[&"--input", &file, &small, &roomy], b"", &[]);
    assert_eq!(r.code, 75);
    assert_untouched(&small, "small");
    assert_delivered_once(&roomy, &msg);
}
