//! Text clean-up shared by the validated values.

/// `\r\n` and lone `\r` become `\n`, so that text from any platform counts
/// and compares the same.
pub(crate) fn normalise_line_breaks(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_owned();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}
