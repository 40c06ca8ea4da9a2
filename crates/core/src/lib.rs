//! The shared vocabulary of portier: object references, field paths, source spans, diagnostics and
//! host names. Every other crate speaks these types; this crate does no I/O.

mod diag;
mod host;
mod object;

pub use diag::{Diagnostic, Diagnostics, FieldPath, Severity, Span};
pub use host::{HostMatch, HostName, InvalidHost};
pub use object::{Kind, ObjectRef};

/// `n` in decimal, written into `buf`; returns the digits. For the strings written on hot or
/// bulk paths (access-log lines, names of ten thousand routes), where `format!` costs more than
/// everything around it.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// A monotonically increasing number that identifies one published snapshot.
pub type Generation = u64;

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_writes_what_display_writes() {
        for n in [0u64, 1, 9, 10, 99, 100, 65_535, 1_000_000, u64::MAX] {
            let mut buf = [0; 20];
            assert_eq!(super::decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }
}
