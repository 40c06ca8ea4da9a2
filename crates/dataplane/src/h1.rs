//! The upstream side of an HTTP/1.1 exchange, run inside the request's own future, for the request
//! most traffic is: an idempotent method, no body, no upgrade. Everything else goes through
//! hyper's client ([`crate::pool`]).
//!
//! hyper's client connection is a task of its own, fed through a channel: every proxied request
//! paid for a second task wake-up, the channel, and a second HTTP/1 state machine. Here the
//! request future writes the encoded head, reads the response head, and hands the connection to
//! the response body, which reads the body and puts the connection back in the pool at its end.
//! Parsing is httparse's (the parser hyper uses); this module only frames: RFC 9112 §6.3 for the
//! body length, §7.1 for chunked transfer coding.
//!
//! The pool is shared by the worker threads behind a mutex held for a push or a pop; a sweeper
//! task closes connections that stay idle past the keep-alive timeout or that the upstream
//! closed, which no task watches while they sit in the pool.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::debug;

use crate::headers;
use crate::pool::{self, AddrHasher, SendError, MAX_IDLE_PER_ENDPOINT};

/// The first read of a response: big enough for the head and a small body at once. It goes into
/// a buffer on the stack, and what it read is copied into one allocation of its own size: a
/// response's head lives as long as the response (its header values point into it), and an
/// 8 KiB buffer per exchange was half of the heap with 160 HTTP/2 streams in flight.
const FIRST_READ: usize = 8 * 1024;
/// A response head larger than this is refused (502), as nginx refuses one larger than its
/// `proxy_buffer_size`.
const MAX_HEAD: usize = 64 * 1024;
/// Header fields in a response head or trailer section; hyper's limit too.
const MAX_HEADERS: usize = 100;
/// Fields a response header map has room for at least (see [`parse_head`]).
const MIN_HEADER_ROOM: usize = 12;
/// What one read of a body asks for.
const BODY_READ: usize = 16 * 1024;
/// A chunk-size line or a trailer section longer than this is refused.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Whether a request may take this path: no body, no upgrade, and a method a client may repeat
/// (RFC 9110 §9.2.2), since a request that meets a connection the upstream closed while it sat
/// in the pool is sent again on a new one.
pub(crate) fn eligible(method: &Method, has_body: bool, upgrade: bool) -> bool {
    !has_body
        && !upgrade
        && matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
        )
}

/// Room for the upstream request head: the request line, the client's fields (a few of which
/// are dropped) and the forwarding fields added (see `headers::write_head`), of which `host`
/// appears twice. An estimate that is rarely short: growing the buffer at its last bytes cost a
/// reallocation per request.
pub(crate) fn head_capacity(method: &Method, target: &str, headers: &HeaderMap, host: usize) -> usize {
    let mut len = method.as_str().len() + target.len() + 2 * host + 256;
    for (name, value) in headers {
        len += name.as_str().len() + value.len() + 4;
    }
    len
}

/// The request line, `target` in origin form.
pub(crate) fn request_line(out: &mut Vec<u8>, method: &Method, target: &str) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

// === Pool ===

/// Idle upstream connections of this path, per endpoint.
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<IdleMap>,
    timeout: Duration,
}

type IdleMap = HashMap<SocketAddr, Vec<Idle>, BuildHasherDefault<AddrHasher>>;

#[derive(Debug)]
struct Idle {
    io: TcpStream,
    since: Instant,
}

