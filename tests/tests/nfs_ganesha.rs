//! A real NFS server: nfs-ganesha (VFS backend) in a network namespace, exporting a
//! directory, and the core's delivery machine driven through an [`Fs`] adapter over the
//! pure-Rust NFS client `nfs-rs` from two "hosts" (two client instances, each in its own
//! network namespace: one over NFSv3, one over NFSv4.1) into one export, the `Exclusive` and
//! the `Locked` strategies side by side, with TCP resets (iptables in the server's namespace)
//! so that lost replies are retransmitted and ganesha's duplicate request cache answers them,
//! and ganesha SIGKILLed and restarted (that cache and the NFSv4.1 sessions lost). Deliveries
//! are retried like an MTA's; every message must be stored exactly once with `Locked`. What
//! `Exclusive` did is printed (`--nocapture`), not asserted: it is the experiment.
//!
//! `nfs-rs` caches nothing; the adapter models the kernel client's attribute cache with its
//! default windows on the test's own clock (each host's clock advances only by the delivery
//! machine's sleeps and a fixed tick per delivery, so the cache decisions do not depend on
//! the machine's speed): a `stat` answered from a cached lookup may be up to `acregmin` (3 s)
//! old, a directory listing up to `acdirmin` (30 s), and a file's attributes are fetched again
//! when it is opened (close-to-open). A host's own operations refresh the attributes they
//! return (post-operation attributes), as the kernel does.
//!
//! Limits, measured: `nfs-rs` 0.11 creates with UNCHECKED only (NFSv3 `CREATE`, NFSv4.1
//! `OPEN4_CREATE`), so the adapter's exclusive create is a `LOOKUP` then a `CREATE`, not
//! atomic: the simulator's "O_EXCL not atomic" NFS. It has no rename-noreplace and no
//! anonymous files, like a kernel NFS client.
//!
//! Root only (namespaces, iptables); the Debian packages are installed when missing; skipped
//! with the reason when they cannot be. `MDELIVER_NFS_MESSAGES` sets the messages per host
//! and strategy (default 40).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mdeliver_core::env::Timestamp;
use mdeliver_core::fs::{Dir, EntryName, Fs, Persist, Stat};
use mdeliver_core::machine::deliver::{deliver, Options, Strategy};
use mdeliver_core::machine::trust;
use mdeliver_core::{Capabilities, Env, ErrorKind};
use nfs_rs::{Mount, Nfs3ErrorCode, Nfs4ErrorCode, NfsError};

/// The kernel client's default `acregmin`: a file's cached attributes are trusted this long.
const ACREGMIN_MS: u64 = 3_000;
/// The kernel client's default `acdirmin`: a directory's cached contents, this long.
const ACDIRMIN_MS: u64 = 30_000;

const SRV: &str = "mdn-srv";
const SRV_ADDR: &str = "10.219.0.1";

fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A test clock in milliseconds since the epoch, started at the real time (lock files carry
/// the server's real mtimes) and advanced only by the test.
#[derive(Clone)]
struct Clock(Arc<AtomicU64>);

impl Clock {
    fn new() -> Clock {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        Clock(Arc::new(AtomicU64::new(now.as_millis() as u64)))
    }
    fn ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

/// One host's environment: its host name, pid and counter, entropy, and its clock. A sleep
/// advances the clock and really sleeps (another host may be holding the lock).
struct HostEnv {
    host: String,
    pid: u32,
    counter: u64,
    seed: u64,
    clock: Clock,
}

impl Env for HostEnv {
    fn now(&mut self) -> Timestamp {
        let ms = self.clock.ms();
        Timestamp {
            secs: ms / 1000,
            micros: (ms % 1000) as u32 * 1000 + (self.counter % 1000) as u32,
        }
    }
    fn random_u64(&mut self) -> u64 {
        // xorshift64*
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
    fn sleep(&mut self, millis: u32) {
        self.clock.advance(u64::from(millis));
        std::thread::sleep(Duration::from_millis(u64::from(millis)));
    }
}

/// What one host's adapter saw.
#[derive(Default, Debug, Clone)]
struct Counts {
    rpcs: u64,
    /// Answers from the modelled attribute cache instead of the server.
    cached_stats: u64,
    cached_listings: u64,
    /// Errors from the client library other than "exists" and "not found".
    errors: u64,
    /// Of which "the request may have taken effect" (a lost reply the client could not
    /// settle by retransmitting), by procedure.
    uncertain: BTreeMap<&'static str, u64>,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.rpcs += o.rpcs;
        self.cached_stats += o.cached_stats;
        self.cached_listings += o.cached_listings;
        self.errors += o.errors;
        for (k, v) in &o.uncertain {
            *self.uncertain.entry(k).or_insert(0) += v;
        }
    }
}

/// An open file: its handle and where the next write goes.
struct NfsFile {
    fh: Bytes,
    offset: u64,
    id: (u64, u64),
}

/// How long one call to the server may take before it fails: a reply that will never come
/// (the server was killed between the request and the reply, the client's connection left
/// waiting) is a failed call, retried like a lost reply, not a test that hangs.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// `block_on` with [`RPC_TIMEOUT`].
trait Rpc {
    fn rpc<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, NfsError>>,
    ) -> Result<T, NfsError>;
}

impl Rpc for tokio::runtime::Runtime {
    fn rpc<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, NfsError>>,
    ) -> Result<T, NfsError> {
        self.block_on(async {
            match tokio::time::timeout(RPC_TIMEOUT, f).await {
                Ok(r) => r,
                Err(_) => Err(NfsError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no reply from the server",
                ))),
            }
        })
    }
}

