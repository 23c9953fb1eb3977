//! The `fastlane` command.

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    fastlane_host::cli::main(std::env::args_os())
}

/// Caps glibc's malloc at two arenas, unless `MALLOC_ARENA_MAX` sets the number. Batches are
/// built on the plugins' I/O threads and freed on the writers' threads; with glibc's default of
/// eight arenas per core, the memory each thread frees stays reserved in its own arena and the
/// peak resident memory grows by a quarter (measured with `tests/bench/mysql.sh`), for no gain
/// in speed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` only sets an allocator parameter; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
