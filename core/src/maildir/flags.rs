//! Maildir flags: the letters after `:2,`, kept as a set so they are always emitted sorted
//! (ASCII order: the spec's `D F P R S T` first, then lowercase keyword letters) and once each.

use core::fmt;

/// A set of Maildir flag letters (`A`–`Z`, `a`–`z`).
#[derive(Copy, Clone, Default, PartialEq, Eq, Hash)]
pub struct Flags(u64);

/// Why a flag string was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BadFlag(pub u8);

impl Flags {
    /// No flags.
    pub const EMPTY: Flags = Flags(0);
    /// `D`: draft.
    pub const DRAFT: u8 = b'D';
    /// `F`: flagged.
    pub const FLAGGED: u8 = b'F';
    /// `P`: passed (forwarded).
    pub const PASSED: u8 = b'P';
    /// `R`: replied.
    pub const REPLIED: u8 = b'R';
    /// `S`: seen.
    pub const SEEN: u8 = b'S';
    /// `T`: trashed.
    pub const TRASHED: u8 = b'T';

    const fn bit(letter: u8) -> Option<u32> {
        match letter {
            b'A'..=b'Z' => Some((letter - b'A') as u32),
            b'a'..=b'z' => Some((letter - b'a') as u32 + 26),
            _ => None,
        }
    }

    /// Parses flag letters strictly: every byte must be an ASCII letter. Repeats are merged.
    pub fn parse(s: &str) -> Result<Flags, BadFlag> {
        let mut f = Flags::EMPTY;
        for &b in s.as_bytes() {
            f.insert(b)?;
        }
        Ok(f)
    }

    /// Parses the flag part of a file name leniently: letters are kept, anything else (other
    /// MDAs' extensions) is skipped, so a foreign name never makes a message unreadable.
    pub fn parse_lenient(s: &str) -> Flags {
        let mut f = Flags::EMPTY;
        for &b in s.as_bytes() {
            let _ = f.insert(b);
        }
        f
    }

    /// Adds a letter.
    pub fn insert(&mut self, letter: u8) -> Result<(), BadFlag> {
        let bit = Self::bit(letter).ok_or(BadFlag(letter))?;
        self.0 |= 1 << bit;
        Ok(())
    }

    /// Removes a letter (a no-op if absent or not a letter).
    pub fn remove(&mut self, letter: u8) {
        if let Some(bit) = Self::bit(letter) {
            self.0 &= !(1 << bit);
        }
    }

    /// Whether the letter is set.
    pub fn contains(&self, letter: u8) -> bool {
        Self::bit(letter).is_some_and(|b| self.0 & (1 << b) != 0)
    }

    /// The union of two sets.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` without the letters in `other`.
    pub const fn difference(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// Whether no flag is set.
    pub const fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Number of letters set.
    pub const fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// The letters in ASCII order.
    pub fn letters(&self) -> impl Iterator<Item = u8> + '_ {
        let bits = self.0;
        (0u32..52).filter(move |b| bits & (1 << b) != 0).map(|b| {
            if b < 26 {
                b'A' + b as u8
            } else {
                b'a' + (b - 26) as u8
            }
        })
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in self.letters() {
            fmt::Write::write_char(f, l as char)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags(\"{self}\")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn sorted_and_deduplicated() {
        let f = Flags::parse("TSRaSFDP").unwrap();
        assert_eq!(f.to_string(), "DFPRSTa");
        assert_eq!(f.len(), 7);
    }

    #[test]
    fn strict_refuses_non_letters() {
        assert_eq!(Flags::parse("S,R"), Err(BadFlag(b',')));
        assert_eq!(Flags::parse_lenient("S,R").to_string(), "RS");
    }

    #[test]
    fn set_operations() {
        let a = Flags::parse("SR").unwrap();
        let b = Flags::parse("RT").unwrap();
        assert_eq!(a.union(b).to_string(), "RST");
        assert_eq!(a.difference(b).to_string(), "S");
        assert!(Flags::EMPTY.is_empty());
        assert!(a.contains(b'S') && !a.contains(b'T') && !a.contains(b'1'));
    }
}
