//! The simulated filesystem: one maildir with inodes, link counts and contents, a readdir
//! that is an adversary, switchable semantics (local POSIX, NFS-like, hard links refused) and a
//! persistence model that yields the crash images a crash at this instant could leave.
//!
//! Every nondeterministic answer (which entry readdir returns next, whether an NFS link's reply
//! is lost) is asked of a [`Chooser`], so the explorer can enumerate them and a schedule string
//! can replay them.

use mdeliver_core::fs::EntryName;
use mdeliver_core::fs::{Capabilities, Dir, Fs, Persist, Stat};
use mdeliver_core::machine::deliver::LOCK_BREAK_PREFIX;
use mdeliver_core::ErrorKind;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// What kind of filesystem the maildir is on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Semantics {
    /// A local POSIX filesystem (features per the configured capabilities).
    Posix,
    /// NFS-like: `O_EXCL` is a lookup then a create (two steps, not atomic), `link` may succeed
    /// and report an error (lost reply: `Io`, or `Exists` from the retransmission),
    /// rename-noreplace is refused (`Unsupported`, Linux's EINVAL), no anonymous tmp files.
    Nfs,
    /// Hard links refused (`Unsupported`; EPERM on Android/VM shared folders), no
    /// rename-noreplace, no anonymous tmp files.
    NoHardLinks,
    /// A broken filesystem for the checks' own test: it reports
    /// [`Capabilities::ordered_commit`] but a flush of names does not make the data written
    /// back before them durable (what trusting the promise on the wrong filesystem would do).
    BrokenOrder,
}

/// Which un-synced operations survive a crash.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Persistence {
    /// P0: everything is synchronous (dir operations and data durable when they return).
    P0,
    /// P1: journaled: dir operations persist as an in-order prefix; file data only after fsync.
    P1,
    /// P2: pessimistic: any subset of un-synced dir operations (fsync of a directory persists
    /// the operations touching it) and no un-synced data.
    P2,
}

impl Persistence {
    /// Short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Persistence::P0 => "P0",
            Persistence::P1 => "P1",
            Persistence::P2 => "P2",
        }
    }
}

/// The source of the filesystem's nondeterministic answers.
#[derive(Clone, Debug, Default)]
pub struct Chooser {
    /// Forced answers, consumed in order; missing ones are 0 (or random with `rng`).
    pub script: Vec<u32>,
    /// Position in `script`.
    pub pos: usize,
    /// Every choice made: (number of options, option taken).
    pub made: Vec<(u32, u32)>,
    /// When set, unscripted choices are random.
    pub rng: Option<crate::sim::rng::Rng>,
}

impl Chooser {
    /// Picks one of `n` options.
    pub fn choose(&mut self, n: u32) -> u32 {
        if n <= 1 {
            return 0;
        }
        let pick = match self.script.get(self.pos) {
            Some(&p) => p.min(n - 1),
            None => match self.rng.as_mut() {
                Some(r) => r.below(n as u64) as u32,
                None => 0,
            },
        };
        self.pos += 1;
        self.made.push((n, pick));
        pick
    }

    /// The answers to force for the next alternative of a step that made the choices `made`
    /// (`(options, taken)`): an odometer whose last wheel that can still turn does, the
    /// wheels after it dropped (they start again at 0). `None` once every alternative was
    /// taken.
    pub fn next_script(made: &[(u32, u32)]) -> Option<Vec<u32>> {
        let i = (0..made.len()).rev().find(|&i| made[i].1 + 1 < made[i].0)?;
        let mut script: Vec<u32> = made[..i].iter().map(|x| x.1).collect();
        script.push(made[i].1 + 1);
        Some(script)
    }

    /// Starts a new step with these forced answers.
    pub fn reset(&mut self, script: &[u32]) {
        self.script.clear();
        self.script.extend_from_slice(script);
        self.pos = 0;
        self.made.clear();
    }
}

/// An inode: contents, link count, durable contents.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Inode {
    /// Current contents.
    pub data: Vec<u8>,
    /// Contents as of the last fsync (what survives a crash under P1/P2).
    pub synced: Vec<u8>,
    /// Contents written back to the device ([`Fs::write_back`], an append's write-back):
    /// durable with the next commit, on a filesystem with [`Capabilities::ordered_commit`].
    pub written: Vec<u8>,
    /// Number of names.
    pub nlink: u64,
    /// Modification time (the clock of the agent that created it).
    pub mtime: u64,
    /// Agent that created it.
    pub creator: u8,
}

/// A directory operation not yet durable, with what an ordered-commit filesystem makes
/// durable along with it: the contents of every file written back before it and not yet
/// flushed (`(inode, contents)`). The commit that makes this operation durable flushes the
/// device's cache first, so those contents survive in every crash that keeps the operation,
/// whichever file they belong to (the message a name is given to, `maildirsize`, a
/// duplicate-index entry). Empty on other filesystems.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pending {
    /// The operation.
    pub op: DirOp,
    /// Written-back contents committed with it.
    pub backs: Vec<(u64, Vec<u8>)>,
}

