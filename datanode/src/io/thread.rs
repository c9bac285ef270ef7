//! Thread placement for thread-per-core rings.

use super::error::Errno;

/// Cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get())
}

/// Pins the calling thread to `core` (modulo the cores available), so a ring and its
/// connections stay on one CPU and its cache.
pub fn pin_current_thread(core: usize) -> Result<usize, Errno> {
    let core = core % available_cores();
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    assert!(core < libc::CPU_SETSIZE as usize, "core {core} beyond cpu_set_t");
    // SAFETY: core < CPU_SETSIZE, so the bit lies inside the set.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: sched_setaffinity reads one cpu_set_t of the size we pass; pid 0 = this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)));
    }
    Ok(core)
}
