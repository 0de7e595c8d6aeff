//! Bounded quotes of record contents. A bad record's error quotes what was wrong with it, and that
//! error goes to logs, dead-letter headers and `/readyz`; a record can carry personal data, or
//! megabytes. Every quote is cut to a bound, on one line (control characters escaped).

/// The most characters of a record's value an error quotes.
pub const QUOTE_MAX_CHARS: usize = 64;
/// The most characters of a bad record's whole error message (as logs and dead letters carry it).
pub const MESSAGE_MAX_CHARS: usize = 300;

/// `text` cut to `max_chars` characters (control characters escaped, counted as written), with
/// ` [... N more bytes]` when something was left out.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for (i, c) in text.char_indices() {
        let piece: String = if c.is_control() {
            c.escape_debug().collect()
        } else {
            c.into()
        };
        let n = piece.chars().count();
        if chars + n > max_chars {
            out.push_str(&format!(" [... {} more bytes]", text.len() - i));
            return out;
        }
        chars += n;
        out.push_str(&piece);
    }
    out
}

/// A quoted value in an error: `"..."`, cut to [`QUOTE_MAX_CHARS`].
pub fn quoted(value: &str) -> String {
    format!("\"{}\"", excerpt(value, QUOTE_MAX_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_cut_on_one_line() {
        assert_eq!(excerpt("kwh=1.5", 64), "kwh=1.5");
        assert_eq!(excerpt("a\nb", 64), "a\\nb");
        let long = "x".repeat(1000);
        let cut = excerpt(&long, 10);
        assert_eq!(cut, format!("{} [... 990 more bytes]", "x".repeat(10)));
        // Never inside a character.
        assert_eq!(excerpt("ééé", 2), "éé [... 2 more bytes]");
        assert_eq!(quoted(&long).len(), 2 + 64 + " [... 936 more bytes]".len());
    }
}
