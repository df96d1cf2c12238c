//! Settings of mimalloc, the server's allocator (declared in `main.rs`). It must never
//! change how much memory the server may use, only how freed memory goes back to the
//! system.

/// `mi_option_purge_decommits` in mimalloc 3's `mi_option_e` (`mimalloc.h`), which the
/// `libmimalloc-sys` bindings do not name.
const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;

/// Call first thing in `main`. Memory freed for a second is given back with
/// `MADV_FREE` instead of being decommitted: the kernel takes those pages when it needs
/// them, and until then the allocator reuses them as they are. Decommitted, each reuse
/// was a page fault and a zeroed page (transparent huge pages: 2 MiB at a time). Under a
/// burst of reports the writer's and decoders' buffers are freed and allocated again
/// all the time: zeroing pages was up to a fifth of the server's CPU (`perf`, phase C of
/// `ingest_bench`), and page faults went from 8,293 to 655 a second.
pub fn tune() {
    // SAFETY: sets a plain integer option; mimalloc reads it when it next purges.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DECOMMITS, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_index_names_purge_decommits() {
        // Its neighbours default to 2 (arena_eager_commit) and 0 (large OS pages): an
        // index that moved with a mimalloc upgrade would read one of those, or garbage.
        // SAFETY: reads an integer option.
        let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DECOMMITS) };
        assert_eq!(default, 1, "mimalloc's purge_decommits defaults to 1");
    }
}
