//! Gives back the pages of the binary that start-up (or a reload) touched and serving does not.
//!
//! Why: the kernel keeps every page of the executable a process has touched mapped for the
//! process's life, and maps up to 64 KiB around each one it faults in. Start-up, the command
//! line, reading and compiling manifests and a reload are ~1.3 MiB of code and ~0.3 MiB of
//! constants that serving does not run, yet they stayed in the resident set: a fifth of it under
//! TLS load (bench/README.md, "The binary's pages after start-up").
//!
//! The read-only mappings of the executable are copies of the file, so unmapping their pages
//! (`MADV_DONTNEED`) loses nothing: the next touch maps the page again from the page cache, a
//! minor fault. The code serving runs sits together (the symbol order, see build.rs) and comes
//! back in a few dozen faults on the first requests.
//!
//! Only mappings that are still pure copies of the file are touched. A page written since
//! (relocations made read-only afterwards, a debugger's breakpoint) is anonymous memory, and
//! `MADV_DONTNEED` would put the file's bytes back in its place.

use std::path::Path;

/// One mapping of the executable that can be given back.
#[derive(Debug, PartialEq, Eq)]
struct Clean {
    start: usize,
    len: usize,
}

/// Unmaps the resident pages of the executable's read-only mappings, after `after` (start-up, a
/// reload): says how many at debug, and at warn when it could not. Nothing depends on it but the
/// resident set, so a failure is reported, not returned.
pub fn release_binary_pages(after: &'static str) {
    match release() {
        Ok(bytes) => tracing::debug!(after, kib = bytes / 1024, "gave back the binary's resident pages"),
        Err(e) => tracing::warn!(after, error = %e, "could not give back the binary's resident pages"),
    }
}

/// [`release_binary_pages`]'s work; returns how many bytes were resident in the mappings.
#[cfg(target_os = "linux")]
fn release() -> std::io::Result<u64> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for (m, resident) in clean_mappings(&smaps, &exe) {
        if resident == 0 {
            continue;
        }
        // SAFETY: the range is a whole private, read-only mapping of the executable with no
        // anonymous page (checked from smaps just now; nothing in this process writes to a
        // read-only mapping). MADV_DONTNEED on such a mapping drops page-table entries only: every
        // later read, of code or of constants, maps the same bytes back from the file.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::madvise(m.start as *mut libc::c_void, m.len, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        released += resident;
    }
    Ok(released)
}

#[cfg(not(target_os = "linux"))]
fn release() -> std::io::Result<u64> {
    Ok(0)
}

/// The executable's private read-only mappings without anonymous pages, from /proc/self/smaps
/// text, with their resident bytes.
fn clean_mappings(smaps: &str, exe: &Path) -> Vec<(Clean, u64)> {
    let exe = exe.to_string_lossy();
    let mut out = Vec::new();
    // The mapping being read: (range, its perms and path qualify, Rss, Anonymous).
    let mut cur: Option<(Clean, bool, u64, u64)> = None;
    let mut finish = |cur: Option<(Clean, bool, u64, u64)>| {
        if let Some((m, true, rss, 0)) = cur {
            out.push((m, rss));
        }
    };
    for line in smaps.lines() {
        if let Some((range, rest)) = mapping_header(line) {
            finish(cur.take());
            // perms, offset, device, inode, then the path: padded, and it may hold spaces.
            let mut f = rest.splitn(5, ' ');
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("").trim_start();
            let wanted = (perms == "r-xp" || perms == "r--p") && path == exe;
            cur = Some((range, wanted, 0, 0));
            continue;
        }
        let Some((_, wanted, rss, anon)) = cur.as_mut() else {
            continue;
        };
        if !*wanted {
            continue;
        }
        if let Some(kb) = field_kb(line, "Rss:") {
            *rss = kb * 1024;
        } else if let Some(kb) = field_kb(line, "Anonymous:") {
            *anon = kb;
        }
    }
    finish(cur);
    out
}

/// `start-end rest` when the line opens a mapping (its first word is two hex addresses).
fn mapping_header(line: &str) -> Option<(Clean, &str)> {
    let (range, rest) = line.split_once(' ')?;
    let (a, b) = range.split_once('-')?;
    let start = usize::from_str_radix(a, 16).ok()?;
    let end = usize::from_str_radix(b, 16).ok()?;
    (end > start).then_some((
        Clean {
            start,
            len: end - start,
        },
        rest,
    ))
}

fn field_kb(line: &str, key: &str) -> Option<u64> {
    let v = line.strip_prefix(key)?.trim();
    v.strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0240000 r--p 00000000 08:01 1234                       /opt/portier bin
Size:               2304 kB
KernelPageSize:        4 kB
Rss:                 980 kB
Pss:                 980 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
55d0a0240000-55d0a0b80000 r-xp 00240000 08:01 1234                       /opt/portier bin
Rss:                3372 kB
Anonymous:             0 kB
THPeligible:           0
VmFlags: rd ex mr mw me sd
55d0a0b80000-55d0a0bc1000 r--p 00b80000 08:01 1234 /opt/portier bin
Size:                260 kB
Rss:                 248 kB
Anonymous:           248 kB
55d0a0bc1000-55d0a0bc8000 rw-p 00bc1000 08:01 1234 /opt/portier bin
Rss:                  28 kB
Anonymous:            28 kB
55d0a1000000-55d0a1200000 rw-p 00000000 00:00 0 [heap]
Rss:                2316 kB
Anonymous:          2316 kB
7f0000000000-7f0000010000 r-xp 00000000 08:01 99 /usr/lib/libother.so
Rss:                  64 kB
Anonymous:             0 kB
";

    #[test]
    fn only_untouched_read_only_mappings_of_the_executable() {
        let got = clean_mappings(SMAPS, Path::new("/opt/portier bin"));
        assert_eq!(
            got,
            vec![
                (
                    Clean {
                        start: 0x55d0a0000000,
                        len: 0x240000
                    },
                    980 * 1024
                ),
                (
                    Clean {
                        start: 0x55d0a0240000,
                        len: 0x940000
                    },
                    3372 * 1024
                ),
            ],
            "the relocated read-only mapping (anonymous pages), the writable one, the heap and \
             other files are left alone"
        );
        assert!(clean_mappings(SMAPS, Path::new("/opt/portier")).is_empty());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_process_runs_on_after_its_pages_are_released() {
        let released = release().expect("madvise");
        assert!(released > 0, "a running test binary has resident code");
        // Code and constants come back on use: formatting runs code that just left.
        let again = format!("{:?} {}", Clean { start: 1, len: 2 }, released);
        assert!(again.starts_with("Clean { start: 1, len: 2 }"));
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        let rss_now: u64 = clean_mappings(&smaps, &exe).iter().map(|(_, r)| r).sum();
        assert!(
            rss_now < released,
            "{rss_now} bytes resident again, of {released} released"
        );
    }
}
