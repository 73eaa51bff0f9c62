//! The small wildcard language of the hook rules: `*` (any run of
//! characters), `?` (one character) and, in file patterns, `**` (any number
//! of folders). No brackets, no braces, no regular expressions: rules stay
//! readable and a pattern can never be slow to compile or blow up.
//!
//! Three ways to match, one per kind of subject:
//! - [`path_matches`]: file paths. A pattern without `/` is matched against
//!   the file name alone (`tasks.json`, `*.test.*`), like a .gitignore line;
//!   a pattern with `/` against the whole path, component by component, where
//!   `*` and `?` never cross a `/` and a `**` component spans any number of
//!   folders (`**/src/**`). Case-insensitive (`ARCHITECTURE.md` and
//!   `architecture.md` are the same document to a rule writer).
//! - [`words_match`]: commands and prompts, where the pattern must cover
//!   whole words: `cargo test` matches `cd x && cargo test -q` but not
//!   `cargo testify`; `*` matches any characters, spaces included.
//! - [`text_matches`]: prompts, as an unanchored case-insensitive substring
//!   or wildcard search (`generate*tasks`).
//!
//! Matching simulates the pattern over the text (a set of reachable
//! positions, advanced once per pattern character), so its cost is at most
//! pattern length × text length, with no backtracking blow-up.

/// Whether `pattern` matches the file `path` (see the module docs).
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.to_lowercase();
    let path = path.to_lowercase();
    let pattern = pattern.trim_start_matches('/');
    let pattern = match pattern.strip_suffix('/') {
        // `src/` means everything below src.
        Some(dir) => format!("{dir}/**"),
        None => pattern.to_string(),
    };
    if !pattern.contains('/') {
        let name = path.rsplit('/').next().unwrap_or("");
        return whole(&pattern, name);
    }
    let pat: Vec<&str> = components(&pattern);
    let text: Vec<&str> = components(&path);
    components_match(&pat, &text)
}

/// Splits a path into its components, dropping empty ones and `.`.
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

fn components_match(pat: &[&str], text: &[&str]) -> bool {
    match pat.split_first() {
        None => text.is_empty(),
        Some((&"**", rest)) => (0..=text.len()).any(|k| components_match(rest, &text[k..])),
        Some((first, rest)) => {
            !text.is_empty() && whole(first, text[0]) && components_match(rest, &text[1..])
        }
    }
}

/// Whether `pattern` matches all of `text` (no case folding). Every tool
/// name and file pattern of a hook call comes here, so ASCII (nearly all of
/// them) is matched on the bytes, without allocating.
pub fn whole(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        return anchored(pattern.as_bytes(), text.as_bytes(), b'*', b'?');
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    anchored(&p, &t, '*', '?')
}

