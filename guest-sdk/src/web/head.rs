//! Request heads: the request-line check Twisted applies as soon as the line
//! arrives, and the whole head parsed by `httparse` under Twisted's rules,
//! kept as one buffer with ranges into it rather than a string per header.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::MAX_HEADERS;
use super::response::canonicalize;

/// A parsed request line and its headers, all in `bytes`.
pub(crate) struct Head {
    /// The head as received (continuation lines folded); header names are
    /// canonicalised in place, which never changes their length.
    bytes: Vec<u8>,
    method: Range<usize>,
    uri: Range<usize>,
    pub version: &'static [u8],
    /// Name and value of each header, in arrival order, values trimmed.
    headers: Vec<(Range<usize>, Range<usize>)>,
}

impl Head {
    pub fn method(&self) -> &[u8] {
        &self.bytes[self.method.clone()]
    }

    pub fn uri(&self) -> &[u8] {
        &self.bytes[self.uri.clone()]
    }

    /// Every header: canonical name (`Content-Length`) and value.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|(name, value)| (&self.bytes[name.clone()], &self.bytes[value.clone()]))
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

/// The allocations of a parsed head, emptied, to parse the next one into.
#[derive(Default)]
pub(crate) struct Buffers {
    pub lines: Vec<u8>,
    pub ranges: Vec<(Range<usize>, Range<usize>)>,
}

impl Head {
    /// Give back the head's allocations, emptied.
    pub fn into_buffers(self) -> Buffers {
        let (mut lines, mut ranges) = (self.bytes, self.headers);
        lines.clear();
        ranges.clear();
        Buffers { lines, ranges }
    }
}

/// Twisted's `_parseRequestLine`: exactly three parts split on single
/// spaces, a token method, a non-empty target and version HTTP/1.0 or
/// HTTP/1.1. The target is visible ASCII, 33..=126 (RFC 9112), where
/// Twisted takes up to 176: `httparse` refuses the bytes between, and the
/// Python SDK refuses them too, so that both SDKs answer alike.
pub(crate) fn is_valid_request_line(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    is_token(method)
        && !target.is_empty()
        && target.iter().all(|&b| (33..=126).contains(&b))
        && (version == b"HTTP/1.1" || version == b"HTTP/1.0")
}

/// Parse a complete head: `lines` holds the request line and header lines,
/// each ending in CRLF, without the final empty line. Header continuation
/// lines are folded into the previous header as Twisted does; a line break,
/// CR or NUL inside any line is refused, as Twisted refuses them in values.
/// `ranges` is an empty vector to reuse for the header ranges.
pub(crate) fn parse(
    mut lines: Vec<u8>,
    mut ranges: Vec<(Range<usize>, Range<usize>)>,
) -> Option<Head> {
    if !check_lines(&lines)? {
        lines = unfold(&lines)?;
    }
    lines.extend_from_slice(b"\r\n");

    // Uninitialised slots: zeroing 500 headers costs more than parsing.
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(&lines, &mut slots) {
        Ok(httparse::Status::Complete(len)) if len == lines.len() => {}
        _ => return None,
    }
    let base = lines.as_ptr() as usize;
    let range = |part: &[u8]| {
        let start = part.as_ptr() as usize - base;
        start..start + part.len()
    };
    let version: &'static [u8] = match request.version? {
        0 => b"HTTP/1.0",
        _ => b"HTTP/1.1",
    };
    let method = range(request.method?.as_bytes());
    let uri = range(request.path?.as_bytes());
    ranges.extend(
        request
            .headers
            .iter()
            .map(|h| (range(h.name.as_bytes()), range(trim(h.value)))),
    );
    let headers = ranges;
    for (name, _) in &headers {
        canonicalize(&mut lines[name.clone()]);
    }
    Some(Head {
        bytes: lines,
        method,
        uri,
        version,
        headers,
    })
}