/// A maildir on an NFS export, through one `nfs-rs` client.
struct NfsFs {
    rt: tokio::runtime::Runtime,
    m: Box<dyn Mount>,
    /// Handles of the maildir, its tmp/, new/ and cur/, and the directory it is in.
    fh: [Bytes; 5],
    clock: Clock,
    /// (dir, name) -> (attributes, when fetched).
    attrs: HashMap<(Dir, String), (Stat, u64)>,
    /// dir -> (names, when listed).
    listings: HashMap<Dir, (Vec<String>, u64)>,
    counts: Counts,
}

fn idx(d: Dir) -> usize {
    match d {
        Dir::Root => 0,
        Dir::Tmp => 1,
        Dir::New => 2,
        Dir::Cur => 3,
        Dir::Top => 4,
    }
}

fn kind(e: &NfsError, counts: &mut Counts, op: &'static str) -> ErrorKind {
    if let NfsError::OperationOutcome(o) = e {
        if o.outcome == nfs_rs::OperationOutcome::Uncertain {
            *counts.uncertain.entry(op).or_insert(0) += 1;
        }
    }
    let k = match e {
        NfsError::Nfs3(Nfs3ErrorCode::NFS3ERR_EXIST)
        | NfsError::Nfs4(Nfs4ErrorCode::NFS4ERR_EXIST) => ErrorKind::Exists,
        NfsError::Nfs3(Nfs3ErrorCode::NFS3ERR_NOENT)
        | NfsError::Nfs4(Nfs4ErrorCode::NFS4ERR_NOENT) => ErrorKind::NotFound,
        NfsError::Nfs3(Nfs3ErrorCode::NFS3ERR_NOSPC)
        | NfsError::Nfs4(Nfs4ErrorCode::NFS4ERR_NOSPC) => ErrorKind::NoSpace,
        _ => ErrorKind::Io,
    };
    if !matches!(k, ErrorKind::Exists | ErrorKind::NotFound) {
        counts.errors += 1;
    }
    k
}

fn stat_of(a: &nfs_rs::Attr) -> Stat {
    Stat {
        nlink: u64::from(a.nlink),
        size: a.filesize,
        mtime: u64::from(a.mtime.seconds),
        regular: a.type_ == 1,
    }
}

