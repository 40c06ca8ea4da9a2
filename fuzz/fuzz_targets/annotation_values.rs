//! Every value parser behind the ingress-nginx annotations and ConfigMap keys takes any text and
//! returns a value or an error, never a panic or an overflow (STYLE.md §6, §12). Parsed sizes
//! print back to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portier_compile::values;

fuzz_target!(|s: &str| {
    if let Ok(n) = values::parse_size(s) {
        assert_eq!(values::parse_size(&values::format_size(n)), Ok(n), "size {s:?} round-trips");
    }
    let _ = values::parse_body_size(s);
    let _ = values::parse_duration(s);
    if let Ok(d) = values::parse_timeout(s) {
        assert!(!d.is_zero() && d <= values::MAX_TIMEOUT, "timeout {s:?} within bounds");
    }
    if let Ok(b) = values::parse_header_buffers(s) {
        assert!((values::MIN_HEADER_BYTES..=values::MAX_HEADER_BYTES).contains(&b.total), "buffers {s:?} within bounds");
        assert!(b.line <= b.total, "one buffer of {s:?} within the total");
    }
    let _ = values::parse_count(s, 1, u32::MAX);
    let _ = values::parse_bool(s);
    let list = values::parse_cidrs(s);
    assert!(list.valid.len() + list.invalid.len() <= s.len(), "one result per entry of {s:?}");
});