impl Pool {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(IdleMap::default()),
            timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, IdleMap> {
        // A panic while holding the lock leaves a map that is still a valid cache.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used live connection to `addr`, the least likely to have been closed.
    /// `now` is the request's start, read once for all it times.
    fn checkout(&self, addr: SocketAddr, now: Instant) -> Option<TcpStream> {
        let mut map = self.lock();
        let list = map.get_mut(&addr)?;
        while let Some(idle) = list.pop() {
            if idle.usable(self.timeout, now) {
                return Some(idle.io);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, io: TcpStream) {
        let mut map = self.lock();
        let list = map.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(Idle {
                io,
                since: Instant::now(),
            });
        }
    }

    /// Closes the connections idle for longer than the timeout, and those the upstream closed.
    fn sweep(&self) {
        let now = Instant::now();
        let mut map = self.lock();
        for list in map.values_mut() {
            list.retain(|idle| idle.usable(self.timeout, now));
        }
        map.retain(|_, list| !list.is_empty());
    }
}

impl Idle {
    /// Within the keep-alive timeout, and nothing to read: an idle connection that turned
    /// readable was closed by the upstream (or sent bytes nobody asked for). The readiness is the
    /// runtime's, from the last event loop turn: no system call.
    fn usable(&self, timeout: Duration, now: Instant) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        now.saturating_duration_since(self.since) < timeout && self.io.poll_read_ready(&mut cx).is_pending()
    }
}

/// Sweeps `pool` until it is dropped, a few times per keep-alive timeout.
pub(crate) async fn sweep_idle(pool: Weak<Pool>) {
    loop {
        let Some(every) = pool
            .upgrade()
            .map(|p| (p.timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5)))
        else {
            return;
        };
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(p) => p.sweep(),
            None => return,
        }
    }
}

// === Exchange ===

/// Sends an encoded request head to `addr` and resolves to the response head; see the module.
#[derive(Debug)]
pub(crate) struct Exchange {
    pool: Arc<Pool>,
    addr: SocketAddr,
    /// The request head, kept for a second attempt.
    head: Bytes,
    /// A HEAD request: the response has no body whatever its headers say.
    head_only: bool,
    connect_timeout: Duration,
    /// The connection came from the pool (a failure before any response byte is then retried,
    /// once, on a new connection).
    reused: bool,
    /// The request's header map, done with once the head is written: emptied, it takes the
    /// response's fields, so no map is allocated (nor the request's freed) per exchange.
    map: Option<HeaderMap>,
    state: State,
}

enum State {
    // Boxed: the connect path is rare, and its TCP state is large.
    Connecting(Pin<Box<dyn Future<Output = Result<TcpStream, SendError>> + Send>>),
    Writing { io: TcpStream, written: usize },
    Reading { io: TcpStream, buf: BytesMut },
    Done,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Connecting(_) => "Connecting",
            State::Writing { .. } => "Writing",
            State::Reading { .. } => "Reading",
            State::Done => "Done",
        })
    }
}

/// Starts sending `head` to `addr`, on an idle connection if there is one. `map` is a header map
/// the response may reuse (the request's), emptied here; `now` is the request's start.
pub(crate) fn send(
    pool: &Arc<Pool>,
    addr: SocketAddr,
    head: Bytes,
    head_only: bool,
    connect_timeout: Duration,
    mut map: HeaderMap,
    now: Instant,
) -> Exchange {
    // Emptied now, not when the response comes: a request's values point into hyper's read
    // buffer for the client connection, and hyper, watching for the client to close meanwhile,
    // reads into a second 8 KiB buffer while anything still refers to the first.
    map.clear();
    let (state, reused) = match pool.checkout(addr, now) {
        Some(io) => (State::Writing { io, written: 0 }, true),
        None => (connecting(addr, connect_timeout), false),
    };
    Exchange {
        pool: pool.clone(),
        addr,
        head,
        head_only,
        connect_timeout,
        reused,
        map: Some(map),
        state,
    }
}

fn connecting(addr: SocketAddr, limit: Duration) -> State {
    State::Connecting(Box::pin(pool::dial(addr, limit)))
}

impl Exchange {
    /// The connection failed before any byte of a response: a pooled connection the upstream
    /// closed meanwhile is replaced by a new one, once; anything else is the exchange's error.
    fn retry_or_fail(&mut self, e: io::Error) -> Result<(), SendError> {
        if std::mem::take(&mut self.reused) {
            debug!(upstream = %self.addr, error = %e, "pooled connection was closed; retrying");
            self.state = connecting(self.addr, self.connect_timeout);
            Ok(())
        } else {
            self.state = State::Done;
            Err(SendError::Io(e))
        }
    }
}

