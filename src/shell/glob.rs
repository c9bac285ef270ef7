//! Hadoop's glob syntax (GlobPattern/GlobExpander): `*`, `?`, `[abc]`, `[a-z]`,
//! `[^x]`/`[!x]`, `{a,b}` (nestable), `\` escapes. Patterns match one path component;
//! braces that contain `/` are expanded into whole separate patterns first.

/// One element of a compiled component pattern.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    AnyChar,
    AnySequence,
    Class { negated: bool, ranges: Vec<(char, char)> },
    Alternatives(Vec<Vec<Token>>),
}

/// A compiled pattern for one path component.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobPattern {
    tokens: Vec<Token>,
}

/// Does `pattern` contain glob syntax (an unescaped `*`, `?`, `[` or `{`)?
pub fn has_wildcard(pattern: &str) -> bool {
    let mut escaped = false;
    for c in pattern.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '*' | '?' | '[' | '{' => return true,
            _ => {}
        }
    }
    false
}

/// Removes glob escapes: `a\*b` is the name `a*b`.
pub fn unescape(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl GlobPattern {
    pub fn compile(pattern: &str) -> Result<GlobPattern, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut pos = 0;
        let tokens = parse_sequence(&chars, &mut pos, false)
            .map_err(|reason| format!("Illegal file pattern: {reason} for glob {pattern} at {pos}"))?;
        if pos != chars.len() {
            return Err(format!("Illegal file pattern: Unexpected '}}' for glob {pattern} at {pos}"));
        }
        Ok(GlobPattern { tokens })
    }

    pub fn matches(&self, name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        match_tokens(&self.tokens, &chars)
    }
}

fn parse_sequence(chars: &[char], pos: &mut usize, in_braces: bool) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    while *pos < chars.len() {
        let c = chars[*pos];
        match c {
            ',' | '}' if in_braces => return Ok(tokens),
            '\\' => {
                *pos += 1;
                let escaped = *chars.get(*pos).ok_or("Missing escaped character")?;
                tokens.push(Token::Literal(escaped));
                *pos += 1;
            }
            '*' => {
                tokens.push(Token::AnySequence);
                *pos += 1;
            }
            '?' => {
                tokens.push(Token::AnyChar);
                *pos += 1;
            }
            '[' => {
                *pos += 1;
                tokens.push(parse_class(chars, pos)?);
            }
            '{' => {
                *pos += 1;
                let mut alternatives = Vec::new();
                loop {
                    alternatives.push(parse_sequence(chars, pos, true)?);
                    match chars.get(*pos) {
                        Some(',') => *pos += 1,
                        Some('}') => {
                            *pos += 1;
                            break;
                        }
                        _ => return Err("Unclosed group".to_string()),
                    }
                }
                tokens.push(Token::Alternatives(alternatives));
            }
            '}' => return Err("Unexpected '}'".to_string()),
            other => {
                tokens.push(Token::Literal(other));
                *pos += 1;
            }
        }
    }
    Ok(tokens)
}

fn parse_class(chars: &[char], pos: &mut usize) -> Result<Token, String> {
    let mut negated = false;
    if matches!(chars.get(*pos), Some('^') | Some('!')) {
        negated = true;
        *pos += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(*pos) else {
            return Err("Unclosed character class".to_string());
        };
        if c == ']' && !first {
            *pos += 1;
            break;
        }
        first = false;
        let start = if c == '\\' {
            *pos += 1;
            *chars.get(*pos).ok_or("Unclosed character class")?
        } else {
            c
        };
        *pos += 1;
        if chars.get(*pos) == Some(&'-') && chars.get(*pos + 1).is_some_and(|n| *n != ']') {
            let end = chars[*pos + 1];
            *pos += 2;
            if end < start {
                return Err("Invalid character range".to_string());
            }
            ranges.push((start, end));
        } else {
            ranges.push((start, start));
        }
    }
    Ok(Token::Class { negated, ranges })
}