impl NfsFs {
    /// Mounts `url` (the client's sockets are made in the calling thread's network
    /// namespace) and opens the maildir `md` inside the export, creating it.
    fn open(url: &str, md: &str, clock: Clock) -> Result<NfsFs, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let m = rt
            .rpc(nfs_rs::parse_url_and_mount(url))
            .map_err(|e| format!("mount {url}: {e}"))?;
        let root = rt
            .rpc(m.lookup_path("/"))
            .map_err(|e| format!("lookup /: {e}"))?
            .fh;
        let dir = |parent: &Bytes, name: &str| -> Result<Bytes, String> {
            match rt.rpc(m.lookup(parent.clone(), name)) {
                Ok(o) => Ok(o.fh),
                Err(_) => match rt.rpc(m.mkdir(parent.clone(), name, 0o700)) {
                    Ok(o) => Ok(o.fh),
                    // Made meanwhile by the other host.
                    Err(_) => rt
                        .rpc(m.lookup(parent.clone(), name))
                        .map(|o| o.fh)
                        .map_err(|e| format!("{name}: {e}")),
                },
            }
        };
        let md_fh = dir(&root, md)?;
        let fh = [
            md_fh.clone(),
            dir(&md_fh, "tmp")?,
            dir(&md_fh, "new")?,
            dir(&md_fh, "cur")?,
            root,
        ];
        Ok(NfsFs {
            rt,
            m,
            fh,
            clock,
            attrs: HashMap::new(),
            listings: HashMap::new(),
            counts: Counts::default(),
        })
    }

    fn dir_fh(&self, d: Dir) -> Bytes {
        self.fh[idx(d)].clone()
    }

    /// A fresh LOOKUP (with its attributes), remembered in the attribute cache.
    fn lookup(&mut self, d: Dir, name: &str) -> Result<(Bytes, Stat), ErrorKind> {
        self.counts.rpcs += 1;
        let r = self.rt.rpc(self.m.lookup(self.dir_fh(d), name));
        match r {
            Ok(o) => {
                let attr = match o.attr {
                    Some(a) => a,
                    None => {
                        self.counts.rpcs += 1;
                        let r = self.rt.rpc(self.m.getattr(o.fh.clone()));
                        r.map_err(|e| kind(&e, &mut self.counts, "getattr"))?
                    }
                };
                let st = stat_of(&attr);
                self.attrs.insert((d, name.into()), (st, self.clock.ms()));
                Ok((o.fh, st))
            }
            Err(e) => {
                self.attrs.remove(&(d, name.into()));
                Err(kind(&e, &mut self.counts, "lookup"))
            }
        }
    }

    /// This host changed `d` (post-operation attributes): its cached listing is dropped.
    fn touched(&mut self, d: Dir, name: &str) {
        self.listings.remove(&d);
        self.attrs.remove(&(d, name.into()));
    }
}

