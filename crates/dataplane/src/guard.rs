//! HTTP/1 request-head inspection below hyper, on the raw bytes of the connection.
//!
//! hyper's parser is lenient where a proxy must be strict: it accepts `Content-Length` together
//! with `Transfer-Encoding` (dropping the length), repeated identical `Content-Length` lines, a
//! `Transfer-Encoding` list ending in `chunked`, and bare LF line ends; and it removes the evidence
//! before the service sees the request. [`Guarded`] wraps the connection, follows the message
//! framing (heads, fixed-length and chunked bodies) and records the first head that is ambiguous
//! (RFC 9112 §6.1, §6.3, §5.2, §2.2) or over the configured size limits. The service asks
//! [`GuardState::verdict`] with the request's index on the connection and answers it with 400
//! (`bad-framing`) or 431 (`header-too-large`) and `Connection: close`; inspection stops there.
//!
//! It also enforces `client_header_timeout` from the first byte of each head, and the keep-alive
//! idle limit from the end of the last response ([`GuardState::answered`]) to the next head. hyper's
//! own `header_read_timeout` cannot tell the two apart, and it allocates and registers a new timer
//! for every request; here one timer per connection is re-armed lazily, when it fires.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the inspection found about one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Ambiguous framing or a malformed line: 400.
    Framing(&'static str),
    /// Over `max_header_bytes`, `max_header_line_bytes` or `max_header_count`: 431.
    TooLarge,
}

/// Shared between the connection wrapper and the service.
#[derive(Debug)]
pub(crate) struct GuardState {
    /// `index << 8 | reason` of the first refused head; `u64::MAX` while there is none.
    refused: AtomicU64,
    /// Responses completed on the connection; when it equals the heads read, it is idle.
    answered: AtomicU64,
    /// Milliseconds after `origin` at which the last response completed.
    idle_since_ms: AtomicU64,
    origin: std::time::Instant,
}

/// A connection with its request heads inspected; see the [module](self) docs.
pub(crate) struct Guarded<I> {
    io: I,
    inspector: Inspector,
    state: Arc<GuardState>,
    header_timeout: Duration,
    /// The head deadline while `timing`; otherwise armed at or before the idle deadline, and
    /// moved on when it fires early (see `poll_read`).
    deadline: Pin<Box<Sleep>>,
    /// A head has started (or the connection is new) and has not ended yet.
    timing: bool,
    /// Idle keep-alive limit; zero when keep-alive is off (hyper closes after each response).
    keep_alive: Duration,
}

/// The size limits of one request head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    /// The whole head.
    pub bytes: usize,
    /// One line: the request line or one header field (nginx refuses a line longer than one of
    /// its `large_client_header_buffers`).
    pub line: usize,
    pub fields: usize,
}

/// Largest part of one header line kept for inspection: enough for a name and a length or
/// coding; a longer `Content-Length`/`Transfer-Encoding` line is refused.
const LINE_KEEP: usize = 128;

const FRAMING_REASONS: [&str; 9] = [
    "Content-Length together with Transfer-Encoding",
    "more than one Content-Length",
    "invalid Content-Length",
    "Transfer-Encoding other than chunked",
    "Transfer-Encoding on an HTTP/1.0 request",
    "bare CR or LF in the request head",
    "obsolete line folding in the request head",
    "malformed header line",
    "NUL byte in the request head",
];

#[derive(Debug)]
struct Inspector {
    phase: Phase,
    max_bytes: usize,
    max_line: usize,
    max_fields: usize,
    /// Heads completed so far: the index of the head being read.
    heads: u64,
    line: Vec<u8>,
    line_len: usize,
    prev_cr: bool,
    head: Head,
}

#[derive(Debug, Default)]
struct Head {
    started: bool,
    request_line_done: bool,
    bytes: usize,
    longest_line: usize,
    fields: usize,
    content_length: Option<u64>,
    te: bool,
    http10: bool,
    tunnel: bool,
    bad: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Fixed(u64),
    Chunk(Chunk),
    /// Inspection over: a refused head, a tunnel, or framing hyper will refuse by itself.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size {
        size: u64,
        digits: bool,
    },
    Ext {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section; `true` at the start of a line.
    Trailer(bool),
}

