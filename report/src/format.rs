//! Numbers and strings as each output format needs them.

/// `h:mm:ss.t`, as in the paper's tables, with tenths: short runs would otherwise all read
/// 0:00:00.
pub fn fmt_hms(seconds: f64) -> String {
    let tenths = (seconds * 10.0).round() as u64;
    let s = tenths / 10;
    format!(
        "{}:{:02}:{:02}.{}",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        tenths % 10
    )
}

/// Text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Text from outside (a worker's name, an error message) for Markdown: shown as written, never
/// as HTML, a link or code, and unable to end a table cell early.
pub fn md_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '|' | '[' | ']' | '`' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Text from outside for a CSV cell: a cell that a spreadsheet would read as a formula
/// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) is prefixed with `'`, as
/// OWASP advises against CSV injection.
pub fn csv_text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hms() {
        assert_eq!(fmt_hms(0.4), "0:00:00.4");
        assert_eq!(fmt_hms(3725.06), "1:02:05.1");
    }

    #[test]
    fn escapes() {
        assert_eq!(html_escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
        assert_eq!(md_cell("a|b\nc"), "a\\|b c");
        assert_eq!(
            md_cell("<script>[x](http://e) `c`\u{1b}[31m"),
            "&lt;script&gt;\\[x\\](http://e) \\`c\\`\\[31m"
        );
        assert_eq!(
            csv_text("=HYPERLINK(\"http://e\")"),
            "'=HYPERLINK(\"http://e\")"
        );
        assert_eq!(csv_text("-1+2"), "'-1+2");
        assert_eq!(csv_text("local-0/cpu"), "local-0/cpu");
    }
}
