//! Loading rules from files and folders: every `.yml`/`.yaml` file, every
//! YAML document in it. A document that fails becomes a [`Rejection`]
//! naming file, line, rule id and reason; the others still load.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};

use crate::cache::{file_key, CacheUse, FileKey, FileStat, Kept, RulesCache};
use crate::error::{LoadError, RuleError};
use crate::sigma::{parse_document, Document, Placeholders, SigmaFilter, SigmaRule};
use crate::window::WindowRule;

/// Where a document came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// The file.
    pub path: PathBuf,
    /// 1-based line where the document starts.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// A rule that loaded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadedRule {
    /// The rule.
    pub rule: SigmaRule,
    /// Where it is defined.
    pub origin: Origin,
}

/// A global filter that loaded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadedFilter {
    /// The filter.
    pub filter: SigmaFilter,
    /// Where it is defined.
    pub origin: Origin,
}

/// A document that was rejected, and why.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    /// Where.
    pub origin: Origin,
    /// The document's `id`, if it could be read.
    pub rule_id: Option<String>,
    /// The document's `title`, if it could be read.
    pub title: Option<String>,
    /// The reason.
    pub error: RuleError,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} [{}] {}: {}",
            self.origin,
            self.rule_id.as_deref().unwrap_or("no id"),
            self.title.as_deref().unwrap_or("(untitled)"),
            self.error
        )
    }
}

/// Everything loaded from a set of paths.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RuleCollection {
    /// Detection rules.
    pub rules: Vec<LoadedRule>,
    /// Global filters.
    pub filters: Vec<LoadedFilter>,
    /// Windowed rules (correlations and statistics), not yet resolved.
    pub windows: Vec<LoadedWindowRule>,
    /// Rejected documents.
    pub rejected: Vec<Rejection>,
    /// SHA-256 over the files read (over each one's SHA-256 of its path,
    /// length and bytes, in load order): the same files give the same
    /// digest.
    #[serde(skip)]
    pub digest: [u8; 32],
    /// What the rules cache did, when one was used.
    #[serde(skip)]
    pub cache: Option<CacheUse>,
}

/// A windowed rule that loaded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadedWindowRule {
    /// The rule.
    pub rule: WindowRule,
    /// Where it is defined.
    pub origin: Origin,
}

/// Whether a file holds rule tests (`*.test.yml`, `*.test.yaml`), which
/// live beside the rules but are not rules.
pub fn is_rule_test(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".test.yml") || n.ends_with(".test.yaml"))
}

/// Reads rules from files and folders (recursively, `.yml` and `.yaml`,
/// in sorted order so that loading is deterministic; in folders, rule
/// tests are skipped, see [`is_rule_test`]).
pub fn load_paths<P: AsRef<Path>>(
    paths: &[P],
    placeholders: &Placeholders,
) -> Result<RuleCollection, LoadError> {
    load_paths_with(paths, placeholders, None)
}

/// As [`load_paths`], taking what an unchanged file loaded to from
/// `cache` instead of parsing it again, and keeping what the others load
/// to there (see [`crate::cache`]; [`RuleCollection::cache`] says what it
/// did).
pub fn load_paths_with<P: AsRef<Path>>(
    paths: &[P],
    placeholders: &Placeholders,
    cache: Option<&RulesCache>,
) -> Result<RuleCollection, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path.as_ref(), &mut files)?;
    }
    let opened = cache.map(|c| c.open(paths, placeholders));
    // Read and parsed (or taken from the cache) on every core, gathered
    // in the files' order.
    let loaded = crate::parallel::map(&files, |file| -> Result<_, LoadError> {
        // With a cache, a file whose stat vouches for it is not read.
        let stat = opened.as_ref().and_then(|_| FileStat::of(file));
        if let (Some(opened), Some(stat)) = (&opened, stat) {
            let key = opened.key_of(file, &stat);
            if let Some((key, kept)) = key.and_then(|key| Some((key, opened.get(&key)?))) {
                return Ok(FileLoad {
                    key,
                    one: kept,
                    parsed: false,
                    stat: Some(stat),
                    read: false,
                });
            }
        }
        let bytes = std::fs::read(file).map_err(|source| LoadError::Io {
            path: file.clone(),
            source,
        })?;
        let key = file_key(file, &bytes);
        if let Some(kept) = opened.as_ref().and_then(|o| o.get(&key)) {
            return Ok(FileLoad {
                key,
                one: kept,
                parsed: false,
                stat,
                read: true,
            });
        }
        Ok(FileLoad {
            one: load_file(file, &bytes, placeholders),
            key,
            parsed: true,
            stat,
            read: true,
        })
    });
    let loaded = loaded.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut digest = Sha256::new();
    for load in &loaded {
        digest.update(load.key);
    }
    let cache_use = opened.map(|opened| {
        let kept: Vec<Kept> = loaded
            .iter()
            .zip(&files)
            .map(|(l, path)| Kept {
                key: l.key,
                loaded: l.parsed.then_some(&l.one),
                path,
                stat: l.stat,
                read: l.read,
            })
            .collect();
        opened.store(&kept)
    });
    let mut out = RuleCollection::default();
    for load in loaded {
        out.rules.extend(load.one.rules);
        out.filters.extend(load.one.filters);
        out.windows.extend(load.one.windows);
        out.rejected.extend(load.one.rejected);
    }
    out.digest = digest.finalize().into();
    out.cache = cache_use;
    Ok(out)
}

