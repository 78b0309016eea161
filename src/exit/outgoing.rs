//! What leaves the exit for one payload, and its encoding for the mail
//! queue (the state a retry keeps).

use super::delivery::Delivery;
use super::error::PolicyError;
use super::news::Post;

/// A payload ready to leave the exit ([`super::Exit::prepare_outgoing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Mail to its recipients, by SMTP.
    Mail(Delivery),
    /// A Usenet post by mail to a mail2news gateway, by SMTP.
    News(Delivery),
    /// A Usenet post for the news server, by NNTP.
    Post(Post),
}

const NEWS_MAGIC: &[u8] = b"MIMIX-NEWS 1\r\n";

impl Outgoing {
    /// Whether it is a Usenet post (counted as news).
    pub fn is_news(&self) -> bool {
        !matches!(self, Self::Mail(_))
    }

    /// Serialises it for the mail queue. Mail keeps the plain
    /// [`Delivery::encode`] form, so queues written before posts existed
    /// read back the same.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Mail(d) => d.encode(),
            Self::News(d) => [NEWS_MAGIC, &d.encode()].concat(),
            Self::Post(p) => p.encode(),
        }
    }

    /// Parses what [`Outgoing::encode`] produced.
    pub fn decode(bytes: &[u8]) -> Result<Self, PolicyError> {
        if let Some(rest) = bytes.strip_prefix(NEWS_MAGIC) {
            return Delivery::decode(rest).map(Self::News);
        }
        if Post::is_encoded(bytes) {
            return Post::decode(bytes).map(Self::Post);
        }
        Delivery::decode(bytes).map(Self::Mail)
    }

    /// Whether `bytes` is an encoded post of either kind.
    pub fn is_news_encoding(bytes: &[u8]) -> bool {
        bytes.starts_with(NEWS_MAGIC) || Post::is_encoded(bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn every_kind_round_trips_and_mail_keeps_its_old_form() {
        let d = Delivery {
            envelope_from: "nobody@mix.example".parse().unwrap(),
            envelope_to: vec!["mail2news@gw.example".parse().unwrap()],
            message: b"Newsgroups: alt.test\r\n\r\nhi\r\n".to_vec(),
        };
        let p = Post {
            groups: vec!["alt.test".into(), "misc.test".into()],
            message: b"Newsgroups: alt.test,misc.test\r\n\r\nhi\r\n".to_vec(),
        };
        for o in [
            Outgoing::Mail(d.clone()),
            Outgoing::News(d.clone()),
            Outgoing::Post(p),
        ] {
            let bytes = o.encode();
            assert_eq!(Outgoing::decode(&bytes).unwrap(), o);
            assert_eq!(Outgoing::is_news_encoding(&bytes), o.is_news());
        }
        assert_eq!(Outgoing::Mail(d.clone()).encode(), d.encode());
        for bad in [
            &b"MIMIX-POST 1\r\nalt.test\r\n"[..],
            b"MIMIX-POST 1\r\nbad group\r\n\r\nhi",
            b"MIMIX-POST 1\r\nno line end",
            b"MIMIX-NEWS 1\r\ngarbage",
            b"To: a@b.example\r\n\r\nraw payload",
        ] {
            assert_eq!(
                Outgoing::decode(bad),
                Err(PolicyError::BadEncoding),
                "{bad:?}"
            );
        }
    }
}