/// A directory-entry operation not yet durable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DirOp {
    /// A name was created (create, link).
    Add(Dir, String, u64),
    /// A name was removed.
    Remove(Dir, String),
    /// A rename (atomic as a whole: journaled filesystems commit it in one transaction).
    Rename((Dir, String), (Dir, String), u64),
}

impl DirOp {
    fn touches(&self, d: Dir) -> bool {
        match self {
            DirOp::Add(x, ..) | DirOp::Remove(x, _) => *x == d,
            DirOp::Rename(a, b, _) => a.0 == d || b.0 == d,
        }
    }
    fn names(&self) -> [Option<(Dir, &str)>; 2] {
        match self {
            DirOp::Add(d, n, _) | DirOp::Remove(d, n) => [Some((*d, n)), None],
            DirOp::Rename(a, b, _) => [Some((a.0, &a.1)), Some((b.0, &b.1))],
        }
    }
    fn shares_name(&self, o: &DirOp) -> bool {
        let mine = self.names();
        o.names().iter().flatten().any(|x| mine.contains(&Some(*x)))
    }
    fn visible(&self) -> bool {
        self.touches(Dir::New) || self.touches(Dir::Cur)
    }
    fn apply(&self, ns: &mut BTreeMap<(Dir, String), u64>) {
        match self {
            DirOp::Add(d, n, i) => {
                ns.insert((*d, n.clone()), *i);
            }
            DirOp::Remove(d, n) => {
                ns.remove(&(*d, n.clone()));
            }
            DirOp::Rename(a, b, i) => {
                ns.remove(a);
                ns.insert(b.clone(), *i);
            }
        }
    }
}

/// Something the filesystem saw that breaks an invariant by itself (no-overwrite,
/// confinement).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FsEvent {
    /// Invariant number (3 or 7).
    pub invariant: u8,
    /// What happened, naming agent and file.
    pub what: String,
}

/// An open simulated file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SimFile {
    /// The inode.
    pub ino: u64,
}

/// An open simulated directory listing (see [`SimFs::read_dir`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SimDir {
    dir: Dir,
    /// Names present at `open_dir`, in hash order (ext4 htree walks hash order).
    snapshot: Vec<String>,
    pos: usize,
    returned: BTreeSet<String>,
}

/// The simulated maildir filesystem.
#[derive(Clone, Debug)]
pub struct SimFs {
    /// Semantics.
    pub sem: Semantics,
    /// Persistence model.
    pub persistence: Persistence,
    caps: Capabilities,
    /// Live namespace.
    pub entries: BTreeMap<(Dir, String), u64>,
    /// Inodes.
    pub inodes: BTreeMap<u64, Inode>,
    next_ino: BTreeMap<u8, u64>,
    /// Durable namespace.
    pub durable: BTreeMap<(Dir, String), u64>,
    /// Un-synced dir operations, in order.
    pub pending: Vec<Pending>,
    /// Invariant-breaking events seen (sticky).
    pub events: Vec<FsEvent>,
    /// The agent performing the current operation (set by the world).
    pub agent: u8,
    /// That agent's clock (seconds; files get it as mtime).
    pub now: u64,
    /// Nondeterministic answers.
    pub chooser: Chooser,
    /// Where the next [`Fs::append`] writes instead of the file's end: the size another
    /// host's append saw before this one landed (an NFS client picks an `O_APPEND` write's
    /// offset from the size it last fetched). Set by the world for one operation.
    pub append_at: Option<usize>,
    /// A mutant for the checks' own test: a claim to break a stale lock
    /// ([`LOCK_BREAK_PREFIX`]) is granted even when another deliverer holds it, as if
    /// deliverers broke stale locks without claiming them.
    pub unclaimed_breaks: bool,
}

impl Hash for SimFs {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.entries.hash(h);
        self.inodes.hash(h);
        self.next_ino.hash(h);
        self.durable.hash(h);
        self.pending.hash(h);
        self.events.hash(h);
    }
}