// === impl GuardState ===

impl GuardState {
    fn new() -> Self {
        Self {
            refused: AtomicU64::new(u64::MAX),
            answered: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            origin: std::time::Instant::now(),
        }
    }

    /// A response has been sent in full (at `now`): the idle keep-alive time starts.
    pub(crate) fn answered(&self, now: std::time::Instant) {
        let ms = u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX);
        self.idle_since_ms.store(ms, Ordering::Relaxed);
        self.answered.fetch_add(1, Ordering::Release);
    }

    /// What was found about the request with this index on the connection (0 for the first).
    pub(crate) fn verdict(&self, index: u64) -> Option<Verdict> {
        let refused = self.refused.load(Ordering::Acquire);
        if refused == u64::MAX || refused >> 8 != index {
            return None;
        }
        Some(match (refused & 0xff) as u8 {
            0xff => Verdict::TooLarge,
            r => Verdict::Framing(
                FRAMING_REASONS
                    .get(usize::from(r))
                    .copied()
                    .unwrap_or("malformed request head"),
            ),
        })
    }
}

// === impl Guarded ===

impl<I> Guarded<I> {
    pub(crate) fn new(
        io: I,
        limits: HeadLimits,
        header_timeout: Duration,
        keep_alive: Duration,
    ) -> (Self, Arc<GuardState>) {
        let state = Arc::new(GuardState::new());
        let guarded = Self {
            io,
            inspector: Inspector {
                phase: Phase::Head,
                max_bytes: limits.bytes,
                max_line: limits.line,
                max_fields: limits.fields,
                heads: 0,
                line: Vec::with_capacity(LINE_KEEP),
                line_len: 0,
                prev_cr: false,
                head: Head::default(),
            },
            state: state.clone(),
            header_timeout,
            // The first head is timed from the accept: a connection that says nothing is closed too.
            deadline: Box::pin(tokio::time::sleep(header_timeout)),
            timing: true,
            keep_alive,
        };
        (guarded, state)
    }
}

