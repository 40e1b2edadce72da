//! Process-wide allocator settings.

/// Malloc arenas kept by glibc for the whole process (its default is eight per core).
///
/// Each arena keeps the memory freed into it for its own threads, so that with many arenas the
/// memory an epoch frees on one blocking-pool thread is not reused by the next epoch on
/// another: a view with 500 k groups held 205 MB resident with four arenas, 143 MB with two and
/// 132 MB with one (docs/benchmarks.md, "Memory"). Two keep the two cores' threads from
/// contending for one.
const MALLOC_ARENAS_MAX: i32 = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS_MAX`], unless `MALLOC_ARENA_MAX` is set in the
/// environment (glibc has read it then). Call it first thing in `main`.
pub fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` takes two integers and touches no memory of ours; glibc documents
    // M_ARENA_MAX as settable at any time (it bounds arenas created after the call, and arenas
    // are created lazily when threads contend).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS_MAX);
    }
}