impl Fs for NfsFs {
    type File = NfsFile;
    /// The directory listed and the names left.
    type DirStream = (Dir, std::vec::IntoIter<String>);

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            anonymous_tmp: false,
            rename_noreplace: false,
            hard_links: true,
            dir_sync: true,
            atomic_exclusive: false,
            ordered_commit: false,
        }
    }

    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<NfsFile, ErrorKind> {
        if exclusive {
            // nfs-rs creates UNCHECKED only: look, then create (not atomic).
            match self.lookup(dir, name) {
                Ok(_) => return Err(ErrorKind::Exists),
                Err(ErrorKind::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        self.counts.rpcs += 1;
        self.touched(dir, name);
        let r = self
            .rt
            .rpc(self.m.create(self.dir_fh(dir), name, Some(0o600)));
        let o = r.map_err(|e| kind(&e, &mut self.counts, "create"))?;
        let id = o.attr.as_ref().map_or((0, 0), |a| (a.fsid, a.fileid));
        Ok(NfsFile {
            fh: o.fh,
            offset: 0,
            id,
        })
    }

    fn create_anonymous(&mut self, _dir: Dir) -> Result<NfsFile, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    fn file_id(&self, file: &NfsFile) -> Option<(u64, u64)> {
        Some(file.id)
    }

    fn write(&mut self, file: &mut NfsFile, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.counts.rpcs += 1;
        let data = Bytes::copy_from_slice(buf);
        let r = self
            .rt
            .rpc(self.m.write(file.fh.clone(), file.offset, data));
        let n = r.map_err(|e| kind(&e, &mut self.counts, "write"))?.count as usize;
        file.offset += n as u64;
        Ok(n)
    }

    fn sync_file(&mut self, file: &mut NfsFile) -> Result<(), ErrorKind> {
        self.counts.rpcs += 1;
        let r = self.rt.rpc(self.m.commit(file.fh.clone(), 0, 0));
        r.map_err(|e| kind(&e, &mut self.counts, "commit"))
    }

    fn write_back(&mut self, _: &mut NfsFile) -> Result<(), ErrorKind> {
        // NFS has no commit that orders a file's data before another file's name.
        Err(ErrorKind::Unsupported)
    }

    fn close(&mut self, file: NfsFile) -> Result<(), ErrorKind> {
        let r = self.rt.rpc(self.m.close(file.fh));
        r.map_err(|e| kind(&e, &mut self.counts, "close"))
    }

    fn link_anonymous(&mut self, _: &NfsFile, _: Dir, _: &str) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        let (fh, _) = self.lookup(from.0, from.1)?;
        self.counts.rpcs += 1;
        self.touched(to.0, to.1);
        let r = self.rt.rpc(self.m.link(fh, self.dir_fh(to.0), to.1));
        match r {
            Ok(attr) => {
                // LINK's post-operation attributes: the source's new link count.
                let st = stat_of(&attr);
                self.attrs
                    .insert((from.0, from.1.into()), (st, self.clock.ms()));
                Ok(())
            }
            Err(e) => {
                self.attrs.remove(&(from.0, from.1.into()));
                Err(kind(&e, &mut self.counts, "link"))
            }
        }
    }

    fn rename(
        &mut self,
        from: (Dir, &str),
        to: (Dir, &str),
        noreplace: bool,
    ) -> Result<(), ErrorKind> {
        if noreplace {
            return Err(ErrorKind::Unsupported);
        }
        self.counts.rpcs += 1;
        self.touched(from.0, from.1);
        self.touched(to.0, to.1);
        let r = self.rt.rpc(
            self.m
                .rename(self.dir_fh(from.0), from.1, self.dir_fh(to.0), to.1),
        );
        r.map_err(|e| kind(&e, &mut self.counts, "rename"))
    }

    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.counts.rpcs += 1;
        self.touched(dir, name);
        let r = self.rt.rpc(self.m.remove(self.dir_fh(dir), name));
        r.map_err(|e| kind(&e, &mut self.counts, "remove"))
    }

    /// The attribute cache: a lookup younger than `acregmin` answers without the server.
    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        if let Some((st, at)) = self.attrs.get(&(dir, name.into())) {
            if self.clock.ms().saturating_sub(*at) < ACREGMIN_MS {
                self.counts.cached_stats += 1;
                return Ok(*st);
            }
        }
        self.lookup(dir, name).map(|(_, st)| st)
    }

    fn sync_dir(&mut self, _dir: Dir) -> Result<(), ErrorKind> {
        // NFS directory operations are synchronous on the server.
        Ok(())
    }

    fn mkdir(&mut self, dir: Dir) -> Result<(), ErrorKind> {
        self.counts.rpcs += 1;
        let r = self
            .rt
            .rpc(self.m.mkdir(self.dir_fh(Dir::Root), dir.as_str(), 0o700));
        r.map(|_| ())
            .map_err(|e| kind(&e, &mut self.counts, "mkdir"))
    }

    /// A listing younger than `acdirmin` is answered from the cache.
    fn open_dir(&mut self, dir: Dir) -> Result<Self::DirStream, ErrorKind> {
        if let Some((names, at)) = self.listings.get(&dir) {
            if self.clock.ms().saturating_sub(*at) < ACDIRMIN_MS {
                self.counts.cached_listings += 1;
                return Ok((dir, names.clone().into_iter()));
            }
        }
        self.counts.rpcs += 1;
        let fh = self.dir_fh(dir);
        let m = &self.m;
        let r: Result<Vec<String>, NfsError> = self.rt.rpc(async {
            let mut s = m.readdir(fh).await;
            let mut names = Vec::new();
            while let Some(e) = s.next().await {
                let e = e?;
                if e.file_name != "." && e.file_name != ".." {
                    names.push(e.file_name);
                }
            }
            Ok(names)
        });
        let names = r.map_err(|e| kind(&e, &mut self.counts, "readdir"))?;
        self.listings.insert(dir, (names.clone(), self.clock.ms()));
        Ok((dir, names.into_iter()))
    }

    fn stat_listed(&mut self, stream: &Self::DirStream, name: &str) -> Result<Stat, ErrorKind> {
        self.stat(stream.0, name)
    }

    /// No Maildir++ folders here: only the maildir itself.
    fn open_folder_dir(
        &mut self,
        base: Dir,
        folder: &[u8],
        dir: Dir,
    ) -> Result<Self::DirStream, ErrorKind> {
        if base == Dir::Root && folder.is_empty() {
            self.open_dir(dir)
        } else {
            Err(ErrorKind::NotFound)
        }
    }

    fn read_dir(
        &mut self,
        stream: &mut Self::DirStream,
        out: &mut EntryName,
    ) -> Result<bool, ErrorKind> {
        match stream.1.next() {
            None => Ok(false),
            Some(n) => {
                out.clear();
                out.extend_from_slice(n.as_bytes())
                    .map_err(|_| ErrorKind::NameTooLong)?;
                Ok(true)
            }
        }
    }

    fn append(&mut self, dir: Dir, name: &str, data: &[u8], p: Persist) -> Result<(), ErrorKind> {
        let (fh, st) = self.lookup(dir, name)?;
        let mut f = NfsFile {
            fh,
            offset: st.size,
            id: (0, 0),
        };
        let n = self.write(&mut f, data)?;
        if n != data.len() {
            return Err(ErrorKind::Io);
        }
        if p != Persist::Cache {
            self.sync_file(&mut f)?;
        }
        self.touched(dir, name);
        self.close(f)
    }

    /// Close-to-open: opening a file fetches its attributes again.
    fn read_file(&mut self, dir: Dir, name: &str, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let (fh, st) = self.lookup(dir, name)?;
        let want = buf.len().min(st.size as usize) as u32;
        self.counts.rpcs += 1;
        let r = self.rt.rpc(self.m.read(fh, 0, want));
        let data = r.map_err(|e| kind(&e, &mut self.counts, "read"))?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    fn set_mtime(&mut self, _file: &NfsFile, _secs: i64) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }

    /// NFS commits file by file (COMMIT); there is no whole-export flush.
    fn sync_all(&mut self) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
}

