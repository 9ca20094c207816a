//! Upload file names: which the server accepts, and what a numbered copy is called.
//!
//! A name is checked when its header arrives, before any body byte is read, and a name
//! accepted there is always stored: under itself, or as a numbered copy that fits the
//! file system's limit. So a client never sends a whole body only to be refused for its
//! name. Kept apart from `store.rs` (the files themselves) because these are pure rules
//! on strings, tested without a directory.

use std::collections::HashMap;

use unicode_general_category::{get_general_category, GeneralCategory};

use super::store::TEMP_PREFIX;

/// Longest file name, in bytes (the usual `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a requested file name is refused. Only a single plain path component is accepted;
/// nothing is "cleaned up", because a silently changed name surprises the client more
/// than a refusal does.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("file name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("file name {name:?} is not a file"));
    }
    if name.contains('/') || name.contains('\\') {
        return Err(format!("file name {name:?} contains a path separator"));
    }
    if name.contains('\0') {
        return Err("file name contains a NUL byte".into());
    }
    if name.chars().any(char::is_control) {
        return Err(format!("file name {name:?} contains a control character"));
    }
    if let Some((c, class)) = name
        .chars()
        .find_map(|c| invisible_class(c).map(|k| (c, k)))
    {
        return Err(format!(
            "file name {name:?} contains {class} (U+{:04X})",
            c as u32
        ));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "file name is {} bytes, over the limit of {MAX_NAME_BYTES}",
            name.len()
        ));
    }
    if name.starts_with(TEMP_PREFIX) {
        return Err(format!(
            "file names starting with {TEMP_PREFIX} are reserved"
        ));
    }
    Ok(())
}

/// Characters that make a shown name differ from the stored one, or hide part of it:
/// `evil\u{202E}gpj.exe` displays as `evilexe.jpg`. The rule is by Unicode general
/// category, from the `unicode-general-category` crate's tables (Unicode 16), not a list
/// kept by hand: every **format** character (Cf: bidi controls and isolates, zero-width
/// characters, the BOM, tag characters U+E0000–U+E007F, interlinear annotation marks
/// U+FFF9–U+FFFB, the deprecated U+206A–U+206F, U+180E), the **line and paragraph
/// separators** (Zl U+2028, Zp U+2029: a line break inside a log line or a listing), and
/// the Hangul **fillers** (U+115F, U+1160, U+3164, U+FFA0), letters (Lo) that render as
/// nothing, so a name made of them looks empty. Returns a description of the class.
fn invisible_class(c: char) -> Option<&'static str> {
    match c {
        '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' => return Some("an invisible filler"),
        _ => {}
    }
    match get_general_category(c) {
        GeneralCategory::Format => Some("an invisible formatting character"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("a line or paragraph separator")
        }
        _ => None,
    }
}

