//! The folder-creation procedure ([`create_folder`]) against a small in-memory directory tree:
//! the exact tree it makes, the order of its flushes, losing the race to a concurrent creator,
//! and a failure at every step (also one that happened but was reported as failed) leaving
//! nothing behind in tmp/.

use mdeliver_core::env::Timestamp;
use mdeliver_core::maildir::folder::{create_folder, FolderTree, Part, TreeDir};
use mdeliver_core::{Env, ErrorKind};
use std::collections::BTreeMap;

/// A fixed clock and pid; the entropy tells two creators apart.
struct FixedEnv {
    random: u64,
}

impl Env for FixedEnv {
    fn now(&mut self) -> Timestamp {
        Timestamp {
            secs: 1_700_000_000,
            micros: 5,
        }
    }
    fn random_u64(&mut self) -> u64 {
        self.random
    }
    fn pid(&self) -> Option<u32> {
        Some(77)
    }
    fn host(&self) -> &str {
        "box"
    }
    fn next_counter(&mut self) -> u64 {
        1
    }
    fn sleep(&mut self, _millis: u32) {}
}

fn env() -> FixedEnv {
    FixedEnv { random: 0xabcd }
}

/// What a path in the tree is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File,
    Symlink,
}

/// How the next operation of some kind misbehaves.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Fault {
    /// It fails without effect.
    Fail(ErrorKind),
    /// It takes effect, then reports this error (a lost reply).
    LostReply(ErrorKind),
}

/// Something another process does meanwhile.
type Hook = Box<dyn FnMut(&mut MemTree)>;

/// The parent maildir as paths relative to it (`tmp`, `tmp/<staging>/new`, `.Sent`), a log of
/// every operation, a fault for the n-th operation, and a hook run just before `place`.
struct MemTree {
    nodes: BTreeMap<String, Node>,
    log: Vec<String>,
    fault: Option<(usize, Fault)>,
    before_place: Option<Hook>,
}

impl MemTree {
    /// A complete empty maildir.
    fn new() -> MemTree {
        let mut nodes = BTreeMap::new();
        for d in ["tmp", "new", "cur"] {
            nodes.insert(d.to_string(), Node::Dir);
        }
        MemTree {
            nodes,
            log: Vec::new(),
            fault: None,
            before_place: None,
        }
    }

    /// Logs the operation and answers whether (and how) it is faulted.
    fn op(&mut self, what: String) -> Option<Fault> {
        self.log.push(what);
        match self.fault {
            Some((n, f)) if n + 1 == self.log.len() => Some(f),
            _ => None,
        }
    }

    /// Runs `effect` unless the operation fails outright; reports the fault's error if any.
    fn act(
        &mut self,
        what: String,
        effect: impl FnOnce(&mut MemTree) -> Result<(), ErrorKind>,
    ) -> Result<(), ErrorKind> {
        match self.op(what) {
            Some(Fault::Fail(k)) => Err(k),
            Some(Fault::LostReply(k)) => effect(self).and(Err(k)),
            None => effect(self),
        }
    }