/// nfs-ganesha and rpcbind in the server's namespace, a bridge, and one namespace per host;
/// all of it removed on drop.
struct Server {
    dir: tempfile::TempDir,
    ganesha: Arc<std::sync::Mutex<Option<Child>>>,
    rpcbind: Option<Child>,
    hosts: Vec<String>,
}

impl Server {
    fn export(&self) -> PathBuf {
        self.dir.path().join("export")
    }

    fn start(hosts: &[&str]) -> Result<Server, String> {
        if !is_root() {
            return Err("needs root (network namespaces, iptables)".into());
        }
        let need: Vec<&str> = [
            ("ganesha.nfsd", "nfs-ganesha nfs-ganesha-vfs"),
            ("rpcbind", "rpcbind"),
            ("iptables", "iptables"),
        ]
        .iter()
        .filter(|(bin, _)| !sh(&format!("command -v {bin}")))
        .map(|(_, pkg)| *pkg)
        .collect();
        if !need.is_empty() {
            let pkgs = need.join(" ");
            let ok = sh(&format!(
                "export DEBIAN_FRONTEND=noninteractive; timeout 600 sh -c 'apt-get install -y -qq \
                 -o DPkg::Lock::Timeout=300 {pkgs} || (apt-get update -qq && apt-get install -y \
                 -qq -o DPkg::Lock::Timeout=300 {pkgs})'"
            ));
            if !ok {
                return Err(format!("cannot install {pkgs} (apt-get failed)"));
            }
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut s = Server {
            dir,
            ganesha: Arc::default(),
            rpcbind: None,
            hosts: hosts.iter().map(|h| format!("mdn-{h}")).collect(),
        };
        let mut cmds = vec![
            format!("ip netns del {SRV} 2>/dev/null; ip netns add {SRV}"),
            format!("ip -n {SRV} link set lo up"),
            format!("ip -n {SRV} link add br0 type bridge"),
            format!("ip -n {SRV} addr add {SRV_ADDR}/24 dev br0"),
            format!("ip -n {SRV} link set br0 up"),
        ];
        for (i, h) in s.hosts.iter().enumerate() {
            cmds.push(format!("ip netns del {h} 2>/dev/null; ip netns add {h}"));
            cmds.push(format!("ip -n {h} link set lo up"));
            cmds.push(format!(
                "ip -n {SRV} link add v-{h} type veth peer name eth0 netns {h}"
            ));
            cmds.push(format!("ip -n {SRV} link set v-{h} master br0 up"));
            cmds.push(format!(
                "ip -n {h} addr add 10.219.0.{}/24 dev eth0",
                11 + i
            ));
            cmds.push(format!("ip -n {h} link set eth0 up"));
        }
        cmds.push(format!(
            "ip netns exec {SRV} iptables -N mdn-reset && ip netns exec {SRV} iptables -A \
             mdn-reset -p tcp -m statistic --mode random --probability 0.05 -j REJECT \
             --reject-with tcp-reset"
        ));
        for c in &cmds {
            if !sh(c) {
                return Err(format!("setting up the network: {c}"));
            }
        }
        let export = s.export();
        std::fs::create_dir(&export).map_err(|e| e.to_string())?;
        let conf = s.dir.path().join("ganesha.conf");
        std::fs::write(
            &conf,
            format!(
                "NFS_CORE_PARAM {{ Protocols = 3, 4; Bind_addr = {SRV_ADDR}; Enable_NLM = false; \
                 Enable_RQUOTA = false; Enable_UDP = false; NFS_Port = 2049; MNT_Port = 20048; }}\n\
                 NFSV4 {{ Graceless = true; RecoveryBackend = fs; Minor_Versions = 1, 2; }}\n\
                 NFS_KRB5 {{ Active_krb5 = false; }}\n\
                 EXPORT {{ Export_Id = 1; Path = {}; Pseudo = /export; Access_Type = RW; \
                 Squash = No_Root_Squash; SecType = sys; Protocols = 3, 4; Transports = TCP; \
                 FSAL {{ Name = VFS; }} }}\n\
                 LOG {{ Default_Log_Level = EVENT; }}\n",
                export.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        s.rpcbind = Command::new("ip")
            .args(["netns", "exec", SRV, "rpcbind", "-f", "-w", "-h", SRV_ADDR])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        std::thread::sleep(Duration::from_millis(300));
        *s.ganesha.lock().unwrap() = Some(spawn_ganesha(s.dir.path())?);
        listening(s.dir.path())?;
        Ok(s)
    }

    /// A function that SIGKILLs ganesha and starts it again (its duplicate request cache and
    /// NFSv4.1 sessions are lost), waiting until it listens.
    fn restarter(&self) -> impl Fn() -> Result<(), String> + Send + 'static {
        let (child, dir) = (self.ganesha.clone(), self.dir.path().to_path_buf());
        move || {
            let mut c = child.lock().unwrap();
            if let Some(mut old) = c.take() {
                let _ = old.kill();
                let _ = old.wait();
            }
            *c = Some(spawn_ganesha(&dir)?);
            listening(&dir)
        }
    }

    /// Runs `f` on a thread inside host `h`'s network namespace (its client's sockets are
    /// made there).
    fn on_host<T: Send + 'static>(
        &self,
        h: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let ns = format!("/run/netns/{}", self.hosts[h]);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&ns).expect("host namespace");
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&fd),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns");
            f()
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let ganesha = self.ganesha.lock().unwrap().take();
        for c in [ganesha, self.rpcbind.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        // ip netns exec forks: the daemons themselves, by the pid they wrote.
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("ganesha.pid")) {
            sh(&format!("kill -9 {} 2>/dev/null", pid.trim()));
        }
        for h in self.hosts.iter().chain([&SRV.to_string()]) {
            sh(&format!("ip netns del {h}"));
        }
    }
}