impl<I> Guarded<I> {
    /// When the connection is idle between requests (every head read has been answered and no
    /// new one has started), the instant it may stay so until.
    fn idle_deadline(&self) -> Option<Instant> {
        if self.inspector.phase != Phase::Head || self.inspector.head.started {
            return None;
        }
        let state = &self.state;
        if state.answered.load(Ordering::Acquire) < self.inspector.heads {
            return None;
        }
        let since = Duration::from_millis(state.idle_since_ms.load(Ordering::Relaxed));
        Some(Instant::from_std(state.origin) + since + self.keep_alive)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if this.inspector.phase != Phase::Done && !new.is_empty() {
                    let heads = this.inspector.heads;
                    if let Some(refused) = this.inspector.feed(new) {
                        this.state.refused.store(refused, Ordering::Release);
                    }
                    let in_head = this.inspector.phase == Phase::Head && this.inspector.head.started;
                    if this.inspector.heads != heads {
                        this.timing = false;
                    }
                    if in_head && !this.timing {
                        this.timing = true;
                        let at = Instant::now() + this.header_timeout;
                        this.deadline.as_mut().reset(at);
                    }
                } else if this.inspector.phase == Phase::Done {
                    this.timing = false;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.timing {
                    if this.deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not received within client_header_timeout",
                        )));
                    }
                } else if !this.keep_alive.is_zero() && this.inspector.phase != Phase::Done {
                    // One timer, armed no later than the idle deadline (or, while a request is in
                    // flight, than a keep-alive period from now), and moved on when it fires:
                    // hyper may read here before the response ends, and not again after it.
                    let at = match this.idle_deadline() {
                        Some(at) => Some(at),
                        // Every deadline this sets is an instant already past plus the header
                        // timeout or the keep-alive period. With the header timeout no longer
                        // (the defaults: 10 s and 75 s), the timer is due within a keep-alive
                        // period from now already, and the clock read per request is spared.
                        None if this.header_timeout <= this.keep_alive => None,
                        None => Some(Instant::now() + this.keep_alive),
                    };
                    if let Some(at) = at.filter(|&at| this.deadline.deadline() > at) {
                        this.deadline.as_mut().reset(at);
                    }
                    while this.deadline.as_mut().poll(cx).is_ready() {
                        match this.idle_deadline() {
                            Some(at) if Instant::now() >= at => {
                                return Poll::Ready(Err(io::Error::new(
                                    io::ErrorKind::TimedOut,
                                    "keep-alive connection idle for longer than keep-alive",
                                )));
                            }
                            Some(at) => this.deadline.as_mut().reset(at),
                            None => this.deadline.as_mut().reset(Instant::now() + this.keep_alive),
                        }
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

// === impl Inspector ===

impl Inspector {
    /// Follows the framing over `bytes`; returns the refusal to record when a head is refused.
    fn feed(&mut self, mut bytes: &[u8]) -> Option<u64> {
        while !bytes.is_empty() {
            match self.phase {
                Phase::Done => return None,
                Phase::Fixed(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[take..];
                    let left = n - take as u64;
                    self.phase = if left == 0 { Phase::Head } else { Phase::Fixed(left) };
                }
                Phase::Chunk(Chunk::Data(n)) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[take..];
                    let left = n - take as u64;
                    self.phase = Phase::Chunk(if left == 0 { Chunk::DataCr } else { Chunk::Data(left) });
                }
                Phase::Chunk(c) => {
                    self.phase = chunk_step(c, bytes[0]);
                    bytes = &bytes[1..];
                }
                Phase::Head => {
                    // The usual line, whole in `bytes` and ending in CRLF with no CR or NUL
                    // before: one scan. What it does is what the general case below does for it.
                    if !self.prev_cr {
                        if let Some(i) = memchr::memchr3(b'\r', b'\n', 0, bytes) {
                            let text = &bytes[..i];
                            if bytes[i] == b'\r'
                                && bytes.get(i + 1) == Some(&b'\n')
                                && (self.head.started || !text.is_empty())
                            {
                                bytes = &bytes[i + 2..];
                                if let Some(refused) = self.whole_line(text) {
                                    return Some(refused);
                                }
                                continue;
                            }
                        }
                    }
                    // A line at a time: the bytes up to the next LF are checked with memchr, so a
                    // head costs a few scans, not a branch per byte.
                    let (segment, lf) = match memchr::memchr(b'\n', bytes) {
                        Some(i) => (&bytes[..i], true),
                        None => (bytes, false),
                    };
                    bytes = &bytes[segment.len() + usize::from(lf)..];
                    self.head_segment(segment);
                    if lf {
                        if let Some(refused) = self.head_lf() {
                            return Some(refused);
                        }
                    }
                }
            }
        }
        None
    }

    /// A line that ends in CRLF here, `text` without it, with no CR or NUL in `text` and no CR
    /// pending from the previous bytes: [`head_segment`](Self::head_segment) of `text` and its
    /// CR, then [`head_lf`](Self::head_lf), without their scans.
    fn whole_line(&mut self, text: &[u8]) -> Option<u64> {
        self.head.started = true;
        self.head.bytes += text.len() + 2;
        let keep = LINE_KEEP.saturating_sub(self.line.len()).min(text.len());
        self.line.extend_from_slice(&text[..keep]);
        self.line_len += text.len();
        self.end_line()
    }

    /// Bytes of a head line without its LF (possibly only part of the line).
    fn head_segment(&mut self, mut segment: &[u8]) {
        if !self.head.started {
            // RFC 9112 §2.2: empty lines before the request line are ignored.
            while let [b'\r', rest @ ..] = segment {
                segment = rest;
            }
            if segment.is_empty() {
                return;
            }
            self.head.started = true;
        }
        let head = &mut self.head;
        head.bytes += segment.len();
        let Some((&last, _)) = segment.split_last() else {
            return;
        };
        // A CR not followed by LF, at the end of the previous segment or inside this one (seen at
        // the byte after it), and NUL; the first in byte order is the reason given.
        let text = if last == b'\r' {
            &segment[..segment.len() - 1]
        } else {
            segment
        };
        let nul = memchr::memchr(0, segment);
        let bare_cr = if self.prev_cr {
            Some(0)
        } else {
            memchr::memchr(b'\r', text).map(|i| i + 1)
        };
        let reason = match (nul, bare_cr) {
            (Some(n), Some(c)) if c < n => Some(5),
            (Some(_), _) => Some(8),
            (None, c) => c.map(|_| 5),
        };
        if let Some(r) = reason {
            head.bad.get_or_insert(r);
        }
        self.prev_cr = last == b'\r';
        if bare_cr.is_some() && memchr::memchr(b'\r', text).is_some() {
            // Refused already; the line still ends where it would, CRs not counted.
            for &b in text.iter().filter(|&&b| b != b'\r') {
                if self.line.len() < LINE_KEEP {
                    self.line.push(b);
                }
                self.line_len += 1;
            }
            return;
        }
        let keep = LINE_KEEP.saturating_sub(self.line.len()).min(text.len());
        self.line.extend_from_slice(&text[..keep]);
        self.line_len += text.len();
    }

    fn head_lf(&mut self) -> Option<u64> {
        if !self.head.started {
            return None;
        }
        self.head.bytes += 1;
        if !self.prev_cr {
            self.head.bad.get_or_insert(5);
        }
        self.prev_cr = false;
        self.end_line()
    }

    fn end_line(&mut self) -> Option<u64> {
        let line = std::mem::take(&mut self.line);
        let len = std::mem::replace(&mut self.line_len, 0);
        let head = &mut self.head;
        head.longest_line = head.longest_line.max(len);
        if !head.request_line_done {
            head.request_line_done = true;
            head.http10 = line.ends_with(b"HTTP/1.0");
            head.tunnel = line.starts_with(b"CONNECT ");
        } else if len == 0 {
            self.line = line;
            return self.end_head();
        } else {
            inspect_field(head, &line, len > LINE_KEEP);
        }
        self.line = line;
        self.line.clear();
        None
    }

    fn end_head(&mut self) -> Option<u64> {
        let head = std::mem::take(&mut self.head);
        let index = self.heads;
        self.heads += 1;
        let reason = if let Some(bad) = head.bad {
            Some(bad)
        } else if head.te && head.content_length.is_some() {
            Some(0)
        } else if head.te && head.http10 {
            Some(4)
        } else if head.bytes > self.max_bytes || head.longest_line > self.max_line || head.fields > self.max_fields {
            Some(0xff)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.phase = Phase::Done;
            return Some(index << 8 | u64::from(reason));
        }
        self.phase = if head.tunnel {
            Phase::Done
        } else if head.te {
            Phase::Chunk(Chunk::Size { size: 0, digits: false })
        } else {
            match head.content_length {
                Some(n) if n > 0 => Phase::Fixed(n),
                _ => Phase::Head,
            }
        };
        None
    }
}

fn inspect_field(head: &mut Head, line: &[u8], truncated: bool) {
    head.fields += 1;
    if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        head.bad.get_or_insert(6);
        return;
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        if !truncated {
            head.bad.get_or_insert(7);
        }
        return;
    };
    let name = &line[..colon];
    let value = trim_ows(&line[colon + 1..]);
    if name.eq_ignore_ascii_case(b"content-length") {
        if truncated || value.is_empty() || !value.iter().all(u8::is_ascii_digit) || value.len() > 19 {
            head.bad.get_or_insert(2);
            return;
        }
        if head.content_length.is_some() {
            head.bad.get_or_insert(1);
            return;
        }
        let n = value.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        head.content_length = Some(n);
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        // Only exactly one `chunked` is unambiguous (RFC 9112 §6.1; a list or a repeat is how
        // front and back ends are made to disagree).
        if truncated || head.te || !value.eq_ignore_ascii_case(b"chunked") {
            head.bad.get_or_insert(3);
            return;
        }
        head.te = true;
    } else if name.eq_ignore_ascii_case(b"upgrade") {
        // The bytes after a switch are not HTTP; an upgrade that is refused ends the connection.
        head.tunnel = true;
    }
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn chunk_step(c: Chunk, b: u8) -> Phase {
    let next = match c {
        Chunk::Size { size, digits } => match b {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                if size > u64::MAX >> 4 {
                    return Phase::Done;
                }
                let d = (b as char).to_digit(16).map_or(0, u64::from);
                Chunk::Size {
                    size: size << 4 | d,
                    digits: true,
                }
            }
            b';' | b' ' | b'\t' if digits => Chunk::Ext { size },
            b'\r' if digits => Chunk::SizeLf { size },
            _ => return Phase::Done,
        },
        Chunk::Ext { size } => match b {
            b'\r' => Chunk::SizeLf { size },
            b'\n' => return Phase::Done,
            _ => Chunk::Ext { size },
        },
        Chunk::SizeLf { size } => match b {
            b'\n' if size == 0 => Chunk::Trailer(true),
            b'\n' => Chunk::Data(size),
            _ => return Phase::Done,
        },
        Chunk::Data(n) => Chunk::Data(n),
        Chunk::DataCr => match b {
            b'\r' => Chunk::DataLf,
            _ => return Phase::Done,
        },
        Chunk::DataLf => match b {
            b'\n' => Chunk::Size { size: 0, digits: false },
            _ => return Phase::Done,
        },
        Chunk::Trailer(at_start) => match b {
            b'\r' => Chunk::Trailer(at_start),
            b'\n' if at_start => return Phase::Head,
            b'\n' => Chunk::Trailer(true),
            _ => Chunk::Trailer(false),
        },
    };
    Phase::Chunk(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspect(input: &[u8], max_bytes: usize, max_fields: usize) -> Vec<Option<Verdict>> {
        // Fed one byte at a time and all at once: the result must not depend on read sizes.
        let mut results = Vec::new();
        for split in [1, input.len().max(1)] {
            let state = GuardState::new();
            let mut i = inspector(max_bytes, max_fields);
            for part in input.chunks(split) {
                if let Some(r) = i.feed(part) {
                    state.refused.store(r, Ordering::Release);
                }
            }
            results.push((0..3).map(|k| state.verdict(k)).collect::<Vec<_>>());
        }
        assert_eq!(results[0], results[1], "split-dependent result");
        results.remove(0)
    }

    /// The byte-at-a-time inspection this module had before the line scanning: the reference
    /// the scanning is checked against.
    impl Inspector {
        fn feed_reference(&mut self, mut bytes: &[u8]) -> Option<u64> {
            while let [b, rest @ ..] = bytes {
                if self.phase != Phase::Head {
                    return self.feed(bytes);
                }
                bytes = rest;
                if let Some(refused) = self.head_byte(*b) {
                    return Some(refused);
                }
            }
            None
        }

        fn head_byte(&mut self, b: u8) -> Option<u64> {
            let head = &mut self.head;
            if !head.started {
                // RFC 9112 §2.2: empty lines before the request line are ignored.
                if b == b'\r' || b == b'\n' {
                    return None;
                }
                head.started = true;
            }
            head.bytes += 1;
            if b == 0 {
                head.bad.get_or_insert(8);
            }
            if self.prev_cr && b != b'\n' {
                head.bad.get_or_insert(5);
            }
            if b == b'\r' {
                self.prev_cr = true;
                return None;
            }
            if b == b'\n' {
                if !self.prev_cr {
                    head.bad.get_or_insert(5);
                }
                self.prev_cr = false;
                return self.end_line();
            }
            self.prev_cr = false;
            if self.line.len() < LINE_KEEP {
                self.line.push(b);
            }
            self.line_len += 1;
            None
        }
    }

    fn inspector(max_bytes: usize, max_fields: usize) -> Inspector {
        Inspector {
            phase: Phase::Head,
            max_bytes,
            max_line: max_bytes,
            max_fields,
            heads: 0,
            line: Vec::new(),
            line_len: 0,
            prev_cr: false,
            head: Head::default(),
        }
    }

    #[test]
    fn line_scanning_agrees_with_the_bytewise_reference() {
        const PIECES: [&[u8]; 16] = [
            b"GET / HTTP/1.1",
            b"POST /u HTTP/1.0",
            b"\r\n",
            b"\n",
            b"\r",
            b"Host: a",
            b"Content-Length: 3",
            b"Content-Length: 0",
            b"Transfer-Encoding: chunked",
            b"\0",
            b"abc",
            b" folded",
            b"3\r\nabc\r\n0\r\n\r\n",
            b"Upgrade: x",
            b"Connection: close",
            b"x-long: 0123456789012345678901234567890123456789012345678901234567890123456789",
        ];
        let mut next = crate::xorshift(0x9e37_79b9_7f4a_7c15);
        for case in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..next() % 24 {
                input.extend_from_slice(PIECES[(next() % 16) as usize]);
            }
            let (max_bytes, max_fields) = (40 + (next() % 200) as usize, 1 + (next() % 6) as usize);
            let mut want = inspector(max_bytes, max_fields);
            let mut got = inspector(max_bytes, max_fields);
            let (mut want_refused, mut got_refused) = (None, None);
            let split = 1 + (next() % 40) as usize;
            for part in input.chunks(split) {
                want_refused = want_refused.or(want.feed_reference(part));
                got_refused = got_refused.or(got.feed(part));
            }
            assert_eq!(
                got_refused,
                want_refused,
                "case {case}: {:?}",
                String::from_utf8_lossy(&input)
            );
            assert_eq!(
                got.phase,
                want.phase,
                "case {case}: {:?}",
                String::from_utf8_lossy(&input)
            );
            assert_eq!(got.heads, want.heads, "case {case}");
        }
    }

    #[test]
    fn refuses_ambiguous_framing() {
        let ok = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
        let framing = |s: &'static str| Some(Verdict::Framing(s));
        // (request(s), verdict of request 0, 1, 2)
        let cases: Vec<(&[u8], [Option<Verdict>; 3])> = vec![
            (ok, [None; 3]),
            (
                b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nhost: a\r\n\r\n",
                [None; 3],
            ),
            (
                b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nt: 1\r\n\r\nPOST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
                [None, framing(FRAMING_REASONS[1]), None],
            ),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
                [framing(FRAMING_REASONS[0]), None, None],
            ),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 5, 5\r\n\r\n",
                [framing(FRAMING_REASONS[2]), None, None],
            ),
            (
                b"POST / HTTP/1.1\r\ntransfer-encoding: chunked, identity\r\n\r\n",
                [framing(FRAMING_REASONS[3]), None, None],
            ),
            (
                b"POST / HTTP/1.1\r\ntransfer-encoding: xchunked\r\n\r\n",
                [framing(FRAMING_REASONS[3]), None, None],
            ),
            (
                b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
                [framing(FRAMING_REASONS[3]), None, None],
            ),
            (
                b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
                [framing(FRAMING_REASONS[4]), None, None],
            ),
            (b"GET / HTTP/1.1\nhost: a\r\n\r\n", [framing(FRAMING_REASONS[5]), None, None]),
            (b"GET / HTTP/1.1\r\nx: a\rb\r\n\r\n", [framing(FRAMING_REASONS[5]), None, None]),
            (
                b"GET / HTTP/1.1\r\nx: a\r\n b\r\n\r\n",
                [framing(FRAMING_REASONS[6]), None, None],
            ),
            (
                b"GET / HTTP/1.1\r\nx: a\r\n\r\nGET / HTTP/1.1\r\n x: a\r\n\r\n",
                [None, framing(FRAMING_REASONS[6]), None],
            ),
            (
                b"GET / HTTP/1.1\r\nx: a\r\ny: b\r\nz: c\r\n\r\n",
                [Some(Verdict::TooLarge), None, None],
            ),
        ];
        for (i, (input, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                inspect(input, 1024, 2),
                want,
                "case {i}: {}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(inspect(ok, 10, 100)[0], Some(Verdict::TooLarge));
    }
}
