//! The NNTP wire format: bounded reply lines, multi-line blocks, and the
//! dot-stuffed article that `POST` sends.
//!
//! RFC 3977 section 3.1 caps a reply line at 512 octets including its CRLF;
//! a longer line is an error, read no further than one byte past the
//! limit, so a hostile server cannot make the client buffer without bound.
//! Multi-line blocks (the `CAPABILITIES` list) are bounded by the same line
//! length and by [`MAX_BLOCK_LINES`].

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use super::{NntpError, Step};

/// Longest reply or command line, CRLF included (RFC 3977 section 3.1).
pub const MAX_LINE: usize = 512;

/// Most lines accepted in a multi-line reply block.
pub const MAX_BLOCK_LINES: usize = 256;

/// One server reply: a three-digit status code and the text after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code, 100 to 599.
    pub code: u16,
    /// The rest of the line, without the CRLF (lossy UTF-8).
    pub text: String,
}

/// An article ready for `POST`: CRLF line ends, lines that start with `.`
/// doubled (RFC 3977 section 3.1.1), ending in `.\r\n`.
#[derive(Clone, PartialEq, Eq)]
pub struct Article {
    wire: Vec<u8>,
}

impl std::fmt::Debug for Article {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Article({} bytes)", self.wire.len())
    }
}

