//! The policy's settings: validation and parsing from TOML.

use super::*;

#[test]
fn configuration_is_validated() {
    let bad = |c: PolicyConfig| Policy::new(&c).unwrap_err();
    let d = PolicyConfig::default;
    assert!(matches!(
        bad(PolicyConfig {
            from: "Remailer <nobody@example.com>".into(),
            ..d()
        }),
        PolicyError::BadFrom(..)
    ));
    assert!(matches!(
        bad(PolicyConfig {
            from: "Anonymous <a@example.com>\r\nBcc: x@example.com".into(),
            ..d()
        }),
        PolicyError::BadFrom(..)
    ));
    assert!(matches!(
        bad(PolicyConfig {
            comments: Some("hi\r\nBcc: x@example.com".into()),
            ..d()
        }),
        PolicyError::BadComments(_)
    ));
    assert!(matches!(
        bad(PolicyConfig {
            message_id_domain: Some("a b".into()),
            ..d()
        }),
        PolicyError::BadDomain(_)
    ));
    assert!(matches!(
        bad(PolicyConfig {
            deny_headers: Some(vec!["X-*-Foo".into()]),
            ..d()
        }),
        PolicyError::BadPattern(_)
    ));
    assert!(matches!(
        bad(PolicyConfig {
            max_recipients: 0,
            ..d()
        }),
        PolicyError::BadLimit(_)
    ));
    let quoted = PolicyConfig {
        from: "\"Anonymous, Inc.\" <anon@remailer.example>".into(),
        comments: Some(String::new()),
        ..d()
    };
    let out = apply_with(&quoted, b"To: a@example.org\r\n\r\nx").unwrap();
    assert!(
        out.message
            .starts_with(b"From: \"Anonymous, Inc.\" <anon@remailer.example>\r\n")
    );
    assert!(values(&out.message, "comments").is_empty());
}

#[test]
fn config_parses_from_toml_with_defaults() {
    let c: PolicyConfig = toml::from_str(
        "from = \"Anon Anonymous <anon@remailer.example>\"\n\
         max_recipients = 3\n",
    )
    .unwrap();
    assert_eq!(c.max_recipients, 3);
    assert_eq!(c.comments_text(), DEFAULT_COMMENTS);
    assert_eq!(c.deny_list().len(), DEFAULT_DENY_HEADERS.len());
    c.validate().unwrap();
    assert!(toml::from_str::<PolicyConfig>("form = \"x\"").is_err());
}
