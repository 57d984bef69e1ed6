//! Names the host makes from text it is given: a route's, a key-value namespace's, a file's.

/// `s` with every character but `A-Z a-z 0-9 _ . -` replaced by `replacement`: a name for a
/// route, a key-value namespace or a file.
pub fn name_chars(s: &str, replacement: char) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                replacement
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_characters_are_kept() {
        assert_eq!(name_chars("my app.wasm", '_'), "my_app.wasm");
        assert_eq!(name_chars("a/b:c@d", '-'), "a-b-c-d");
    }
}
