//! Is io_uring usable here, and which opcodes does the kernel offer? When it is not usable,
//! [`Unavailable`] says why in terms an operator can act on: the kernel version, the
//! `kernel.io_uring_disabled` sysctl, a seccomp filter (container runtimes block io_uring by
//! default), or the locked-memory limit the registered buffers need.
//!
//! `dfs.datanode.io.engine=uring` refuses to start with this message; `auto` logs it and
//! falls back to the threads engine.

use std::fmt;

use io_uring::{opcode, IoUring, Probe};

use super::error::Errno;

/// The opcodes the datanode cares about, as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpcodeSupport {
    pub read_fixed: bool,
    pub write_fixed: bool,
    pub splice: bool,
    pub send: bool,
    pub recv: bool,
    pub send_zc: bool,
    /// Multishot receive into provided buffers: IORING_OP_RECV exists since 5.6, its
    /// multishot mode since 6.0, so this is `recv && provide_buffers && kernel >= 6.0`.
    pub recv_multi: bool,
    pub provide_buffers: bool,
    pub accept: bool,
    pub connect: bool,
    pub fsync: bool,
    pub timeout: bool,
    pub link_timeout: bool,
    pub async_cancel: bool,
    pub read: bool,
}

impl OpcodeSupport {
    /// Opcodes the uring engine cannot run without, by name.
    pub fn missing_for_engine(&self) -> Vec<&'static str> {
        let required = [
            ("READ_FIXED", self.read_fixed),
            ("WRITE_FIXED", self.write_fixed),
            ("SPLICE", self.splice),
            ("SEND", self.send),
            ("RECV", self.recv),
            ("ACCEPT", self.accept),
            ("CONNECT", self.connect),
            ("FSYNC", self.fsync),
            ("TIMEOUT", self.timeout),
            ("LINK_TIMEOUT", self.link_timeout),
            ("ASYNC_CANCEL", self.async_cancel),
            ("READ", self.read),
        ];
        required.iter().filter(|(_, supported)| !supported).map(|(name, _)| *name).collect()
    }
}

/// What the kernel offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// `uname -r`.
    pub kernel_release: String,
    pub opcodes: OpcodeSupport,
}

/// Why io_uring cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error(
        "io_uring is disabled by the sysctl kernel.io_uring_disabled={value} (kernel {kernel_release}); \
         set it to 0{group_hint}"
    )]
    DisabledBySysctl { value: u8, kernel_release: String, group_hint: &'static str },
    #[error(
        "io_uring_setup failed with {errno} although the kernel ({kernel_release}) has io_uring: a seccomp \
         filter blocks it (this process runs under seccomp mode {seccomp_mode}; Docker and containerd block \
         io_uring by default, allow io_uring_setup/io_uring_enter/io_uring_register in the profile)"
    )]
    Seccomp { errno: Errno, seccomp_mode: u8, kernel_release: String },
    #[error(
        "io_uring_setup is not implemented by kernel {kernel_release} ({errno}): io_uring needs Linux 5.1 \
         built with CONFIG_IO_URING=y; the datanode needs 6.0 or newer"
    )]
    NotInKernel { errno: Errno, kernel_release: String },
    #[error(
        "not enough locked memory for io_uring: {needed_bytes} bytes of registered buffers, RLIMIT_MEMLOCK \
         is {limit_bytes} bytes and the process lacks CAP_IPC_LOCK; raise `ulimit -l` (LimitMEMLOCK= in \
         systemd) or lower dfs.datanode.uring.buffer.slots"
    )]
    Memlock { needed_bytes: u64, limit_bytes: u64 },
    #[error("kernel {kernel_release} lacks io_uring opcodes the datanode needs: {}", missing.join(", "))]
    MissingOpcodes { missing: Vec<&'static str>, kernel_release: String },
    #[error("io_uring_setup failed with {errno} on kernel {kernel_release}")]
    Setup { errno: Errno, kernel_release: String },
}

impl Unavailable {
    /// Explains a failed io_uring_setup (or register) errno.
    pub(crate) fn diagnose(errno: i32) -> Unavailable {
        let kernel_release = kernel_release();
        match errno {
            libc::ENOSYS => match seccomp_mode() {
                mode @ 1..=2 => {
                    Unavailable::Seccomp { errno: Errno(errno), seccomp_mode: mode, kernel_release }
                }
                _ => Unavailable::NotInKernel { errno: Errno(errno), kernel_release },
            },
            libc::EPERM | libc::EACCES => match io_uring_disabled_sysctl() {
                Some(value @ 1..=2) => {
                    let group_hint =
                        if value == 1 { " or add the datanode's user to kernel.io_uring_group" } else { "" };
                    Unavailable::DisabledBySysctl { value, kernel_release, group_hint }
                }
                _ => {
                    Unavailable::Seccomp { errno: Errno(errno), seccomp_mode: seccomp_mode(), kernel_release }
                }
            },
            libc::ENOMEM => {
                let (limit_bytes, _) = memlock_limit();
                Unavailable::Memlock { needed_bytes: 0, limit_bytes }
            }
            other => Unavailable::Setup { errno: Errno(other), kernel_release },
        }
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.opcodes;
        write!(
            f,
            "kernel {}: READ_FIXED={} WRITE_FIXED={} SPLICE={} SEND_ZC={} RECV_MULTI={} PROVIDE_BUFFERS={} \
             ACCEPT={}",
            self.kernel_release,
            o.read_fixed,
            o.write_fixed,
            o.splice,
            o.send_zc,
            o.recv_multi,
            o.provide_buffers,
            o.accept
        )
    }
}