fn name_hash(s: &str) -> u64 {
    // FNV-1a: a stable stand-in for ext4's htree hash.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl SimFs {
    /// An empty maildir (tmp/, new/, cur/ exist) with these semantics. `caps` is what a local
    /// POSIX filesystem offers (ignored features are refused, so the report stays honest); NFS
    /// and no-hard-link semantics cut it down further.
    pub fn new(sem: Semantics, caps: Capabilities, persistence: Persistence) -> SimFs {
        let caps = match sem {
            Semantics::Posix | Semantics::BrokenOrder => caps,
            Semantics::Nfs => Capabilities {
                anonymous_tmp: false,
                rename_noreplace: false,
                atomic_exclusive: false,
                ..caps
            },
            Semantics::NoHardLinks => Capabilities {
                anonymous_tmp: false,
                rename_noreplace: false,
                hard_links: false,
                ..caps
            },
        };
        SimFs {
            sem,
            persistence,
            caps,
            entries: BTreeMap::new(),
            inodes: BTreeMap::new(),
            next_ino: BTreeMap::new(),
            durable: BTreeMap::new(),
            pending: Vec::new(),
            events: Vec::new(),
            agent: 0,
            now: 0,
            chooser: Chooser::default(),
            append_at: None,
            unclaimed_breaks: false,
        }
    }

    /// Puts a durable message file `dir/name` in place (the maildir's existing mail).
    pub fn seed(&mut self, dir: Dir, name: &str, data: &[u8]) -> u64 {
        let ino = self.alloc(255);
        self.inodes.insert(
            ino,
            Inode {
                data: data.to_vec(),
                synced: data.to_vec(),
                written: Vec::new(),
                nlink: 1,
                mtime: 0,
                creator: 255,
            },
        );
        self.entries.insert((dir, name.to_string()), ino);
        self.durable.insert((dir, name.to_string()), ino);
        ino
    }

    fn alloc(&mut self, agent: u8) -> u64 {
        // Per-agent inode number spaces, so creations by different agents commute.
        let n = self.next_ino.entry(agent).or_insert(0);
        *n += 1;
        ((u64::from(agent) + 1) << 16) | *n
    }

    /// A new empty inode with `nlink` names, created now by the current agent; its number.
    fn new_inode(&mut self, nlink: u64) -> u64 {
        let ino = self.alloc(self.agent);
        let inode = Inode {
            data: Vec::new(),
            synced: Vec::new(),
            written: Vec::new(),
            nlink,
            mtime: self.now,
            creator: self.agent,
        };
        self.inodes.insert(ino, inode);
        ino
    }

    fn check_name(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        let bad = name.is_empty()
            || name == "."
            || name == ".."
            || name.bytes().any(|b| b == b'/' || b == 0)
            || name.len() > 255;
        if bad {
            self.events.push(FsEvent {
                invariant: 7,
                what: format!(
                    "agent {} used a name that is not plain: {dir:?}/{name:?}",
                    self.agent
                ),
            });
            return Err(ErrorKind::Permission);
        }
        Ok(())
    }

    /// Whether this filesystem keeps the ordered-commit promise it reports.
    fn orders(&self) -> bool {
        self.caps.ordered_commit && self.sem != Semantics::BrokenOrder
    }

    fn log(&mut self, op: DirOp) {
        if self.persistence == Persistence::P0 {
            op.apply(&mut self.durable);
            return;
        }
        // A commit of this operation comes after the data written back so far.
        let backs = if self.orders() {
            self.inodes
                .iter()
                .filter(|(_, i)| i.written.len() > i.synced.len())
                .map(|(&ino, i)| (ino, i.written.clone()))
                .collect()
        } else {
            Vec::new()
        };
        self.pending.push(Pending { op, backs });
    }

    /// Each inode's contents after a crash that keeps the pending operations `take` picks:
    /// what was flushed, or what was written back before a kept operation, if longer (files
    /// the simulator writes only grow, except a truncated remembered id, which is flushed).
    fn durable_contents(&self, take: &[bool]) -> BTreeMap<u64, Vec<u8>> {
        let mut out: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for (p, _) in self.pending.iter().zip(take).filter(|(_, t)| **t) {
            for (ino, data) in &p.backs {
                let synced = self.inodes.get(ino).map_or(0, |i| i.synced.len());
                let best = out.get(ino).map_or(synced, Vec::len);
                if data.len() > best {
                    out.insert(*ino, data.clone());
                }
            }
        }
        out
    }

    fn unref(&mut self, ino: u64) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.nlink = i.nlink.saturating_sub(1);
        }
    }

    /// The names in `dir`, sorted.
    pub fn names(&self, dir: Dir) -> impl Iterator<Item = (&str, u64)> {
        self.entries
            .range((dir, String::new())..)
            .take_while(move |((d, _), _)| *d == dir)
            .map(|((_, n), i)| (n.as_str(), *i))
    }

    /// Contents of the file `dir/name`.
    pub fn contents(&self, dir: Dir, name: &str) -> Option<&[u8]> {
        let ino = self.entries.get(&(dir, name.to_string()))?;
        Some(&self.inodes.get(ino)?.data)
    }

    /// NFS exclusive create, second half: the lookup said `absent_at_lookup`; the create then
    /// opens the name whatever is there now (NFSv2 has no atomic exclusive create).
    pub fn create_after_lookup(
        &mut self,
        dir: Dir,
        name: &str,
        absent_at_lookup: bool,
    ) -> Result<SimFile, ErrorKind> {
        if absent_at_lookup {
            self.create(dir, name, false)
        } else {
            Err(ErrorKind::Exists)
        }
    }

    /// The durable view of new/ and cur/ after a crash now, for every way the persistence
    /// model allows: `(crash spec, image)`; the spec replays the same image.
    pub fn crash_images(&self) -> Vec<(u64, Image)> {
        let specs = self.crash_specs();
        assert!(specs.end <= 1 << 20, "too many crash images to enumerate");
        specs.map(|s| (s, self.crash_image(s))).collect()
    }

    /// The crash specs [`crash_image`](Self::crash_image) accepts in this state.
    pub fn crash_specs(&self) -> std::ops::Range<u64> {
        match self.persistence {
            Persistence::P0 => 0..1,
            _ if self.prefix_only() => 0..self.pending.len() as u64 + 1,
            Persistence::P1 | Persistence::P2 => {
                let m = self.pending.iter().filter(|p| p.op.visible()).count();
                assert!(m < 64, "too many un-synced visible operations ({m})");
                0..(1u64 << m)
            }
        }
    }

    /// Whether a crash keeps a prefix of the pending operations: a journal (P1), or a
    /// filesystem that commits in order under any model (ext4's one journal: a transaction
    /// commits whole, after every earlier one).
    fn prefix_only(&self) -> bool {
        self.persistence == Persistence::P1
            || (self.persistence == Persistence::P2 && self.orders())
    }

    /// The namespace a crash chosen by `spec` leaves, and which pending operations it kept:
    /// under P1 (and on an ordered-commit filesystem) `spec` is the length of the kept prefix;
    /// under P2 a bit mask over the pending operations, or with `visible_only` over those
    /// that touch new/ or cur/ (the others are dropped).
    fn survivors(
        &self,
        spec: u64,
        visible_only: bool,
    ) -> (BTreeMap<(Dir, String), u64>, Vec<bool>) {
        let take: Vec<bool> = match self.persistence {
            Persistence::P0 => std::vec![false; self.pending.len()],
            _ if self.prefix_only() => (0..self.pending.len()).map(|i| (i as u64) < spec).collect(),
            Persistence::P1 | Persistence::P2 => {
                let mut bit = 0;
                let mut take = Vec::new();
                for p in &self.pending {
                    let counted = !visible_only || p.op.visible();
                    take.push(counted && spec & (1 << bit) != 0);
                    bit += usize::from(counted);
                }
                close_earlier(&self.pending, &mut take);
                take
            }
        };
        let mut ns = self.durable.clone();
        for (p, t) in self.pending.iter().zip(&take) {
            if *t {
                p.op.apply(&mut ns);
            }
        }
        (ns, take)
    }

    /// One crash image: under P1 (and on an ordered-commit filesystem) `spec` is the length of
    /// the persisted prefix of pending operations; under P2 a bit mask over the pending
    /// operations that touch new/ or cur/.
    pub fn crash_image(&self, spec: u64) -> Image {
        let (ns, take) = self.survivors(spec, true);
        let backs = self.durable_contents(&take);
        ns.iter()
            .filter(|((d, _), _)| matches!(d, Dir::New | Dir::Cur))
            .map(|(k, i)| {
                let ino = &self.inodes[i];
                let data = if self.persistence == Persistence::P0 {
                    ino.data.clone()
                } else {
                    backs.get(i).unwrap_or(&ino.synced).clone()
                };
                (k.clone(), data)
            })
            .collect()
    }

    /// The crash specs [`reboot`](Self::reboot) accepts: every subset of the pending
    /// directory operations in every directory (P2), every prefix (P1, and an ordered-commit
    /// filesystem), or none (P0).
    pub fn reboot_specs(&self) -> std::ops::Range<u64> {
        match self.persistence {
            Persistence::P0 => 0..1,
            _ if self.prefix_only() => 0..self.pending.len() as u64 + 1,
            Persistence::P1 | Persistence::P2 => {
                let m = self.pending.len();
                assert!(m < 20, "too many un-synced operations ({m})");
                0..(1u64 << m)
            }
        }
    }

    /// The whole maildir (root and tmp/ included) as a crash now and a restart would leave
    /// it: the durable names, `spec`'s choice of the pending operations, and each file's
    /// flushed contents; nothing open, nothing pending.
    pub fn reboot(&self, spec: u64) -> SimFs {
        let (ns, take) = self.survivors(spec, false);
        let backs = self.durable_contents(&take);
        let mut fs = self.clone();
        fs.entries = ns.clone();
        fs.durable = ns;
        fs.pending.clear();
        let live: BTreeSet<u64> = fs.entries.values().copied().collect();
        fs.inodes.retain(|i, _| live.contains(i));
        // Each file keeps what was flushed, or what was written back before an operation the
        // crash kept (ordered commits).
        for (i, inode) in fs.inodes.iter_mut() {
            if self.persistence != Persistence::P0 {
                inode.data = backs.get(i).unwrap_or(&inode.synced).clone();
                inode.synced = inode.data.clone();
                inode.written = inode.data.clone();
            }
            inode.nlink = fs.entries.values().filter(|x| *x == i).count() as u64;
        }
        fs
    }

    /// The inode `dir/name` names now, if any (for the explorer's independence relation).
    pub fn ino_of(&self, dir: Dir, name: &str) -> Option<u64> {
        self.entries.get(&(dir, name.to_string())).copied()
    }
}

