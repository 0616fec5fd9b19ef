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

/// Text for one Markdown table cell: no pipe or line break can end the cell early.
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
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
    }
}
