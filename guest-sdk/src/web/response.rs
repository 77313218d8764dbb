//! Response bytes as twisted.web writes them: status line, headers in the
//! order they were set, Twisted's canonical header names, its error pages
//! and its `Date` format.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::time::{SystemTime, UNIX_EPOCH};

use super::head::is_token;

/// The `Server` header weft sends where Twisted sends `TwistedWeb/<version>`.
pub(crate) const SERVER: &[u8] = concat!("weft/", env!("CARGO_PKG_VERSION")).as_bytes();

/// Twisted's `_respondToBadRequestAndDisconnect` bytes.
pub(crate) const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\r\n";

/// Sent when a body exceeds the site's limit, in the style of `BAD_REQUEST`.
pub(crate) const TOO_LARGE: &[u8] = b"HTTP/1.1 413 Request Entity Too Large\r\n\r\n";

/// Twisted's answer to `Expect: 100-continue`.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Status codes whose responses never carry a body (Twisted's NO_BODY_CODES).
const NO_BODY_CODES: [u16; 2] = [204, 304];

/// A response header's value: most are known without allocating.
pub(crate) enum Value {
    Static(&'static [u8]),
    Owned(Vec<u8>),
    /// A decimal number, such as a `Content-Length`.
    Number(u64),
    /// The current `Date`, written when the response is.
    Date,
}

/// A response header: its canonical name and its value.
pub(crate) type Header = (Cow<'static, [u8]>, Value);

impl Value {
    /// The value's bytes, as they go on the wire.
    pub(crate) fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Value::Static(bytes) => Cow::Borrowed(bytes),
            Value::Owned(bytes) => Cow::Borrowed(bytes),
            Value::Number(_) | Value::Date => {
                let mut out = Vec::new();
                self.write(&mut out);
                Cow::Owned(out)
            }
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Static(bytes) => out.extend_from_slice(bytes),
            Value::Owned(bytes) => out.extend_from_slice(bytes),
            Value::Number(number) => write_number(out, *number),
            Value::Date => write_date(out),
        }
    }
}