/// The `n`th alternative to `name`: `report.pdf` -> `report (n).pdf`; `.bashrc` ->
/// `.bashrc (n)`. `n == 0` is the name itself.
///
/// The alternative always fits in `MAX_NAME_BYTES`: if `report (n).pdf` would not, the
/// stem is shortened (at a character boundary) to make room for ` (n)`; if the extension
/// alone leaves no room, the whole name is shortened and ` (n)` appended. So every name
/// `check_file_name` accepts can be stored, whatever is already in the directory, and
/// the decision is made when the header arrives, never after the body (the reply's
/// `file_name` says what it became, as for any numbered copy).
pub fn numbered_name(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    let suffix = format!(" ({n})");
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    };
    if stem.len() + suffix.len() + ext.len() <= MAX_NAME_BYTES {
        return format!("{stem}{suffix}{ext}");
    }
    match MAX_NAME_BYTES.checked_sub(suffix.len() + ext.len()) {
        Some(room) if room > 0 => format!("{}{suffix}{ext}", cut(stem, room)),
        _ => format!("{}{suffix}", cut(name, MAX_NAME_BYTES - suffix.len())),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where the search for a free `name (n).ext` starts, per name: the number after the
/// last one taken. Without it the n-th copy of a name costs n failed `link` calls, and
/// 500 pipelined uploads of one name cost 125,000 (13.5 s of disk work). It is only a
/// hint: `link` still refuses a taken name, so a stale or lost hint costs extra tries,
/// never an overwrite. Shared by the pool's threads (a short lock around a map lookup).
#[derive(Debug, Default)]
pub(super) struct NextCopy {
    next: HashMap<String, u32>,
}

/// Names remembered by `NextCopy` before it starts again (each costs at most about 300
/// bytes): an attacker sending endless distinct duplicated names cannot grow it further.
const NEXT_COPY_NAMES: usize = 10_000;

impl NextCopy {
    pub(super) fn get(&self, name: &str) -> u32 {
        self.next.get(name).copied().unwrap_or(1)
    }

    pub(super) fn set(&mut self, name: &str, next: u32) {
        if self.next.len() >= NEXT_COPY_NAMES && !self.next.contains_key(name) {
            self.next.clear();
        }
        self.next.insert(name.to_string(), next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_refused_by_category() {
        let cases = [
            ('\u{E0041}', "formatting"), // TAG LATIN CAPITAL LETTER A (Cf)
            ('\u{180E}', "formatting"),  // MONGOLIAN VOWEL SEPARATOR (Cf since Unicode 6.3)
            ('\u{206A}', "formatting"),  // INHIBIT SYMMETRIC SWAPPING (Cf)
            ('\u{FFF9}', "formatting"),  // INTERLINEAR ANNOTATION ANCHOR (Cf)
            ('\u{202E}', "formatting"),  // RIGHT-TO-LEFT OVERRIDE (Cf)
            ('\u{2028}', "separator"),   // LINE SEPARATOR (Zl)
            ('\u{2029}', "separator"),   // PARAGRAPH SEPARATOR (Zp)
            ('\u{3164}', "filler"),      // HANGUL FILLER (Lo)
            ('\u{115F}', "filler"),
            ('\u{1160}', "filler"),
            ('\u{FFA0}', "filler"),
        ];
        for (c, want) in cases {
            let name = format!("a{c}b.txt");
            let err = check_file_name(&name).expect_err(&format!("U+{:04X}", c as u32));
            assert!(err.contains(want), "U+{:04X}: {err}", c as u32);
            assert!(err.contains(&format!("U+{:04X}", c as u32)), "{err}");
        }
        // Visible non-ASCII names are fine.
        for ok in [
            "résumé.pdf",
            "日本語.txt",
            "한글.txt",
            "a b.txt",
            "emoji-🙂.png",
        ] {
            assert_eq!(check_file_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn a_numbered_copy_always_fits() {
        assert_eq!(numbered_name("report.pdf", 3), "report (3).pdf");
        assert_eq!(numbered_name(".bashrc", 1), ".bashrc (1)");
        for len in 250..=MAX_NAME_BYTES {
            let name = format!("{}.txt", "é".repeat((len - 4) / 2) + &"x".repeat(len % 2));
            assert_eq!(check_file_name(&name), Ok(()), "{len}");
            for n in [1, 9, 10, 500, 10_000] {
                let copy = numbered_name(&name, n);
                assert!(copy.len() <= MAX_NAME_BYTES, "{len} {n}: {}", copy.len());
                assert!(copy.ends_with(&format!(" ({n}).txt")), "{copy}");
                assert_eq!(check_file_name(&copy), Ok(()));
            }
        }
        // An extension that leaves no room: the whole name is shortened.
        let name = format!("a.{}", "e".repeat(252));
        let copy = numbered_name(&name, 12);
        assert!(
            copy.len() <= MAX_NAME_BYTES && copy.ends_with(" (12)"),
            "{copy}"
        );
    }
}