    fn mkdir(&mut self, path: String, node: Node) -> Result<(), ErrorKind> {
        let parent = path.rsplit_once('/').map(|(p, _)| p);
        if parent.is_some_and(|p| self.nodes.get(p) != Some(&Node::Dir)) {
            return Err(ErrorKind::NotFound);
        }
        if self.nodes.contains_key(&path) {
            return Err(ErrorKind::Exists);
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    fn rmnode(&mut self, path: &str, node: Node) -> Result<(), ErrorKind> {
        match self.nodes.get(path) {
            None => return Err(ErrorKind::NotFound),
            Some(n) if *n != node => return Err(ErrorKind::NotDirectory),
            Some(_) => {}
        }
        let prefix = format!("{path}/");
        if self.nodes.keys().any(|k| k.starts_with(&prefix)) {
            return Err(ErrorKind::Exists);
        }
        self.nodes.remove(path);
        Ok(())
    }

    /// Every path under `dir/`, relative to it.
    fn under(&self, dir: &str) -> Vec<(String, Node)> {
        let prefix = format!("{dir}/");
        self.nodes
            .iter()
            .filter_map(|(k, n)| Some((k.strip_prefix(&prefix)?.to_string(), *n)))
            .collect()
    }

    /// Installs another creator's complete folder at `name`, with a file of its own in new/.
    fn foreign_folder(&mut self, name: &str) {
        for p in ["", "/tmp", "/new", "/cur"] {
            self.nodes.insert(format!("{name}{p}"), Node::Dir);
        }
        self.nodes
            .insert(format!("{name}/maildirfolder"), Node::File);
        self.nodes.insert(format!("{name}/new/theirs"), Node::File);
    }
}

/// Where `part` of the folder staged as `tmp/<staging>` is, and what it is.
fn part_path(staging: &str, part: Part) -> (String, Node) {
    let node = match part {
        Part::Sub(_) => Node::Dir,
        Part::Marker => Node::File,
    };
    (format!("tmp/{staging}/{}", part.name()), node)
}

fn text(folder: &[u8]) -> String {
    String::from_utf8(folder.to_vec()).unwrap()
}

impl FolderTree for MemTree {
    fn folder_exists(&mut self, folder: &[u8]) -> Result<bool, ErrorKind> {
        let f = text(folder);
        let mut answer = Ok(false);
        self.act(format!("exists {f}"), |t| {
            answer = match t.nodes.get(&f) {
                None => Ok(false),
                Some(Node::Dir) => Ok(true),
                Some(_) => Err(ErrorKind::NotDirectory),
            };
            Ok(())
        })?;
        answer
    }
    fn make_staging(&mut self, staging: &str) -> Result<(), ErrorKind> {
        self.act(format!("mkdir tmp/{staging}"), |t| {
            t.mkdir(format!("tmp/{staging}"), Node::Dir)
        })
    }
    fn make_part(&mut self, staging: &str, part: Part) -> Result<(), ErrorKind> {
        let (path, node) = part_path(staging, part);
        self.act(format!("make {path}"), |t| t.mkdir(path, node))
    }
    fn sync_dir(&mut self, dir: TreeDir<'_>) -> Result<(), ErrorKind> {
        let what = match dir {
            TreeDir::Parent => "sync .".to_string(),
            TreeDir::Tmp => "sync tmp".to_string(),
            TreeDir::Staging(s) => format!("sync tmp/{s}"),
        };
        self.act(what, |_| Ok(()))
    }
    fn place(&mut self, staging: &str, folder: &[u8]) -> Result<bool, ErrorKind> {
        if let Some(mut hook) = self.before_place.take() {
            hook(self);
        }
        let f = text(folder);
        let mut placed = false;
        self.act(format!("place tmp/{staging} {f}"), |t| {
            if t.nodes.contains_key(&f) {
                return Ok(());
            }
            let from = format!("tmp/{staging}");
            let moved: Vec<(String, Node)> = t
                .nodes
                .iter()
                .filter(|(k, _)| **k == from || k.starts_with(&format!("{from}/")))
                .map(|(k, n)| (k.clone(), *n))
                .collect();
            for (k, n) in moved {
                t.nodes.remove(&k);
                t.nodes.insert(format!("{f}{}", &k[from.len()..]), n);
            }
            placed = true;
            Ok(())
        })?;
        Ok(placed)
    }
    fn remove_part(&mut self, staging: &str, part: Part) -> Result<(), ErrorKind> {
        let (path, node) = part_path(staging, part);
        self.act(format!("remove {path}"), |t| t.rmnode(&path, node))
    }
    fn remove_staging(&mut self, staging: &str) -> Result<(), ErrorKind> {
        let path = format!("tmp/{staging}");
        self.act(format!("remove {path}"), |t| t.rmnode(&path, Node::Dir))
    }
}

const STAGING: &str = "folder.1700000000.P77R000000000000abcd";

/// The folder's entries as they must be: its own maildir and the empty marker.
fn folder_entries() -> Vec<(String, Node)> {
    [
        ("cur", Node::Dir),
        ("maildirfolder", Node::File),
        ("new", Node::Dir),
        ("tmp", Node::Dir),
    ]
    .map(|(p, n)| (p.to_string(), n))
    .to_vec()
}

#[test]
fn creates_exactly_the_folder_in_order() {
    let mut t = MemTree::new();
    assert_eq!(create_folder(&mut t, &mut env(), b".A.B", true), Ok(true));
    assert_eq!(t.under(".A.B"), folder_entries());
    assert_eq!(t.under("tmp"), vec![]);
    let top: Vec<&str> = t
        .nodes
        .keys()
        .map(String::as_str)
        .filter(|k| !k.contains('/'))
        .collect();
    assert_eq!(top, [".A.B", "cur", "new", "tmp"]);
    let s = STAGING;
    let expected = [
        "exists .A.B".to_string(),
        format!("mkdir tmp/{s}"),
        format!("make tmp/{s}/tmp"),
        format!("make tmp/{s}/new"),
        format!("make tmp/{s}/cur"),
        format!("make tmp/{s}/maildirfolder"),
        // The folder's entries are durable before anyone can see the folder...
        format!("sync tmp/{s}"),
        format!("place tmp/{s} .A.B"),
        // ...and the folder's name after.
        "sync .".to_string(),
        "sync tmp".to_string(),
    ];
    assert_eq!(t.log, expected);
}

#[test]
fn without_sync_nothing_is_flushed() {
    let mut t = MemTree::new();
    assert_eq!(create_folder(&mut t, &mut env(), b".Sent", false), Ok(true));
    assert_eq!(t.under(".Sent"), folder_entries());
    assert!(t.log.iter().all(|l| !l.starts_with("sync")), "{:?}", t.log);
    assert_eq!(t.log.len(), 7);
}

#[test]
fn a_staging_name_without_a_pid_has_no_p_field() {
    struct NoPid(FixedEnv);
    impl Env for NoPid {
        fn now(&mut self) -> Timestamp {
            self.0.now()
        }
        fn random_u64(&mut self) -> u64 {
            u64::MAX
        }
        fn pid(&self) -> Option<u32> {
            None
        }
        fn host(&self) -> &str {
            self.0.host()
        }
        fn next_counter(&mut self) -> u64 {
            self.0.next_counter()
        }
        fn sleep(&mut self, millis: u32) {
            self.0.sleep(millis)
        }
    }
    let mut t = MemTree::new();
    let mut e = NoPid(env());
    assert_eq!(create_folder(&mut t, &mut e, b".Sent", false), Ok(true));
    assert_eq!(t.log[1], "mkdir tmp/folder.1700000000.Rffffffffffffffff");
}

#[test]
fn an_existing_folder_is_used_as_it_is() {
    let mut t = MemTree::new();
    t.foreign_folder(".Sent");
    let before = t.nodes.clone();
    assert_eq!(create_folder(&mut t, &mut env(), b".Sent", true), Ok(false));
    assert_eq!(t.nodes, before);
    assert_eq!(t.log, ["exists .Sent"]);
}

#[test]
fn something_else_at_the_folder_name_is_refused_untouched() {
    for node in [Node::File, Node::Symlink] {
        let mut t = MemTree::new();
        t.nodes.insert(".Sent".to_string(), node);
        let before = t.nodes.clone();
        assert_eq!(
            create_folder(&mut t, &mut env(), b".Sent", true),
            Err(ErrorKind::NotDirectory)
        );
        assert_eq!(t.nodes, before, "{node:?}");
    }
}

#[test]
fn losing_the_race_keeps_theirs_and_removes_ours() {
    // Another creator running the same procedure completes between our check and our rename.
    let mut t = MemTree::new();
    t.before_place = Some(Box::new(|t: &mut MemTree| {
        let mut other = FixedEnv { random: 0x1234 };
        assert_eq!(create_folder(t, &mut other, b".Sent", true), Ok(true));
        t.nodes.insert(".Sent/new/theirs".to_string(), Node::File);
    }));
    assert_eq!(create_folder(&mut t, &mut env(), b".Sent", true), Ok(false));
    let mut theirs = folder_entries();
    theirs.insert(3, ("new/theirs".to_string(), Node::File));
    assert_eq!(t.under(".Sent"), theirs);
    assert_eq!(t.under("tmp"), vec![]);
    // Ours was refused, then removed newest first, and the parent still flushed.
    let s = STAGING;
    let tail: Vec<&str> = t
        .log
        .iter()
        .rev()
        .take(8)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            format!("place tmp/{s} .Sent").as_str(),
            &format!("remove tmp/{s}/maildirfolder"),
            &format!("remove tmp/{s}/cur"),
            &format!("remove tmp/{s}/new"),
            &format!("remove tmp/{s}/tmp"),
            &format!("remove tmp/{s}"),
            "sync .",
            "sync tmp",
        ]
    );
}

