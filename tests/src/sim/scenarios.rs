//! The named scenarios the tests and the `races` example explore.

use crate::sim::fs::{Persistence, Semantics};
use crate::sim::world::{AgentSpec, Config, ReaderMode};
use mdeliver_core::fs::Capabilities;
use mdeliver_core::machine::deliver::Strategy;

/// A deliverer.
pub fn deliverer(strategy: Strategy, collide: bool) -> AgentSpec {
    AgentSpec::Deliver { strategy, collide }
}

/// djb's recipe without `O_EXCL`.
pub const CLASSIC: Strategy = Strategy::Classic {
    exclusive_create: false,
};
/// qmail 1.03's actual code: the recipe with `O_EXCL`.
pub const QMAIL: Strategy = Strategy::Classic {
    exclusive_create: true,
};

/// Capabilities selecting each publish path of `Exclusive` on local POSIX; a `+ordered`
/// suffix adds [`Capabilities::ordered_commit`] (ext4: the file's data written back, not
/// flushed, before it is named).
pub fn path_caps(path: &str) -> Capabilities {
    if let Some(path) = path.strip_suffix("+ordered") {
        return Capabilities {
            ordered_commit: true,
            ..path_caps(path)
        };
    }
    let mut c = Capabilities::LINUX_LOCAL;
    match path {
        "anonymous-link" => {}
        "rename-noreplace" => c.anonymous_tmp = false,
        "link-unlink" => c = Capabilities::POSIX,
        other => panic!("unknown path {other}"),
    }
    c
}

/// (a) Two classic deliverers whose names collide: stat-then-create without `O_EXCL`.
pub fn classic_collision() -> Config {
    let mut c = Config::new(
        "classic: colliding names, no O_EXCL",
        vec![deliverer(CLASSIC, true), deliverer(CLASSIC, true)],
    );
    c.crashes = false;
    c
}

/// (b) qmail 1.03 (`O_EXCL`), colliding names, and a reader moving new/→cur/ with `rename`.
pub fn classic_link_vs_reader() -> Config {
    let mut c = Config::new(
        "qmail (classic + O_EXCL): colliding names vs reader rename",
        vec![
            deliverer(QMAIL, true),
            deliverer(QMAIL, true),
            AgentSpec::Mover {
                mode: ReaderMode::Plain,
                flag_change: false,
            },
        ],
    );
    c.crashes = false;
    c
}

/// (c) A naive one-pass listing of cur/ while another reader changes flags.
pub fn naive_listing() -> Config {
    let mut c = Config::new(
        "naive one-pass listing vs flag changes",
        vec![
            AgentSpec::Flagger {
                mode: ReaderMode::Plain,
            },
            AgentSpec::Scanner { naive: true },
        ],
    );
    c.seeded = 2;
    c.crashes = false;
    c
}

/// The core's scan against the same flag-changing reader.
pub fn core_scan(seeded: usize, mode: ReaderMode) -> Config {
    let mut c = Config::new(
        "core scan vs flag changes",
        vec![
            AgentSpec::Flagger { mode },
            AgentSpec::Scanner { naive: false },
        ],
    );
    c.seeded = seeded;
    c.crashes = false;
    c
}

/// The classic recipe (which never syncs a directory) with crashes under `p`.
pub fn classic_crash(p: Persistence) -> Config {
    let mut c = Config::new(
        &format!("qmail (classic + O_EXCL), crash under {}", p.as_str()),
        vec![deliverer(QMAIL, false)],
    );
    c.persistence = p;
    c
}

/// Two deliverers with `strategy` + a reader (+ crash at every state under P2).
pub fn two_plus_reader(
    name: &str,
    strategy: Strategy,
    caps: Capabilities,
    collide: bool,
    mode: ReaderMode,
) -> Config {
    let mut c = Config::new(
        name,
        vec![
            deliverer(strategy, collide),
            deliverer(strategy, collide),
            AgentSpec::Mover {
                mode,
                flag_change: false,
            },
        ],
    );
    c.caps = caps;
    c
}

/// NFS-like semantics, two deliverers with `strategy` + a core reader, crashes under P2.
pub fn nfs(strategy: Strategy, collide: bool) -> Config {
    let mut c = two_plus_reader(
        &format!(
            "NFS-like: 2 x {strategy:?}{} + reader",
            if collide { " (colliding names)" } else { "" }
        ),
        strategy,
        Capabilities::POSIX,
        collide,
        ReaderMode::Core,
    );
    c.sem = Semantics::Nfs;
    c
}

/// `n` deliverers with `strategy` and colliding names, and two readers that move and re-flag
/// every message (one plain, one through the core); with `scan`, a core scan too. Publish path
/// link-unlink, crashes under P2. (The scan's completeness premise, at most one rename of a
/// message in cur/ per two passes, does not hold with two such readers, so clean runs leave the
/// scan out.)
pub fn large(strategy: Strategy, n: usize, scan: bool) -> Config {
    let mut agents: Vec<AgentSpec> = (0..n).map(|_| deliverer(strategy, true)).collect();
    agents.push(AgentSpec::Mover {
        mode: ReaderMode::Plain,
        flag_change: true,
    });
    agents.push(AgentSpec::Mover {
        mode: ReaderMode::Core,
        flag_change: true,
    });
    if scan {
        agents.push(AgentSpec::Scanner { naive: false });
    }
    let mut cfg = Config::new(
        &format!(
            "{n} deliverers (colliding names) + 2 readers (move + flag change){}, P2",
            if scan { " + core scan" } else { "" }
        ),
        agents,
    );
    cfg.caps = path_caps("link-unlink");
    cfg
}
