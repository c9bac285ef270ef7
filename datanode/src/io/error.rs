//! Errors of io_uring operations, with every errno mapped on purpose (TigerBeetle style):
//! transient ones are resubmitted a bounded number of times, a bad address is our bug,
//! and everything else becomes a named variant carrying the operation's name.

use std::fmt;

use super::limits::TRANSIENT_RETRIES_MAX;

/// An errno value, printed with its name and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", std::io::Error::from_raw_os_error(self.0), self.0)
    }
}

/// A failed io_uring operation. `op` names the operation ("recv", "splice file->pipe").
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{op}: the peer closed the connection")]
    Eof { op: &'static str },
    #[error("{op}: the peer reset the connection")]
    ConnectionReset { op: &'static str },
    #[error("{op}: the peer is gone (broken pipe)")]
    BrokenPipe { op: &'static str },
    #[error("{op}: connection refused")]
    ConnectionRefused { op: &'static str },
    #[error("{op}: cancelled")]
    Cancelled { op: &'static str },
    #[error("{op}: timed out")]
    TimedOut { op: &'static str },
    #[error("{op}: no space left on the device")]
    NoSpace { op: &'static str },
    #[error("{op}: the device reported an I/O error")]
    Device { op: &'static str },
    #[error("{op}: bad file descriptor")]
    BadFile { op: &'static str },
    #[error("{op}: invalid argument: the kernel rejected the request")]
    Invalid { op: &'static str },
    #[error("{op}: not supported by this kernel or file")]
    Unsupported { op: &'static str },
    #[error("{op}: still failing with {errno} after {attempts} resubmissions")]
    RetriesExhausted { op: &'static str, errno: Errno, attempts: u32 },
    #[error("{op}: moved {done} of {wanted} bytes")]
    Short { op: &'static str, done: usize, wanted: usize },
    #[error("{op}: {errno}")]
    Os { op: &'static str, errno: Errno },
}

impl IoError {
    /// Did the peer go away (EOF, reset, broken pipe)? Such errors end a connection quietly.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, IoError::Eof { .. } | IoError::ConnectionReset { .. } | IoError::BrokenPipe { .. })
    }

    /// Builds the error for a negative errno that is not transient.
    pub(crate) fn from_errno(op: &'static str, errno: i32) -> IoError {
        match errno {
            libc::ECONNRESET => IoError::ConnectionReset { op },
            libc::EPIPE => IoError::BrokenPipe { op },
            libc::ECONNREFUSED => IoError::ConnectionRefused { op },
            libc::ECANCELED => IoError::Cancelled { op },
            libc::ETIME | libc::ETIMEDOUT => IoError::TimedOut { op },
            libc::ENOSPC | libc::EDQUOT => IoError::NoSpace { op },
            libc::EIO => IoError::Device { op },
            libc::EBADF => IoError::BadFile { op },
            libc::EINVAL => IoError::Invalid { op },
            libc::EOPNOTSUPP => IoError::Unsupported { op },
            // The kernel could not touch a buffer address we gave it: every address comes
            // from an arena slot or an in-flight entry that lives until the CQE, so this
            // is a bug in this module, not a runtime condition.
            libc::EFAULT => unreachable!("{op} returned EFAULT: io/ passed a bad buffer address"),
            other => IoError::Os { op, errno: Errno(other) },
        }
    }
}

/// What to do with one completion's result.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Success: bytes moved, an fd, or 0.
    Done(u32),
    /// EINTR or EAGAIN: resubmit the same request.
    Resubmit,
    Failed(IoError),
}

/// Classifies a CQE result. `attempts` counts resubmissions so far; past
/// [`TRANSIENT_RETRIES_MAX`] a transient errno becomes [`IoError::RetriesExhausted`].
pub(crate) fn classify(op: &'static str, result: i32, attempts: u32) -> Outcome {
    if result >= 0 {
        return Outcome::Done(result as u32);
    }
    let errno = -result;
    match errno {
        // EINTR: a signal interrupted a blocking request in an io-wq worker. EAGAIN: a
        // non-blocking attempt found no room or data (some file systems return it for
        // buffered I/O under memory pressure). Both succeed when simply tried again.
        libc::EINTR | libc::EAGAIN if attempts < TRANSIENT_RETRIES_MAX => Outcome::Resubmit,
        libc::EINTR | libc::EAGAIN => {
            Outcome::Failed(IoError::RetriesExhausted { op, errno: Errno(errno), attempts })
        }
        _ => Outcome::Failed(IoError::from_errno(op, errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errnos_resubmit_until_the_bound() {
        assert!(matches!(classify("recv", -libc::EINTR, 0), Outcome::Resubmit));
        assert!(matches!(classify("recv", -libc::EAGAIN, TRANSIENT_RETRIES_MAX - 1), Outcome::Resubmit));
        match classify("recv", -libc::EAGAIN, TRANSIENT_RETRIES_MAX) {
            Outcome::Failed(IoError::RetriesExhausted { op, errno, attempts }) => {
                assert_eq!(op, "recv");
                assert_eq!(errno, Errno(libc::EAGAIN));
                assert_eq!(attempts, TRANSIENT_RETRIES_MAX);
            }
            other => panic!("expected RetriesExhausted, got {other:?}"),
        }
    }

    #[test]
    fn errnos_map_to_named_variants() {
        assert!(matches!(classify("send", 5, 0), Outcome::Done(5)));
        let named = [
            (libc::ECONNRESET, "ConnectionReset"),
            (libc::EPIPE, "BrokenPipe"),
            (libc::ECANCELED, "Cancelled"),
            (libc::ETIME, "TimedOut"),
            (libc::ENOSPC, "NoSpace"),
            (libc::EIO, "Device"),
            (libc::EBADF, "BadFile"),
            (libc::EINVAL, "Invalid"),
        ];
        for (errno, variant) in named {
            let Outcome::Failed(error) = classify("op", -errno, 0) else { panic!("{variant} not an error") };
            assert!(format!("{error:?}").starts_with(variant), "{errno} mapped to {error:?}");
        }
        let Outcome::Failed(error) = classify("op", -libc::ENOENT, 0) else { panic!() };
        assert!(matches!(error, IoError::Os { errno: Errno(libc::ENOENT), .. }));
        assert!(error.to_string().contains("No such file"), "{error}");
        assert!(IoError::Eof { op: "recv" }.is_disconnect());
        assert!(!IoError::Device { op: "write" }.is_disconnect());
    }
}
