//! Wall-clock time for the records people read (leases use `Instant`, passed in).

/// RFC 3339 UTC timestamp of now.
pub fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