fn match_tokens(tokens: &[Token], name: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return name.is_empty();
    };
    match first {
        Token::Literal(c) => name.first() == Some(c) && match_tokens(rest, &name[1..]),
        Token::AnyChar => !name.is_empty() && match_tokens(rest, &name[1..]),
        Token::AnySequence => (0..=name.len()).any(|skip| match_tokens(rest, &name[skip..])),
        Token::Class { negated, ranges } => match name.first() {
            Some(c) => {
                let inside = ranges.iter().any(|(lo, hi)| lo <= c && c <= hi);
                inside != *negated && match_tokens(rest, &name[1..])
            }
            None => false,
        },
        Token::Alternatives(alternatives) => alternatives.iter().any(|alternative| {
            let mut joined = alternative.clone();
            joined.extend_from_slice(rest);
            match_tokens(&joined, name)
        }),
    }
}

/// Expands braces whose alternatives contain `/` into separate patterns (Hadoop's
/// GlobExpander); other braces are left for per-component matching.
pub fn expand_slash_braces(pattern: &str) -> Vec<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut depth = 0;
    let mut open = None;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '{' => {
                if depth == 0 {
                    open = Some(i);
                }
                depth += 1;
            }
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    let start = open.expect("set at depth 0");
                    let inner: String = chars[start + 1..i].iter().collect();
                    if inner.contains('/') {
                        let prefix: String = chars[..start].iter().collect();
                        let suffix: String = chars[i + 1..].iter().collect();
                        return split_alternatives(&inner)
                            .into_iter()
                            .flat_map(|alt| expand_slash_braces(&format!("{prefix}{alt}{suffix}")))
                            .collect();
                    }
                }
            }
            _ => {}
        }
    }
    vec![pattern.to_string()]
}

/// Splits `a,b{c,d},e` at top-level commas.
fn split_alternatives(inner: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            escaped = false;
            current.push(c);
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                current.push(c);
            }
            '{' => {
                depth += 1;
                current.push(c);
            }
            '}' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str) -> GlobPattern {
        GlobPattern::compile(pattern).unwrap()
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(glob("*.txt").matches("a.txt"));
        assert!(glob("*.txt").matches(".txt"));
        assert!(!glob("*.txt").matches("a.txt.bak"));
        assert!(glob("a?c").matches("abc"));
        assert!(!glob("a?c").matches("ac"));
        assert!(glob("*").matches(""));
        assert!(glob("a*b*c").matches("aXXbYYc"));
    }

    #[test]
    fn classes() {
        assert!(glob("[ab]*").matches("big"));
        assert!(!glob("[ab]*").matches("cat"));
        assert!(glob("f[0-9]").matches("f7"));
        assert!(!glob("f[^0-9]").matches("f7"));
        assert!(glob("f[!0-9]").matches("fx"));
        assert!(glob("[]]").matches("]"));
        assert!(GlobPattern::compile("[ab").is_err());
    }

    #[test]
    fn alternatives_nest() {
        assert!(glob("{a,e}*").matches("empty"));
        assert!(glob("x{a,b{c,d}}y").matches("xbdy"));
        assert!(!glob("x{a,b{c,d}}y").matches("xby"));
        assert!(glob("{,a}b").matches("b"));
        assert!(GlobPattern::compile("{a,b").is_err());
    }

    #[test]
    fn escapes() {
        assert!(glob("a\\*b").matches("a*b"));
        assert!(!glob("a\\*b").matches("axb"));
        assert!(!has_wildcard("a\\*b"));
        assert!(has_wildcard("a{b,c}"));
        assert_eq!(unescape("a\\*b\\\\"), "a*b\\");
    }

    #[test]
    fn braces_with_slashes_expand_to_patterns() {
        assert_eq!(expand_slash_braces("/a/{b/c,d}/e"), vec!["/a/b/c/e", "/a/d/e"]);
        assert_eq!(expand_slash_braces("/a/{b,c}"), vec!["/a/{b,c}"]);
        assert_eq!(expand_slash_braces("/{x/1,y}/{p/q,r}"), vec!["/x/1/p/q", "/x/1/r", "/y/p/q", "/y/r"]);
    }
}