impl Future for Exchange {
    type Output = Result<Response<H1Body>, SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            // Taken out and put back: each step owns the connection it moves on.
            match std::mem::replace(&mut this.state, State::Done) {
                State::Connecting(mut connecting) => match connecting.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = State::Connecting(connecting);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(io)) => this.state = State::Writing { io, written: 0 },
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                },
                State::Writing { mut io, written } => match Pin::new(&mut io).poll_write(cx, &this.head[written..]) {
                    Poll::Pending => {
                        this.state = State::Writing { io, written };
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(0)) => this.retry_or_fail(io::ErrorKind::WriteZero.into())?,
                    Poll::Ready(Ok(n)) if written + n < this.head.len() => {
                        this.state = State::Writing {
                            io,
                            written: written + n,
                        };
                    }
                    Poll::Ready(Ok(_)) => {
                        this.state = State::Reading {
                            io,
                            buf: BytesMut::new(),
                        };
                    }
                    Poll::Ready(Err(e)) => this.retry_or_fail(e)?,
                },
                State::Reading { mut io, mut buf } => {
                    if !buf.is_empty() {
                        if let Some(head) = parse_head(&mut buf, this.head_only, &mut this.map)? {
                            return Poll::Ready(Ok(head.into_response(io, buf, this.pool.clone(), this.addr)));
                        }
                        if buf.len() >= MAX_HEAD {
                            return Poll::Ready(Err(SendError::Protocol("sent a response head larger than 64 KiB")));
                        }
                        if buf.capacity() == buf.len() {
                            buf.reserve(buf.len());
                        }
                    }
                    let read = if buf.is_empty() {
                        poll_read_exact_size(&mut io, cx, &mut buf)
                    } else {
                        tokio_util::io::poll_read_buf(Pin::new(&mut io), cx, &mut buf)
                    };
                    match read {
                        Poll::Pending => {
                            this.state = State::Reading { io, buf };
                            return Poll::Pending;
                        }
                        Poll::Ready(Ok(0)) if buf.is_empty() => {
                            this.retry_or_fail(io::ErrorKind::UnexpectedEof.into())?;
                        }
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(SendError::Io(io::ErrorKind::UnexpectedEof.into())));
                        }
                        Poll::Ready(Ok(_)) => this.state = State::Reading { io, buf },
                        Poll::Ready(Err(e)) if buf.is_empty() => this.retry_or_fail(e)?,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(SendError::Io(e))),
                    }
                }
                State::Done => return Poll::Pending,
            }
        }
    }
}

/// Reads up to [`FIRST_READ`] bytes into `buf`, which is empty, allocated to the size read.
fn poll_read_exact_size(io: &mut TcpStream, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    let mut scratch = [MaybeUninit::<u8>::uninit(); FIRST_READ];
    let mut read = ReadBuf::uninit(&mut scratch);
    ready!(Pin::new(io).poll_read(cx, &mut read))?;
    let n = read.filled().len();
    if n > 0 {
        *buf = BytesMut::from(read.filled());
    }
    Poll::Ready(Ok(n))
}

/// A parsed response head, before it is given its connection.
struct Head {
    response: Response<()>,
    framing: Framing,
    keep_alive: bool,
}

impl Head {
    fn into_response(self, io: TcpStream, buf: BytesMut, pool: Arc<Pool>, addr: SocketAddr) -> Response<H1Body> {
        let body = H1Body {
            io: Some(io),
            buf,
            framing: self.framing,
            keep_alive: self.keep_alive,
            // The head counts: it too should reach the client before a failure closes the connection.
            yielded: true,
            pool,
            addr,
        };
        self.response.map(|()| body)
    }
}

/// Where one header field is in the read buffer (a few times [`MAX_HEAD`] at most).
#[derive(Debug, Clone, Copy, Default)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

impl Field {
    fn name(self) -> std::ops::Range<usize> {
        self.name.0 as usize..(self.name.0 + self.name.1) as usize
    }