/// Operations on the same name persist in order: persisting one persists every earlier pending
/// operation on any of its names (a rename never survives without the link that made its
/// source).
fn close_earlier(ops: &[Pending], take: &mut [bool]) {
    for j in (0..ops.len()).rev() {
        if take[j] {
            for i in 0..j {
                if !take[i] && ops[i].op.shares_name(&ops[j].op) {
                    take[i] = true;
                }
            }
        }
    }
}

/// A crash image of new/ and cur/: names and their durable contents.
pub type Image = BTreeMap<(Dir, String), Vec<u8>>;

impl Fs for SimFs {
    type File = SimFile;
    type DirStream = SimDir;

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<SimFile, ErrorKind> {
        self.check_name(dir, name)?;
        let key = (dir, name.to_string());
        if let Some(&ino) = self.entries.get(&key) {
            if self.unclaimed_breaks && name.starts_with(LOCK_BREAK_PREFIX) {
                return Ok(SimFile { ino });
            }
            if exclusive {
                return Err(ErrorKind::Exists);
            }
            let agent = self.agent;
            let inode = self.inodes.get_mut(&ino).expect("inode");
            if inode.creator != agent || !inode.data.is_empty() {
                let what = format!(
                    "agent {agent} opened existing {}/{name} (created by agent {}, {} bytes) \
                     and truncated it",
                    dir.as_str(),
                    inode.creator,
                    inode.data.len()
                );
                inode.data.clear();
                self.events.push(FsEvent { invariant: 3, what });
            }
            return Ok(SimFile { ino });
        }
        let ino = self.new_inode(1);
        self.entries.insert(key, ino);
        self.log(DirOp::Add(dir, name.to_string(), ino));
        Ok(SimFile { ino })
    }

