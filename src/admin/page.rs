//! `GET /`: the status page for people. One HTML file with inline style
//! and script and no external assets: the script draws SVG charts from the
//! data embedded in the page, then refreshes from `/status.json` and
//! `/history.json`. The data is embedded so that the first view needs no
//! further request (and a headless browser's DOM dump shows it).

use serde::Serialize;

use super::history::HistoryDoc;
use super::report::StatusReport;

/// The page, with `/*DATA*/` where the data goes.
const TEMPLATE: &str = include_str!("page.html");

/// The Content-Security-Policy sent with the page: nothing is loaded from
/// anywhere; the inline style and script run; the script may fetch from
/// the listener itself.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; \
                       script-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'";

#[derive(Serialize)]
struct Data<'a> {
    status: &'a StatusReport,
    history: &'a HistoryDoc,
}

/// The page showing `status` and `history`.
pub fn render(status: &StatusReport, history: &HistoryDoc) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string(&Data { status, history })?;
    Ok(TEMPLATE.replacen("/*DATA*/", &script_safe(&json), 1))
}

/// JSON that cannot end the `<script>` element it sits in: `<`, `>` and
/// `&` only occur inside JSON strings, where `\u` escapes mean the same.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn embedded_json_cannot_close_the_script() {
        let s = script_safe(r#"{"name":"</script><b>&"}"#);
        assert!(!s.contains("</script>"));
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["name"], "</script><b>&");
    }

    #[test]
    fn the_page_has_one_data_slot_and_no_external_assets() {
        assert_eq!(TEMPLATE.matches("/*DATA*/").count(), 1);
        for external in ["src=", "href=", "@import", "url("] {
            assert!(!TEMPLATE.contains(external), "{external}");
        }
    }
}
