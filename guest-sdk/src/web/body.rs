//! Request bodies: how a head says the body is framed, and the decoders for
//! `Content-Length` and chunked bodies, with Twisted's rules and limits.

/// How a request's body is framed, from its headers.
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Twisted's `_maybeChooseTransferDecoder` over all headers in order: a
/// `Content-Length` of digits, or `Transfer-Encoding` `chunked` (`identity`
/// is ignored); anything else, or a second length-giving header, is `None`.
pub(crate) fn framing<'a>(headers: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Option<Framing> {
    let mut framing = Framing::Empty;
    for (name, value) in headers {
        let chosen = match name {
            b"Content-Length" => {
                if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                // Digits beyond u64 are too large for any limit anyway.
                Framing::Length(std::str::from_utf8(value).ok()?.parse().unwrap_or(u64::MAX))
            }
            b"Transfer-Encoding" if value.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
            b"Transfer-Encoding" if value.eq_ignore_ascii_case(b"identity") => continue,
            b"Transfer-Encoding" => return None,
            _ => continue,
        };
        if !matches!(framing, Framing::Empty) {
            return None;
        }
        framing = chosen;
    }
    Some(framing)
}

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Broken chunked framing: answered with 400.
    Malformed,
    /// Longer than the site's limit: answered with 413.
    TooLarge,
}

/// Progress through one request body.
pub(crate) enum Decoder {
    Length { remaining: u64 },
    Chunked(Chunked),
}

/// Twisted's `_ChunkedTransferDecoder` states.
pub(crate) enum Chunked {
    Size,
    Data { remaining: u64 },
    DataEnd,
    Trailer { size: usize },
}

/// Twisted's `maxChunkSizeLineLength`.
const MAX_CHUNK_SIZE_LINE: usize = 1024;
/// Twisted's `_maxTrailerHeadersSize`.
const MAX_TRAILER_SIZE: usize = 1 << 16;

impl Decoder {
    /// Decode what `input` holds into `content`, at most `limit` bytes of
    /// content in all. Returns the bytes consumed and whether the body is
    /// complete; unconsumed input (a partial chunk-size line) is offered
    /// again with more data.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        content: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(usize, bool), BodyError> {
        match self {
            Decoder::Length { remaining } => {
                let take = input
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                append(content, &input[..take], limit)?;
                *remaining -= take as u64;
                Ok((take, *remaining == 0))
            }
            Decoder::Chunked(state) => state.decode(input, content, limit),
        }
    }
}

impl Chunked {
    fn decode(
        &mut self,
        input: &[u8],
        content: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(usize, bool), BodyError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self {
                Chunked::Size => {
                    let Some(eol) = find_crlf(rest) else {
                        if rest.len() > MAX_CHUNK_SIZE_LINE {
                            return Err(BodyError::Malformed);
                        }
                        return Ok((pos, false));
                    };
                    if eol >= MAX_CHUNK_SIZE_LINE {
                        return Err(BodyError::Malformed);
                    }
                    let size = chunk_size(&rest[..eol]).ok_or(BodyError::Malformed)?;
                    pos += eol + 2;
                    *self = if size == 0 {
                        Chunked::Trailer { size: 0 }
                    } else {
                        Chunked::Data { remaining: size }
                    };
                }
                Chunked::Data { remaining } => {
                    let take = rest
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    append(content, &rest[..take], limit)?;
                    pos += take;
                    *remaining -= take as u64;
                    if *remaining > 0 {
                        return Ok((pos, false));
                    }
                    *self = Chunked::DataEnd;
                }
                Chunked::DataEnd => {
                    if rest.len() < 2 {
                        return Ok((pos, false));
                    }
                    if !rest.starts_with(b"\r\n") {
                        return Err(BodyError::Malformed);
                    }
                    pos += 2;
                    *self = Chunked::Size;
                }
                Chunked::Trailer { size } => {
                    let Some(eol) = find_crlf(rest) else {
                        if *size + rest.len() > MAX_TRAILER_SIZE {
                            return Err(BodyError::Malformed);
                        }
                        return Ok((pos, false));
                    };
                    pos += eol + 2;
                    if eol == 0 {
                        return Ok((pos, true));
                    }
                    *size += eol + 2;
                    if *size > MAX_TRAILER_SIZE {
                        return Err(BodyError::Malformed);
                    }
                }
            }
        }
    }
}

