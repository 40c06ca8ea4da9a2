//! A cache-line prefetch: a hint to start loading a line the request will need soon, without
//! waiting for it.
//!
//! With 10,000 hosts every request's route, policy, cluster and metric cells are cold. A plain
//! read of each as it is needed waits for one miss after another; a read issued only to warm a
//! line still holds the core at retirement until the line arrives. A prefetch retires at once, so
//! the misses of lines whose addresses are known together overlap with each other and with the
//! work between.

/// Starts loading the cache line at the start of `v`. Only a hint: no effect on what any read
/// returns, and a no-op where the architecture has no stable prefetch instruction.
#[inline(always)]
pub(crate) fn prefetch<T: ?Sized>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = (v as *const T).cast::<i8>();
        // SAFETY: PREFETCHT0 never faults, whatever the address, and changes no memory: it only
        // asks the cache for a line. Its one requirement, SSE, is part of the x86_64 baseline
        // (the intrinsic is `unsafe` only for that `target_feature`).
        #[allow(unsafe_code)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}
