//! glibc's malloc, set up for a proxy whose memory comes and goes in large replies.
//!
//! By default glibc gives each thread that contends for the allocator an arena of its own (up
//! to 8 per core) and keeps what is freed in an arena for that arena's later allocations. A
//! client evicted at the memory budget frees its replies in one worker's arena while the other
//! worker's arena grows for new ones, so the process' peak RSS adds up the arenas' peaks:
//! 196-206 MB above the RSS before for a 128 MB `max_client_memory_bytes`
//! (`tests/it/memory_budget.rs`). With one arena, freed memory serves every thread: 133-135
//! MB, the budget + 5-7 MB. On 2 workers one arena cost no CPU per request that noise could
//! hide (W1 SET/GET 15-19 against 16-18 µs; 256 KB GETs 139-171 against 152-198 µs): the hot
//! path's small allocations come from glibc's per-thread caches, which take no lock. With
//! many workers the arena's lock may contend; that is not measured.
//!
//! An operator who sets `glibc.malloc.arena_max` in `GLIBC_TUNABLES` keeps that setting.

/// Limits glibc's malloc to one arena, unless `GLIBC_TUNABLES` names an arena limit. Call
/// before any other thread starts: threads that already have an arena keep it.
pub fn one_arena() {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max")) {
        return;
    }
    set_arena_max(1);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(arenas: i32) {
    // SAFETY: mallopt only stores a malloc parameter, under glibc's own lock; it has no
    // pointer arguments and any thread may call it.
    let done = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    if done != 1 {
        tracing::warn!("could not limit glibc's malloc to {arenas} arena(s)");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) {}

/// Gives the pages of freed heap memory back to the OS (`malloc_trim`).
///
/// glibc returns only the top of the heap on its own: memory freed below live allocations
/// (buffers of clients gone idle, clients that left, startup's temporary tables) stays in the
/// process' RSS until reused. This walks the free chunks once, under the arena's lock, and
/// advises the kernel to drop their whole pages; a page used again later is faulted back in.
pub fn release_free_memory() {
    trim();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim takes glibc's arena locks itself and only releases pages of chunks
    // that are free; it has no pointer arguments and any thread may call it.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