/// Creates a small ring, asks the kernel which opcodes it supports and checks that the
/// `locked_bytes` of registered buffers the engine wants fit the memlock limit.
pub fn probe(locked_bytes: u64) -> Result<Capabilities, Unavailable> {
    let ring = IoUring::new(8).map_err(|error| Unavailable::diagnose(error.raw_os_error().unwrap_or(0)))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|error| Unavailable::diagnose(error.raw_os_error().unwrap_or(0)))?;
    let kernel_release = kernel_release();
    let at_least_6_0 = kernel_version(&kernel_release).is_some_and(|version| version >= (6, 0));
    let supported = |code: u8| probe.is_supported(code);
    let opcodes = OpcodeSupport {
        read_fixed: supported(opcode::ReadFixed::CODE),
        write_fixed: supported(opcode::WriteFixed::CODE),
        splice: supported(opcode::Splice::CODE),
        send: supported(opcode::Send::CODE),
        recv: supported(opcode::Recv::CODE),
        send_zc: supported(opcode::SendZc::CODE),
        recv_multi: supported(opcode::RecvMulti::CODE)
            && supported(opcode::ProvideBuffers::CODE)
            && at_least_6_0,
        provide_buffers: supported(opcode::ProvideBuffers::CODE),
        accept: supported(opcode::Accept::CODE),
        connect: supported(opcode::Connect::CODE),
        fsync: supported(opcode::Fsync::CODE),
        timeout: supported(opcode::Timeout::CODE),
        link_timeout: supported(opcode::LinkTimeout::CODE),
        async_cancel: supported(opcode::AsyncCancel::CODE),
        read: supported(opcode::Read::CODE),
    };
    let missing = opcodes.missing_for_engine();
    if !missing.is_empty() {
        return Err(Unavailable::MissingOpcodes { missing, kernel_release });
    }
    let (limit_bytes, can_lock_unlimited) = memlock_limit();
    if !can_lock_unlimited && locked_bytes > limit_bytes {
        return Err(Unavailable::Memlock { needed_bytes: locked_bytes, limit_bytes });
    }
    Ok(Capabilities { kernel_release, opcodes })
}

/// `uname -r`, read from procfs.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_string())
        .unwrap_or_else(|_| "(unknown)".to_string())
}

/// (major, minor) of a release string such as "6.18.44-fc-v657".
pub(crate) fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// `Seccomp:` of /proc/self/status: 0 off, 1 strict, 2 filter.
fn seccomp_mode() -> u8 {
    proc_status_field("Seccomp:").and_then(|value| value.parse().ok()).unwrap_or(0)
}

/// kernel.io_uring_disabled (Linux 6.6+): 0 allowed, 1 only for kernel.io_uring_group, 2 off.
fn io_uring_disabled_sysctl() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?.trim().parse().ok()
}

/// (RLIMIT_MEMLOCK soft limit in bytes, whether the limit does not apply because the
/// process has CAP_IPC_LOCK).
pub(crate) fn memlock_limit() -> (u64, bool) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we pass and touches nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    let limit_bytes = if rc == 0 { limit.rlim_cur } else { 0 };
    const CAP_IPC_LOCK: u32 = 14;
    let has_ipc_lock = proc_status_field("CapEff:")
        .and_then(|caps| u64::from_str_radix(&caps, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0);
    (limit_bytes, has_ipc_lock || limit_bytes == libc::RLIM_INFINITY)
}

fn proc_status_field(name: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(name))?;
    Some(line[name.len()..].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(kernel_version("garbage"), None);
    }

    #[test]
    fn probe_reports_opcodes_or_says_why_not() {
        match probe(4096) {
            Ok(capabilities) => {
                assert!(capabilities.opcodes.missing_for_engine().is_empty());
                assert!(capabilities.to_string().contains("READ_FIXED=true"), "{capabilities}");
                println!("io_uring probe: {capabilities}");
            }
            Err(why) => {
                let text = why.to_string();
                assert!(!text.is_empty());
                println!("SKIP: io_uring unavailable: {text}");
            }
        }
    }

    #[test]
    fn diagnoses_name_the_cause() {
        let enosys = Unavailable::diagnose(libc::ENOSYS).to_string();
        assert!(enosys.contains("seccomp") || enosys.contains("CONFIG_IO_URING"), "{enosys}");
        let eperm = Unavailable::diagnose(libc::EPERM).to_string();
        assert!(eperm.contains("io_uring_disabled") || eperm.contains("seccomp"), "{eperm}");
        let enomem = Unavailable::diagnose(libc::ENOMEM).to_string();
        assert!(enomem.contains("RLIMIT_MEMLOCK"), "{enomem}");
        let memlock = Unavailable::Memlock { needed_bytes: 1 << 30, limit_bytes: 8 << 20 };
        assert!(memlock.to_string().contains("ulimit -l"));
    }
}