/// A chunk-size line: hex digits, then optionally `;` and extensions of
/// Twisted's allowed characters. Not `httparse::parse_chunk_size`, which
/// reads an empty size line as the last chunk, allows blanks after the
/// size and takes any byte in an extension: Twisted refuses all three
/// with a 400, and weft's channel answers as Twisted does.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let (size, extensions) = match line.iter().position(|&b| b == b';') {
        Some(at) => (&line[..at], &line[at + 1..]),
        None => (line, &b""[..]),
    };
    let extension_ok =
        |b: &u8| *b == b'\t' || ((b' '..=b'~').contains(b) && *b != b'\\') || *b >= 0x80;
    if size.is_empty()
        || !size.iter().all(u8::is_ascii_hexdigit)
        || !extensions.iter().all(extension_ok)
    {
        return None;
    }
    // More hex digits than u64 holds is a body no limit allows.
    Some(u64::from_str_radix(std::str::from_utf8(size).ok()?, 16).unwrap_or(u64::MAX))
}

fn append(content: &mut Vec<u8>, data: &[u8], limit: usize) -> Result<(), BodyError> {
    if content.len() + data.len() > limit {
        return Err(BodyError::TooLarge);
    }
    content.extend_from_slice(data);
    Ok(())
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&str, &str)]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))
    }

    #[test]
    fn framing_follows_twisted() {
        assert!(matches!(framing(headers(&[])), Some(Framing::Empty)));
        assert!(matches!(
            framing(headers(&[("Content-Length", "12")])),
            Some(Framing::Length(12))
        ));
        assert!(matches!(
            framing(headers(&[("Transfer-Encoding", "Chunked")])),
            Some(Framing::Chunked)
        ));
        assert!(matches!(
            framing(headers(&[
                ("Transfer-Encoding", "identity"),
                ("Content-Length", "1")
            ])),
            Some(Framing::Length(1))
        ));
        for bad in [
            &[("Content-Length", "x")][..],
            &[("Content-Length", "+1")],
            &[("Content-Length", "")],
            &[("Content-Length", "1"), ("Content-Length", "1")],
            &[("Content-Length", "1"), ("Transfer-Encoding", "chunked")],
            &[("Transfer-Encoding", "gzip")],
        ] {
            assert!(framing(headers(bad)).is_none(), "{bad:?}");
        }
    }

    fn decode_all(
        decoder: &mut Decoder,
        pieces: &[&[u8]],
        limit: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        let mut buffer = Vec::new();
        let mut content = Vec::new();
        for piece in pieces {
            buffer.extend_from_slice(piece);
            let (used, done) = decoder.decode(&buffer, &mut content, limit)?;
            buffer.drain(..used);
            if done {
                return Ok((content, buffer));
            }
        }
        panic!("body incomplete: {content:?}");
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let wire: &[u8] =
            b"3;name=v\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let whole = decode_all(&mut Decoder::Chunked(Chunked::Size), &[wire], 100).unwrap();
        assert_eq!(whole, (b"abc0123456789abcdef".to_vec(), b"NEXT".to_vec()));
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        let (content, _) = decode_all(&mut Decoder::Chunked(Chunked::Size), &bytes, 100).unwrap();
        assert_eq!(content, whole.0, "the body ends before NEXT is offered");
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"3\r\nabcX\r\n",
            b"-1\r\n",
            b"3;a\\b\r\nabc\r\n",
            b"0x3\r\n",
            // What httparse would take and Twisted refuses.
            b"\r\n",
            b"3 \r\nabc\r\n",
            b"3;a\x01b\r\nabc\r\n",
        ] {
            let result = decode_all(
                &mut Decoder::Chunked(Chunked::Size),
                &[bad, b"\r\n0\r\n\r\n"],
                100,
            );
            assert_eq!(result.unwrap_err(), BodyError::Malformed, "{bad:?}");
        }
        let long_line = vec![b'1'; MAX_CHUNK_SIZE_LINE + 1];
        let result = Decoder::Chunked(Chunked::Size).decode(&long_line, &mut Vec::new(), 100);
        assert_eq!(result.unwrap_err(), BodyError::Malformed);
    }

    #[test]
    fn bodies_over_the_limit_are_too_large() {
        let mut decoder = Decoder::Length { remaining: 10 };
        assert_eq!(
            decoder
                .decode(b"0123456789", &mut Vec::new(), 9)
                .unwrap_err(),
            BodyError::TooLarge
        );
        let mut chunked = Decoder::Chunked(Chunked::Size);
        let result = chunked.decode(b"a\r\n0123456789\r\n0\r\n\r\n", &mut Vec::new(), 9);
        assert_eq!(result.unwrap_err(), BodyError::TooLarge);
    }
}
