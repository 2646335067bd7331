//! Gives the heap that a list left free back to the kernel.
//!
//! An initial list or a re-list passes every ConfigMap and Secret through
//! the process a page (100 objects) at a time; the controller keeps only a
//! hash of each. glibc's allocator keeps the pages' freed memory in its
//! arenas, so without this the resident size after start-up reflects the
//! biggest pages seen, not what the controller holds. musl (the release
//! image) returns large free blocks on its own; there this does nothing.

/// Returns free heap memory to the kernel (glibc `malloc_trim`).
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // The workspace denies unsafe code; this one FFI call is the exception.
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it
    // takes no pointers from us and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
