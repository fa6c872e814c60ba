//! Doublestar glob matching, the pattern language of Harbor's tag and
//! repository selectors (immutability and retention rules).
//!
//! - `*` matches any run of characters except `/`;
//! - `?` matches one character except `/`;
//! - `**` matches any run of characters, `/` included; written as a whole
//!   path component (`a/**/b`, `**/b`, `a/**`) it also matches zero
//!   components, so `a/**/b` matches `a/b` and `a/**` matches `a`;
//! - `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) match one character of a class
//!   (never `/`);
//! - `{a,b,c}` matches any of the alternatives, which may nest and hold
//!   wildcards;
//! - `\x` matches `x` literally.

/// Expanding braces beyond this many alternatives is refused, so that a
/// hostile pattern cannot make matching expensive.
const MAX_ALTERNATIVES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPattern(pub String);

impl std::fmt::Display for InvalidPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checked pattern, ready to match.
#[derive(Debug, Clone)]
pub struct Pattern {
    alternatives: Vec<Vec<Tok>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` inside a component.
    DoubleStar,
    /// `**/` at the start of a component: zero or more whole components.
    Components,
    /// `/**` at the end of the pattern: nothing, or `/` and anything.
    TrailingAny,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Pattern {
    pub fn parse(pattern: &str) -> Result<Pattern, InvalidPattern> {
        if pattern.is_empty() {
            return Err(InvalidPattern("the pattern is empty".into()));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let expanded = expand(&chars)?;
        let alternatives = expanded
            .iter()
            .map(|alt| tokenize(alt))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pattern { alternatives })
    }

    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        self.alternatives.iter().any(|toks| {
            let mut failed = vec![false; (toks.len() + 1) * (text.len() + 1)];
            match_at(toks, &text, 0, 0, &mut failed)
        })
    }
}

/// Whether `text` matches `pattern`; an invalid pattern matches nothing.
pub fn matches(pattern: &str, text: &str) -> bool {
    Pattern::parse(pattern)
        .map(|p| p.matches(text))
        .unwrap_or(false)
}

/// Expands `{a,b}` alternatives (outermost first, recursively).
fn expand(chars: &[char]) -> Result<Vec<Vec<char>>, InvalidPattern> {
    // Find the first top-level `{` that is not escaped or inside a class.
    let mut i = 0;
    let mut open = None;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' => {
                i = class_end(chars, i)?;
            }
            '{' => {
                open = Some(i);
                break;
            }
            '}' => return Err(InvalidPattern("unbalanced braces: '}' without '{'".into())),
            _ => {}
        }
        i += 1;
    }
    let Some(open) = open else {
        return Ok(vec![chars.to_vec()]);
    };
    // Find its matching `}` and the top-level commas in between.
    let mut depth = 0;
    let mut commas = vec![];
    let mut close = None;
    let mut j = open;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 1,
            '[' => j = class_end(chars, j)?,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(j);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(j),
            _ => {}
        }
        j += 1;
    }
    let close = close.ok_or_else(|| InvalidPattern("unbalanced braces: '{' without '}'".into()))?;
    let prefix = &chars[..open];
    let suffix = &chars[close + 1..];
    let mut bounds = vec![open];
    bounds.extend(commas);
    bounds.push(close);
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let mut alt = prefix.to_vec();
        alt.extend_from_slice(&chars[w[0] + 1..w[1]]);
        alt.extend_from_slice(suffix);
        for e in expand(&alt)? {
            out.push(e);
            if out.len() > MAX_ALTERNATIVES {
                return Err(InvalidPattern(format!(
                    "the pattern expands to more than {MAX_ALTERNATIVES} alternatives"
                )));
            }
        }
    }
    Ok(out)
}

/// Index of the `]` closing the class that opens at `start`.
fn class_end(chars: &[char], start: usize) -> Result<usize, InvalidPattern> {
    let mut i = start + 1;
    if i < chars.len() && (chars[i] == '!' || chars[i] == '^') {
        i += 1;
    }
    // A `]` right after the opening (or the negation) is a literal member.
    if i < chars.len() && chars[i] == ']' {
        i += 1;
    }
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            ']' => return Ok(i),
            _ => i += 1,
        }
    }
    Err(InvalidPattern(
        "unterminated character class: '[' without ']'".into(),
    ))
}

fn tokenize(chars: &[char]) -> Result<Vec<Tok>, InvalidPattern> {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let at_component_start = i == 0 || chars[i - 1] == '/';
        match chars[i] {
            '\\' => {
                let c = chars
                    .get(i + 1)
                    .ok_or_else(|| InvalidPattern("the pattern ends with a lone '\\'".into()))?;
                toks.push(Tok::Lit(*c));
                i += 2;
            }
            '?' => {
                toks.push(Tok::One);
                i += 1;
            }
            '*' => {
                let mut n = 0;
                while i + n < chars.len() && chars[i + n] == '*' {
                    n += 1;
                }
                let next = chars.get(i + n);
                if n >= 2 && at_component_start && next == Some(&'/') {
                    toks.push(Tok::Components);
                    i += n + 1;
                } else if n >= 2
                    && next.is_none()
                    && i > 0
                    && chars[i - 1] == '/'
                    && toks.last() == Some(&Tok::Lit('/'))
                {
                    toks.pop();
                    toks.push(Tok::TrailingAny);
                    i += n;
                } else if n >= 2 {
                    toks.push(Tok::DoubleStar);
                    i += n;
                } else {
                    toks.push(Tok::Star);
                    i += 1;
                }
            }
            '[' => {
                let end = class_end(chars, i)?;
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some('!') | Some('^'));
                if negated {
                    j += 1;
                }
                let mut members = Vec::new();
                while j < end {
                    let c = if chars[j] == '\\' {
                        j += 1;
                        chars[j]
                    } else {
                        chars[j]
                    };
                    members.push(c);
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut k = 0;
                while k < members.len() {
                    if k + 2 < members.len() && members[k + 1] == '-' {
                        let (lo, hi) = (members[k], members[k + 2]);
                        if lo > hi {
                            return Err(InvalidPattern(format!(
                                "invalid range {lo}-{hi} in a character class"
                            )));
                        }
                        ranges.push((lo, hi));
                        k += 3;
                    } else {
                        ranges.push((members[k], members[k]));
                        k += 1;
                    }
                }
                if ranges.is_empty() {
                    return Err(InvalidPattern("empty character class '[]'".into()));
                }
                toks.push(Tok::Class { negated, ranges });
                i = end + 1;
            }
            c => {
                toks.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    Ok(toks)
}

/// Backtracking match with a memo of failed (token, text) positions, so the
/// cost is bounded by tokens × characters.
fn match_at(toks: &[Tok], text: &[char], t: usize, s: usize, failed: &mut [bool]) -> bool {
    let key = t * (text.len() + 1) + s;
    if failed[key] {
        return false;
    }
    let ok = match toks.get(t) {
        None => s == text.len(),
        Some(Tok::Lit(c)) => text.get(s) == Some(c) && match_at(toks, text, t + 1, s + 1, failed),
        Some(Tok::One) => {
            matches!(text.get(s), Some(c) if *c != '/')
                && match_at(toks, text, t + 1, s + 1, failed)
        }
        Some(Tok::Class { negated, ranges }) => {
            matches!(text.get(s), Some(c) if *c != '/'
                && ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated)
                && match_at(toks, text, t + 1, s + 1, failed)
        }
        Some(Tok::Star) => {
            let mut end = s;
            loop {
                if match_at(toks, text, t + 1, end, failed) {
                    break true;
                }
                if end == text.len() || text[end] == '/' {
                    break false;
                }
                end += 1;
            }
        }
        Some(Tok::DoubleStar) => (s..=text.len()).any(|e| match_at(toks, text, t + 1, e, failed)),
        Some(Tok::Components) => (s..=text.len())
            .filter(|&e| e == s || text[e - 1] == '/')
            .any(|e| match_at(toks, text, t + 1, e, failed)),
        Some(Tok::TrailingAny) => {
            // Last token: nothing more, or a `/` and then anything.
            s == text.len() || text[s] == '/'
        }
    };
    if !ok {
        failed[key] = true;
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p).unwrap().matches(t)
    }

    #[test]
    fn stars() {
        assert!(m("*", "v1.0"));
        assert!(m("*", ""));
        assert!(!m("*", "a/b"));
        assert!(m("v*", "v1.2.3"));
        assert!(!m("v*", "1.2.3"));
        assert!(m("*-rc", "1.0-rc"));
        assert!(m("a*b*c", "a-x-b-y-c"));
        assert!(!m("a*b*c", "a-x-b-y-d"));
        assert!(m("**", "a/b/c"));
        assert!(m("**", ""));
        assert!(m("team/*", "team/app"));
        assert!(!m("team/*", "team/sub/app"));
        assert!(m("team/**", "team/sub/app"));
        assert!(m("team/**", "team"));
        assert!(!m("team/**", "teams"));
        assert!(m("**/app", "app"));
        assert!(m("**/app", "a/b/app"));
        assert!(!m("**/app", "webapp"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "a/xb"));
        assert!(m("a**b", "a/x/b"));
    }

    #[test]
    fn single_characters_and_classes() {
        assert!(m("1.?.0", "1.2.0"));
        assert!(!m("1.?.0", "1.22.0"));
        assert!(!m("a?b", "a/b"));
        assert!(m("v[0-9]*", "v3.1"));
        assert!(!m("v[0-9]*", "vx"));
        assert!(m("v[!0-9]*", "vx"));
        assert!(m("v[^0-9]*", "vx"));
        assert!(!m("v[!0-9]*", "v1"));
        assert!(m("[]a]", "]"));
        assert!(m("[a-cx]", "x"));
        assert!(!m("[a-c]", "/"));
    }

    #[test]
    fn alternatives() {
        assert!(m("{latest,stable}", "stable"));
        assert!(!m("{latest,stable}", "beta"));
        assert!(m("release-{v*,rc{1,2}}", "release-rc2"));
        assert!(m("release-{v*,rc{1,2}}", "release-v9"));
        assert!(!m("release-{v*,rc{1,2}}", "release-rc3"));
        assert!(m("{,x}y", "y"));
        assert!(m("{a,b}/{c,d}", "b/c"));
    }

    #[test]
    fn escapes_and_literals() {
        assert!(m("a\\*", "a*"));
        assert!(!m("a\\*", "ab"));
        assert!(m("\\{x\\}", "{x}"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
        assert!(m("ünï*", "ünïcode"));
    }

    #[test]
    fn invalid() {
        for p in ["", "{a,b", "a}", "[a-", "[]", "a\\", "[z-a]"] {
            assert!(Pattern::parse(p).is_err(), "{p:?}");
        }
        let big = "{a,b,c,d}".repeat(5);
        assert!(Pattern::parse(&big).is_err());
        assert!(!matches("{", "{"));
    }

    #[test]
    fn no_exponential_blowup() {
        let p = "*a*a*a*a*a*a*a*a*a*a*a*b";
        let text = "a".repeat(200);
        assert!(!m(p, &text));
        let p = "**a**a**a**a**a**a**b";
        assert!(!m(p, &text));
    }
}