    fn create_anonymous(&mut self, _dir: Dir) -> Result<SimFile, ErrorKind> {
        if !self.caps.anonymous_tmp {
            return Err(ErrorKind::Unsupported);
        }
        let ino = self.new_inode(0);
        Ok(SimFile { ino })
    }

    fn file_id(&self, file: &SimFile) -> Option<(u64, u64)> {
        Some((8, file.ino))
    }

    fn write(&mut self, file: &mut SimFile, buf: &[u8]) -> Result<usize, ErrorKind> {
        let p0 = self.persistence == Persistence::P0;
        let i = self.inodes.get_mut(&file.ino).ok_or(ErrorKind::Io)?;
        i.data.extend_from_slice(buf);
        if p0 {
            i.synced = i.data.clone();
        }
        Ok(buf.len())
    }

    fn sync_file(&mut self, file: &mut SimFile) -> Result<(), ErrorKind> {
        let i = self.inodes.get_mut(&file.ino).ok_or(ErrorKind::Io)?;
        i.synced = i.data.clone();
        Ok(())
    }

    fn write_back(&mut self, file: &mut SimFile) -> Result<(), ErrorKind> {
        if !self.caps.ordered_commit {
            return Err(ErrorKind::Unsupported);
        }
        let i = self.inodes.get_mut(&file.ino).ok_or(ErrorKind::Io)?;
        i.written = i.data.clone();
        Ok(())
    }

    fn close(&mut self, _file: SimFile) -> Result<(), ErrorKind> {
        Ok(())
    }

