//! Member lists as a from-scratch count reads them: by position, so one scan serves a list of
//! [`MemberSnapshot`]s and the flat [`MemberList`].
//!
//! A [`MemberList`] keeps its members in a few flat arrays read front to back: no allocation
//! per member to chase, none to free afterwards, and a member's roles as 16-bit positions in
//! the list's own table of role ids (a guild has at most 250 roles), so a million members with
//! their roles fit in a dozen megabytes. A count is as fast as those bytes can be read.

use std::collections::HashMap;

use smallvec::SmallVec;

use super::MemberSnapshot;

/// A member list, read by position.
pub trait Members: Sync {
    fn len(&self) -> usize;
    fn user_id(&self, i: usize) -> u64;
    fn is_bot(&self, i: usize) -> bool;
    /// Calls `f` with member `i`'s role ids.
    fn with_roles<R>(&self, i: usize, f: impl FnOnce(&[u64]) -> R) -> R;
    /// Member `i` is read soon: ask for what is not next to the current one.
    #[inline]
    fn prefetch(&self, _i: usize) {}

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[inline(always)]
fn prefetch_ptr<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

impl Members for [MemberSnapshot] {
    #[inline]
    fn len(&self) -> usize {
        <[MemberSnapshot]>::len(self)
    }
    #[inline]
    fn user_id(&self, i: usize) -> u64 {
        self[i].user_id
    }
    #[inline]
    fn is_bot(&self, i: usize) -> bool {
        self[i].is_bot
    }
    #[inline]
    fn with_roles<R>(&self, i: usize, f: impl FnOnce(&[u64]) -> R) -> R {
        f(&self[i].roles)
    }
    /// Each member's role list is its own allocation: the scan waits on memory, not on
    /// arithmetic, unless a later member's list is asked for ahead of time.
    #[inline]
    fn prefetch(&self, i: usize) {
        if let Some(m) = self.get(i) {
            prefetch_ptr(m.roles.as_ptr());
        }
    }
}

/// The most distinct role ids one list can hold (positions are 16-bit).
pub const MAX_DISTINCT_ROLES: usize = u16::MAX as usize;

/// Members in flat arrays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberList {
    ids: Vec<u64>,
    /// Member `i`'s roles are `roles[starts[i]..starts[i + 1]]`; one more entry than members.
    starts: Vec<u32>,
    /// Positions in `role_ids`.
    roles: Vec<u16>,
    role_ids: Vec<u64>,
    role_index: HashMap<u64, u16>,
    /// One bit per member.
    bots: Vec<u64>,
    /// Every id is above the one before (Discord's paged member list is): no user is
    /// listed twice, and a user is found by binary search.
    ascending: bool,
}

/// More distinct role ids than a [`MemberList`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyRoles;

impl MemberList {
    pub fn with_capacity(members: usize, roles: usize) -> Self {
        let mut starts = Vec::with_capacity(members + 1);
        starts.push(0);
        Self {
            ids: Vec::with_capacity(members),
            starts,
            roles: Vec::with_capacity(roles),
            bots: Vec::with_capacity(members.div_ceil(64)),
            ascending: true,
            ..Self::default()
        }
    }

    /// A role of the member being read (see [`Self::finish_member`]).
    pub fn push_role(&mut self, role_id: u64) -> Result<(), TooManyRoles> {
        let next = self.role_ids.len();
        let at = match self.role_index.get(&role_id) {
            Some(at) => *at,
            None if next < MAX_DISTINCT_ROLES => {
                self.role_ids.push(role_id);
                self.role_index.insert(role_id, next as u16);
                next as u16
            }
            None => return Err(TooManyRoles),
        };
        self.roles.push(at);
        Ok(())
    }

    /// Appends a member whose roles were pushed with [`Self::push_role`] since the last one.
    pub fn finish_member(&mut self, user_id: u64, is_bot: bool) {
        if self.starts.is_empty() {
            self.starts.push(0);
            self.ascending = true;
        }
        let i = self.ids.len();
        if self.ids.last().is_some_and(|last| *last >= user_id) {
            self.ascending = false;
        }
        self.ids.push(user_id);
        self.starts.push(self.roles.len() as u32);
        if i / 64 >= self.bots.len() {
            self.bots.push(0);
        }
        if is_bot {
            self.bots[i / 64] |= 1 << (i % 64);
        }
    }