/// Whether `p` matches all of `t`, where `star` matches any run and `one`
/// any single element: the two-pointer wildcard match, which on a mismatch
/// resumes after the last star one element further along `t`. At most
/// `p.len() × t.len()` steps, with no backtracking blow-up.
fn anchored<T: Copy + Eq>(p: &[T], t: &[T], star: T, one: T) -> bool {
    let (mut i, mut j) = (0, 0);
    // The last star seen, and where in `t` the run it matches ends now.
    let mut resume: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && p[i] == star {
            resume = Some((i, j));
            i += 1;
        } else if i < p.len() && (p[i] == one || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = resume {
            resume = Some((si, sj + 1));
            i = si + 1;
            j = sj + 1;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == star)
}

/// Whether `pattern` covers a run of whole words of `text`: it starts at the
/// start of a word and ends at the end of one, where words are separated by
/// characters for which `is_sep` holds. No case folding.
pub fn words_match(pattern: &str, text: &str, is_sep: fn(char) -> bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let n = t.len();
    reach(
        &p,
        &t,
        |i| i == 0 || is_sep(t[i - 1]),
        |j| j == n || is_sep(t[j]),
    )
}

/// Whether `pattern` occurs anywhere in `text_lower` (already lower-case);
/// the pattern is folded to lower case here.
pub fn text_matches(pattern: &str, text_lower: &str) -> bool {
    let pattern = pattern.to_lowercase();
    if !pattern.contains(['*', '?']) {
        return text_lower.contains(&pattern);
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text_lower.chars().collect();
    reach(&p, &t, |_| true, |_| true)
}

/// The separators between the words of a shell command.
pub fn is_command_sep(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            ';' | '&' | '|' | '(' | ')' | '\'' | '"' | '`' | '<' | '>' | '/'
        )
}

/// The separators between the words of a prompt: anything not a letter or digit.
pub fn is_prose_sep(c: char) -> bool {
    !c.is_alphanumeric()
}

/// Runs `p` over `t` from every position where `start_ok` holds and says
/// whether some run ends at a position where `end_ok` holds.
fn reach(
    p: &[char],
    t: &[char],
    start_ok: impl Fn(usize) -> bool,
    end_ok: impl Fn(usize) -> bool,
) -> bool {
    let n = t.len();
    let mut cur: Vec<bool> = (0..=n).map(start_ok).collect();
    let mut next = vec![false; n + 1];
    for &c in p {
        if c == '*' {
            let mut on = false;
            for j in 0..=n {
                on |= cur[j];
                next[j] = on;
            }
        } else {
            next[0] = false;
            for j in 0..n {
                next[j + 1] = cur[j] && (c == '?' || t[j] == c);
            }
        }
        std::mem::swap(&mut cur, &mut next);
        if !cur.contains(&true) {
            return false;
        }
    }
    (0..=n).any(|j| cur[j] && end_ok(j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_without_a_slash_match_the_file_name() {
        assert!(path_matches(
            "tasks.json",
            "/home/u/p/.taskmaster/tasks/tasks.json"
        ));
        assert!(path_matches("tasks.json", "tasks.json"));
        assert!(!path_matches("tasks.json", "old-tasks.json"));
        assert!(path_matches("*.test.*", "src/x.test.ts"));
        assert!(!path_matches("*.test.*", "src/latest.ts"));
        assert!(path_matches("architecture.md", "docs/ARCHITECTURE.md"));
        assert!(path_matches("test_*.py", "tests/test_api.py"));
        assert!(path_matches("?.rs", "src/a.rs"));
        assert!(!path_matches("?.rs", "src/ab.rs"));
    }

    #[test]
    fn double_star_spans_folders_and_single_star_does_not() {
        assert!(path_matches("**/src/**", "/home/u/p/src/x.ts"));
        assert!(path_matches("**/src/**", "src/a/b/c.ts"));
        assert!(!path_matches("**/src/**", "source/x.ts"));
        assert!(path_matches("src/**", "src/x.ts"));
        assert!(!path_matches("src/**", "pkg/src/x.ts"));
        assert!(path_matches("src/", "src/deep/x.ts"));
        assert!(path_matches("src/*.ts", "src/x.ts"));
        assert!(!path_matches("src/*.ts", "src/a/x.ts"));
        assert!(path_matches("**/__tests__/**", "app/__tests__/a.js"));
        assert!(path_matches("docs/**/*.md", "docs/a.md"));
        assert!(path_matches("./docs/*.md", "docs/a.md"));
    }

    #[test]
    fn command_patterns_cover_whole_words() {
        let m = |p: &str, t: &str| words_match(p, t, is_command_sep);
        assert!(m("npm test", "npm test"));
        assert!(m("npm test", "cd web && npm test -- --watch"));
        assert!(!m("npm test", "npm testing"));
        assert!(m("pytest", "python -m pytest -q"));
        assert!(m("jest", "./node_modules/.bin/jest"));
        assert!(!m("jest", "injest data"));
        assert!(m("cargo test", "bash -c 'cargo test'"));
        assert!(m("npm run test*", "npm run test:unit"));
        assert!(m("git commit*", "git commit -m 'x'"));
        assert!(!m("git commit", "git commitx"));
        assert!(m("*e2e*", "npx playwright test e2e/"));
    }

    #[test]
    fn text_patterns_are_unanchored_and_case_blind() {
        assert!(text_matches("Generate Tasks", "please generate tasks now"));
        assert!(text_matches("generate*tasks", "generate the tasks"));
        assert!(!text_matches("generate*tasks", "tasks generate"));
        assert!(text_matches("t?d", "use tdd"));
        assert!(words_match("status", "what's the /status?", is_prose_sep));
        assert!(!words_match("status", "statuses", is_prose_sep));
    }

    /// The anchored match as the simulation in `reach` does it.
    fn whole_by_reach(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let n = t.len();
        reach(&p, &t, |i| i == 0, |j| j == n)
    }

    #[test]
    fn whole_agrees_with_the_simulation_on_every_small_case() {
        // Every pattern up to 5 and text up to 5 elements over a small
        // alphabet, ASCII and not: both ways must agree.
        fn all(alphabet: &[char], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                    .collect();
                out.extend(last.iter().cloned());
            }
            out
        }
        for letters in [&['a', 'b'][..], &['a', 'é'][..]] {
            let texts = all(letters, 5);
            let mut alphabet = letters.to_vec();
            alphabet.extend(['*', '?']);
            for p in all(&alphabet, 5) {
                for t in &texts {
                    assert_eq!(whole(&p, t), whole_by_reach(&p, t), "{p:?} on {t:?}");
                }
            }
        }
        assert!(whole("*", ""));
        assert!(whole("a*", "a*"));
        assert!(!whole("a?", "a"));
    }

    #[test]
    fn matching_stays_linear_on_hostile_input() {
        let text = "a".repeat(20_000);
        let started = std::time::Instant::now();
        assert!(!whole("*a*a*a*a*a*a*a*a*b", &text));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