/// One rules file: its key (path and bytes) and what it loaded to.
struct FileLoad {
    key: FileKey,
    one: RuleCollection,
    /// Parsed now, not taken from the cache.
    parsed: bool,
    /// Its stat, when loaded with a cache.
    stat: Option<FileStat>,
    /// Read to know its key.
    read: bool,
}

/// Parses every document of one rules file.
fn load_file(file: &Path, bytes: &[u8], placeholders: &Placeholders) -> RuleCollection {
    let mut one = RuleCollection::default();
    match std::str::from_utf8(bytes) {
        Ok(text) => load_text(file, text, placeholders, &mut one),
        Err(_) => one.rejected.push(Rejection {
            origin: Origin {
                path: file.to_path_buf(),
                line: 1,
            },
            rule_id: None,
            title: None,
            error: RuleError::Yaml("file is not valid UTF-8".into()),
        }),
    }
    one
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_file() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    // Whether an entry is a folder, from the listing itself where it
    // says (no stat of each of 2,400 files); a link is followed.
    let mut entries: Vec<(std::ffi::OsString, PathBuf, bool)> = std::fs::read_dir(path)
        .map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .filter_map(|e| {
            let e = e.ok()?;
            let path = e.path();
            let folder = match e.file_type() {
                Ok(t) if !t.is_symlink() => t.is_dir(),
                _ => path.is_dir(),
            };
            Some((e.file_name(), path, folder))
        })
        .collect();
    // By name, kept beside the path: the order of the paths (one
    // folder's), without parsing their components at each comparison
    // (which `Path::file_name` would too: 27.5 against 7.9 M instructions
    // for SigmaHQ's 2,407 files).
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (_, entry, folder) in entries {
        if folder {
            collect_files(&entry, files)?;
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yml") | Some("yaml")
        ) && !is_rule_test(&entry)
        {
            files.push(entry);
        }
    }
    Ok(())
}

