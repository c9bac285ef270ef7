//! Who is calling and what they may do: FsAction, the rwx mode string Java prints, the
//! caller's groups (shell group mapping, `id -Gn user`, cached), superuser status.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a user's groups are cached (hadoop.security.groups.cache.secs default).
const GROUPS_CACHE_TTL: Duration = Duration::from_secs(300);
/// How long `id -Gn` may take before the user is treated as unknown.
const GROUPS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Users whose groups we remember at most; beyond it the cache is cleared.
const GROUPS_CACHE_USERS_MAX: usize = 10_000;

/// Sticky bit in the permission word.
pub const STICKY_BIT: u16 = 0o1000;
/// Bits of a permission word we keep: rwx for user/group/other plus sticky.
pub const PERMISSION_MASK: u16 = 0o1777;

/// The access a check asks for (Java's FsAction, same names and bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsAction {
    None = 0,
    Execute = 1,
    Write = 2,
    WriteExecute = 3,
    Read = 4,
    ReadExecute = 5,
    ReadWrite = 6,
    All = 7,
}

impl FsAction {
    pub fn from_bits(bits: u16) -> FsAction {
        match bits & 7 {
            0 => FsAction::None,
            1 => FsAction::Execute,
            2 => FsAction::Write,
            3 => FsAction::WriteExecute,
            4 => FsAction::Read,
            5 => FsAction::ReadExecute,
            6 => FsAction::ReadWrite,
            _ => FsAction::All,
        }
    }

    pub fn bits(self) -> u16 {
        self as u16
    }

    pub fn implies(self, wanted: FsAction) -> bool {
        self.bits() & wanted.bits() == wanted.bits()
    }

    /// The Java enum constant name, as it appears in `access=...`.
    pub fn java_name(self) -> &'static str {
        match self {
            FsAction::None => "NONE",
            FsAction::Execute => "EXECUTE",
            FsAction::Write => "WRITE",
            FsAction::WriteExecute => "WRITE_EXECUTE",
            FsAction::Read => "READ",
            FsAction::ReadExecute => "READ_EXECUTE",
            FsAction::ReadWrite => "READ_WRITE",
            FsAction::All => "ALL",
        }
    }
}

/// `rwxr-xr-x`, with `t`/`T` in the last place for the sticky bit (FsPermission.toString).
pub fn mode_string(perm: u16) -> String {
    let mut out = String::with_capacity(9);
    for shift in [6u16, 3, 0] {
        let bits = (perm >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    if perm & STICKY_BIT != 0 {
        let last = if perm & 1 != 0 { 't' } else { 'T' };
        out.pop();
        out.push(last);
    }
    out
}

/// `drwxr-xr-x` / `-rw-r--r--`.
pub fn inode_mode_string(is_directory: bool, perm: u16) -> String {
    format!("{}{}", if is_directory { 'd' } else { '-' }, mode_string(perm))
}

/// The caller of one RPC, resolved once per call.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub groups: Arc<Vec<String>>,
    pub is_superuser: bool,
    /// The client's address (HDFS clientMachine).
    pub machine: IpAddr,
}

impl Caller {
    pub fn is_member(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The rwx bits that apply to this caller for an inode (owner, else group, else other).
    pub fn applicable_bits(&self, owner: &str, group: &str, perm: u16) -> FsAction {
        if self.user == owner {
            FsAction::from_bits(perm >> 6)
        } else if self.is_member(group) {
            FsAction::from_bits(perm >> 3)
        } else {
            FsAction::from_bits(perm)
        }
    }

    pub fn has_permission(&self, owner: &str, group: &str, perm: u16, access: FsAction) -> bool {
        self.applicable_bits(owner, group, perm).implies(access)
    }

    /// A caller with every right, for internal operations and tests.
    pub fn superuser(user: &str) -> Caller {
        Caller {
            user: user.to_string(),
            groups: Arc::new(vec![user.to_string()]),
            is_superuser: true,
            machine: IpAddr::from([127, 0, 0, 1]),
        }
    }
}

/// The user the namenode runs as: HDFS's superuser.
pub fn process_user() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => std::env::var("USER").unwrap_or_else(|_| uid.to_string()),
    }
}

