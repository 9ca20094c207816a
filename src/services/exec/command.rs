//! A request line into an argument vector, with no shell anywhere.
//!
//! Seed 004's server runs `subprocess.Popen(cmd, shell=True)`: the line goes to
//! `/bin/sh -c`, so `ls; rm -rf ~` or `cat $(echo /etc/passwd)` do exactly what a shell
//! does with them. Here a line is split into words the way a POSIX shell splits them
//! (quotes and backslashes, by the `shell-words` crate) and the words are handed to
//! `execve` directly, so nothing in the line can start a second program.
//!
//! Splitting alone would be safe, but surprising: `ls *.txt` would pass the literal
//! `*.txt`, `echo a; id` would print `a; id`. So a line is **refused** when it holds, out of
//! quotes, anything a shell would interpret rather than pass on: operators (`|`, `&`, `;`,
//! `<`, `>`, `(`, `)`), substitutions (`$`, backquotes; these also inside double quotes,
//! where a shell still expands them), file-name patterns (`*`, `?`, `[`) and a leading
//! `~`. The rule is: a line is accepted only if a POSIX shell would run the very same
//! argument vector, and quoting is how a client passes such characters as text
//! (`echo 'a;b'`), which `netloop exec` does for every argument it sends.
//!
//! Nothing here runs anything or looks at the allowlist (`allowlist.rs` does that).

/// Longest command line accepted, in bytes (its newline not counted).
pub const MAX_LINE: usize = 64 * 1024;

/// Check a request line and split it into words. The error is worded for the client.
pub fn parse(line: &[u8]) -> Result<Vec<String>, String> {
    if line.len() > MAX_LINE {
        return Err(format!(
            "the command line is {} bytes, over the limit of {MAX_LINE}",
            line.len()
        ));
    }
    let text = std::str::from_utf8(line).map_err(|e| {
        format!(
            "the command line is not UTF-8 (invalid byte at {})",
            e.valid_up_to()
        )
    })?;
    if let Some(c) = text.chars().find(|&c| c.is_control() && c != '\t') {
        return Err(format!(
            "the command line contains a control character (U+{:04X})",
            c as u32
        ));
    }
    if let Some(why) = shell_syntax(text) {
        return Err(format!(
            "{why}: commands run without a shell, so it is refused rather than taken \
             literally (quote it to pass it as text)"
        ));
    }
    let words = shell_words::split(text)
        .map_err(|_| "the command line has an unterminated quote".to_string())?;
    if words.is_empty() {
        return Err("empty command".to_string());
    }
    Ok(words)
}

/// Where we are in the line, as the shell (and `shell_words::split`) sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// The first thing in `line` a shell would interpret, described; `None` when a shell
/// would only split it into words. Walks the line with the same quoting states as
/// `shell_words::split`, so both agree on what is quoted.
pub fn shell_syntax(line: &str) -> Option<String> {
    let mut quote = Quote::None;
    let mut word_start = true;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match quote {
            Quote::Single => {
                if c == '\'' {
                    quote = Quote::None;
                }
            }
            Quote::Double => match c {
                '"' => quote = Quote::None,
                // `\$`, `` \` ``, `\"`, `\\`: the next character is literal.
                '\\' => {
                    chars.next();
                }
                '$' | '`' => return Some(describe(c, false)),
                _ => {}
            },
            Quote::None => match c {
                ' ' | '\t' => {
                    word_start = true;
                    continue;
                }
                '\'' => quote = Quote::Single,
                '"' => quote = Quote::Double,
                '\\' => {
                    chars.next();
                }
                // The rest is a comment, for a shell and for `shell_words` alike.
                '#' if word_start => return None,
                '~' if word_start => return Some(describe(c, true)),
                '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' => {
                    return Some(describe(c, false));
                }
                _ => {}
            },
        }
        word_start = false;
    }
    None
}

fn describe(c: char, word_start: bool) -> String {
    let what = match c {
        '|' => "a pipe",
        '&' => "a background job or `&&`",
        ';' => "a command separator",
        '<' | '>' => "a redirection",
        '(' | ')' => "a subshell",
        '$' => "a variable or command substitution",
        '`' => "a command substitution",
        '*' | '?' | '[' => "a file-name pattern",
        '~' if word_start => "a home-directory expansion",
        _ => "shell syntax",
    };
    format!("'{c}' is shell syntax ({what})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?} refused: {e}"))
    }

    fn refused(line: &[u8]) -> String {
        match parse(line) {
            Ok(w) => panic!("{line:?} accepted as {w:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn words_are_split_as_a_shell_splits_them() {
        assert_eq!(words("ls -l"), ["ls", "-l"]);
        assert_eq!(
            words("  echo   'a b'  \"c d\" e\\ f "),
            ["echo", "a b", "c d", "e f"]
        );
        assert_eq!(words("echo 'it'\\''s'"), ["echo", "it's"]);
        assert_eq!(words("echo \"\\$HOME\""), ["echo", "$HOME"]);
        assert_eq!(words("echo hi # a comment"), ["echo", "hi"]);
        assert_eq!(words("echo a#b"), ["echo", "a#b"]);
        assert_eq!(words("echo a~b --x=y%z"), ["echo", "a~b", "--x=y%z"]);
    }

    #[test]
    fn quoted_metacharacters_are_text() {
        assert_eq!(
            words("echo 'a;b' 'x|y' '$(id)' '`id`' '*'"),
            ["echo", "a;b", "x|y", "$(id)", "`id`", "*"]
        );
        assert_eq!(words("echo \"a;b & c > d\""), ["echo", "a;b & c > d"]);
        assert_eq!(words("echo a\\;b"), ["echo", "a;b"]);
    }

    #[test]
    fn shell_syntax_is_refused() {
        for line in [
            "echo hi; rm -rf /",
            "echo hi && id",
            "echo hi | cat",
            "sleep 1 &",
            "echo > /tmp/x",
            "cat < /etc/passwd",
            "$(id)",
            "echo `id`",
            "echo $HOME",
            "echo \"$(id)\"",
            "echo \"`id`\"",
            "ls *.txt",
            "ls ~",
            "(id)",
        ] {
            let e = refused(line.as_bytes());
            assert!(e.contains("shell syntax"), "{line:?}: {e}");
        }
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        assert_eq!(refused(b""), "empty command");
        assert_eq!(refused(b"   "), "empty command");
        assert_eq!(refused(b"# only a comment"), "empty command");
        assert!(refused(b"echo \xff").contains("not UTF-8"));
        assert!(refused(b"echo \0").contains("control character"));
        assert!(refused(b"echo 'open").contains("unterminated quote"));
        assert!(refused(&vec![b'a'; MAX_LINE + 1]).contains("over the limit"));
    }

    #[test]
    fn joined_words_split_back_unchanged() {
        // What `netloop exec -- PROGRAM ARGS...` sends is accepted and means the same.
        let argv = [
            "/bin/echo",
            "a;b",
            "$(id)",
            "it's",
            "*",
            "~",
            "",
            "x y",
            "#z",
        ];
        let line = shell_words::join(argv);
        assert_eq!(words(&line), argv);
    }
}