    pub fn push(&mut self, user_id: u64, roles: &[u64], is_bot: bool) -> Result<(), TooManyRoles> {
        for r in roles {
            self.push_role(*r)?;
        }
        self.finish_member(user_id, is_bot);
        Ok(())
    }

    pub fn is_ascending(&self) -> bool {
        self.ascending || self.ids.is_empty()
    }

    /// The distinct role ids the members hold, by position.
    pub fn role_ids(&self) -> &[u64] {
        &self.role_ids
    }

    /// Member `i`'s roles as positions in [`Self::role_ids`].
    #[inline]
    pub fn role_positions(&self, i: usize) -> &[u16] {
        &self.roles[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// Where user `user_id` is, in an ascending list.
    pub fn position_of(&self, user_id: u64) -> Option<usize> {
        self.ids.binary_search(&user_id).ok()
    }

    /// The members as snapshots (for code that wants them one by one).
    pub fn to_snapshots(&self) -> Vec<MemberSnapshot> {
        (0..Members::len(self))
            .map(|i| MemberSnapshot {
                user_id: self.user_id(i),
                roles: self.with_roles(i, |r| r.to_vec()),
                is_bot: self.is_bot(i),
            })
            .collect()
    }
}

impl Members for MemberList {
    #[inline]
    fn len(&self) -> usize {
        self.ids.len()
    }
    #[inline]
    fn user_id(&self, i: usize) -> u64 {
        self.ids[i]
    }
    #[inline]
    fn is_bot(&self, i: usize) -> bool {
        self.bots[i / 64] & (1 << (i % 64)) != 0
    }
    #[inline]
    fn with_roles<R>(&self, i: usize, f: impl FnOnce(&[u64]) -> R) -> R {
        let roles: SmallVec<[u64; 8]> = self
            .role_positions(i)
            .iter()
            .map(|p| self.role_ids[*p as usize])
            .collect();
        f(&roles)
    }
}

impl TryFrom<&[MemberSnapshot]> for MemberList {
    type Error = TooManyRoles;
    fn try_from(members: &[MemberSnapshot]) -> Result<Self, TooManyRoles> {
        let roles = members.iter().map(|m| m.roles.len()).sum();
        let mut list = MemberList::with_capacity(members.len(), roles);
        for m in members {
            list.push(m.user_id, &m.roles, m.is_bot)?;
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_list_reads_back_what_was_pushed() {
        let snapshots = vec![
            MemberSnapshot {
                user_id: 5,
                roles: vec![1, 2],
                is_bot: false,
            },
            MemberSnapshot {
                user_id: 6,
                roles: vec![],
                is_bot: true,
            },
            MemberSnapshot {
                user_id: 7,
                roles: vec![2, 3],
                is_bot: false,
            },
        ];
        let list = MemberList::try_from(snapshots.as_slice()).unwrap();
        assert_eq!(Members::len(&list), 3);
        assert_eq!(list.role_ids(), &[1, 2, 3], "each distinct role once");
        assert_eq!(list.role_positions(2), &[1, 2]);
        assert!(list.is_bot(1) && !list.is_bot(2));
        assert!(list.is_ascending());
        assert_eq!(list.position_of(7), Some(2));
        assert_eq!(list.to_snapshots(), snapshots);
        let mut scrambled = list.clone();
        scrambled.push(6, &[], false).unwrap();
        assert!(!scrambled.is_ascending());
    }

    #[test]
    fn more_distinct_roles_than_positions_is_refused() {
        let mut list = MemberList::default();
        for r in 0..MAX_DISTINCT_ROLES as u64 {
            list.push_role(r + 1).unwrap();
        }
        assert_eq!(list.push_role(1), Ok(()), "a known role still fits");
        assert_eq!(list.push_role(u64::MAX), Err(TooManyRoles));
    }
}