/// Append the status line, headers and (unless `head_only` or a no-body
/// status) the body of one response to `out`.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    version: &[u8],
    code: u16,
    headers: &[Header],
    body: &[u8],
    head_only: bool,
) {
    out.reserve(128 + body.len());
    out.extend_from_slice(version);
    out.push(b' ');
    write_number(out, code.into());
    out.push(b' ');
    out.extend_from_slice(status_message(code).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        value.write(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !NO_BODY_CODES.contains(&code) {
        out.extend_from_slice(body);
    }
}

fn write_number(out: &mut Vec<u8>, mut number: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Twisted's `_UnsafeErrorPage` body; `detail` must already be escaped.
pub(crate) fn error_page(code: u16, brief: &str, detail: &str) -> Vec<u8> {
    format!(
        "\n<html>\n  <head><title>{code} - {brief}</title></head>\n  <body>\n    <h1>{brief}</h1>\n    <p>{detail}</p>\n  </body>\n</html>\n"
    )
    .into_bytes()
}

/// Python's `html.escape(text, quote=True)`.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Twisted's header-name canonicalisation: each dash-separated word
/// capitalised, plus its special cases. `None` if `name` is not a token.
pub(crate) fn canonical_name(name: &[u8]) -> Option<Vec<u8>> {
    if !is_token(name) {
        return None;
    }
    let mut out = name.to_vec();
    canonicalize(&mut out);
    Some(out)
}

/// [`canonical_name`] in place; its special cases keep their length.
pub(crate) fn canonicalize(name: &mut [u8]) {
    let mut word_start = true;
    for byte in name.iter_mut() {
        *byte = if word_start {
            byte.to_ascii_uppercase()
        } else {
            byte.to_ascii_lowercase()
        };
        word_start = *byte == b'-';
    }
    const SPECIAL: [(&[u8], &[u8]); 7] = [
        (b"Content-Md5", b"Content-MD5"),
        (b"Dnt", b"DNT"),
        (b"Etag", b"ETag"),
        (b"P3p", b"P3P"),
        (b"Te", b"TE"),
        (b"Www-Authenticate", b"WWW-Authenticate"),
        (b"X-Xss-Protection", b"X-XSS-Protection"),
    ];
    if let Some((_, special)) = SPECIAL.iter().find(|(plain, _)| *plain == &*name) {
        name.copy_from_slice(special);
    }
}

/// Twisted's `_sanitizeLinearWhitespace`: line breaks in a header value
/// become single spaces, so a value can never end the header block.
pub(crate) fn sanitize_value(value: &[u8]) -> Vec<u8> {
    if !value.iter().any(|&b| b == b'\r' || b == b'\n') {
        return value.to_vec();
    }
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        out.extend_from_slice(&rest[..at]);
        let skip = if rest[at..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[at + skip..];
        if !rest.is_empty() {
            out.push(b' ');
        }
    }
    out.extend_from_slice(rest);
    out
}

/// The reason phrase Twisted sends for `code`.
pub(crate) fn status_message(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content.",
        206 => "Partial Content",
        207 => "Multi-Status",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Time-out",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range not satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Time-out",
        505 => "HTTP Version not supported",
        507 => "Insufficient Storage Space",
        510 => "Not Extended",
        _ => "Unknown Status",
    }
}

thread_local! {
    /// The time read during the `data-received` call in flight, if it has
    /// been: every response of one call is dated alike, for one clock read
    /// (a call out to the host) per call rather than per response. Outside
    /// such a call (a response finished later), `None`, and each reads.
    static CALL_TIME: Cell<Option<Option<u64>>> = const { Cell::new(None) };
}

/// Date the responses of the call that starts now by one clock read, made
/// when the first is written; until [`end_call`].
pub(crate) fn start_call() {
    CALL_TIME.set(Some(None));
}

/// See [`start_call`].
pub(crate) fn end_call() {
    CALL_TIME.set(None);
}

/// Seconds since the Unix epoch: read once per call (see [`CALL_TIME`]).
fn now() -> u64 {
    let read = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    };
    match CALL_TIME.get() {
        None => read(),
        Some(Some(seconds)) => seconds,
        Some(None) => {
            let seconds = read();
            CALL_TIME.set(Some(Some(seconds)));
            seconds
        }
    }
}

/// Append the current time as an HTTP date (`Sat, 28 Nov 2026 16:02:14
/// GMT`), formatted once a second.
fn write_date(out: &mut Vec<u8>) {
    thread_local! {
        // The guest is single-threaded; this is a once-a-second cache.
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let seconds = now();
    CACHE.with_borrow_mut(|(cached, date)| {
        if *cached != seconds {
            *cached = seconds;
            *date = http_date(seconds);
        }
        out.extend_from_slice(date.as_bytes());
    });
}

fn http_date(unix_seconds: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil conversion for days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_twisted_format() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_795_881_734), "Sat, 28 Nov 2026 16:02:14 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn names_are_canonicalised_like_twisted() {
        let canon = |n: &str| canonical_name(n.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(canon("content-type").as_deref(), Some("Content-Type"));
        assert_eq!(canon("ETAG").as_deref(), Some("ETag"));
        assert_eq!(
            canon("www-authenticate").as_deref(),
            Some("WWW-Authenticate")
        );
        assert_eq!(canon("x--y").as_deref(), Some("X--Y"));
        assert_eq!(canon("bad name"), None);
        assert_eq!(canon(""), None);
    }

    #[test]
    fn values_lose_their_line_breaks() {
        assert_eq!(sanitize_value(b"a\r\nb\rc\nd"), b"a b c d");
        assert_eq!(sanitize_value(b"trailing\r\n"), b"trailing");
        assert_eq!(sanitize_value(b"plain"), b"plain");
    }

    #[test]
    fn escapes_like_python() {
        assert_eq!(
            html_escape(r#"/a<b>&c"d'e"#),
            "/a&lt;b&gt;&amp;c&quot;d&#x27;e"
        );
    }
}
