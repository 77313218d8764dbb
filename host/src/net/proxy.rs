//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, v1 and v2) on
//! `haproxy:` endpoints: who may send the header (`proxy-from=`), and
//! reading exactly the header off a new connection, so that every byte
//! after it belongs to the protocol, or to TLS on `haproxy:ssl:`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proxy_header::{ParseConfig, Protocol, ProxyHeader};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::net::cidr::Cidr;

/// The largest header taken: a v1 header is at most 107 bytes; a v2
/// header's TLVs (the balancer's TLS details, a unique id) fit easily.
pub const MAX_HEADER: usize = 4096;

/// The v2 header's first 12 bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\x00\r\nQUIT\n";

/// The longest v1 header, its CRLF included.
const V1_MAX: usize = 107;

/// Who may send a PROXY header: the balancers' addresses. A connection
/// from anywhere else is closed unread, as its header would be a lie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyFrom(Vec<Cidr>);

impl ProxyFrom {
    /// `rules` (`proxy-from=`), or with none, this machine only
    /// (127.0.0.0/8 and ::1): a balancer elsewhere must be named.
    pub fn new(rules: &[Cidr]) -> Self {
        if rules.is_empty() {
            Self(vec![
                Cidr::single(IpAddr::V4(Ipv4Addr::LOCALHOST)).widened(8),
                Cidr::single(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ])
        } else {
            Self(rules.to_vec())
        }
    }

    /// Whether a connection from `peer` may send the header; `None`, a
    /// Unix socket's peer, is as trusted as the socket file's mode makes it.
    pub fn allows(&self, peer: Option<IpAddr>) -> bool {
        peer.is_none_or(|ip| self.0.iter().any(|range| range.contains(ip)))
    }
}

/// The connection's ends as the balancer saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proxied {
    /// The client (the header's source).
    pub peer: SocketAddr,
    /// Where the client connected: the balancer's (the header's
    /// destination).
    pub host: SocketAddr,
}

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("not a PROXY protocol header")]
    Invalid,
    #[error("the PROXY header is longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("the PROXY header names datagram addresses on a stream connection")]
    Datagram,
    #[error("the connection ended before its PROXY header did")]
    Ended,
    #[error(transparent)]
    Io(io::Error),
}

/// Read the PROXY header at the start of `stream`, and nothing after it:
/// the client's and the balancer's addresses, or `None` for a header that
/// names none (`LOCAL`, a balancer's own health check; `UNKNOWN`; Unix
/// socket addresses), whose connection keeps its socket's addresses.
pub async fn read_header(
    stream: &mut (impl AsyncRead + Unpin),
) -> Result<Option<Proxied>, HeaderError> {
    let mut header = vec![next_byte(stream).await?];
    let config = match header[0] {
        b'P' => {
            // A v1 header ends at its line feed: read a byte at a time so
            // as not to take what follows (107 reads at most, once).
            while header.last() != Some(&b'\n') {
                if header.len() == V1_MAX {
                    return Err(HeaderError::Invalid);
                }
                header.push(next_byte(stream).await?);
            }
            ParseConfig {
                include_tlvs: false,
                allow_v1: true,
                allow_v2: false,
            }
        }
        b'\r' => {
            // A v2 header says its length in its 15th and 16th bytes.
            header.resize(16, 0);
            read_exact(stream, &mut header[1..]).await?;
            if !header.starts_with(V2_SIGNATURE) {
                return Err(HeaderError::Invalid);
            }
            let length = 16 + usize::from(u16::from_be_bytes([header[14], header[15]]));
            if length > MAX_HEADER {
                return Err(HeaderError::TooLong);
            }
            header.resize(length, 0);
            read_exact(stream, &mut header[16..]).await?;
            ParseConfig {
                include_tlvs: false,
                allow_v1: false,
                allow_v2: true,
            }
        }
        _ => return Err(HeaderError::Invalid),
    };
    let (parsed, taken) = ProxyHeader::parse(&header, config).map_err(|_| HeaderError::Invalid)?;
    if taken != header.len() {
        return Err(HeaderError::Invalid);
    }
    match parsed.proxied_address() {
        None => Ok(None),
        Some(address) if address.protocol == Protocol::Datagram => Err(HeaderError::Datagram),
        Some(address) => Ok(Some(Proxied {
            peer: address.source,
            host: address.destination,
        })),
    }
}

async fn next_byte(stream: &mut (impl AsyncRead + Unpin)) -> Result<u8, HeaderError> {
    let mut byte = [0];
    read_exact(stream, &mut byte).await?;
    Ok(byte[0])
}