/// Whether `lines` can be parsed as they are: `Some(true)` if so,
/// `Some(false)` if continuation lines need folding first, `None` if a CR,
/// LF or NUL stands inside a line.
fn check_lines(lines: &[u8]) -> Option<bool> {
    let mut plain = true;
    for (at, &byte) in lines.iter().enumerate() {
        match byte {
            0 => return None,
            b'\r' if lines.get(at + 1) != Some(&b'\n') => return None,
            b'\n' if at == 0 || lines[at - 1] != b'\r' => return None,
            b'\n' if matches!(lines.get(at + 1), Some(b' ' | b'\t')) => plain = false,
            _ => {}
        }
    }
    Some(plain)
}

/// Join continuation lines (starting with space or tab) onto the header
/// before them with one space.
fn unfold(lines: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(lines.len());
    for (index, line) in lines.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            break; // after the last CRLF
        }
        let line = line.strip_suffix(b"\r")?;
        if index > 0 && matches!(line.first(), Some(b' ' | b'\t')) {
            // A continuation right after the request line has no header to join.
            if index == 1 {
                return None;
            }
            out.truncate(out.len() - 2);
            out.push(b' ');
            out.extend_from_slice(trim_start(line));
        } else {
            out.extend_from_slice(line);
        }
        out.extend_from_slice(b"\r\n");
    }
    Some(out)
}

/// An RFC 9110 token, as Twisted's `_istoken` checks it.
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ' && b != b'\t');
    &bytes[start.unwrap_or(bytes.len())..]
}

fn trim(bytes: &[u8]) -> &[u8] {
    let bytes = trim_start(bytes);
    let end = bytes.iter().rposition(|&b| b != b' ' && b != b'\t');
    &bytes[..end.map_or(0, |e| e + 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(head: &Head) -> Vec<(String, String)> {
        head.headers()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn request_lines_follow_twisted() {
        assert!(is_valid_request_line(b"GET / HTTP/1.1"));
        assert!(is_valid_request_line(b"get /x?y HTTP/1.0"));
        assert!(is_valid_request_line(b"GET http://h/p HTTP/1.1"));
        for bad in [
            &b""[..],
            b"garbage",
            b"GET /",
            b"GET / HTTP/2.0",
            b"GET  / HTTP/1.1",
            b"GET / HTTP/1.1 x",
            b"G(T / HTTP/1.1",
            b"GET /\xff HTTP/1.1",
            b"GET / HTTP/1.1\nHost: x",
        ] {
            assert!(
                !is_valid_request_line(bad),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn parses_headers_into_canonical_names() {
        let lines = b"GET /a HTTP/1.1\r\nhost:  x \r\ncontent-length: 3\r\nx-xss-protection: 1\r\n";
        let head = parse(lines.to_vec(), Vec::new()).unwrap();
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.uri(), b"/a");
        assert_eq!(head.version, b"HTTP/1.1");
        assert_eq!(
            headers(&head),
            pairs(&[
                ("Host", "x"),
                ("Content-Length", "3"),
                ("X-XSS-Protection", "1")
            ])
        );
        assert_eq!(head.get(b"CONTENT-LENGTH"), Some(&b"3"[..]));
        assert_eq!(head.get(b"missing"), None);
    }

    #[test]
    fn folds_continuation_lines_like_twisted() {
        let head = parse(
            b"GET / HTTP/1.1\r\nX-Long: a\r\n \t b\r\n".to_vec(),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(headers(&head), pairs(&[("X-Long", "a b")]));
        assert!(parse(b"GET / HTTP/1.1\r\n x: y\r\n".to_vec(), Vec::new()).is_none());
    }

    #[test]
    fn refuses_malformed_headers() {
        for bad in [
            &b"GET / HTTP/1.1\r\nBad header\r\n"[..],
            b"GET / HTTP/1.1\r\n: empty\r\n",
            b"GET / HTTP/1.1\r\nName : x\r\n",
            b"GET / HTTP/1.1\r\nA: b\rc\r\n",
            b"GET / HTTP/1.1\r\nA: b\nC: d\r\n",
            b"GET / HTTP/1.1\r\nA: b\0\r\n",
        ] {
            assert!(
                parse(bad.to_vec(), Vec::new()).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn accepts_exactly_max_headers() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            head.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        assert_eq!(
            parse(head.clone(), Vec::new()).unwrap().headers().count(),
            MAX_HEADERS
        );
        head.extend_from_slice(b"one-more: v\r\n");
        assert!(parse(head, Vec::new()).is_none());
    }
}
