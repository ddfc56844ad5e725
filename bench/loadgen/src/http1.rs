//! A minimal HTTP/1.1 client connection: write one request, read one response (head parsed by
//! httparse, body skipped by Content-Length, chunked coding or close), report the status and
//! whether the connection can carry another request. Bodies are counted, never kept: the
//! benchmark measures the proxy, so the client must spend as little CPU as it can.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Any byte stream: plain TCP or TLS, direct or inside a CONNECT tunnel.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Largest response head accepted; larger means a broken peer.
const MAX_HEAD: usize = 64 * 1024;

/// One response, as much as the benchmark needs.
#[derive(Debug, Clone, Copy)]
pub struct Response {
    pub status: u16,
    pub body_bytes: u64,
    /// The server will not take another request on this connection.
    pub close: bool,
}

/// A connection with its read buffer.
pub struct Conn {
    io: Box<dyn Stream>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Conn {
    pub fn new(io: Box<dyn Stream>) -> Conn {
        Conn {
            io,
            // Large enough to take a 64 KiB body in few reads.
            buf: vec![0; 128 * 1024],
            pos: 0,
            end: 0,
        }
    }

    /// The stream, to close it.
    pub fn into_inner(self) -> Box<dyn Stream> {
        self.io
    }

    /// Reads more bytes after those not yet consumed; `Ok(0)` is end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        let n = self.io.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Skips `len` body bytes.
    async fn skip(&mut self, mut len: u64) -> io::Result<()> {
        loop {
            let have = (self.end - self.pos) as u64;
            let take = have.min(len);
            self.pos += take as usize;
            len -= take;
            if len == 0 {
                return Ok(());
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads one CRLF-terminated line (without the CRLF) as a range of the buffer.
    async fn line(&mut self) -> io::Result<(usize, usize)> {
        loop {
            if let Some(at) = self.buf[self.pos..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let start = self.pos;
                self.pos += at + 2;
                return Ok((start, start + at));
            }
            if self.end - self.pos > MAX_HEAD {
                return Err(invalid("line too long"));
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Writes `request` whole.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.io.write_all(request).await?;
        self.io.flush().await
    }

    /// Reads the head of a response; returns (status, content-length, chunked, close).
    async fn head(&mut self) -> io::Result<(u16, Option<u64>, bool, bool)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 48];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf[self.pos..self.end]) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or(0);
                    let mut length = None;
                    let mut chunked = false;
                    let mut close = parsed.version == Some(0);
                    for h in parsed.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let text = std::str::from_utf8(h.value)
                                .map_err(|_| invalid("bad Content-Length"))?;
                            length = Some(
                                text.trim()
                                    .parse::<u64>()
                                    .map_err(|_| invalid("bad Content-Length"))?,
                            );
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.to_ascii_lowercase().ends_with(b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    self.pos += len;
                    return Ok((status, length, chunked, close));
                }
                Ok(httparse::Status::Partial) => {
                    if self.end - self.pos > MAX_HEAD {
                        return Err(invalid("response head too large"));
                    }
                    if self.fill().await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(err) => return Err(invalid(format!("bad response head: {err}"))),
            }
        }
    }

    /// Reads one whole response (a 1xx interim response is skipped).
    pub async fn response(&mut self, head_request: bool) -> io::Result<Response> {
        loop {
            let (status, length, chunked, close) = self.head().await?;
            if (100..200).contains(&status) {
                continue;
            }
            let no_body = head_request || status == 204 || status == 304;
            let body_bytes = if no_body {
                0
            } else if chunked {
                self.chunked().await?
            } else if let Some(len) = length {
                self.skip(len).await?;
                len
            } else {
                // Delimited by close (RFC 9112 §6.3 rule 8).
                let mut total = (self.end - self.pos) as u64;
                self.pos = self.end;
                loop {
                    let n = self.fill().await?;
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                    self.pos = self.end;
                }
                return Ok(Response {
                    status,
                    body_bytes: total,
                    close: true,
                });
            };
            return Ok(Response {
                status,
                body_bytes,
                close,
            });
        }
    }

    /// Skips a chunked body and its trailers; returns the payload length.
    async fn chunked(&mut self) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let (start, end) = self.line().await?;
            let line = &self.buf[start..end];
            let hex_end = line
                .iter()
                .position(|b| !b.is_ascii_hexdigit())
                .unwrap_or(line.len());
            let text = std::str::from_utf8(&line[..hex_end]).map_err(|_| invalid("chunk size"))?;
            let size = u64::from_str_radix(text, 16).map_err(|_| invalid("chunk size"))?;
            if size == 0 {
                // Trailer section, ended by an empty line.
                loop {
                    let (s, e) = self.line().await?;
                    if s == e {
                        return Ok(total);
                    }
                }
            }
            self.skip(size).await?;
            total += size;
            let (s, e) = self.line().await?;
            if s != e {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    }

    /// Sends `CONNECT authority` and reads the proxy's answer; fails unless it is 2xx.
    pub async fn connect_tunnel(&mut self, authority: &str) -> io::Result<()> {
        let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        self.send(request.as_bytes()).await?;
        // A 2xx answer to CONNECT has no body (RFC 9110 §9.3.6).
        let (status, length, _, _) = self.head().await?;
        if !(200..300).contains(&status) {
            if let Some(len) = length {
                let _ = self.skip(len).await;
            }
            return Err(io::Error::other(format!("CONNECT answered {status}")));
        }
        if self.pos != self.end {
            return Err(invalid("bytes after the CONNECT answer"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &'static [u8]) -> Vec<Response> {
        let (mut tx, rx) = tokio::io::duplex(64);
        tokio::spawn(async move {
            tx.write_all(bytes).await.unwrap();
        });
        let mut conn = Conn::new(Box::new(rx));
        let mut out = Vec::new();
        while let Ok(r) = conn.response(false).await {
            let close = r.close;
            out.push(r);
            if close {
                break;
            }
        }
        out
    }

    #[tokio::test]
    async fn content_length_chunked_and_close_delimited() {
        let got = read_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 307 Temporary Redirect\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n\
HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 200 OK\r\n\r\nuntil close",
        )
        .await;
        let summary: Vec<(u16, u64, bool)> = got
            .iter()
            .map(|r| (r.status, r.body_bytes, r.close))
            .collect();
        assert_eq!(
            summary,
            vec![
                (200, 5, false),
                (307, 19, false),
                (204, 0, false),
                (200, 11, true)
            ]
        );
    }

    #[tokio::test]
    async fn connection_close_header_is_reported() {
        let got =
            read_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(got.len(), 1);
        assert!(got[0].close);
    }
}