async fn read_exact(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut [u8],
) -> Result<(), HeaderError> {
    match stream.read_exact(buffer).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Err(HeaderError::Ended),
        Err(error) => Err(HeaderError::Io(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8]) -> (Result<Option<Proxied>, HeaderError>, Vec<u8>) {
        let mut stream = input;
        let header = read_header(&mut stream).await;
        (header, stream.to_vec())
    }

    fn proxied(peer: &str, host: &str) -> Option<Proxied> {
        Some(Proxied {
            peer: peer.parse().unwrap(),
            host: host.parse().unwrap(),
        })
    }

    /// A v2 header for `command` (0x20 LOCAL, 0x21 PROXY) and `family`,
    /// with `addresses` and `tlv` after them.
    fn v2(command: u8, family: u8, addresses: &[u8], tlv: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend([command, family]);
        let length = (addresses.len() + tlv.len()) as u16;
        header.extend(length.to_be_bytes());
        header.extend(addresses);
        header.extend(tlv);
        header
    }

    #[tokio::test]
    async fn v1_headers_name_the_client_and_leave_what_follows() {
        let (header, rest) = read(b"PROXY TCP4 192.0.2.1 198.51.100.2 5678 443\r\nGET /").await;
        assert_eq!(
            header.unwrap(),
            proxied("192.0.2.1:5678", "198.51.100.2:443")
        );
        assert_eq!(rest, b"GET /");
        let (header, _) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n").await;
        assert_eq!(
            header.unwrap(),
            proxied("[2001:db8::1]:1", "[2001:db8::2]:2")
        );
        let (header, rest) = read(b"PROXY UNKNOWN\r\nhello").await;
        assert_eq!(header.unwrap(), None);
        assert_eq!(rest, b"hello");
    }

    #[tokio::test]
    async fn v2_headers_name_the_client_and_leave_what_follows() {
        let ipv4 = [192, 0, 2, 1, 198, 51, 100, 2, 0x16, 0x2e, 0x01, 0xbb];
        let mut input = v2(0x21, 0x11, &ipv4, &[0x04, 0x00, 0x01, 0x7a]);
        input.extend(b"\x16\x03\x01");
        let (header, rest) = read(&input).await;
        assert_eq!(
            header.unwrap(),
            proxied("192.0.2.1:5678", "198.51.100.2:443")
        );
        assert_eq!(rest, b"\x16\x03\x01", "the ClientHello is left for TLS");
        let (header, rest) = read(&[v2(0x20, 0x00, &[], &[]), b"x".to_vec()].concat()).await;
        assert_eq!(header.unwrap(), None, "LOCAL: a health check");
        assert_eq!(rest, b"x");
        let (header, _) = read(&v2(0x21, 0x12, &ipv4, &[])).await;
        assert!(matches!(header, Err(HeaderError::Datagram)));
    }

    #[tokio::test]
    async fn bad_headers_are_refused() {
        for input in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
            b"PROXY TCP4 nowhere 5.6.7.8 1 2\r\n",
            b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x00",
        ] {
            let (header, _) = read(input).await;
            assert!(
                matches!(header, Err(HeaderError::Invalid)),
                "{:?}: {header:?}",
                String::from_utf8_lossy(input)
            );
        }
        let endless = [b"PROXY UNKNOWN ".to_vec(), vec![b'x'; 200]].concat();
        assert!(matches!(read(&endless).await.0, Err(HeaderError::Invalid)));
        let long = v2(0x21, 0x11, &[0; 12], &vec![0; MAX_HEADER]);
        assert!(matches!(read(&long).await.0, Err(HeaderError::TooLong)));
        assert!(matches!(
            read(b"PROXY TCP4").await.0,
            Err(HeaderError::Ended)
        ));
        assert!(matches!(read(b"").await.0, Err(HeaderError::Ended)));
    }

    #[test]
    fn only_the_named_balancers_may_send_a_header() {
        let local = ProxyFrom::new(&[]);
        assert!(local.allows(Some("127.0.0.2".parse().unwrap())));
        assert!(local.allows(Some("::1".parse().unwrap())));
        assert!(!local.allows(Some("10.0.0.1".parse().unwrap())));
        assert!(local.allows(None), "a Unix socket's peer");
        let named = ProxyFrom::new(&["10.0.0.0/8".parse().unwrap()]);
        assert!(named.allows(Some("10.1.2.3".parse().unwrap())));
        assert!(!named.allows(Some("127.0.0.1".parse().unwrap())));
    }
}