impl Article {
    /// Encodes an RFC 5322 message (headers, blank line, body). Lone LF
    /// line ends become CRLF; a missing final line end is added. NUL bytes
    /// and lone CR are refused: RFC 3977 section 3.1 and RFC 5536 forbid
    /// them in articles.
    pub fn new(message: &[u8]) -> Result<Self, NntpError> {
        if message.is_empty() {
            return Err(NntpError::BadArticle("empty"));
        }
        if message.contains(&0) {
            return Err(NntpError::BadArticle("NUL byte"));
        }
        let mut wire = Vec::with_capacity(message.len() + message.len() / 32 + 8);
        for line in message.split_inclusive(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.contains(&b'\r') {
                return Err(NntpError::BadArticle("lone CR"));
            }
            if text.first() == Some(&b'.') {
                wire.push(b'.');
            }
            wire.extend_from_slice(text);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        Ok(Self { wire })
    }

    /// The bytes to send after the server's 340.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes, line end included.
pub(super) async fn read_line<R>(r: &mut R, step: Step) -> Result<Vec<u8>, NntpError>
where
    R: AsyncBufRead + Unpin,
{
    let mut line = Vec::new();
    let limit = MAX_LINE as u64 + 1;
    (&mut *r)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|source| NntpError::Io { step, source })?;
    if line.len() > MAX_LINE {
        return Err(NntpError::LineTooLong { step });
    }
    if !line.ends_with(b"\n") {
        return Err(NntpError::Closed { step });
    }
    Ok(line)
}

/// Reads and parses one reply line.
pub(super) async fn read_reply<R>(r: &mut R, step: Step) -> Result<Reply, NntpError>
where
    R: AsyncBufRead + Unpin,
{
    parse_reply(&read_line(r, step).await?, step)
}

/// Parses `ddd[ text]CRLF`.
pub(super) fn parse_reply(line: &[u8], step: Step) -> Result<Reply, NntpError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (code, rest) = line
        .split_at_checked(3)
        .ok_or(NntpError::Malformed { step })?;
    let text = match rest.split_first() {
        None => &[][..],
        Some((b' ', text)) => text,
        Some(_) => return Err(NntpError::Malformed { step }),
    };
    let code = std::str::from_utf8(code)
        .ok()
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or(NntpError::Malformed { step })?;
    Ok(Reply {
        code,
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

/// Reads the lines of a multi-line block up to its terminating `.` line,
/// dot-stuffing undone and line ends removed.
pub(super) async fn read_block<R>(r: &mut R, step: Step) -> Result<Vec<Vec<u8>>, NntpError>
where
    R: AsyncBufRead + Unpin,
{
    let mut lines = Vec::new();
    loop {
        let line = read_line(r, step).await?;
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"." {
            return Ok(lines);
        }
        if lines.len() == MAX_BLOCK_LINES {
            return Err(NntpError::BlockTooLong { step });
        }
        lines.push(line.strip_prefix(b".").unwrap_or(line).to_vec());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    /// What a server stores: the block with its terminator removed and the
    /// dot-stuffing undone.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let body = wire.strip_suffix(b".\r\n").unwrap();
        let mut out = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    #[test]
    fn article_is_dot_stuffed_and_terminated() {
        let a = Article::new(b"Subject: x\n\n.hidden\n..two\nlast").unwrap();
        assert_eq!(
            a.wire(),
            b"Subject: x\r\n\r\n..hidden\r\n...two\r\nlast\r\n.\r\n"
        );
        let lone_dot = Article::new(b"A: b\r\n\r\n.\r\n").unwrap();
        assert_eq!(lone_dot.wire(), b"A: b\r\n\r\n..\r\n.\r\n");
        assert!(format!("{a:?}").starts_with("Article("));
    }

    #[test]
    fn bad_articles_are_refused() {
        for bad in [&b""[..], b"A: b\r\n\r\nx\0y", b"A: b\r\n\r\nx\ry\r\n"] {
            assert!(matches!(Article::new(bad), Err(NntpError::BadArticle(_))));
        }
    }

    #[test]
    fn replies_parse_and_malformed_ones_do_not() {
        let r = parse_reply(b"240 Article received <a@b>\r\n", Step::Article).unwrap();
        assert_eq!((r.code, r.text.as_str()), (240, "Article received <a@b>"));
        assert_eq!(parse_reply(b"340\r\n", Step::Post).unwrap().code, 340);
        for bad in [
            &b"24\r\n"[..],
            b"2400 x\r\n",
            b"abc x\r\n",
            b"099 x\r\n",
            b"-12 x\r\n",
        ] {
            assert!(parse_reply(bad, Step::Post).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let ok = format!("200 {}\r\n", "x".repeat(MAX_LINE - 6));
        assert_eq!(ok.len(), MAX_LINE);
        let mut r = ok.as_bytes();
        assert_eq!(
            read_line(&mut r, Step::Greeting).await.unwrap().len(),
            MAX_LINE
        );
        let long = format!("200 {}\r\n", "x".repeat(MAX_LINE));
        let mut r = long.as_bytes();
        assert!(matches!(
            read_line(&mut r, Step::Greeting).await,
            Err(NntpError::LineTooLong { .. })
        ));
        let mut r = &b"200 cut"[..];
        assert!(matches!(
            read_line(&mut r, Step::Greeting).await,
            Err(NntpError::Closed { .. })
        ));
    }

    #[tokio::test]
    async fn blocks_unstuff_and_are_bounded() {
        let mut r = &b"VERSION 2\r\n..dot\r\n.\r\nnext\r\n"[..];
        let lines = read_block(&mut r, Step::Capabilities).await.unwrap();
        assert_eq!(lines, vec![b"VERSION 2".to_vec(), b".dot".to_vec()]);
        assert_eq!(r, b"next\r\n");
        let many = "X\r\n".repeat(MAX_BLOCK_LINES + 1) + ".\r\n";
        let mut r = many.as_bytes();
        assert!(matches!(
            read_block(&mut r, Step::Capabilities).await,
            Err(NntpError::BlockTooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn unstuffing_the_wire_gives_the_crlf_message(
            lines in proptest::collection::vec("[.a-z ]{0,8}", 1..12),
            crlf in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let message: String = lines.iter().map(|l| format!("{l}{eol}")).collect();
            let a = Article::new(message.as_bytes()).unwrap();
            let want: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
            prop_assert_eq!(unstuff(a.wire()), want.as_bytes());
            // No line of the wire form is the terminator except the last.
            let body = a.wire().strip_suffix(b".\r\n").unwrap();
            prop_assert!(!body.split(|&b| b == b'\n').any(|l| l == b".\r"));
        }
    }
}