    fn value(self) -> std::ops::Range<usize> {
        self.value.0 as usize..(self.value.0 + self.value.1) as usize
    }
}

/// Parses the response head at the start of `buf`, skipping interim (1xx) responses; `None`
/// while it is incomplete. The head is split off `buf`: what remains is the start of the body.
/// The fields go into `spare` (empty: see [`send`]) when there is one.
fn parse_head(buf: &mut BytesMut, head_only: bool, spare: &mut Option<HeaderMap>) -> Result<Option<Head>, SendError> {
    loop {
        let mut fields = [Field::default(); MAX_HEADERS];
        let (len, code, minor, count) = {
            // Uninitialized, as hyper does: filling 100 empty headers cost more than the parse.
            let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut []);
            let parsed =
                httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, &mut headers);
            let len = match parsed {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(SendError::Protocol("sent more than 100 response header fields"))
                }
                Err(_) => return Err(SendError::Protocol("sent an invalid response")),
            };
            let (Some(code), Some(minor)) = (res.code, res.version) else {
                return Err(SendError::Protocol("sent an invalid response"));
            };
            // Offsets, not slices: the buffer is split (mutably) below, and the values then
            // point into the frozen head without a copy.
            let base = buf.as_ptr() as usize;
            // Both fit: the buffer is a few times MAX_HEAD at most when parsed.
            let span = |s: &[u8]| ((s.as_ptr() as usize - base) as u32, s.len() as u32);
            for (field, h) in fields.iter_mut().zip(res.headers.iter()) {
                *field = Field {
                    name: span(h.name.as_bytes()),
                    value: span(h.value),
                };
            }
            (len, code, minor, res.headers.len())
        };
        // RFC 9110 §15.2: interim responses are not forwarded here (hyper's client drops them
        // too); 101 answers an upgrade, which this path never asks for.
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(SendError::Protocol("switched protocols without an upgrade request"));
            }
            buf.advance(len);
            if buf.is_empty() {
                return Ok(None);
            }
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| SendError::Protocol("sent an invalid status code"))?;
        let head = buf.split_to(len).freeze();
        // Room to spare: once the response is written, hyper's server keeps this map and parses
        // the next request of the client connection into it; a map sized for the response alone
        // grew (rehashed and reallocated) on the next request. Room for 12 fields (16 slots)
        // takes a usual request, and costs an idle connection ~1.2 KiB less than 24.
        let mut headers = match spare.take() {
            Some(mut map) => {
                map.reserve(count);
                map
            }
            None => HeaderMap::with_capacity(count.max(MIN_HEADER_ROOM)),
        };
        // The hop-by-hop fields (RFC 9110 §7.6.1) are read here and not forwarded: no insertion
        // to undo, no second pass (`headers::strip_hop_by_hop` does that for hyper's client).
        let mut hop = Hop::default();
        for field in &fields[..count] {
            let name = HeaderName::from_bytes(&head[field.name()])
                .map_err(|_| SendError::Protocol("sent an invalid header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(field.value()))
                .map_err(|_| SendError::Protocol("sent an invalid header value"))?;
            if headers::hop_by_hop_index(&name).is_some() {
                hop.read(&name, &value);
            } else {
                headers.append(name, value);
            }
        }
        for name in hop.named {
            headers.remove(name);
        }
        let version = if minor == 1 { Version::HTTP_11 } else { Version::HTTP_10 };
        let (framing, mut keep_alive) = framing(&mut headers, hop.chunked, status, head_only)?;
        keep_alive &= version == Version::HTTP_11 && !hop.close;
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        return Ok(Some(Head {
            response,
            framing,
            keep_alive,
        }));
    }
}

/// What the hop-by-hop fields of a response head say.
#[derive(Debug, Default)]
struct Hop {
    /// `Connection: close`.
    close: bool,
    /// With `Transfer-Encoding`: whether its last coding is chunked.
    chunked: Option<bool>,
    /// Other fields `Connection` names, hop-by-hop too.
    named: Vec<HeaderName>,
}