/// Splits a YAML stream into documents with their 1-based start lines.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") || trimmed.starts_with("---#") {
            docs.push((start, std::mem::take(&mut current)));
            start = index + 2;
            continue;
        }
        if trimmed == "..." {
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// How deep flow collections (`[...]`, `{...}`) may nest in a rules
/// file. The YAML parser needs time quadratic in the nesting before its
/// own recursion limit (128) can refuse a document; real rules nest a few
/// levels.
pub const MAX_YAML_FLOW_DEPTH: usize = 64;

/// The line (1-based, within `text`) where flow collections nest deeper
/// than [`MAX_YAML_FLOW_DEPTH`], found in one linear pass that skips quoted
/// scalars, comments and block scalars.
fn flow_too_deep(text: &str) -> Option<usize> {
    // Each level opens with a bracket: too few of them cannot nest too
    // deep. That is 3,978 of SigmaHQ's 3,981 rule files, and the pass below
    // was a twentieth of start-up.
    if memchr::memchr2_iter(b'[', b'{', text.as_bytes()).count() <= MAX_YAML_FLOW_DEPTH {
        return None;
    }
    let mut depth = 0usize;
    let mut block_indent: Option<usize> = None;
    let mut quote: Option<char> = None;
    for (index, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        if quote.is_none() && depth == 0 {
            if let Some(block) = block_indent {
                // Lines of a block scalar (`|`, `>`) are text.
                if line.trim().is_empty() || indent > block {
                    continue;
                }
                block_indent = None;
            }
        }
        // The last character of structure on this line: a scalar starts
        // after these, or at the start of the line.
        let mut previous: Option<char> = None;
        let mut after_space = true;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if let Some(q) = quote {
                match (q, c) {
                    ('\'', '\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                    }
                    ('\'', '\'') | ('"', '"') => {
                        quote = None;
                        previous = Some(c);
                    }
                    ('"', '\\') => {
                        chars.next();
                    }
                    _ => {}
                }
                after_space = false;
                continue;
            }
            if c.is_whitespace() {
                after_space = true;
                continue;
            }
            let scalar_starts = matches!(previous, None | Some(':' | '-' | '?' | ',' | '[' | '{'));
            // What this character is to the structure: itself when it is
            // an indicator, else text (`x` stands for any).
            let mut role = c;
            match c {
                '#' if after_space => break,
                '\'' | '"' if scalar_starts => quote = Some(c),
                '[' | '{' if depth > 0 || scalar_starts => {
                    depth += 1;
                    if depth > MAX_YAML_FLOW_DEPTH {
                        return Some(index + 1);
                    }
                }
                ']' | '}' if depth > 0 => depth -= 1,
                '[' | '{' | ']' | '}' => role = 'x',
                _ => {}
            }
            previous = Some(role);
            after_space = false;
        }
        // A block scalar's indicator ends its line: `key: |`, `- >-`, `|2`.
        if quote.is_none() && depth == 0 {
            let code = line.split(" #").next().unwrap_or_default().trim_end();
            let bare =
                code.trim_end_matches(|c: char| matches!(c, '-' | '+') || c.is_ascii_digit());
            if let Some(before) = bare.strip_suffix(['|', '>']) {
                let before = before.trim_end();
                if before.is_empty() || before.ends_with(':') || before.ends_with('-') {
                    block_indent = Some(indent);
                }
            }
        }
    }
    None
}

/// Parses every document of one rules file into `out`.
pub fn load_text(path: &Path, text: &str, placeholders: &Placeholders, out: &mut RuleCollection) {
    for (line, doc_text) in split_documents(text) {
        let origin = Origin {
            path: path.to_path_buf(),
            line,
        };
        if let Some(deep) = flow_too_deep(&doc_text) {
            out.rejected.push(Rejection {
                origin,
                rule_id: None,
                title: None,
                error: RuleError::Yaml(format!(
                    "collections nest more than {MAX_YAML_FLOW_DEPTH} levels deep (line {})",
                    deep + line - 1
                )),
            });
            continue;
        }
        let value: Value = match serde_yaml_ng::from_str(&doc_text) {
            Ok(v) => v,
            Err(e) => {
                let message = match e.location() {
                    Some(loc) => format!(
                        "{} (line {}, column {})",
                        e.to_string().split(" at line").next().unwrap_or_default(),
                        loc.line() + line - 1,
                        loc.column()
                    ),
                    None => e.to_string(),
                };
                out.rejected.push(Rejection {
                    origin,
                    rule_id: None,
                    title: None,
                    error: RuleError::Yaml(message),
                });
                continue;
            }
        };
        let text_of = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        if value.get("action").is_some() {
            out.rejected.push(Rejection {
                origin,
                rule_id: text_of("id"),
                title: text_of("title"),
                error: RuleError::Unsupported(
                    "Sigma 1.0 rule collections ('action: global/reset/repeat') are not part of Sigma 2".into(),
                ),
            });
            continue;
        }
        match parse_document(&value, placeholders) {
            Ok(Document::Rule(rule)) => out.rules.push(LoadedRule {
                rule: *rule,
                origin,
            }),
            Ok(Document::Filter(filter)) => out.filters.push(LoadedFilter { filter, origin }),
            Ok(Document::Window(rule, inline)) => {
                if let Some(inline) = inline {
                    out.rules.push(LoadedRule {
                        rule: *inline,
                        origin: origin.clone(),
                    });
                }
                out.windows.push(LoadedWindowRule {
                    rule: *rule,
                    origin,
                });
            }
            Err(error) => out.rejected.push(Rejection {
                origin,
                rule_id: text_of("id"),
                title: text_of("title"),
                error,
            }),
        }
    }
}

/// The rules of one file's text `yaml`, named `t.yml`, with no
/// placeholders: for tests.
#[cfg(test)]
pub(crate) fn rules_from_yaml(yaml: &str) -> RuleCollection {
    let mut rules = RuleCollection::default();
    load_text(Path::new("t.yml"), yaml, &Placeholders::new(), &mut rules);
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_lines() {
        let text = "title: a\n---\n# comment only\n---\ntitle: b\nx: 1\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].0, 1);
        assert_eq!(docs[1].0, 5);
    }

    #[test]
    fn the_digest_follows_the_files_read() {
        let dir = tempfile::tempdir().unwrap();
        let rule =
            "title: a\nlogsource: {product: x}\ndetection:\n  sel: {a: 1}\n  condition: sel\n";
        std::fs::write(dir.path().join("a.yml"), rule).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a rule").unwrap();
        let digest = || {
            load_paths(&[dir.path()], &Placeholders::new())
                .unwrap()
                .digest
        };
        let first = digest();
        assert_eq!(first, digest());
        // Files the loader does not read do not count.
        std::fs::write(dir.path().join("notes.txt"), "changed").unwrap();
        assert_eq!(first, digest());
        std::fs::write(dir.path().join("a.yml"), rule.replace("a: 1", "a: 2")).unwrap();
        assert_ne!(first, digest());
    }

    #[test]
    fn a_broken_document_does_not_stop_the_next() {
        let text = "title: broken\ndetection: [\n---\ntitle: ok\nlogsource: {product: x}\ndetection:\n  sel: {a: 1}\n  condition: sel\n";
        let mut out = RuleCollection::default();
        load_text(Path::new("r.yml"), text, &Placeholders::new(), &mut out);
        assert_eq!(out.rules.len(), 1);
        assert_eq!(out.rejected.len(), 1);
        assert!(out.rejected[0].error.to_string().contains("YAML"));
    }

    /// Regression: `[` nested 100,000 deep took 26 s (quadratic in the YAML
    /// parser) before its recursion limit refused it.
    #[test]
    fn deep_flow_nesting_is_refused_in_one_pass() {
        let deep = format!(
            "title: deep\nlogsource: {{product: x}}\ndetection:\n  sel: {}{}\n  condition: sel\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let mut out = RuleCollection::default();
        load_text(Path::new("r.yml"), &deep, &Placeholders::new(), &mut out);
        // The pass's own message: the YAML parser never saw the document.
        assert_eq!(out.rejected.len(), 1);
        let message = out.rejected[0].error.to_string();
        assert!(
            message.contains("more than 64 levels deep (line 4)"),
            "{message}"
        );
    }

    #[test]
    fn brackets_in_quotes_comments_plain_and_block_scalars_are_not_nesting() {
        let many = |s: &str| s.repeat(MAX_YAML_FLOW_DEPTH + 1);
        let text = format!(
            "title: ok\ndescription: |\n  {open}\n  more {open}\nlogsource: {{product: x}} # {open}\ndetection:\n  sel:\n    a: '{open}'\n    b: \"{open}\\\"\"\n    c: x{open}\n    d|contains: ['it''s', \"[\", x]\n  condition: sel\n",
            open = many("[")
        );
        assert_eq!(flow_too_deep(&text), None, "{text}");
        let mut out = RuleCollection::default();
        load_text(Path::new("r.yml"), &text, &Placeholders::new(), &mut out);
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert_eq!(flow_too_deep("a: [{k: [v]}, 'b']"), None);
        assert_eq!(flow_too_deep(&format!("a: {}", many("{"))), Some(1));
        // At the limit exactly (the bracket count alone decides), and one
        // over it.
        let nested = |n: usize| format!("a: {}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(flow_too_deep(&nested(MAX_YAML_FLOW_DEPTH)), None);
        assert_eq!(flow_too_deep(&nested(MAX_YAML_FLOW_DEPTH + 1)), Some(1));
    }
}
