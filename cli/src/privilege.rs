//! Running as root (issue 13): mdeliver never leaves root-owned files in someone else's maildir.
//! Before anything is opened, a process running as root becomes the owner of the maildirs:
//!
//! - with `--user NAME`: that user (its uid, primary gid and supplementary groups, looked up
//!   through the system's user database, NSS included);
//! - else the owner of the maildirs (of the nearest directory that exists, for a maildir `-c`
//!   is to create), with that user's groups (or, for a uid with no user entry, the directory's
//!   group);
//! - a maildir owned by root is root's own: delivered as root (so is one `-c` creates in a
//!   directory of root's);
//! - refused, saying why: maildirs with different owners (run one mdeliver per owner, or give
//!   `--user`).
//!
//! The switch is `setgroups`, `setresgid`, `setresuid` (real, effective and saved ids: root
//! cannot be regained). Without root, `--user` must name the user mdeliver runs as.

use std::path::{Path, PathBuf};

use mdeliver_core::mda::owner::{deliver_as, DeliverAs, Named, Refusal};

use nix::unistd::{geteuid, getgrouplist, setgroups, setresgid, setresuid, Gid, Uid, User};

/// Who to deliver as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) uid: Uid,
    pub(crate) gid: Gid,
    pub(crate) groups: Vec<Gid>,
}

/// The owner (uid, gid) of `path`, or of the nearest directory above it that exists. One
/// `stat` per path tried (std's `metadata` would first probe whether `statx` exists); a
/// relative path is made absolute (`getcwd`) only when it does not exist, to walk up.
pub(crate) fn owner(path: &Path) -> std::io::Result<(u32, u32)> {
    match rustix::fs::stat(path) {
        Ok(m) => return Ok((m.st_uid, m.st_gid)),
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let mut p: PathBuf = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    };
    while p.pop() {
        match rustix::fs::stat(&p) {
            Ok(m) => return Ok((m.st_uid, m.st_gid)),
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(rustix::io::Errno::NOENT.into())
}

/// The effective uid this process was started with, from the auxiliary vector the kernel
/// hands every process (no system call, unlike `geteuid`). Nothing before [`become_owner`]
/// changes it.
pub(crate) fn started_as_root() -> bool {
    // SAFETY: getauxval only reads the process's auxiliary vector; Linux always puts AT_EUID
    // in it.
    unsafe { libc::getauxval(libc::AT_EUID) == 0 }
}

/// The user `uid` (its primary group and groups), or, with no user entry, `dir_gid` alone.
pub(crate) fn by_uid(uid: u32, dir_gid: u32) -> Result<Identity, String> {
    let uid = Uid::from_raw(uid);
    match User::from_uid(uid) {
        Ok(Some(u)) => identity(u),
        Ok(None) => Ok(Identity {
            name: format!("uid {uid}"),
            uid,
            gid: Gid::from_raw(dir_gid),
            groups: vec![Gid::from_raw(dir_gid)],
        }),
        Err(e) => Err(format!("looking up uid {uid}: {e}")),
    }
}

fn identity(u: User) -> Result<Identity, String> {
    let cname = std::ffi::CString::new(u.name.clone()).map_err(|e| e.to_string())?;
    let groups = getgrouplist(&cname, u.gid)
        .map_err(|e| format!("looking up the groups of {}: {e}", u.name))?;
    Ok(Identity {
        name: u.name,
        uid: u.uid,
        gid: u.gid,
        groups,
    })
}

/// Why mdeliver would not become the maildirs' owner.
#[derive(Debug)]
pub(crate) enum Refused {
    /// A mistake on the command line or in the user database: the message says what.
    Usage(String),
    /// Maildir `index` could not be examined (its `stat` failed): reported as that maildir's
    /// failure to open, as it is when mdeliver does not run as root.
    Maildir {
        /// Which maildir.
        index: usize,
        /// The `stat`'s error.
        error: std::io::Error,
    },
}

impl Refused {
    /// What to print after `mdeliver: ` (`maildirs`: those given to [`become_owner`]).
    pub(crate) fn message(&self, maildirs: &[PathBuf]) -> String {
        match self {
            Refused::Usage(m) => m.clone(),
            Refused::Maildir { index, error } => match maildirs.get(*index) {
                Some(md) => format!("{}: finding its owner: {error}", md.display()),
                None => format!("finding a maildir's owner: {error}"),
            },
        }
    }
}

impl From<String> for Refused {
    fn from(message: String) -> Refused {
        Refused::Usage(message)
    }
}

/// Who to deliver as (`mdeliver_core::mda::owner` decides); `None` to stay as we are.
fn decide(
    user: Option<&str>,
    maildirs: &[PathBuf],
    root: bool,
) -> Result<Option<Identity>, Refused> {
    let named = match user {
        Some(name) => match User::from_name(name) {
            Ok(Some(u)) => Some((name, u)),
            Ok(None) => return Err(format!("--user {name}: no such user").into()),
            Err(e) => return Err(format!("--user {name}: looking it up: {e}").into()),
        },
        None => None,
    };
    let owners = maildirs.iter().map(|md| owner(md));
    // As root, whom it names does not matter: no `geteuid` (a system call) then.
    let us = |u: &User| match !root && u.uid == geteuid() {
        true => Named::Us,
        false => Named::Other,
    };
    match deliver_as(named.as_ref().map(|(_, u)| us(u)), root, owners) {
        Ok(DeliverAs::Unchanged) => Ok(None),
        Ok(DeliverAs::Named) => Ok(named.map_or(Ok(None), |(_, u)| identity(u).map(Some))?),
        Ok(DeliverAs::Owner { uid, gid }) => Ok(by_uid(uid, gid).map(Some)?),
        Err(Refusal::NotRoot) => Err(Refused::Usage(format!(
            "--user {}: only root can deliver as another user (running as uid {})",
            user.unwrap_or_default(),
            geteuid()
        ))),
        Err(Refusal::Owner { index, error }) => Err(Refused::Maildir { index, error }),
        Err(Refusal::DifferentOwners {
            first,
            second,
            uids: (u, uid),
        }) => Err(Refused::Usage(format!(
            "running as root, the maildirs {} and {} have different owners (uid {u} and \
             {uid}); run one mdeliver per owner, or pass --user NAME",
            maildirs[first].display(),
            maildirs[second].display()
        ))),
    }
}

/// Becomes the user to deliver as, before any maildir is touched (see the module docs); the
/// refusal otherwise.
pub(crate) fn become_owner(user: Option<&str>, maildirs: &[PathBuf]) -> Result<(), Refused> {
    let Some(id) = decide(user, maildirs, started_as_root())? else {
        return Ok(());
    };
    let fail = |what: &str, e: nix::Error| {
        format!("running as root: switching to {} ({what}): {e}", id.name)
    };
    setgroups(&id.groups).map_err(|e| fail("groups", e))?;
    setresgid(id.gid, id.gid, id.gid).map_err(|e| fail("gid", e))?;
    setresuid(id.uid, id.uid, id.uid).map_err(|e| fail("uid", e))?;
    Ok(())
}