    fn link_anonymous(&mut self, file: &SimFile, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.check_name(dir, name)?;
        if !self.caps.hard_links {
            return Err(ErrorKind::Unsupported);
        }
        let key = (dir, name.to_string());
        if self.entries.contains_key(&key) {
            return Err(ErrorKind::Exists);
        }
        self.entries.insert(key, file.ino);
        self.inodes.get_mut(&file.ino).ok_or(ErrorKind::Io)?.nlink += 1;
        self.log(DirOp::Add(dir, name.to_string(), file.ino));
        Ok(())
    }

    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        self.check_name(from.0, from.1)?;
        self.check_name(to.0, to.1)?;
        if !self.caps.hard_links {
            return Err(ErrorKind::Unsupported);
        }
        let ino = *self
            .entries
            .get(&(from.0, from.1.to_string()))
            .ok_or(ErrorKind::NotFound)?;
        let key = (to.0, to.1.to_string());
        if self.entries.contains_key(&key) {
            return Err(ErrorKind::Exists);
        }
        self.entries.insert(key, ino);
        self.inodes.get_mut(&ino).ok_or(ErrorKind::Io)?.nlink += 1;
        self.log(DirOp::Add(to.0, to.1.to_string(), ino));
        if self.sem == Semantics::Nfs {
            // The server made the link; was the reply lost?
            match self.chooser.choose(3) {
                1 => return Err(ErrorKind::Io),
                2 => return Err(ErrorKind::Exists),
                _ => {}
            }
        }
        Ok(())
    }

    fn rename(
        &mut self,
        from: (Dir, &str),
        to: (Dir, &str),
        noreplace: bool,
    ) -> Result<(), ErrorKind> {
        self.check_name(from.0, from.1)?;
        self.check_name(to.0, to.1)?;
        if noreplace && !self.caps.rename_noreplace {
            return Err(ErrorKind::Unsupported);
        }
        let fkey = (from.0, from.1.to_string());
        let tkey = (to.0, to.1.to_string());
        let ino = *self.entries.get(&fkey).ok_or(ErrorKind::NotFound)?;
        if fkey == tkey {
            return Ok(());
        }
        if let Some(&old) = self.entries.get(&tkey) {
            if noreplace {
                return Err(ErrorKind::Exists);
            }
            if old != ino {
                self.events.push(FsEvent {
                    invariant: 3,
                    what: format!(
                        "agent {} renamed {}/{} over existing {}/{} (replacing inode {old:#x})",
                        self.agent,
                        from.0.as_str(),
                        from.1,
                        to.0.as_str(),
                        to.1
                    ),
                });
                self.unref(old);
            } else {
                // POSIX: renaming a name onto another link of the same inode does nothing.
                return Ok(());
            }
        }
        self.entries.remove(&fkey);
        self.entries.insert(tkey.clone(), ino);
        self.log(DirOp::Rename(fkey, tkey, ino));
        Ok(())
    }

    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.check_name(dir, name)?;
        let ino = self
            .entries
            .remove(&(dir, name.to_string()))
            .ok_or(ErrorKind::NotFound)?;
        self.unref(ino);
        self.log(DirOp::Remove(dir, name.to_string()));
        Ok(())
    }

    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        // The maildir's own directories (a quota recalculation stats new/ and cur/). The
        // simulator keeps no directory mtimes: they never move, so a recalculation never sees
        // a concurrent change through them (DESIGN.md, what the explorer cannot see).
        if dir == Dir::Root
            && [Dir::Tmp, Dir::New, Dir::Cur]
                .iter()
                .any(|d| d.as_str() == name)
        {
            return Ok(Stat {
                nlink: 2,
                size: 0,
                mtime: 0,
                regular: false,
            });
        }
        self.check_name(dir, name)?;
        let ino = self
            .entries
            .get(&(dir, name.to_string()))
            .ok_or(ErrorKind::NotFound)?;
        let i = &self.inodes[ino];
        Ok(Stat {
            nlink: i.nlink,
            size: i.data.len() as u64,
            mtime: i.mtime,
            regular: true,
        })
    }

    fn sync_dir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        let committed: Vec<Pending> = match self.persistence {
            Persistence::P0 => Vec::new(),
            // ext4's journal: the commit of the directory's last change, and of everything
            // before it (nothing when it has none pending).
            _ if self.orders() => {
                let upto = self.pending.iter().rposition(|p| p.op.touches(dir));
                let later = self.pending.split_off(upto.map_or(0, |i| i + 1));
                std::mem::replace(&mut self.pending, later)
            }
            // The journal commits everything up to now.
            Persistence::P1 => std::mem::take(&mut self.pending),
            Persistence::P2 => {
                let mut take: Vec<bool> = self.pending.iter().map(|p| p.op.touches(dir)).collect();
                close_earlier(&self.pending, &mut take);
                let mut later = Vec::new();
                let mut now = Vec::new();
                for (p, t) in std::mem::take(&mut self.pending).into_iter().zip(take) {
                    if t {
                        now.push(p);
                    } else {
                        later.push(p);
                    }
                }
                self.pending = later;
                now
            }
        };
        for p in committed {
            p.op.apply(&mut self.durable);
            // A journal commit flushes the device's cache before its record: what was
            // written back before an operation it commits is durable with it (nothing written
            // back after the directory's last change: that commit need not run again).
            for (ino, data) in p.backs {
                if let Some(i) = self.inodes.get_mut(&ino) {
                    if data.len() > i.synced.len() {
                        i.synced = data;
                    }
                }
            }
        }
        Ok(())
    }

    fn mkdir(&mut self, _dir: Dir) -> Result<(), ErrorKind> {
        Err(ErrorKind::Exists)
    }

    fn open_dir(&mut self, dir: Dir) -> Result<SimDir, ErrorKind> {
        let mut snapshot: Vec<String> = self.names(dir).map(|(n, _)| n.to_string()).collect();
        snapshot.sort_by_key(|n| (name_hash(n), n.clone()));
        Ok(SimDir {
            dir,
            snapshot,
            pos: 0,
            returned: BTreeSet::new(),
        })
    }

    fn stat_listed(&mut self, stream: &SimDir, name: &str) -> Result<Stat, ErrorKind> {
        self.stat(stream.dir, name)
    }

    /// The simulated maildir has no folders and no top above it: only its own new/ and cur/.
    fn open_folder_dir(&mut self, base: Dir, folder: &[u8], dir: Dir) -> Result<SimDir, ErrorKind> {
        if base == Dir::Root && folder.is_empty() {
            self.open_dir(dir)
        } else {
            Err(ErrorKind::NotFound)
        }
    }

    /// The adversary: an entry unchanged since `open_dir` is returned exactly once, in hash
    /// order; an entry added or removed since (a rename is both) may be returned once or not at
    /// all, at any point: the chooser picks among "the next unchanged entry (or the end)" and
    /// each such optional entry not yet returned. Choosing the end drops the optional ones.
    fn read_dir(&mut self, s: &mut SimDir, out: &mut EntryName) -> Result<bool, ErrorKind> {
        let present: BTreeSet<String> = self.names(s.dir).map(|(n, _)| n.to_string()).collect();
        while s.pos < s.snapshot.len()
            && (!present.contains(&s.snapshot[s.pos]) || s.returned.contains(&s.snapshot[s.pos]))
        {
            s.pos += 1;
        }
        let snap: BTreeSet<&String> = s.snapshot.iter().collect();
        let mut optional: Vec<String> = present
            .iter()
            .filter(|n| !snap.contains(n))
            .chain(s.snapshot.iter().filter(|n| !present.contains(*n)))
            .filter(|n| !s.returned.contains(*n))
            .cloned()
            .collect();
        optional.sort();
        let pick = self.chooser.choose(1 + optional.len() as u32) as usize;
        let name = if pick == 0 {
            if s.pos >= s.snapshot.len() {
                // The end: optional entries not returned so far are dropped for good.
                s.returned.extend(optional);
                return Ok(false);
            }
            s.pos += 1;
            s.snapshot[s.pos - 1].clone()
        } else {
            optional[pick - 1].clone()
        };
        s.returned.insert(name.clone());
        out.clear();
        out.extend_from_slice(name.as_bytes())
            .map_err(|_| ErrorKind::NameTooLong)?;
        Ok(true)
    }

    /// `O_APPEND` to an existing regular file: the data lands at once (one write); it is
    /// durable only when flushed (or under P0), like any file data, or, written back on an
    /// ordered-commit filesystem, with the next commit (a write-back elsewhere is a flush).
    fn append(&mut self, dir: Dir, name: &str, data: &[u8], p: Persist) -> Result<(), ErrorKind> {
        self.check_name(dir, name)?;
        let ino = *self
            .entries
            .get(&(dir, name.to_string()))
            .ok_or(ErrorKind::NotFound)?;
        let p0 = self.persistence == Persistence::P0;
        let now = self.now;
        let i = self.inodes.get_mut(&ino).ok_or(ErrorKind::Io)?;
        match self.append_at.take() {
            // Over whatever was appended since that size was seen, then past the end.
            Some(at) if at < i.data.len() => {
                let over = data.len().min(i.data.len() - at);
                i.data[at..at + over].copy_from_slice(&data[..over]);
                i.data.extend_from_slice(&data[over..]);
            }
            _ => i.data.extend_from_slice(data),
        }
        i.mtime = now;
        let sync = match p {
            Persist::Cache => false,
            Persist::WriteBack if self.caps.ordered_commit => {
                i.written = i.data.clone();
                false
            }
            Persist::WriteBack | Persist::Flush => true,
        };
        if sync || p0 {
            i.synced = i.data.clone();
        }
        Ok(())
    }

    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.check_name(dir, name)?;
        let ino = self
            .entries
            .get(&(dir, name.to_string()))
            .ok_or(ErrorKind::NotFound)?;
        let data = &self.inodes[ino].data;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    /// A whole-filesystem flush (`syncfs`): every file's data and every pending directory
    /// operation become durable, whatever the persistence model.
    fn sync_all(&mut self) -> Result<(), ErrorKind> {
        for i in self.inodes.values_mut() {
            i.synced = i.data.clone();
        }
        for p in std::mem::take(&mut self.pending) {
            p.op.apply(&mut self.durable);
        }
        Ok(())
    }

    /// Times are not modelled beyond creation: a change is accepted and has no effect the
    /// invariants could see.
    fn set_mtime(&mut self, file: &SimFile, secs: i64) -> Result<(), ErrorKind> {
        let i = self.inodes.get_mut(&file.ino).ok_or(ErrorKind::Io)?;
        i.mtime = secs.max(0) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole-filesystem flush leaves a crash nothing to choose: whatever was written and
    /// named before it is in every crash image, under each persistence model.
    #[test]
    fn sync_all_makes_every_write_and_name_durable() {
        for persistence in [Persistence::P1, Persistence::P2] {
            let mut fs = SimFs::new(Semantics::Posix, Capabilities::LINUX_LOCAL, persistence);
            let mut f = fs.create_anonymous(Dir::Tmp).unwrap();
            assert_eq!(fs.write(&mut f, b"message").unwrap(), 7);
            fs.link_anonymous(&f, Dir::New, "m").unwrap();
            fs.close(f).unwrap();
            let before = fs.crash_images();
            assert!(
                before.iter().any(|(_, image)| image.is_empty()),
                "{persistence:?}: without a flush a crash can lose the message"
            );
            fs.sync_all().unwrap();
            let stored = vec![((Dir::New, "m".to_string()), b"message".to_vec())];
            let after: Vec<Image> = fs.crash_images().into_iter().map(|(_, i)| i).collect();
            assert_eq!(
                after,
                vec![stored.into_iter().collect::<Image>()],
                "{persistence:?}"
            );
        }
    }

    fn ordered() -> SimFs {
        let caps = Capabilities {
            ordered_commit: true,
            ..Capabilities::LINUX_LOCAL
        };
        let mut fs = SimFs::new(Semantics::Posix, caps, Persistence::P2);
        fs.seed(Dir::Root, "maildirsize", b"1000S\n");
        fs
    }

    /// Every reboot `fs` allows: (the names of new/, `maildirsize`'s contents).
    fn reboots(fs: &SimFs) -> Vec<(Vec<String>, Vec<u8>)> {
        fs.reboot_specs()
            .map(|spec| {
                let r = fs.reboot(spec);
                let names = r.names(Dir::New).map(|(n, _)| n.to_string()).collect();
                (
                    names,
                    r.contents(Dir::Root, "maildirsize").unwrap().to_vec(),
                )
            })
            .collect()
    }

    /// On an ordered-commit filesystem a record written back before a name is durable in
    /// every crash that keeps the name, though it belongs to another file; and the crash
    /// keeps a prefix of the directory operations (one journal), so the name never survives
    /// without an earlier one.
    #[test]
    fn a_name_carries_every_earlier_write_back_and_every_earlier_name() {
        let mut fs = ordered();
        fs.append(Dir::Root, "maildirsize", b"7 1\n", Persist::WriteBack)
            .unwrap();
        let f = fs.create(Dir::Root, "entry", true).unwrap();
        fs.close(f).unwrap();
        let mut m = fs.create_anonymous(Dir::Tmp).unwrap();
        fs.write(&mut m, b"message").unwrap();
        fs.write_back(&mut m).unwrap();
        fs.link_anonymous(&m, Dir::New, "m").unwrap();
        let all = reboots(&fs);
        assert_eq!(all.len(), 3, "{all:?}");
        for spec in fs.reboot_specs() {
            let r = fs.reboot(spec);
            if r.names(Dir::New).count() == 1 {
                assert_eq!(r.contents(Dir::New, "m").unwrap(), b"message");
                assert_eq!(
                    r.contents(Dir::Root, "maildirsize").unwrap(),
                    b"1000S\n7 1\n"
                );
                assert!(r.ino_of(Dir::Root, "entry").is_some(), "spec {spec}");
            }
        }
        assert!(all
            .iter()
            .any(|(n, size)| n.is_empty() && size == b"1000S\n"));
        // The same without ordered commits: the line is lost with a surviving name.
        let mut plain = SimFs::new(Semantics::Posix, Capabilities::LINUX_LOCAL, Persistence::P2);
        plain.seed(Dir::Root, "maildirsize", b"1000S\n");
        plain
            .append(Dir::Root, "maildirsize", b"7 1\n", Persist::Cache)
            .unwrap();
        let mut m = plain.create_anonymous(Dir::Tmp).unwrap();
        plain.write(&mut m, b"message").unwrap();
        plain.sync_file(&mut m).unwrap();
        plain.link_anonymous(&m, Dir::New, "m").unwrap();
        assert!(reboots(&plain)
            .iter()
            .any(|(n, size)| n.len() == 1 && size == b"1000S\n"));
    }

    /// A flush of a directory commits up to that directory's last change: what was written
    /// back after it waits for a later commit.
    #[test]
    fn a_flush_commits_only_what_was_written_back_before_the_directory_changed() {
        let mut fs = ordered();
        let mut m = fs.create_anonymous(Dir::Tmp).unwrap();
        fs.write(&mut m, b"message").unwrap();
        fs.write_back(&mut m).unwrap();
        fs.link_anonymous(&m, Dir::New, "m").unwrap();
        fs.append(Dir::Root, "maildirsize", b"7 1\n", Persist::WriteBack)
            .unwrap();
        fs.sync_dir(Dir::New).unwrap();
        assert_eq!(reboots(&fs), [(vec!["m".to_string()], b"1000S\n".to_vec())]);
        // The next name's commit carries it.
        let f = fs.create(Dir::Root, "entry", true).unwrap();
        fs.close(f).unwrap();
        fs.sync_dir(Dir::Root).unwrap();
        assert_eq!(
            reboots(&fs),
            [(vec!["m".to_string()], b"1000S\n7 1\n".to_vec())]
        );
    }
}
