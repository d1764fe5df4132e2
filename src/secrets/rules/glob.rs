//! Secrets globs, and the same glob as a regex sops (RE2) and cairn agree on.

/// Secrets globs: relative to the repository root, `*` and `?` stay within one directory,
/// `**` as a whole component spans directories, `[...]` and `{a,b}` as usual.
pub fn compile_glob(glob: &str) -> Result<globset::GlobMatcher, String> {
    build_glob(glob).map(|g| g.compile_matcher())
}

/// A secrets glob, parsed with those rules (to match alone or in a [`globset::GlobSet`]).
pub fn build_glob(glob: &str) -> Result<globset::Glob, String> {
    globset::GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.to_string())
}

/// The same glob as an anchored regex both RE2 (sops) and Rust's `regex` accept.
pub fn glob_to_regex(glob: &str) -> String {
    let chars: Vec<char> = glob.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    let mut in_alt = 0usize;
    while i < chars.len() {
        let c = chars[i];
        let at_component_start = i == 0 || chars[i - 1] == '/';
        match c {
            '*' if chars.get(i + 1) == Some(&'*')
                && at_component_start
                && matches!(chars.get(i + 2), None | Some('/')) =>
            {
                match chars.get(i + 2) {
                    // `**/` : zero or more directories.
                    Some('/') => {
                        re.push_str("(?:[^/]*/)*");
                        i += 3;
                    }
                    // trailing `**`: everything below.
                    _ => {
                        re.push_str(".*");
                        i += 2;
                    }
                }
                continue;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                let mut j = i + 1;
                let mut class = String::from("[");
                if matches!(chars.get(j), Some('!') | Some('^')) {
                    class.push('^');
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    class.push_str("\\]");
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    match chars[j] {
                        '\\' | '[' | '&' | '~' | '^' => {
                            class.push('\\');
                            class.push(chars[j]);
                        }
                        ch => class.push(ch),
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    // Unclosed: a literal `[` (compile_glob rejects this anyway).
                    re.push_str("\\[");
                } else {
                    class.push(']');
                    re.push_str(&class);
                    i = j;
                }
            }
            '{' => {
                re.push_str("(?:");
                in_alt += 1;
            }
            '}' if in_alt > 0 => {
                re.push(')');
                in_alt -= 1;
            }
            ',' if in_alt > 0 => re.push('|'),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                re.push_str(&regex::escape(&chars[i].to_string()));
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_regexes_agree_with_globset() {
        let globs = [
            "secrets/web/*.yaml",
            "secrets/**",
            "secrets/**/*.yaml",
            "**/db.yaml",
            "secrets/{web,db}/*.env",
            "secrets/[a-c]?.json",
            "secrets/[!a]*.json",
            "secrets/a.b+c(1).yaml",
            "**",
        ];
        let paths = [
            "secrets/web/a.yaml",
            "secrets/web/sub/a.yaml",
            "secrets/a.yaml",
            "secrets/db.yaml",
            "db.yaml",
            "x/y/db.yaml",
            "secrets/web/x.env",
            "secrets/db/x.env",
            "secrets/ab.json",
            "secrets/zz.json",
            "secrets/abc.json",
            "secrets/a.b+c(1).yaml",
            "secrets/aXb+c(1).yaml",
            "secrets",
            "secrets/",
            "other/web/a.yaml",
        ];
        for g in globs {
            let m = compile_glob(g).unwrap();
            let re = regex::Regex::new(&glob_to_regex(g)).unwrap();
            for p in paths {
                assert_eq!(
                    re.is_match(p),
                    m.is_match(p),
                    "glob {g} regex {} path {p}",
                    glob_to_regex(g)
                );
            }
        }
    }
}
