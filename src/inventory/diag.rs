//! One problem found in an inventory file, pointing at its place in the source, and the
//! collector that gathers all of them so a user sees every mistake in one run.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource};

/// One mistake in the inventory: what is wrong, where (file:line:col with the source line
/// underlined by miette), and what to do about it.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
pub struct Problem {
    message: String,
    #[source_code]
    source_code: NamedSource<Arc<String>>,
    #[label(collection)]
    labels: Vec<LabeledSpan>,
    #[help]
    help: Option<String>,
    file: PathBuf,
    /// 1-based line and column of the primary label (0 when the problem has no position,
    /// e.g. a bad `--var` flag).
    line: usize,
    column: usize,
}

impl Problem {
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn help(&self) -> Option<&str> {
        self.help.as_deref()
    }
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }
    /// 1-based line of the primary position, if the problem has one.
    pub fn line(&self) -> Option<usize> {
        (self.line > 0).then_some(self.line)
    }
    /// 1-based column of the primary position, if the problem has one.
    pub fn column(&self) -> Option<usize> {
        (self.column > 0).then_some(self.column)
    }
}

/// The source text of one inventory file, shared by all its problems.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub path: PathBuf,
    /// The name shown in rendered diagnostics (the path as the user knows it).
    pub display_name: String,
    pub text: Arc<String>,
    /// Byte offset of each line's start, so positions cost a binary search, not a scan
    /// (an inventory of 60,000 hosts asks for one per host).
    line_starts: Arc<Vec<usize>>,
}

impl Source {
    pub fn new(path: PathBuf, display_name: String, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i + 1))
            .collect();
        Source { path, display_name, text: Arc::new(text), line_starts: Arc::new(line_starts) }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    pub fn model_span(&self, range: &Range<usize>) -> super::model::SourceSpan {
        let (line, column) = self.line_col(range.start);
        super::model::SourceSpan {
            file: self.path.clone(),
            offset: range.start,
            len: range.end.saturating_sub(range.start),
            line,
            column,
        }
    }
}

/// A problem being built: message first, then labelled places, then a help line.
#[must_use = "a problem is only reported once pushed into Diagnostics"]
pub(crate) struct ProblemBuilder {
    message: String,
    labels: Vec<(Range<usize>, String, bool)>,
    help: Option<String>,
}

impl ProblemBuilder {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), labels: Vec::new(), help: None }
    }

    /// The primary place the problem is about.
    pub fn at(mut self, span: Option<Range<usize>>, label: impl Into<String>) -> Self {
        if let Some(span) = span {
            self.labels.push((span, label.into(), true));
        }
        self
    }

    /// A secondary place (e.g. the first definition of a duplicate).
    pub fn also(mut self, span: Option<Range<usize>>, label: impl Into<String>) -> Self {
        if let Some(span) = span {
            self.labels.push((span, label.into(), false));
        }
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Collects every problem of one load.
pub(crate) struct Diagnostics {
    source: Source,
    problems: Vec<Problem>,
    seen: std::collections::HashSet<(Option<Range<usize>>, String)>,
}

impl Diagnostics {
    pub fn new(source: Source) -> Self {
        Self { source, problems: Vec::new(), seen: Default::default() }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn push(&mut self, p: ProblemBuilder) {
        let primary = p.labels.iter().find(|l| l.2).or(p.labels.first());
        // Settings from `defaults` are checked once per host: report each mistake once.
        let key = (primary.map(|l| l.0.clone()), p.message.clone());
        if !self.seen.insert(key) {
            return;
        }
        let (line, column) = primary.map_or((0, 0), |l| self.source.line_col(l.0.start));
        let labels = p
            .labels
            .into_iter()
            .map(|(range, label, is_primary)| {
                let span = miette::SourceSpan::from(range.start..range.end.max(range.start));
                if is_primary {
                    LabeledSpan::new_primary_with_span(Some(label), span)
                } else {
                    LabeledSpan::new_with_span(Some(label), span)
                }
            })
            .collect();
        self.problems.push(Problem {
            message: p.message,
            source_code: NamedSource::new(&self.source.display_name, self.source.text.clone())
                .with_language("HCL"),
            labels,
            help: p.help,
            file: self.source.path.clone(),
            line,
            column,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn count(&self) -> usize {
        self.problems.len()
    }

    pub fn into_problems(self) -> Vec<Problem> {
        let mut problems = self.problems;
        // Report in file order; problems without a position (flags) come first.
        problems.sort_by_key(|p| (p.line, p.column));
        problems
    }
}

/// "did you mean `x`?" for the candidate closest to `input`, if any is close enough.
pub(crate) fn closest<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    // Rank by edit distance counting a swap of two letters as one edit ("hots" → "host"),
    // then by Jaro-Winkler similarity.
    let mut best: Option<(usize, f64, &str)> = None;
    for c in candidates {
        let distance = strsim::damerau_levenshtein(input, c);
        let similarity = strsim::jaro_winkler(input, c);
        let limit = (input.chars().count().min(c.chars().count()) / 3).max(1);
        if distance > limit && similarity < 0.9 {
            continue;
        }
        let better = match best {
            None => true,
            Some((d, s, _)) => distance < d || (distance == d && similarity > s),
        };
        if better {
            best = Some((distance, similarity, c));
        }
    }
    best.map(|(_, _, c)| c)
}

/// A help line: the closest candidate, or else the full list of what is allowed.
pub(crate) fn suggest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
    what: &str,
) -> String {
    match closest(input, candidates.clone()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => {
            let all: Vec<String> = candidates.into_iter().map(|c| format!("`{c}`")).collect();
            if all.is_empty() {
                format!("no {what} is declared")
            } else {
                format!("{what}: {}", all.join(", "))
            }
        }
    }
}