#[test]
fn a_foreign_folder_is_never_replaced_even_if_it_appears_late() {
    let mut t = MemTree::new();
    t.before_place = Some(Box::new(|t: &mut MemTree| t.foreign_folder(".Sent")));
    assert_eq!(
        create_folder(&mut t, &mut env(), b".Sent", false),
        Ok(false)
    );
    assert_eq!(t.nodes.get(".Sent/new/theirs"), Some(&Node::File));
    assert_eq!(t.under("tmp"), vec![]);
}

/// A fault at every step of a successful creation: a failure before the folder is in place
/// leaves the maildir exactly as it was (nothing in tmp/, no folder); one after it (a flush of
/// the parent) leaves the complete folder; the error reported is the fault's.
#[test]
fn a_failure_at_any_step_leaves_nothing_behind() {
    let mut clean = MemTree::new();
    create_folder(&mut clean, &mut env(), b".Sent", true).unwrap();
    let steps = clean.log.len();
    let place = clean
        .log
        .iter()
        .position(|l| l.starts_with("place"))
        .unwrap();
    for n in 0..steps {
        for fault in [
            Fault::Fail(ErrorKind::Io),
            Fault::LostReply(ErrorKind::NoSpace),
        ] {
            let mut t = MemTree::new();
            let before = t.nodes.clone();
            t.fault = Some((n, fault));
            let r = create_folder(&mut t, &mut env(), b".Sent", true);
            let case = format!("fault {fault:?} at {:?}\n{:#?}", clean.log[n], t.log);
            let kind = match fault {
                Fault::Fail(k) | Fault::LostReply(k) => k,
            };
            assert_eq!(r, Err(kind), "{case}");
            assert_eq!(t.under("tmp"), vec![], "{case}");
            let placed = n > place || (n == place && matches!(fault, Fault::LostReply(_)));
            if placed {
                assert_eq!(t.under(".Sent"), folder_entries(), "{case}");
            } else {
                assert_eq!(t.nodes, before, "{case}");
            }
        }
    }
}

#[test]
fn a_missing_tmp_fails_without_making_anything() {
    let mut t = MemTree::new();
    t.nodes.remove("tmp");
    let before = t.nodes.clone();
    assert_eq!(
        create_folder(&mut t, &mut env(), b".Sent", true),
        Err(ErrorKind::NotFound)
    );
    assert_eq!(t.nodes, before);
}