/// Shell-based group mapping with a cache, as Hadoop's ShellBasedUnixGroupsMapping:
/// `id -Gn user`; a user the OS does not know gets one group named like the user.
#[derive(Debug)]
pub struct GroupMapping {
    superuser: String,
    supergroup: String,
    cache: Mutex<HashMap<String, CachedGroups>>,
}

/// When a user's groups were looked up, and what they were.
type CachedGroups = (Instant, Arc<Vec<String>>);

impl GroupMapping {
    pub fn new(superuser: &str, supergroup: &str) -> GroupMapping {
        GroupMapping {
            superuser: superuser.to_string(),
            supergroup: supergroup.to_string(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    pub fn supergroup(&self) -> &str {
        &self.supergroup
    }

    /// Resolves the caller of a call: groups (cached) and superuser status.
    pub async fn caller(&self, user: &str, machine: IpAddr) -> Caller {
        let groups = self.groups(user).await;
        let is_superuser = user == self.superuser || groups.contains(&self.supergroup);
        Caller { user: user.to_string(), groups, is_superuser, machine }
    }

    pub async fn groups(&self, user: &str) -> Arc<Vec<String>> {
        if let Some((at, groups)) = self.cache.lock().expect("groups cache").get(user) {
            if at.elapsed() < GROUPS_CACHE_TTL {
                return Arc::clone(groups);
            }
        }
        let groups = Arc::new(lookup_groups(user).await);
        let mut cache = self.cache.lock().expect("groups cache");
        if cache.len() >= GROUPS_CACHE_USERS_MAX {
            cache.clear();
        }
        cache.insert(user.to_string(), (Instant::now(), Arc::clone(&groups)));
        groups
    }
}

async fn lookup_groups(user: &str) -> Vec<String> {
    let fallback = || vec![user.to_string()];
    if user.is_empty() || user.starts_with('-') {
        return fallback();
    }
    let output = tokio::process::Command::new("id").arg("-Gn").arg("--").arg(user).output();
    match tokio::time::timeout(GROUPS_LOOKUP_TIMEOUT, output).await {
        Ok(Ok(out)) if out.status.success() => {
            let groups: Vec<String> =
                String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
            if groups.is_empty() {
                fallback()
            } else {
                groups
            }
        }
        _ => fallback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings_match_java() {
        assert_eq!(mode_string(0o755), "rwxr-xr-x");
        assert_eq!(mode_string(0o644), "rw-r--r--");
        assert_eq!(mode_string(0o1777), "rwxrwxrwt");
        assert_eq!(mode_string(0o1776), "rwxrwxrwT");
        assert_eq!(inode_mode_string(true, 0o700), "drwx------");
        assert_eq!(inode_mode_string(false, 0o600), "-rw-------");
    }

    #[test]
    fn actions_imply() {
        assert!(FsAction::All.implies(FsAction::Write));
        assert!(FsAction::ReadExecute.implies(FsAction::Execute));
        assert!(!FsAction::ReadExecute.implies(FsAction::Write));
        assert_eq!(FsAction::ReadExecute.java_name(), "READ_EXECUTE");
    }

    #[test]
    fn caller_classes() {
        let caller = Caller {
            user: "alice".into(),
            groups: Arc::new(vec!["staff".into()]),
            is_superuser: false,
            machine: IpAddr::from([127, 0, 0, 1]),
        };
        assert!(caller.has_permission("alice", "x", 0o700, FsAction::All));
        assert!(!caller.has_permission("bob", "x", 0o770, FsAction::Read));
        assert!(caller.has_permission("bob", "staff", 0o750, FsAction::ReadExecute));
        assert!(caller.has_permission("bob", "x", 0o755, FsAction::Read));
        // The owner class applies even when it grants less than other.
        assert!(!caller.has_permission("alice", "x", 0o077, FsAction::Read));
    }

    #[tokio::test]
    async fn unknown_user_is_their_own_group() {
        let mapping = GroupMapping::new("root", "supergroup");
        let caller = mapping.caller("ringfs-no-such-user-xyz", IpAddr::from([127, 0, 0, 1])).await;
        assert_eq!(*caller.groups, vec!["ringfs-no-such-user-xyz".to_string()]);
        assert!(!caller.is_superuser);
        assert!(mapping.caller("root", IpAddr::from([127, 0, 0, 1])).await.is_superuser);
    }
}