/// Starts ganesha in the server's namespace with the configuration in `dir` (`ip netns exec`
/// executes it in place: the child is the daemon).
fn spawn_ganesha(dir: &Path) -> Result<Child, String> {
    Command::new("ip")
        .args(["netns", "exec", SRV, "ganesha.nfsd", "-F", "-f"])
        .arg(dir.join("ganesha.conf"))
        .arg("-L")
        .arg(dir.join("ganesha.log"))
        .arg("-p")
        .arg(dir.join("ganesha.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("ganesha.nfsd: {e}"))
}

/// Waits until ganesha listens (10 s at most).
fn listening(dir: &Path) -> Result<(), String> {
    for _ in 0..100 {
        if sh(&format!(
            "ip netns exec {SRV} ss -ltn | grep -q '{SRV_ADDR}]:2049'"
        )) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "ganesha did not listen within 10 s: {}",
        std::fs::read_to_string(dir.join("ganesha.log")).unwrap_or_default()
    ))
}

/// The exact bytes of message `i` of host `h`.
fn message(h: usize, i: usize) -> Vec<u8> {
    let mut m = format!("Message-ID: <{h}.{i}@nfs.test>\nSubject: {h} {i}\n\n").into_bytes();
    for l in 0..(i % 7) * 20 {
        m.extend_from_slice(format!("line {l} of message {i} from host {h}\n").as_bytes());
    }
    m
}

/// What one host did with one strategy.
#[derive(Default, Debug, Clone)]
struct Run {
    acknowledged: u64,
    /// Attempts that failed and were retried like an MTA.
    retried: u64,
    /// Clients mounted again after five failed attempts in a row.
    remounts: u64,
    /// Messages sent (numbered from 0).
    sent: usize,
    counts: Counts,
}

/// Host `h` delivers `n` messages into maildir `md` with `strategy` (None: what
/// `trust::choose` picks), retrying a failed attempt like an MTA.
fn host_run(
    url: &str,
    h: usize,
    md: &str,
    strategy: Strategy,
    n: usize,
    enough: &AtomicBool,
) -> Result<Run, String> {
    let clock = Clock::new();
    let mut fs = NfsFs::open(url, md, clock.clone())?;
    let mut counts = Counts::default();
    let choice = trust::choose(fs.capabilities(), Some(strategy));
    let opts = choice.options(Options {
        lock_stale_secs: 30,
        ..Options::default()
    });
    let mut env = HostEnv {
        host: format!("mdn-h{h}"),
        pid: 4000 + h as u32,
        counter: 0,
        seed: 0x9E37_79B9_7F4A_7C15 ^ (h as u64 + 1),
        clock: clock.clone(),
    };
    let mut run = Run::default();
    let mut buf = vec![0u8; 8192];
    let mut i = 0;
    // `n` messages, and more until enough faults were injected (at most 50 times as many).
    while i < n || (!enough.load(Ordering::SeqCst) && i < n * 50) {
        let msg = message(h, i);
        i += 1;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let out = deliver(&mut fs, &mut env, opts, &mut &msg[..], &mut buf);
            clock.advance(500);
            match out {
                Ok(_) => {
                    run.acknowledged += 1;
                    break;
                }
                Err(e) if attempts < 200 => {
                    let _ = e;
                    run.retried += 1;
                    std::thread::sleep(Duration::from_millis(100));
                    // After a server restart the client may not recover by itself: mount
                    // again, as an administrator (or the automounter) would.
                    if attempts % 5 == 0 {
                        if let Ok(again) = NfsFs::open(url, md, clock.clone()) {
                            counts.add(&fs.counts);
                            fs = again;
                            run.remounts += 1;
                        }
                    }
                }
                Err(e) => return Err(format!("host {h} message {i}: gave up: {e:?}")),
            }
        }
    }
    counts.add(&fs.counts);
    run.counts = counts;
    run.sent = i;
    Ok(run)
}

