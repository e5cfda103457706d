//! Who delivers when mdeliver runs as root: never root-owned files in someone else's maildir.
//! The decision only; the driver looks up users and stats the maildirs, then switches.
//!
//! - `--user NAME` given: that user, when running as root; without root, only the user
//!   mdeliver already runs as (a no-op), else refused.
//! - else, without root: as we are.
//! - else the owner of the maildirs (the driver stats each, or the nearest directory above it
//!   that exists); root's own maildirs are delivered as root.
//! - maildirs with different owners are refused, at the first one that differs (later
//!   maildirs are not looked at).

/// Who to deliver as.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DeliverAs {
    /// Stay as we are.
    Unchanged,
    /// The user `--user` named.
    Named,
    /// The maildirs' owner, `uid`, with its groups (or, without a user entry, `gid`, the
    /// group of the first maildir).
    Owner {
        /// The owner.
        uid: u32,
        /// The first maildir's group.
        gid: u32,
    },
}

/// Why not.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Refusal<E> {
    /// `--user` named another user and we are not root.
    NotRoot,
    /// Maildirs `first` and `second` (indexes) are owned by different users.
    DifferentOwners {
        /// The first maildir.
        first: usize,
        /// The first maildir whose owner differs.
        second: usize,
        /// Their owners.
        uids: (u32, u32),
    },
    /// The owner of maildir `index` could not be found.
    Owner {
        /// Which maildir.
        index: usize,
        /// The driver's error.
        error: E,
    },
}

/// The user `--user` names, as the driver found it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Named {
    /// The user mdeliver runs as.
    Us,
    /// Another user.
    Other,
}

/// Decides who delivers. `named`: the user `--user` names, if given; `root`: whether we run
/// as root; `owners`: each maildir's (uid, gid), in order, looked up as they are asked for.
pub fn deliver_as<E, I>(
    named: Option<Named>,
    root: bool,
    owners: I,
) -> Result<DeliverAs, Refusal<E>>
where
    I: IntoIterator<Item = Result<(u32, u32), E>>,
{
    match named {
        Some(_) if root => return Ok(DeliverAs::Named),
        Some(Named::Us) => return Ok(DeliverAs::Unchanged),
        Some(Named::Other) => return Err(Refusal::NotRoot),
        None if !root => return Ok(DeliverAs::Unchanged),
        None => {}
    }
    let mut first: Option<(u32, u32)> = None;
    for (index, owner) in owners.into_iter().enumerate() {
        let (uid, gid) = owner.map_err(|error| Refusal::Owner { index, error })?;
        match first {
            None => first = Some((uid, gid)),
            Some((u, _)) if u != uid => {
                return Err(Refusal::DifferentOwners {
                    first: 0,
                    second: index,
                    uids: (u, uid),
                })
            }
            Some(_) => {}
        }
    }
    Ok(match first {
        Some((uid, gid)) if uid != 0 => DeliverAs::Owner { uid, gid },
        _ => DeliverAs::Unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<DeliverAs, Refusal<&'static str>>;

    fn owners(v: &[(u32, u32)]) -> impl Iterator<Item = Result<(u32, u32), &'static str>> + '_ {
        v.iter().map(|&o| Ok(o))
    }

    #[test]
    fn a_named_user_needs_root_unless_it_is_us() {
        for named in [Named::Us, Named::Other] {
            let r: R = deliver_as(Some(named), true, owners(&[(5, 5)]));
            assert_eq!(r, Ok(DeliverAs::Named));
        }
        let r: R = deliver_as(Some(Named::Us), false, owners(&[(5, 5)]));
        assert_eq!(r, Ok(DeliverAs::Unchanged));
        let r: R = deliver_as(Some(Named::Other), false, owners(&[]));
        assert_eq!(r, Err(Refusal::NotRoot));
    }

    #[test]
    fn without_root_nothing_changes_and_no_owner_is_looked_up() {
        let r: R = deliver_as(None, false, [Err("not looked up")]);
        assert_eq!(r, Ok(DeliverAs::Unchanged));
    }

    #[test]
    fn root_becomes_the_one_owner_of_the_maildirs() {
        let r: R = deliver_as(None, true, owners(&[(1000, 100), (1000, 200)]));
        assert_eq!(
            r,
            Ok(DeliverAs::Owner {
                uid: 1000,
                gid: 100
            })
        );
        // Root's own maildirs (or none at all): delivered as root.
        let r: R = deliver_as(None, true, owners(&[(0, 0), (0, 5)]));
        assert_eq!(r, Ok(DeliverAs::Unchanged));
        let r: R = deliver_as(None, true, owners(&[]));
        assert_eq!(r, Ok(DeliverAs::Unchanged));
    }

    #[test]
    fn different_owners_are_refused_at_the_first_difference() {
        let mut asked = 0;
        let it = [(7, 7), (7, 7), (8, 8), (9, 9)].into_iter().map(|o| {
            asked += 1;
            Ok::<_, &str>(o)
        });
        assert_eq!(
            deliver_as(None, true, it),
            Err(Refusal::DifferentOwners {
                first: 0,
                second: 2,
                uids: (7, 8)
            })
        );
        assert_eq!(asked, 3, "the fourth maildir is not looked at");
        // Root among the owners differs like anyone else.
        let r: R = deliver_as(None, true, owners(&[(0, 0), (7, 7)]));
        assert!(matches!(r, Err(Refusal::DifferentOwners { .. })));
    }

    #[test]
    fn a_failed_look_up_is_reported_with_its_maildir() {
        let r: R = deliver_as(None, true, [Ok((7, 7)), Err("EACCES")]);
        assert_eq!(
            r,
            Err(Refusal::Owner {
                index: 1,
                error: "EACCES"
            })
        );
    }
}
