//! Request heads: the request-line check Twisted applies as soon as the line
//! arrives, and the whole head parsed by `httparse` under Twisted's rules.

use super::{MAX_HEADERS, response::canonical_name};

/// A parsed request line and its headers.
pub(crate) struct Head {
    pub method: Vec<u8>,
    pub uri: Vec<u8>,
    pub version: &'static [u8],
    /// Canonical names (`Content-Length`), values trimmed, in arrival order.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Twisted's `_parseRequestLine`: exactly three parts split on single
/// spaces, a token method, a non-empty target of bytes 33..=176 (Twisted's
/// own range), and version HTTP/1.0 or HTTP/1.1.
pub(crate) fn is_valid_request_line(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    is_token(method)
        && !target.is_empty()
        && target.iter().all(|&b| (33..=176).contains(&b))
        && (version == b"HTTP/1.1" || version == b"HTTP/1.0")
}

/// Parse a complete head: `lines` holds the request line and header lines,
/// each ending in CRLF, without the final empty line. Header continuation
/// lines are folded into the previous header as Twisted does; a line break,
/// CR or NUL inside any line is refused, as Twisted refuses them in values.
pub(crate) fn parse(lines: &[u8]) -> Option<Head> {
    let unfolded = unfold(lines)?;
    let mut head = unfolded;
    head.extend_from_slice(b"\r\n");

    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    match request.parse(&head) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        _ => return None,
    }
    let version: &'static [u8] = match request.version? {
        0 => b"HTTP/1.0",
        _ => b"HTTP/1.1",
    };
    let headers = request
        .headers
        .iter()
        .map(|h| Some((canonical_name(h.name.as_bytes())?, trim(h.value).to_vec())))
        .collect::<Option<Vec<_>>>()?;
    Some(Head {
        method: request.method?.as_bytes().to_vec(),
        uri: request.path?.as_bytes().to_vec(),
        version,
        headers,
    })
}

/// Join continuation lines (starting with space or tab) onto the header
/// before them with one space, and refuse stray CR, LF or NUL.
fn unfold(lines: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(lines.len());
    for (index, line) in lines.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            break; // after the last CRLF
        }
        let line = line.strip_suffix(b"\r")?;
        if line.iter().any(|&b| matches!(b, b'\r' | b'\0')) {
            return None;
        }
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
        let head =
            parse(b"GET /a HTTP/1.1\r\nhost:  x \r\ncontent-length: 3\r\nx-xss-protection: 1\r\n")
                .unwrap();
        assert_eq!(head.method, b"GET");
        assert_eq!(head.uri, b"/a");
        assert_eq!(head.version, b"HTTP/1.1");
        let names: Vec<_> = head
            .headers
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        assert_eq!(
            names,
            [
                (&b"Host"[..], &b"x"[..]),
                (b"Content-Length", b"3"),
                (b"X-XSS-Protection", b"1")
            ]
        );
    }

    #[test]
    fn folds_continuation_lines_like_twisted() {
        let head = parse(b"GET / HTTP/1.1\r\nX-Long: a\r\n \t b\r\n").unwrap();
        assert_eq!(head.headers, [(b"X-Long".to_vec(), b"a b".to_vec())]);
        assert!(parse(b"GET / HTTP/1.1\r\n x: y\r\n").is_none());
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
            assert!(parse(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn accepts_exactly_max_headers() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            head.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        assert_eq!(parse(&head).unwrap().headers.len(), MAX_HEADERS);
        head.extend_from_slice(b"one-more: v\r\n");
        assert!(parse(&head).is_none());
    }
}