/// Reads a maildir's new/ from the server's own directory: message id -> copies, and files
/// that are no message.
fn check(md: &Path) -> (BTreeMap<(usize, usize), usize>, Vec<String>) {
    let mut found = BTreeMap::new();
    let mut bad = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(rd) = std::fs::read_dir(md.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let data = std::fs::read(e.path()).unwrap_or_default();
            let id = String::from_utf8_lossy(&data)
                .strip_prefix("Message-ID: <")
                .and_then(|r| r.split('@').next())
                .and_then(|r| {
                    let (h, i) = r.split_once('.')?;
                    Some((h.parse::<usize>().ok()?, i.parse::<usize>().ok()?))
                });
            match id {
                Some((h, i)) if data == message(h, i) => *found.entry((h, i)).or_insert(0) += 1,
                _ => bad.push(format!("{sub}/{}", e.file_name().to_string_lossy())),
            }
        }
    }
    (found, bad)
}

#[test]
fn two_hosts_over_v3_and_v4_1_exclusive_and_locked_under_resets_and_restarts() {
    let srv = match Server::start(&["h0", "h1"]) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let n: usize = std::env::var("MDELIVER_NFS_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let urls = [
        format!(
            "nfs://{SRV_ADDR}{}?version=3&nfsport=2049&mountport=20048",
            srv.export().display()
        ),
        format!("nfs://{SRV_ADDR}/export?version=4.1"),
    ];
    // Faults, one a second: three bursts of TCP resets (5 % of the server's incoming
    // segments for a second), then ganesha SIGKILLed and restarted (its duplicate request
    // cache and sessions gone), and again.
    let stop = Arc::new(AtomicBool::new(false));
    let bursts = Arc::new(AtomicU64::new(0));
    let restarts = Arc::new(AtomicU64::new(0));
    // Deliveries go on until each fault kind happened twice.
    let enough = Arc::new(AtomicBool::new(false));
    let faults = {
        let (stop, bursts, restarts) = (stop.clone(), bursts.clone(), restarts.clone());
        let enough = enough.clone();
        let restart = srv.restarter();
        std::thread::spawn(move || {
            let mut k = 0;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                k += 1;
                if k % 4 == 2 {
                    restart().expect("restarting ganesha");
                    restarts.fetch_add(1, Ordering::SeqCst);
                } else {
                    sh(&format!(
                        "ip netns exec {SRV} iptables -I INPUT -p tcp -j mdn-reset"
                    ));
                    bursts.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_secs(1));
                    sh(&format!(
                        "ip netns exec {SRV} iptables -D INPUT -p tcp -j mdn-reset"
                    ));
                }
                if restarts.load(Ordering::SeqCst) >= 2 && bursts.load(Ordering::SeqCst) >= 2 {
                    enough.store(true, Ordering::SeqCst);
                }
            }
        })
    };

    let mut failures = Vec::new();
    // Side by side: on each host one client delivers into X/ with Exclusive while another
    // delivers into L/ with Locked.
    let sides = [("X", Strategy::Exclusive), ("L", Strategy::Locked)];
    let handles: Vec<Vec<_>> = sides
        .iter()
        .map(|&(md, strategy)| {
            (0..2)
                .map(|h| {
                    let url = urls[h].clone();
                    let enough = enough.clone();
                    srv.on_host(h, move || host_run(&url, h, md, strategy, n, &enough))
                })
                .collect()
        })
        .collect();
    for ((md, strategy), handles) in sides.into_iter().zip(handles) {
        let runs: Vec<Result<Run, String>> =
            handles.into_iter().map(|t| t.join().unwrap()).collect();
        let (found, bad) = check(&srv.export().join(md));
        let sent: Vec<usize> = runs
            .iter()
            .map(|r| r.as_ref().map_or(n, |r| r.sent))
            .collect();
        let expected: usize = sent.iter().sum();
        let stored: usize = found.values().sum();
        let lost = (0..2)
            .flat_map(|h| (0..sent[h]).map(move |i| (h, i)))
            .filter(|k| !found.contains_key(k))
            .count();
        let dup: usize = found.values().map(|c| c - 1).sum();
        let line = format!(
            "{md} {strategy:?}: stored {stored}/{expected}, lost {lost}, duplicated {dup}, \
             not a message {}; hosts (v3, v4.1): {:?}",
            bad.len(),
            runs.iter()
                .map(|r| r.as_ref().map(|r| format!(
                    "ack {} retried {} remounts {} rpcs {} cached stats {} cached listings {} \
                     errors {} uncertain {:?}",
                    r.acknowledged,
                    r.retried,
                    r.remounts,
                    r.counts.rpcs,
                    r.counts.cached_stats,
                    r.counts.cached_listings,
                    r.counts.errors,
                    r.counts.uncertain
                )))
                .collect::<Vec<_>>()
        );
        eprintln!("{line}");

        let all_ok = runs.iter().all(|r| r.is_ok());
        if strategy == Strategy::Locked && (lost > 0 || dup > 0 || !bad.is_empty() || !all_ok) {
            failures.push(format!("Locked broke: {line}; bad files {bad:?}"));
        }
    }
    stop.store(true, Ordering::SeqCst);
    faults.join().unwrap();
    let (bursts, restarts) = (
        bursts.load(Ordering::SeqCst),
        restarts.load(Ordering::SeqCst),
    );
    eprintln!("TCP-reset bursts: {bursts}, ganesha restarts: {restarts}");
    assert!(bursts > 0 && restarts > 0, "a fault kind was not injected");
    assert!(failures.is_empty(), "{failures:#?}");
}