impl Hop {
    fn read(&mut self, name: &HeaderName, value: &HeaderValue) {
        if *name == TRANSFER_ENCODING {
            // The final coding is the last one of the last field.
            let last = value.to_str().ok().and_then(|v| v.rsplit(',').next());
            self.chunked = Some(last.is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked")));
        } else if *name == CONNECTION {
            // One pass: upstreams send `Connection: keep-alive` on nearly every response.
            for token in headers::connection_tokens(value) {
                if token.eq_ignore_ascii_case("close") {
                    self.close = true;
                } else if let Some(named) = headers::connection_name(token) {
                    self.named.push(named);
                }
            }
        }
    }
}

/// How the body of a response is delimited (RFC 9112 §6.3), and whether the connection can carry
/// another exchange after it. `chunked` is what [`Hop`] read of `Transfer-Encoding`.
fn framing(
    headers: &mut HeaderMap,
    chunked: Option<bool>,
    status: StatusCode,
    head_only: bool,
) -> Result<(Framing, bool), SendError> {
    if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), true));
    }
    if let Some(chunked) = chunked {
        // §6.3 (3): Transfer-Encoding overrides Content-Length, which must not be forwarded, and
        // the connection is not reused: the message may be a smuggling attempt.
        let conflict = headers.remove(CONTENT_LENGTH).is_some();
        return Ok(if chunked {
            (Framing::Chunked(Chunk::Size), !conflict)
        } else {
            (Framing::UntilClose, false)
        });
    }
    let mut length = None;
    for value in &headers.get_all(CONTENT_LENGTH) {
        // §8.6: a list of identical values is the same length; anything else is unrecoverable.
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_length(part.trim_ascii()).ok_or(SendError::Protocol("sent an invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(SendError::Protocol("sent an invalid Content-Length"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), true),
        None => (Framing::UntilClose, false),
    })
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits
        .iter()
        .try_fold(0u64, |n, &b| b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0')))
}

// === H1Body ===

/// A response body read from its upstream connection, which goes back to the pool once the body
/// has been read to its end (and is closed if the body is dropped before).
#[derive(Debug)]
pub(crate) struct H1Body {
    io: Option<TcpStream>,
    /// Bytes read and not yet handed on.
    buf: BytesMut,
    framing: Framing,
    keep_alive: bool,
    /// A frame (or the head) was handed on since the last time the body waited for the upstream.
    yielded: bool,
    pool: Arc<Pool>,
    addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes (HTTP/1.0 style, or a transfer coding other than chunked).
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    /// Bytes of the current chunk still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

/// Why a response body broke off.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("upstream connection failed mid-body: {0}")]
    Io(#[from] io::Error),
    #[error("upstream closed the connection before the end of the body")]
    Truncated,
    #[error("upstream sent an invalid chunked body")]
    Chunked,
}

type Polled = Poll<Option<Result<Frame<Bytes>, BodyError>>>;

impl H1Body {
    /// The body is over: the connection goes back to the pool if the exchange left it clean.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(io) = self.io.take() {
            if self.keep_alive && self.buf.is_empty() {
                self.pool.put(self.addr, io);
            }
        }
    }

    fn fail(&mut self, e: BodyError, cx: &mut Context<'_>) -> Polled {
        if std::mem::take(&mut self.yielded) {
            // hyper drops what it has not written yet when a body fails: it gets to flush the
            // frames it was given first (the client then sees a truncated response rather than
            // none). The failure is found again at the next poll: nothing was consumed.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.framing = Framing::Done;
        self.io = None;
        Poll::Ready(Some(Err(e)))
    }

    /// Reads more into `buf`: `Ok(false)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, io::Error>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        if self.buf.capacity() - self.buf.len() < BODY_READ / 4 {
            self.buf.reserve(BODY_READ);
        }
        let Poll::Ready(n) = tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut self.buf) else {
            self.yielded = false;
            return Poll::Pending;
        };
        Poll::Ready(Ok(n? > 0))
    }

    /// Up to `left` bytes of what has been read, as a frame.
    fn take(&mut self, left: u64) -> (Bytes, u64) {
        self.yielded = true;
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(self.buf.len());
        (self.buf.split_to(n).freeze(), left - n as u64)
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = &mut *self;
        loop {
            match this.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) => {
                    if !this.buf.is_empty() {
                        let (data, left) = this.take(left);
                        this.framing = Framing::Length(left);
                        if left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match ready!(this.poll_fill(cx)) {
                        Ok(true) => {}
                        Ok(false) => return this.fail(BodyError::Truncated, cx),
                        Err(e) => return this.fail(e.into(), cx),
                    }
                }
                Framing::UntilClose => {
                    if !this.buf.is_empty() {
                        this.yielded = true;
                        return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
                    }
                    match ready!(this.poll_fill(cx)) {
                        Ok(true) => {}
                        Ok(false) => {
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Err(e) => return this.fail(e.into(), cx),
                    }
                }
                Framing::Chunked(chunk) => {
                    if let Some(polled) = this.step_chunked(chunk, cx) {
                        return polled;
                    }
                    // More bytes are needed for the next step.
                    match ready!(this.poll_fill(cx)) {
                        Ok(true) => {}
                        Ok(false) => return this.fail(BodyError::Truncated, cx),
                        Err(e) => return this.fail(e.into(), cx),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl H1Body {
    /// One step of the chunked decoding (RFC 9112 §7.1) on what has been read: a frame, the end,
    /// an error, or `None` when more bytes are needed. Steps that consume without producing a
    /// frame loop here.
    fn step_chunked(&mut self, mut chunk: Chunk, cx: &mut Context<'_>) -> Option<Polled> {
        loop {
            self.framing = Framing::Chunked(chunk);
            match chunk {
                Chunk::Size => match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.buf.advance(used);
                        chunk = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() < MAX_CHUNK_LINE => return None,
                    _ => return Some(self.fail(BodyError::Chunked, cx)),
                },
                Chunk::Data(left) => {
                    if self.buf.is_empty() {
                        return None;
                    }
                    let (data, left) = self.take(left);
                    self.framing = Framing::Chunked(if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) });
                    return Some(Poll::Ready(Some(Ok(Frame::data(data)))));
                }
                Chunk::DataEnd => {
                    if self.buf.len() < 2 {
                        return None;
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Some(self.fail(BodyError::Chunked, cx));
                    }
                    self.buf.advance(2);
                    chunk = Chunk::Size;
                }
                Chunk::Trailers => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (used, trailers) = match httparse::parse_headers(&self.buf, &mut headers) {
                        Ok(httparse::Status::Complete((used, fields))) => {
                            let mut map = HeaderMap::new();
                            for f in fields.iter() {
                                // Trailers are rare: copied rather than kept in the buffer.
                                if let (Ok(name), Ok(value)) = (
                                    HeaderName::from_bytes(f.name.as_bytes()),
                                    HeaderValue::from_bytes(f.value),
                                ) {
                                    map.append(name, value);
                                }
                            }
                            (used, map)
                        }
                        Ok(httparse::Status::Partial) if self.buf.len() < MAX_CHUNK_LINE => return None,
                        _ => return Some(self.fail(BodyError::Chunked, cx)),
                    };
                    self.buf.advance(used);
                    self.finish();
                    return Some(Poll::Ready(
                        (!trailers.is_empty()).then(|| Ok(Frame::trailers(trailers))),
                    ));
                }
            }
        }
    }
}

impl Drop for H1Body {
    // hyper does not poll a body that is empty from the start (HEAD, 204, 304, length 0) and
    // drops it: the exchange is complete all the same.
    fn drop(&mut self) {
        if self.framing == Framing::Length(0) {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Decodes `wire` (everything the upstream sent after the head) as a body framed by
    /// `framing`, with no connection: what is not in `wire` is the end of the stream.
    fn decode(wire: &[u8], framing: Framing) -> (Vec<u8>, Option<HeaderMap>, Result<(), String>) {
        let mut body = H1Body {
            io: None,
            buf: BytesMut::from(wire),
            framing,
            keep_alive: false,
            yielded: false,
            pool: Arc::new(Pool::new(Duration::from_secs(1))),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        };
        let mut cx = Context::from_waker(Waker::noop());
        let (mut data, mut trailers) = (Vec::new(), None);
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(None) => return (data, trailers, Ok(())),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(bytes) => data.extend_from_slice(&bytes),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                Poll::Ready(Some(Err(e))) => return (data, trailers, Err(e.to_string())),
                // Only the flush-first pause of a failure waits here.
                Poll::Pending => {}
            }
        }
    }

    fn chunked(data: &[u8], sizes: &[usize], trailer: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = data;
        for (i, &size) in sizes.iter().cycle().enumerate() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            let ext = if i % 3 == 1 { ";name=value" } else { "" };
            wire.extend_from_slice(format!("{:X}{ext}\r\n", chunk.len()).as_bytes());
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
            rest = tail;
        }
        wire.extend_from_slice(b"0\r\n");
        if trailer {
            wire.extend_from_slice(b"x-checksum: 42\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        wire
    }

    proptest! {
        #[test]
        fn chunked_bodies_decode_to_their_data(
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            sizes in proptest::collection::vec(1usize..700, 1..8),
            trailer in any::<bool>(),
        ) {
            let (got, trailers, end) = decode(&chunked(&data, &sizes, trailer), Framing::Chunked(Chunk::Size));
            prop_assert_eq!(end, Ok(()));
            prop_assert_eq!(got, data);
            prop_assert_eq!(trailers.is_some(), trailer);
        }

        #[test]
        fn cut_chunked_bodies_fail(
            data in proptest::collection::vec(any::<u8>(), 1..3000),
            sizes in proptest::collection::vec(1usize..700, 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let wire = chunked(&data, &sizes, false);
            let wire = &wire[..cut.index(wire.len())];
            let (got, _, end) = decode(wire, Framing::Chunked(Chunk::Size));
            prop_assert!(end.is_err());
            prop_assert!(data.starts_with(&got));
        }

        #[test]
        fn length_bodies_stop_at_their_length(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            extra in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut wire = data.clone();
            wire.extend_from_slice(&extra);
            let (got, _, end) = decode(&wire, Framing::Length(data.len() as u64));
            prop_assert_eq!(end, Ok(()));
            prop_assert_eq!(got, data);
        }
    }

    /// The first read goes to the stack and later ones to the heap: a head cut anywhere, after an
    /// interim response, and larger than the first read, arrives whole, and so does its body.
    #[tokio::test]
    async fn heads_cut_anywhere_arrive_whole() {
        use http_body_util::BodyExt;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let big = "v".repeat(FIRST_READ + 100);
        let wire = format!(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-big: {big}\r\nx-small: s\r\ncontent-length: 5\r\n\r\nhello"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cuts = [1, 20, 27, 40, FIRST_READ, FIRST_READ + 60, wire.len() - 3];
        let upstream = tokio::spawn(async move {
            for cut in cuts {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut req = [0u8; 256];
                let _ = sock.read(&mut req).await.unwrap();
                sock.set_nodelay(true).unwrap();
                for piece in [&wire.as_bytes()[..cut], &wire.as_bytes()[cut..]] {
                    sock.write_all(piece).await.unwrap();
                    sock.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        // No pooling between the cases: each gets its own connection.
        for cut in cuts {
            let pool = Arc::new(Pool::new(Duration::from_secs(5)));
            let head = Bytes::from_static(b"GET / HTTP/1.1\r\nhost: u\r\n\r\n");
            // The request's map, which the response reuses: none of its fields may come back.
            let mut request_fields = HeaderMap::new();
            request_fields.insert("x-request", HeaderValue::from_static("r"));
            let resp = send(
                &pool,
                addr,
                head,
                false,
                Duration::from_secs(5),
                request_fields,
                Instant::now(),
            )
            .await
            .unwrap_or_else(|e| panic!("cut at {cut}: {e:?}"));
            assert_eq!(resp.status(), StatusCode::OK, "cut at {cut}");
            assert_eq!(resp.headers()["x-big"].len(), big.len(), "cut at {cut}");
            assert_eq!(resp.headers()["x-small"], "s", "cut at {cut}");
            assert!(!resp.headers().contains_key("x-request"), "cut at {cut}");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"hello", "cut at {cut}");
        }
        upstream.await.unwrap();
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for wire in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"FFFFFFFFFFFFFFFFFF\r\n",
            b"5\r\nhel",
        ] {
            let (_, _, end) = decode(wire, Framing::Chunked(Chunk::Size));
            assert!(end.is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
    }

    fn head(raw: &str, head_only: bool) -> Result<Option<(Head, BytesMut)>, SendError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        Ok(parse_head(&mut buf, head_only, &mut None)?.map(|h| (h, buf)))
    }

    #[test]
    fn heads_frame_their_bodies() {
        let cases: &[(&str, bool, Framing, bool)] = &[
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
                false,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
                false,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                true,
                Framing::Length(0),
                true,
            ),
            ("HTTP/1.1 204 No Content\r\n\r\n", false, Framing::Length(0), true),
            (
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
                false,
                Framing::Length(0),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                false,
                Framing::Chunked(Chunk::Size),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
                false,
                Framing::Chunked(Chunk::Size),
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                false,
                Framing::UntilClose,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false, Framing::UntilClose, false),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                false,
            ),
            (
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                false,
                Framing::Length(0),
                true,
            ),
        ];
        for (raw, head_only, framing, keep_alive) in cases {
            let (h, _) = head(raw, *head_only).expect(raw).expect(raw);
            assert_eq!((h.framing, h.keep_alive), (*framing, *keep_alive), "{raw:?}");
            if raw.contains("transfer-encoding") {
                assert!(!h.response.headers().contains_key(CONTENT_LENGTH), "{raw:?}");
            }
        }
    }

    #[test]
    fn hop_by_hop_fields_are_read_not_forwarded() {
        let raw = "HTTP/1.1 200 OK\r\nConnection: x-hop, Keep-Alive\r\nkeep-alive: timeout=5\r\nx-hop: 1\r\n\
                   x-end: 2\r\ncontent-length: 0\r\nconnection: close\r\nupgrade: h2c\r\nproxy-connection: x\r\n\r\n";
        let (h, _) = head(raw, false).unwrap().unwrap();
        let mut names: Vec<_> = h.response.headers().keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "x-end"]);
        assert!(!h.keep_alive);
    }

    #[test]
    fn head_values_and_remainder() {
        let (h, rest) = head(
            "HTTP/1.1 404 Nope\r\nx-a:  one \r\nx-a: two\r\ncontent-length: 3\r\n\r\nabc",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.response.status(), 404);
        let values: Vec<_> = h.response.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["one", "two"]);
        assert_eq!(&rest[..], b"abc");
        assert!(head("HTTP/1.1 200 OK\r\ncontent-le", false).unwrap().is_none());
        assert!(head("HTTP/1.1 100 Continue\r\n\r\n", false).unwrap().is_none());
    }

    #[test]
    fn bad_heads_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "SMTP ready\r\n\r\n",
        ] {
            assert!(head(raw, false).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn request_line_in_origin_form() {
        let mut out = Vec::new();
        request_line(&mut out, &Method::GET, "/a?b=c");
        assert_eq!(&out[..], b"GET /a?b=c HTTP/1.1\r\n");
    }

    #[test]
    fn only_bodiless_idempotent_requests_take_this_path() {
        assert!(eligible(&Method::GET, false, false));
        assert!(eligible(&Method::HEAD, false, false));
        assert!(!eligible(&Method::POST, false, false));
        assert!(!eligible(&Method::GET, true, false));
        assert!(!eligible(&Method::GET, false, true));
    }
}
