//! The YAML reader: a recursive-descent parser for block and flow YAML, producing the sops
//! tree the way sops builds it from yaml.v3 nodes.
//!
//! Invariant of the block parsers: a value parser returns with the cursor at the start of a
//! line (or at the end of the input), having consumed its last line including any comment.
//! [`Parser::next_content`] then skips blank and comment lines (collecting the comments) and
//! stops on the first character of the next content line.
//!
//! Comments are placed as sops places yaml.v3's head/line/foot comments: a comment on a
//! content line goes before the entry or item of that line; full-line comments go between
//! items, and when a block closes, yaml.v3's foot-comment rules decide which of the closing
//! blocks gets them (see [`Parser::route_comments`]).

use std::collections::HashMap;

use base64::Engine as _;

use super::resolve::{resolve_plain, Resolved};
use super::YamlError;
use crate::secrets::tree::{Documents, ListItem, Map, MapItem, Scalar, Value};

/// Upper bound on the nodes copied for anchors and aliases (guards against "billion laughs").
const ALIAS_BUDGET: usize = 1_000_000;

/// Deepest nesting of collections a document may have. Real sops files are shallow; the
/// limit keeps the recursive parser, the emitter and the tree walks within any thread's
/// stack, whatever the input.
pub(crate) const MAX_DEPTH: usize = 128;

pub(super) fn parse(text: &str) -> Result<Documents, YamlError> {
    if text.is_empty() {
        return Err(YamlError::Empty);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Line breaks are normalized so the rest of the parser only knows `\n`.
    let normalized;
    let text = if text.contains('\r') {
        normalized = text.replace("\r\n", "\n").replace('\r', "\n");
        normalized.as_str()
    } else {
        text
    };
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        pos: 0,
        anchors: HashMap::new(),
        pending: Vec::new(),
        open: Vec::new(),
        alias_nodes: 0,
        blank_seen: false,
        taken_comment: None,
        flow_depth: 0,
        depth: 0,
    };
    p.stream()
}

#[derive(Debug)]
struct Pending {
    text: String,
    col: usize,
    /// A blank line separates this comment from what came before.
    blank_before: bool,
    /// Depth in `open` of the block this comment was routed to, once a block closed.
    target: Option<usize>,
}

/// What follows, as seen by [`Parser::next_content`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Next {
    Content { indent: usize },
    DocStart,
    DocEnd,
    Eof,
}

/// Where a value sits: after `key:` in a block map at `indent`, after `-` in a block sequence
/// at `indent`, or at the top of a document.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ctx {
    MapValue(usize),
    SeqItem(usize),
    Doc,
}

impl Ctx {
    /// The indentation a nested block or continuation line must exceed.
    fn parent(self) -> isize {
        match self {
            Ctx::MapValue(i) | Ctx::SeqItem(i) => i as isize,
            Ctx::Doc => -1,
        }
    }
}

#[derive(Debug, Default)]
struct Props {
    tag: Option<String>,
    anchor: Option<String>,
    pos: usize,
}

impl Props {
    fn is_empty(&self) -> bool {
        self.tag.is_none() && self.anchor.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    Plain,
    Quoted,
    Block,
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    /// Anchored values with their node count and nesting depth.
    anchors: HashMap<String, (Value, usize, usize)>,
    pending: Vec<Pending>,
    /// The block collections being parsed: (indent, is_sequence).
    open: Vec<(usize, bool)>,
    alias_nodes: usize,
    blank_seen: bool,
    /// Start of a comment already attached by [`Parser::same_line_comment`].
    taken_comment: Option<usize>,
    /// Nesting depth of flow collections at the cursor.
    flow_depth: usize,
    /// Nesting depth of all collections (block and flow) at the cursor.
    depth: usize,
}

/// Nodes in `v`, counting at most `cap + 1` of them (so the count costs no more than the
/// budget it is checked against).
fn node_count_capped(v: &Value, cap: usize) -> usize {
    let mut n = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        n += 1;
        if n > cap {
            return n;
        }
        match v {
            Value::Scalar(_) => {}
            Value::Map(m) => {
                for i in m {
                    n += 1;
                    if let MapItem::Entry { value, .. } = i {
                        stack.push(value);
                    }
                }
            }
            Value::List(l) => {
                for i in l {
                    match i {
                        ListItem::Value(v) => stack.push(v),
                        ListItem::Comment(_) => n += 1,
                    }
                }
            }
        }
    }
    n
}

/// How many collections deep `v` is (a scalar: 0). Values here are at most [`MAX_DEPTH`]
/// deep, which the parser enforces, so the recursion is bounded.
fn nesting(v: &Value) -> usize {
    match v {
        Value::Scalar(_) => 0,
        Value::Map(m) => {
            1 + m
                .iter()
                .map(|i| match i {
                    MapItem::Entry { value, .. } => nesting(value),
                    MapItem::Comment(_) => 0,
                })
                .max()
                .unwrap_or(0)
        }
        Value::List(l) => {
            1 + l
                .iter()
                .map(|i| match i {
                    ListItem::Value(v) => nesting(v),
                    ListItem::Comment(_) => 0,
                })
                .max()
                .unwrap_or(0)
        }
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Map(_) => "a mapping",
        Value::List(_) => "a sequence",
        Value::Scalar(Scalar::Null) => "null",
        Value::Scalar(Scalar::Bool(_)) => "a boolean",
        Value::Scalar(Scalar::Int(_)) => "an integer",
        Value::Scalar(Scalar::Float(_)) => "a float",
        Value::Scalar(Scalar::Time(_)) => "a timestamp",
        Value::Scalar(Scalar::Str(_) | Scalar::Bytes(_)) => "a string",
    }
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn is_flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}')
}

impl<'a> Parser<'a> {
    // ----- positions and errors -------------------------------------------------------------

    fn line_col(&self, pos: usize) -> (usize, usize) {
        let pos = pos.min(self.b.len());
        let before = &self.s[..floor_char(self.s, pos)];
        let line = before.bytes().filter(|&c| c == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    fn syntax(&self, pos: usize, message: impl Into<String>) -> YamlError {
        let (line, column) = self.line_col(pos);
        YamlError::Syntax { line, column, message: message.into() }
    }

    fn duplicate(&self, key: String, pos: usize, first: usize) -> YamlError {
        let (line, column) = self.line_col(pos);
        let (first_line, _) = self.line_col(first);
        YamlError::DuplicateKey { line, column, key, first_line }
    }

    fn bad_indent(&self, pos: usize, what: &'static str) -> YamlError {
        let (line, column) = self.line_col(pos);
        YamlError::BadIndent { line, column, what }
    }

    fn col_of(&self, pos: usize) -> usize {
        let start = self.b[..pos].iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
        self.s[start..pos].chars().count()
    }

    fn at_line_start(&self) -> bool {
        self.pos == 0 || self.b[self.pos - 1] == b'\n'
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.b.get(self.pos + k).copied()
    }

    /// End of line or input at the cursor.
    fn at_eol(&self) -> bool {
        matches!(self.peek(), None | Some(b'\n'))
    }

    /// The byte after the cursor's byte is whitespace, a line break or the end.
    fn followed_by_space(&self, k: usize) -> bool {
        matches!(self.peek_at(k), None | Some(b' ' | b'\t' | b'\n'))
    }

    fn skip_inline_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    fn is_dash_entry(&self) -> bool {
        self.peek() == Some(b'-') && self.followed_by_space(1)
    }

    /// At column 0: `---` or `...` followed by whitespace or the end of the line.
    fn doc_marker_at(&self, pos: usize) -> Option<Next> {
        let rest = &self.b[pos..];
        if rest.len() < 3 || (pos > 0 && self.b[pos - 1] != b'\n') {
            return None;
        }
        let end_ok = matches!(rest.get(3), None | Some(b' ' | b'\t' | b'\n'));
        match &rest[..3] {
            b"---" if end_ok => Some(Next::DocStart),
            b"..." if end_ok => Some(Next::DocEnd),
            _ => None,
        }
    }

    /// Reads the rest of the current line: optional whitespace and comment, then the line
    /// break. Returns the comment text (without `#`).
    fn finish_line(&mut self) -> Result<Option<String>, YamlError> {
        self.skip_inline_ws();
        let comment = if self.peek() == Some(b'#') {
            let start = self.pos + 1;
            while !self.at_eol() {
                self.pos += 1;
            }
            Some(self.s[start..self.pos].to_string())
        } else {
            None
        };
        if !self.at_eol() {
            return Err(self.syntax(self.pos, "unexpected content after the value"));
        }
        if self.peek() == Some(b'\n') {
            self.pos += 1;
        }
        Ok(comment)
    }

    /// From a line start, skips blank and comment lines (their comments become pending) and
    /// stops on the first character of the next content line. Idempotent once there.
    fn next_content(&mut self) -> Result<Next, YamlError> {
        if self.pos >= self.b.len() {
            return Ok(Next::Eof);
        }
        if !self.at_line_start() {
            let indent = self.col_of(self.pos);
            return Ok(Next::Content { indent });
        }
        loop {
            let line_start = self.pos;
            if self.pos >= self.b.len() {
                return Ok(Next::Eof);
            }
            if let Some(marker) = self.doc_marker_at(line_start) {
                return Ok(marker);
            }
            if self.peek() == Some(b'\t') {
                // yaml.v3 refuses a tab at the start of a line, even before a comment.
                let (line, column) = self.line_col(self.pos);
                return Err(YamlError::TabIndent { line, column });
            }
            let mut indent = 0;
            while self.peek() == Some(b' ') {
                self.pos += 1;
                indent += 1;
            }
            let mut tab_at = None;
            while self.peek().is_some_and(is_ws) {
                tab_at.get_or_insert(self.pos);
                self.pos += 1;
            }
            match self.peek() {
                None => return Ok(Next::Eof),
                Some(b'\n') => {
                    self.pos += 1;
                    self.blank_seen = true;
                }
                Some(b'#') => {
                    let col = self.col_of(self.pos);
                    let start = self.pos + 1;
                    while !self.at_eol() {
                        self.pos += 1;
                    }
                    self.pending.push(Pending {
                        text: self.s[start..self.pos].to_string(),
                        col,
                        blank_before: std::mem::take(&mut self.blank_seen),
                        target: None,
                    });
                    if self.peek() == Some(b'\n') {
                        self.pos += 1;
                    }
                }
                Some(_) => {
                    if let Some(at) = tab_at {
                        let (line, column) = self.line_col(at);
                        return Err(YamlError::TabIndent { line, column });
                    }
                    self.blank_seen = false;
                    return Ok(Next::Content { indent });
                }
            }
        }
    }

    // ----- comment placement ------------------------------------------------------------------

    fn take_pending_all(&mut self) -> impl Iterator<Item = String> + '_ {
        self.pending.drain(..).map(|p| p.text)
    }

    /// Decides, when blocks close, which pending comments are foot comments of which closing
    /// block (by depth in `open`), approximating yaml.v3's scanner as sops sees it:
    /// * comments form groups, split at blank lines and where a comment starts in another
    ///   column left of the innermost block's indentation;
    /// * a group ending right before the next token is its head comment if it starts in the
    ///   token's column, or if a blank line precedes it (unless it is the first group);
    /// * the first group not followed by a blank line is a foot comment of the last value,
    ///   so it stays in the innermost block;
    /// * any other group goes to the deepest closing block not indented deeper than it.
    ///
    /// Groups never move back inwards.
    fn route_comments(&mut self, next: Next) {
        if self.pending.iter().all(|p| p.target.is_some()) {
            return;
        }
        let (token_col, next_is_dash) = match next {
            Next::Content { indent } => (Some(indent), self.is_dash_entry()),
            _ => (None, false),
        };
        // The block that continues with the next token (or the top-level block at the end).
        let continuing = match token_col {
            None => 0,
            Some(n) => self
                .open
                .iter()
                .rposition(|&(ind, is_seq)| ind < n || (ind == n && is_seq == next_is_dash))
                .or_else(|| self.open.iter().rposition(|&(ind, _)| ind <= n))
                .unwrap_or(0),
        };
        let innermost = self.open.len().saturating_sub(1);
        let inner_indent = self.open.last().map_or(0, |o| o.0);
        let n = self.pending.len();
        let mut group_starts = Vec::new();
        for i in 0..n {
            let p = &self.pending[i];
            let start_col = group_starts.last().map_or(p.col, |&g: &usize| self.pending[g].col);
            if i == 0 || p.blank_before || (p.col != start_col && p.col < inner_indent) {
                group_starts.push(i);
            }
        }
        let mut last_target = innermost;
        for (g, &start) in group_starts.iter().enumerate() {
            let end = group_starts.get(g + 1).copied().unwrap_or(n);
            let col = self.pending[start].col;
            let by_column = (continuing..self.open.len())
                .rev()
                .find(|&d| self.open[d].0 <= col)
                .unwrap_or(continuing);
            let target = match group_starts.get(g + 1) {
                // Followed by a blank line.
                Some(&next_group) if self.pending[next_group].blank_before => by_column,
                // Split off by a comment in another column.
                Some(_) if g == 0 => innermost,
                Some(_) => by_column,
                // The last group, right before the next token.
                None => match token_col {
                    Some(t) if t == col => continuing,
                    Some(_) if g == 0 => innermost,
                    Some(_) if self.pending[start].blank_before => continuing,
                    _ => by_column,
                },
            };
            let target = target.min(last_target).max(continuing);
            last_target = target;
            for p in &mut self.pending[start..end] {
                p.target = Some(target);
            }
        }
    }

    /// The pending comments that belong to the closing block at the top of `open`.
    fn take_foot(&mut self, next: Next) -> Vec<String> {
        self.route_comments(next);
        let depth = self.open.len() - 1;
        let count = self.pending.iter().take_while(|p| p.target == Some(depth)).count();
        self.pending.drain(..count).map(|p| p.text).collect()
    }

    fn continue_with_pending(&mut self) -> Vec<String> {
        self.take_pending_all().collect()
    }

    // ----- stream and documents --------------------------------------------------------------

    fn stream(&mut self) -> Result<Documents, YamlError> {
        let mut docs: Documents = Vec::new();
        loop {
            let next = self.next_content()?;
            match next {
                Next::Eof => break,
                Next::DocEnd => {
                    self.pos += 3;
                    self.finish_line()?;
                    continue;
                }
                Next::Content { .. } if self.peek() == Some(b'%') && self.col_of(self.pos) == 0 => {
                    let start = self.pos;
                    while !self.at_eol() {
                        self.pos += 1;
                    }
                    let directive: Vec<&str> = self.s[start..self.pos].split_whitespace().collect();
                    // yaml.v3 only reads YAML 1.1 documents.
                    if directive.first() == Some(&"%YAML") && directive.get(1) != Some(&"1.1") {
                        return Err(self.syntax(start, "found incompatible YAML document"));
                    }
                    self.finish_line()?;
                    continue;
                }
                Next::DocStart => {
                    self.pos += 3;
                    let doc = self.document(true)?;
                    let only_comments = doc.iter().all(|i| matches!(i, MapItem::Comment(_)));
                    match docs.last_mut() {
                        // yaml.v3 gives the comments of a document without content to the
                        // document before it.
                        Some(prev) if only_comments => {
                            // ... replacing that document's own trailing comments.
                            while matches!(prev.last(), Some(MapItem::Comment(_))) {
                                prev.pop();
                            }
                            prev.extend(doc);
                            docs.push(Map::new());
                        }
                        _ => docs.push(doc),
                    }
                }
                Next::Content { .. } => docs.push(self.document(false)?),
            }
        }
        if docs.is_empty() {
            return Err(YamlError::NoDocument);
        }
        Ok(docs)
    }

    /// One document; the cursor is after `---` (explicit) or on the first content.
    fn document(&mut self, explicit: bool) -> Result<Map, YamlError> {
        let mut map = Map::new();
        if explicit {
            self.skip_inline_ws();
            if !self.at_eol() && self.peek() != Some(b'#') {
                // Content on the `---` line: a flow mapping, maybe with properties.
                let mut head = Vec::new();
                let start = self.pos;
                let value = self.value(Ctx::Doc, &mut head)?;
                let Value::Map(m) = value else {
                    let (line, column) = self.line_col(start);
                    return Err(YamlError::TopLevelNotMapping {
                        line,
                        column,
                        found: kind_name(&value),
                    });
                };
                map.extend(head.into_iter().map(MapItem::Comment));
                map.extend(m);
            } else if let Some(c) = self.finish_line()? {
                self.pending.push(Pending { text: c, col: 0, blank_before: false, target: None });
            }
        }
        if map.is_empty() {
            let next = self.next_content()?;
            if let Next::Content { .. } = next {
                let start = self.pos;
                let mut head = Vec::new();
                let value = self.value(Ctx::Doc, &mut head)?;
                match value {
                    Value::Map(m) => {
                        map.extend(head.into_iter().map(MapItem::Comment));
                        map.extend(m);
                    }
                    other => {
                        let (line, column) = self.line_col(start);
                        return Err(YamlError::TopLevelNotMapping {
                            line,
                            column,
                            found: kind_name(&other),
                        });
                    }
                }
            }
        }
        // Whatever follows up to the next document belongs to this one.
        let next = self.next_content()?;
        if let Next::Content { .. } = next {
            return Err(self.bad_indent(self.pos, "a top-level entry"));
        }
        map.extend(self.take_pending_all().map(MapItem::Comment));
        Ok(map)
    }

    // ----- block structure ------------------------------------------------------------------

    /// A node starting at the cursor, which is on the first character of a content line.
    fn block_node(
        &mut self,
        ctx: Ctx,
        props: Props,
        head: &mut Vec<String>,
    ) -> Result<Value, YamlError> {
        let col = self.col_of(self.pos);
        if self.is_dash_entry() {
            let v = self.block_seq(col)?;
            return self.register(props, v);
        }
        if (self.peek() == Some(b'?') && self.followed_by_space(1)) || self.line_has_key()? {
            let v = self.block_map(col)?;
            return self.register(props, v);
        }
        self.inline_node(ctx, props, head)
    }

    fn register(&mut self, props: Props, v: Value) -> Result<Value, YamlError> {
        if let Some(name) = props.anchor {
            // Keeping the anchored copy costs as much as expanding it once.
            let n = node_count_capped(&v, ALIAS_BUDGET - self.alias_nodes);
            self.alias_nodes += n;
            if self.alias_nodes > ALIAS_BUDGET {
                return Err(self.syntax(props.pos, "document contains excessive aliasing"));
            }
            let depth = nesting(&v);
            self.anchors.insert(name, (v.clone(), n, depth));
        }
        Ok(v)
    }

    /// Enters a collection at `pos`, refusing to go deeper than [`MAX_DEPTH`].
    fn enter(&mut self, pos: usize) -> Result<(), YamlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let (line, column) = self.line_col(pos);
            return Err(YamlError::TooDeep { line, column, max: MAX_DEPTH });
        }
        Ok(())
    }

    fn block_map(&mut self, indent: usize) -> Result<Value, YamlError> {
        self.enter(self.pos)?;
        let v = self.block_map_items(indent);
        self.depth -= 1;
        v
    }

    fn block_seq(&mut self, indent: usize) -> Result<Value, YamlError> {
        self.enter(self.pos)?;
        let v = self.block_seq_items(indent);
        self.depth -= 1;
        v
    }

    fn block_map_items(&mut self, indent: usize) -> Result<Value, YamlError> {
        self.open.push((indent, false));
        let mut items: Map =
            self.continue_with_pending().into_iter().map(MapItem::Comment).collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        loop {
            let key_pos = self.pos;
            let key = self.map_key(indent)?;
            if let Some(&first) = seen.get(&key) {
                return Err(self.duplicate(key, key_pos, first));
            }
            seen.insert(key.clone(), key_pos);
            let is_merge = key == "<<" && self.b[key_pos] == b'<';
            let mut head = Vec::new();
            let value_pos = self.pos;
            let value = self.value(Ctx::MapValue(indent), &mut head)?;
            if is_merge {
                self.check_merge(&value, value_pos)?;
            }
            items.extend(head.into_iter().map(MapItem::Comment));
            items.push(MapItem::Entry { key, value });

            let next = self.next_content()?;
            match next {
                Next::Content { indent: n } if n == indent && !self.is_dash_entry() => {
                    items.extend(self.continue_with_pending().into_iter().map(MapItem::Comment));
                }
                Next::Content { indent: n } if n > indent => {
                    return Err(self.bad_indent(self.pos, "a mapping entry"));
                }
                Next::Content { indent: n } if n == indent => {
                    return Err(self.syntax(self.pos, "expected a key, found a sequence entry"));
                }
                _ => {
                    items.extend(self.take_foot(next).into_iter().map(MapItem::Comment));
                    self.open.pop();
                    return Ok(Value::Map(items));
                }
            }
        }
    }

    fn check_merge(&self, value: &Value, pos: usize) -> Result<(), YamlError> {
        let ok = match value {
            Value::Map(_) => true,
            Value::List(l) => l.iter().all(|i| match i {
                ListItem::Value(v) => matches!(v, Value::Map(_)),
                ListItem::Comment(_) => true,
            }),
            Value::Scalar(_) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(self.syntax(
                pos,
                "map merge requires a mapping or a sequence of mappings as the value of `<<`",
            ))
        }
    }

    fn block_seq_items(&mut self, indent: usize) -> Result<Value, YamlError> {
        self.open.push((indent, true));
        let mut items: Vec<ListItem> =
            self.continue_with_pending().into_iter().map(ListItem::Comment).collect();
        loop {
            // The cursor is on a `-`; libyaml does not take a tab as the space after it.
            self.pos += 1;
            let ws_end = self.b[self.pos..]
                .iter()
                .position(|&c| !is_ws(c))
                .map_or(self.b.len(), |i| self.pos + i);
            if let Some(i) = self.b[self.pos..ws_end].iter().position(|&c| c == b'\t') {
                let (line, column) = self.line_col(self.pos + i);
                return Err(YamlError::TabIndent { line, column });
            }
            let mut head = Vec::new();
            let mut value = self.value(Ctx::SeqItem(indent), &mut head)?;
            items.extend(head.into_iter().map(ListItem::Comment));
            if let Value::Map(m) = &mut value {
                // Comments at the start of a map item are head comments of the item.
                let lead = m.iter().take_while(|i| matches!(i, MapItem::Comment(_))).count();
                if lead < m.len() {
                    for item in m.drain(..lead) {
                        if let MapItem::Comment(c) = item {
                            items.push(ListItem::Comment(c));
                        }
                    }
                }
            }
            items.push(ListItem::Value(value));

            let next = self.next_content()?;
            match next {
                Next::Content { indent: n } if n == indent && self.is_dash_entry() => {
                    items.extend(self.continue_with_pending().into_iter().map(ListItem::Comment));
                }
                Next::Content { indent: n } if n > indent => {
                    return Err(self.bad_indent(self.pos, "a sequence entry"));
                }
                _ => {
                    items.extend(self.take_foot(next).into_iter().map(ListItem::Comment));
                    self.open.pop();
                    return Ok(Value::List(items));
                }
            }
        }
    }

    /// Reads a block-map key at the cursor and the `:` after it.
    fn map_key(&mut self, indent: usize) -> Result<String, YamlError> {
        let start = self.pos;
        if self.peek() == Some(b'?') && self.followed_by_space(1) {
            // Explicit key: `? key` then `: value` on the next line at the same indent.
            self.pos += 1;
            let mut head = Vec::new();
            let key = match self.value(Ctx::MapValue(indent), &mut head)? {
                Value::Scalar(Scalar::Str(s)) => s,
                other => {
                    let (line, column) = self.line_col(start);
                    return Err(YamlError::NonStringKey { line, column, found: kind_name(&other) });
                }
            };
            self.pending.splice(
                0..0,
                head.into_iter().map(|text| Pending {
                    text,
                    col: indent,
                    blank_before: false,
                    target: None,
                }),
            );
            let next = self.next_content()?;
            if next != (Next::Content { indent }) || self.peek() != Some(b':') {
                return Err(self.syntax(self.pos, "expected `:` after an explicit `?` key"));
            }
            self.pos += 1;
            return Ok(key);
        }
        let key = self.key_scalar()?;
        self.skip_inline_ws();
        if self.peek() != Some(b':') {
            return Err(self.syntax(start, "expected a `key: value` entry"));
        }
        self.pos += 1;
        Ok(key)
    }

    /// A key: properties, then a quoted, plain or alias scalar that must be a string.
    fn key_scalar(&mut self) -> Result<String, YamlError> {
        let start = self.pos;
        let props = self.props()?;
        let non_string = |p: &Self, found| {
            let (line, column) = p.line_col(start);
            YamlError::NonStringKey { line, column, found }
        };
        let value = match self.peek() {
            Some(b'"' | b'\'') => {
                let s = self.quoted(false)?;
                self.typed(s, Style::Quoted, &props)?
            }
            Some(b'*') => self.alias()?,
            Some(b'[' | b'{') => {
                let v = self.flow_node(&mut Vec::new())?;
                return Err(non_string(self, kind_name(&v)));
            }
            _ => {
                if self.peek() != Some(b':') {
                    self.check_plain_start()?;
                }
                let s = self.plain_line(false);
                if s.is_empty() && props.is_empty() {
                    return Err(non_string(self, "null"));
                }
                self.typed(s, Style::Plain, &props)?
            }
        };
        let value = self.register(props, value)?;
        match value {
            Value::Scalar(Scalar::Str(s)) => Ok(s),
            other => Err(non_string(self, kind_name(&other))),
        }
    }

    /// Does the line at the cursor hold an implicit key (`key: ...`)?
    fn line_has_key(&mut self) -> Result<bool, YamlError> {
        let save = self.pos;
        let found = self.scan_key();
        self.pos = save;
        Ok(found)
    }

    fn scan_key(&mut self) -> bool {
        // Properties.
        while let Some(b'&' | b'!') = self.peek() {
            while self.peek().is_some_and(|c| !is_ws(c) && c != b'\n') {
                self.pos += 1;
            }
            self.skip_inline_ws();
        }
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => {
                self.pos += 1;
                loop {
                    match self.peek() {
                        None | Some(b'\n') => return false,
                        Some(b'\\') if q == b'"' => self.pos += 2,
                        Some(c) if c == q => {
                            if q == b'\'' && self.peek_at(1) == Some(b'\'') {
                                self.pos += 2;
                            } else {
                                self.pos += 1;
                                break;
                            }
                        }
                        Some(_) => self.pos += 1,
                    }
                }
                self.skip_inline_ws();
                self.peek() == Some(b':') && self.followed_by_space(1)
            }
            Some(b'[' | b'{') => {
                let open = self.peek();
                let close = if open == Some(b'[') { b']' } else { b'}' };
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    if c == b'\n' {
                        return false;
                    }
                    if Some(c) == open {
                        depth += 1;
                    } else if c == close {
                        depth -= 1;
                        if depth == 0 {
                            self.pos += 1;
                            break;
                        }
                    }
                    self.pos += 1;
                }
                self.skip_inline_ws();
                self.peek() == Some(b':')
            }
            _ => {
                if self.peek() == Some(b'#') {
                    return false;
                }
                while let Some(c) = self.peek() {
                    match c {
                        b'\n' => return false,
                        b':' if self.followed_by_space(1) => return true,
                        b'#' if self.pos > 0 && is_ws(self.b[self.pos - 1]) => return false,
                        _ => self.pos += 1,
                    }
                }
                false
            }
        }
    }

    /// The value after `key:`, after `-`, or at the top of a document (cursor right after
    /// the indicator). Comments that must precede the entry or item go to `head`.
    fn value(&mut self, ctx: Ctx, head: &mut Vec<String>) -> Result<Value, YamlError> {
        self.skip_inline_ws();
        let props = self.props()?;
        self.skip_inline_ws();
        if !(self.at_eol() || self.peek() == Some(b'#')) {
            return self.inline_node(ctx, props, head);
        }
        let line_comment = self.finish_line()?;
        let next = self.next_content()?;
        let parent = ctx.parent();
        let nested = match next {
            Next::Content { indent } => {
                indent as isize > parent
                    || (matches!(ctx, Ctx::MapValue(_))
                        && indent as isize == parent
                        && self.is_dash_entry())
            }
            _ => false,
        };
        if !nested {
            head.extend(line_comment);
            return self.empty_scalar(props);
        }
        let is_collection = self.is_dash_entry()
            || (self.peek() == Some(b'?') && self.followed_by_space(1))
            || self.line_has_key()?;
        if let Some(c) = line_comment {
            if is_collection && !props.is_empty() {
                // yaml.v3 gives the comment to the collection node that starts on that line.
                self.pending
                    .insert(0, Pending { text: c, col: 0, blank_before: false, target: None });
            } else {
                head.push(c);
            }
        }
        if matches!(ctx, Ctx::SeqItem(_)) || !is_collection {
            head.extend(self.take_pending_all());
        }
        self.block_node(ctx, props, head)
    }

    fn empty_scalar(&mut self, props: Props) -> Result<Value, YamlError> {
        let v = self.typed(String::new(), Style::Plain, &props)?;
        self.register(props, v)
    }

    /// A node that starts on the current line at the cursor.
    fn inline_node(
        &mut self,
        ctx: Ctx,
        props: Props,
        head: &mut Vec<String>,
    ) -> Result<Value, YamlError> {
        let start = self.pos;
        let col = self.col_of(start);
        match self.peek() {
            Some(b'|' | b'>') => {
                let parent = match ctx {
                    Ctx::MapValue(i) | Ctx::SeqItem(i) => i as isize,
                    Ctx::Doc => -1,
                };
                let (s, comment) = self.block_scalar(parent)?;
                head.extend(comment);
                let v = self.typed(s, Style::Block, &props)?;
                return self.register(props, v);
            }
            Some(b'-') if self.followed_by_space(1) => {
                return match ctx {
                    Ctx::SeqItem(_) | Ctx::Doc => {
                        let v = self.block_seq(col)?;
                        self.register(props, v)
                    }
                    Ctx::MapValue(_) => Err(self.syntax(
                        start,
                        "a sequence entry cannot start on the line of its key; put it on the next line",
                    )),
                };
            }
            _ => {}
        }
        if (self.peek() == Some(b'?') && self.followed_by_space(1)) || self.line_has_key()? {
            return match ctx {
                Ctx::SeqItem(_) | Ctx::Doc => {
                    // A compact mapping: `- key: value`; properties belong to its first key.
                    self.pos = if props.is_empty() { start } else { props.pos };
                    let col = self.col_of(self.pos);
                    self.block_map(col)
                }
                Ctx::MapValue(_) => {
                    Err(self.syntax(start, "mapping values are not allowed in this context"))
                }
            };
        }
        let value = match self.peek() {
            Some(b'[' | b'{') => {
                let mut inner = Vec::new();
                let v = self.flow_node(&mut inner)?;
                head.extend(inner);
                let comment = self.finish_line()?;
                match (ctx, comment, v) {
                    (Ctx::MapValue(_), Some(c), Value::Map(mut m)) => {
                        m.insert(0, MapItem::Comment(c));
                        Value::Map(m)
                    }
                    (Ctx::MapValue(_), Some(c), Value::List(mut l)) => {
                        l.insert(0, ListItem::Comment(c));
                        Value::List(l)
                    }
                    (_, c, v) => {
                        head.extend(c);
                        v
                    }
                }
            }
            Some(b'*') => {
                let v = self.alias()?;
                head.extend(self.finish_line()?);
                if !props.is_empty() {
                    return Err(self.syntax(props.pos, "an alias cannot have a tag or anchor"));
                }
                v
            }
            Some(b'"' | b'\'') => {
                let s = self.quoted(true)?;
                head.extend(self.finish_line()?);
                self.typed(s, Style::Quoted, &props)?
            }
            _ => {
                let s = self.plain_block(ctx.parent())?;
                head.extend(self.finish_line()?);
                self.typed_at(s, Style::Plain, &props, start)?
            }
        };
        self.register(props, value)
    }

    // ----- node properties, aliases, typing -------------------------------------------------

    fn props(&mut self) -> Result<Props, YamlError> {
        let mut props = Props { pos: self.pos, ..Props::default() };
        loop {
            match self.peek() {
                Some(b'!') => {
                    let start = self.pos;
                    if self.peek_at(1) == Some(b'<') {
                        while self.peek().is_some_and(|c| c != b'>' && c != b'\n') {
                            self.pos += 1;
                        }
                        if self.peek() == Some(b'>') {
                            self.pos += 1;
                        }
                    } else {
                        let flow = self.flow_depth > 0;
                        while self.peek().is_some_and(|c| {
                            c.is_ascii_alphanumeric()
                                || b"-_;/?:@&=+$.!~*'()%#".contains(&c)
                                || (!flow && b",[]".contains(&c))
                        }) {
                            self.pos += 1;
                        }
                    }
                    if props.tag.is_some() {
                        return Err(self.syntax(start, "a node can only have one tag"));
                    }
                    props.tag = Some(self.s[start..self.pos].to_string());
                }
                Some(b'&') => {
                    self.pos += 1;
                    let start = self.pos;
                    self.anchor_name()?;
                    if props.anchor.is_some() {
                        return Err(self.syntax(start - 1, "a node can only have one anchor"));
                    }
                    props.anchor = Some(self.s[start..self.pos].to_string());
                }
                _ => return Ok(props),
            }
            self.skip_inline_ws();
        }
    }

    /// An anchor or alias name as libyaml reads it: letters, digits, `_` and `-`, followed
    /// by whitespace or an indicator.
    fn anchor_name(&mut self) -> Result<(), YamlError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
            self.pos += 1;
        }
        let ends_well = matches!(
            self.peek(),
            None | Some(
                b' ' | b'\t' | b'\n' | b'?' | b':' | b',' | b']' | b'}' | b'%' | b'@' | b'`'
            )
        );
        if self.pos == start || !ends_well {
            return Err(self.syntax(
                self.pos,
                "an anchor or alias name may only contain letters, digits, `_` and `-`",
            ));
        }
        Ok(())
    }

    fn alias(&mut self) -> Result<Value, YamlError> {
        let at = self.pos;
        self.pos += 1;
        let start = self.pos;
        self.anchor_name()?;
        let name = &self.s[start..self.pos];
        let Some((value, n, depth)) = self.anchors.get(name) else {
            let (line, column) = self.line_col(at);
            return Err(YamlError::UnknownAnchor { line, column, name: name.to_string() });
        };
        self.alias_nodes += n;
        if self.alias_nodes > ALIAS_BUDGET {
            return Err(self.syntax(at, "document contains excessive aliasing"));
        }
        // An alias inside nested collections must not make the tree deeper than the limit.
        if self.depth + depth > MAX_DEPTH {
            let (line, column) = self.line_col(at);
            return Err(YamlError::TooDeep { line, column, max: MAX_DEPTH });
        }
        Ok(value.clone())
    }

    fn typed(&self, s: String, style: Style, props: &Props) -> Result<Value, YamlError> {
        self.typed_at(s, style, props, props.pos)
    }

    /// Types a scalar as yaml.v3 decodes it into `interface{}`.
    fn typed_at(
        &self,
        s: String,
        style: Style,
        props: &Props,
        pos: usize,
    ) -> Result<Value, YamlError> {
        let tag = props.tag.as_deref().map(|t| {
            t.strip_prefix("!<tag:yaml.org,2002:")
                .and_then(|t| t.strip_suffix('>'))
                .map_or_else(|| t.to_string(), |t| format!("!!{t}"))
        });
        let scalar = match tag.as_deref() {
            None | Some("!") if style == Style::Plain => self.resolved(s, pos)?,
            None | Some("!" | "!!str") => Scalar::Str(s),
            Some("!!binary") => {
                let clean: String = s.chars().filter(|&c| c != '\n').collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(clean.trim_end_matches(' '))
                    .map_err(|_| {
                        let (line, column) = self.line_col(pos);
                        YamlError::Tag {
                            line,
                            column,
                            message: "!!binary value contains invalid base64 data".into(),
                        }
                    })?;
                match String::from_utf8(bytes) {
                    Ok(s) => Scalar::Str(s),
                    Err(e) => Scalar::Bytes(e.into_bytes()),
                }
            }
            Some(t @ ("!!int" | "!!float" | "!!bool" | "!!null" | "!!timestamp")) => {
                let v = self.resolved(s, pos)?;
                let ok = matches!(
                    (t, &v),
                    ("!!int", Scalar::Int(_))
                        | ("!!float", Scalar::Float(_))
                        | ("!!bool", Scalar::Bool(_))
                        | ("!!null", Scalar::Null)
                        | ("!!timestamp", Scalar::Time(_))
                );
                match (t, v) {
                    (_, v) if ok => v,
                    ("!!float", Scalar::Int(i)) => Scalar::Float(i as f64),
                    (t, v) => {
                        let (line, column) = self.line_col(pos);
                        return Err(YamlError::Tag {
                            line,
                            column,
                            message: format!(
                                "cannot decode {} as {t}",
                                kind_name(&Value::Scalar(v))
                            ),
                        });
                    }
                }
            }
            // Unknown tags: yaml.v3 keeps the text as a string.
            Some(_) => Scalar::Str(s),
        };
        Ok(Value::Scalar(scalar))
    }

    fn resolved(&self, s: String, pos: usize) -> Result<Scalar, YamlError> {
        Ok(match resolve_plain(&s) {
            Resolved::Null => Scalar::Null,
            Resolved::Bool(b) => Scalar::Bool(b),
            Resolved::Int(i) => Scalar::Int(i),
            Resolved::Uint(_) => {
                let (line, column) = self.line_col(pos);
                return Err(YamlError::IntegerOutOfRange { line, column });
            }
            Resolved::Float(f) => Scalar::Float(f),
            Resolved::Time(t) => Scalar::Time(t),
            Resolved::Str => Scalar::Str(s),
        })
    }

    // ----- scalars ----------------------------------------------------------------------------

    /// Rejects what libyaml cannot start a plain scalar with (an indicator character).
    fn check_plain_start(&self) -> Result<(), YamlError> {
        if let Some(c) = self.peek() {
            let bad = b",[]{}#&*!|>'\"%@`".contains(&c)
                || (matches!(c, b'?' | b':' | b'-') && self.followed_by_space(1));
            if bad {
                return Err(
                    self.syntax(self.pos, "found a character that cannot start a plain scalar")
                );
            }
        }
        Ok(())
    }

    /// A plain scalar on the current line only (keys): ends at `: `, ` #` or the line end.
    fn plain_line(&mut self, flow: bool) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            match c {
                b'\n' => break,
                b':' if self.followed_by_space(1)
                    || (flow && self.peek_at(1).is_some_and(is_flow_indicator)) =>
                {
                    break
                }
                b'#' if self.pos > start && is_ws(self.b[self.pos - 1]) => break,
                c if flow && is_flow_indicator(c) => break,
                _ => self.pos += 1,
            }
        }
        let s = self.s[start..self.pos].trim_end_matches([' ', '\t']);
        s.to_string()
    }

    /// A plain scalar in block context, possibly continued on more-indented lines. Leaves the
    /// cursor on its last line (before a comment or the line break).
    fn plain_block(&mut self, parent: isize) -> Result<String, YamlError> {
        self.check_plain_start()?;
        let mut out = self.plain_line(false);
        loop {
            if self.peek() == Some(b':') && self.followed_by_space(1) {
                return Err(self.syntax(self.pos, "mapping values are not allowed in this context"));
            }
            if !self.at_eol() {
                // Stopped at a comment.
                return Ok(out);
            }
            // Look for a continuation line.
            let save = self.pos;
            let mut p = self.pos;
            let mut breaks = 0;
            let cont = loop {
                if p >= self.b.len() {
                    break None;
                }
                // p is at a '\n'
                p += 1;
                breaks += 1;
                let line_start = p;
                let mut indent = 0;
                while self.b.get(p) == Some(&b' ') {
                    p += 1;
                    indent += 1;
                }
                while self.b.get(p).is_some_and(|&c| is_ws(c)) {
                    p += 1;
                }
                match self.b.get(p) {
                    None => break None,
                    Some(b'\n') => continue,
                    Some(b'#') => break None,
                    Some(_) => {
                        if indent as isize <= parent || self.doc_marker_at(line_start).is_some() {
                            break None;
                        }
                        break Some(p);
                    }
                }
            };
            let Some(p) = cont else {
                self.pos = save;
                return Ok(out);
            };
            self.pos = p;
            let line = self.plain_line(false);
            if line.is_empty() {
                // A continuation line starting with `: ` or ` #`.
                if self.peek() == Some(b':') {
                    return Err(
                        self.syntax(self.pos, "mapping values are not allowed in this context")
                    );
                }
                self.pos = save;
                return Ok(out);
            }
            if breaks == 1 {
                out.push(' ');
            } else {
                out.extend(std::iter::repeat_n('\n', breaks - 1));
            }
            out.push_str(&line);
        }
    }

    /// A single- or double-quoted scalar at the cursor. `multi_line` allows line folding.
    fn quoted(&mut self, multi_line: bool) -> Result<String, YamlError> {
        let open = self.pos;
        let q = self.b[open];
        let what = if q == b'"' { "double-quoted" } else { "single-quoted" };
        let unterminated = |p: &Self| {
            let (line, column) = p.line_col(open);
            YamlError::Unterminated { line, column, what }
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(unterminated(self));
            };
            match c {
                b'\'' if q == b'\'' => {
                    if self.peek_at(1) == Some(b'\'') {
                        out.push('\'');
                        self.pos += 2;
                    } else {
                        self.pos += 1;
                        return Ok(out);
                    }
                }
                b'"' if q == b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' if q == b'"' => {
                    if self.peek_at(1) == Some(b'\n') {
                        // Escaped line break: join without a space.
                        if !multi_line {
                            return Err(unterminated(self));
                        }
                        self.pos += 2;
                        self.skip_folded_lines(&mut out, false)?;
                    } else {
                        self.escape(&mut out)?;
                    }
                }
                b'\n' => {
                    if !multi_line {
                        return Err(unterminated(self));
                    }
                    let trimmed = out.trim_end_matches([' ', '\t']).len();
                    out.truncate(trimmed);
                    self.pos += 1;
                    self.skip_folded_lines(&mut out, true)?;
                }
                _ => {
                    let ch = self.s[self.pos..].chars().next().unwrap_or('\u{fffd}');
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    /// After a line break inside a quoted scalar: empty lines become `\n`, a single break a
    /// space (if `fold`), and the next line's leading whitespace is dropped.
    fn skip_folded_lines(&mut self, out: &mut String, fold: bool) -> Result<(), YamlError> {
        let mut empty = 0;
        loop {
            if self.doc_marker_at(self.pos).is_some() {
                return Err(self.syntax(self.pos, "found a document marker inside a quoted string"));
            }
            self.skip_inline_ws();
            if self.peek() == Some(b'\n') {
                empty += 1;
                self.pos += 1;
            } else {
                break;
            }
        }
        if empty > 0 {
            out.extend(std::iter::repeat_n('\n', empty));
        } else if fold {
            out.push(' ');
        }
        Ok(())
    }

    fn escape(&mut self, out: &mut String) -> Result<(), YamlError> {
        let at = self.pos;
        let Some(c) = self.peek_at(1) else {
            return Err(self.syntax(at, "unterminated escape sequence"));
        };
        self.pos += 2;
        let simple = match c {
            b'0' => Some('\0'),
            b'a' => Some('\x07'),
            b'b' => Some('\x08'),
            b't' | b'\t' => Some('\t'),
            b'n' => Some('\n'),
            b'v' => Some('\x0b'),
            b'f' => Some('\x0c'),
            b'r' => Some('\r'),
            b'e' => Some('\x1b'),
            b' ' => Some(' '),
            b'"' => Some('"'),
            b'\\' => Some('\\'),
            b'N' => Some('\u{85}'),
            b'_' => Some('\u{a0}'),
            b'L' => Some('\u{2028}'),
            b'P' => Some('\u{2029}'),
            _ => None,
        };
        if let Some(ch) = simple {
            out.push(ch);
            return Ok(());
        }
        let len = match c {
            b'x' => 2,
            b'u' => 4,
            b'U' => 8,
            _ => return Err(self.syntax(at, "unknown escape sequence in a double-quoted string")),
        };
        let hex = self.s.get(self.pos..self.pos + len).unwrap_or("");
        let code = (hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(hex, 16).ok())
            .flatten()
            .ok_or_else(|| self.syntax(at, "invalid hexadecimal escape sequence"))?;
        let ch = char::from_u32(code)
            .ok_or_else(|| self.syntax(at, "escape sequence is not a valid Unicode character"))?;
        out.push(ch);
        self.pos += len;
        Ok(())
    }

    /// A literal (`|`) or folded (`>`) block scalar; the cursor is on the indicator. Returns
    /// the text and the comment of the header line; ends at the start of the next line.
    fn block_scalar(&mut self, parent: isize) -> Result<(String, Option<String>), YamlError> {
        let literal = self.b[self.pos] == b'|';
        self.pos += 1;
        let mut chomp = 0i8; // -1 strip, 0 clip, 1 keep
        let mut explicit: Option<usize> = None;
        for _ in 0..2 {
            match self.peek() {
                Some(b'-') if chomp == 0 => {
                    chomp = -1;
                    self.pos += 1;
                }
                Some(b'+') if chomp == 0 => {
                    chomp = 1;
                    self.pos += 1;
                }
                Some(d @ b'1'..=b'9') if explicit.is_none() => {
                    explicit = Some(usize::from(d - b'0'));
                    self.pos += 1;
                }
                _ => {}
            }
        }
        if !(self.at_eol() || self.peek().is_some_and(is_ws)) {
            return Err(self.syntax(self.pos, "invalid block scalar header"));
        }
        let comment = self.finish_line()?;
        let base = parent.max(0) as usize;
        let min_indent = if parent < 0 { 0 } else { base + 1 };
        let mut indent = explicit.map(|m| if parent < 0 { m } else { base + m });

        // Collect raw lines.
        let mut lines: Vec<&str> = Vec::new();
        let mut max_leading_empty = 0;
        let mut ends_with_break = true;
        loop {
            if self.pos >= self.b.len() || self.doc_marker_at(self.pos).is_some() {
                break;
            }
            let line_end = self.b[self.pos..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(self.b.len(), |i| self.pos + i);
            let line = &self.s[self.pos..line_end];
            let spaces = line.bytes().take_while(|&c| c == b' ').count();
            if line.as_bytes().get(spaces) == Some(&b'\t') && indent.is_none_or(|i| spaces < i) {
                let (l, column) = self.line_col(self.pos + spaces);
                return Err(YamlError::TabIndent { line: l, column });
            }
            let blank = spaces == line.len();
            match indent {
                None if blank => {
                    max_leading_empty = max_leading_empty.max(spaces);
                }
                None => {
                    if spaces < min_indent {
                        break;
                    }
                    if spaces < max_leading_empty {
                        // libyaml takes the widest leading blank line as the indentation, so
                        // a less indented first text line ends the (empty) scalar.
                        indent = Some(max_leading_empty);
                        break;
                    }
                    indent = Some(spaces);
                }
                Some(ind) => {
                    if !blank && spaces < ind {
                        break;
                    }
                }
            }
            lines.push(line);
            ends_with_break = line_end < self.b.len();
            self.pos = if ends_with_break { line_end + 1 } else { line_end };
        }
        // Trailing lines that are blank (relative to nothing) are kept for chomping only.
        let ind = indent.unwrap_or(max_leading_empty.max(min_indent));
        let content: Vec<&str> = lines.iter().map(|l| l.get(ind..).unwrap_or("")).collect();
        let last_text = content.iter().rposition(|l| !l.is_empty());
        let body = match last_text {
            Some(i) => &content[..=i],
            None => &content[..0],
        };
        let trailing_breaks = content.len() - body.len();
        let mut out = String::new();
        if literal {
            for (i, l) in body.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(l);
            }
        } else {
            let mut prev_more_indented = false;
            let mut started = false;
            let mut empties = 0;
            for l in body {
                if l.is_empty() {
                    empties += 1;
                    continue;
                }
                let more = l.starts_with([' ', '\t']);
                if !started {
                    out.extend(std::iter::repeat_n('\n', empties));
                    started = true;
                } else if !more && !prev_more_indented {
                    if empties == 0 {
                        out.push(' ');
                    } else {
                        out.extend(std::iter::repeat_n('\n', empties));
                    }
                } else {
                    out.extend(std::iter::repeat_n('\n', empties + 1));
                }
                empties = 0;
                out.push_str(l);
                prev_more_indented = more;
            }
        }
        match (chomp, last_text) {
            (_, None) if chomp == 1 => out.extend(std::iter::repeat_n('\n', content.len())),
            (_, None) => {}
            (-1, _) => {}
            // The last text line ends the input without a line break.
            (_, Some(i)) if i + 1 == content.len() && !ends_with_break => {}
            (0, _) => out.push('\n'),
            _ => out.extend(std::iter::repeat_n('\n', trailing_breaks + 1)),
        }
        Ok((out, comment))
    }

    // ----- flow collections -------------------------------------------------------------------

    /// Skips whitespace, line breaks and comments inside a flow collection.
    fn flow_ws(&mut self, comments: &mut Vec<String>) -> Result<(), YamlError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n') => self.pos += 1,
                Some(b'#')
                    if self.pos == 0 || matches!(self.b[self.pos - 1], b' ' | b'\t' | b'\n') =>
                {
                    let start = self.pos + 1;
                    while !self.at_eol() {
                        self.pos += 1;
                    }
                    if self.taken_comment != Some(start - 1) {
                        comments.push(self.s[start..self.pos].to_string());
                    }
                }
                _ => {
                    if self.doc_marker_at(self.pos).is_some() {
                        return Err(self.syntax(self.pos, "unterminated flow collection"));
                    }
                    return Ok(());
                }
            }
        }
    }

    /// After a flow item: a comment on the same line (after an optional `,`) is a line
    /// comment of the item, which sops puts before it.
    fn same_line_comment(&mut self) -> Option<String> {
        let mut p = self.pos;
        while self.b.get(p).is_some_and(|&c| is_ws(c)) {
            p += 1;
        }
        if self.b.get(p) == Some(&b',') {
            p += 1;
            while self.b.get(p).is_some_and(|&c| is_ws(c)) {
                p += 1;
            }
        }
        if self.b.get(p) != Some(&b'#') || !is_ws(self.b[p - 1]) {
            return None;
        }
        let end = self.b[p..].iter().position(|&c| c == b'\n').map_or(self.b.len(), |i| p + i);
        // flow_ws will skip this comment instead of collecting it again.
        self.taken_comment = Some(p);
        Some(self.s[p + 1..end].to_string())
    }

    /// A node inside (or starting) a flow collection.
    fn flow_node(&mut self, comments: &mut Vec<String>) -> Result<Value, YamlError> {
        let props = self.props()?;
        self.flow_ws(comments)?;
        let start = self.pos;
        let v = match self.peek() {
            Some(b'[') => self.flow_seq()?,
            Some(b'{') => self.flow_map()?,
            Some(b'*') if props.is_empty() => return self.alias(),
            Some(b'"' | b'\'') => {
                let s = self.quoted(true)?;
                self.typed(s, Style::Quoted, &props)?
            }
            None => return Err(self.syntax(start, "unterminated flow collection")),
            Some(b',' | b']' | b'}') => {
                return Err(self.syntax(start, "did not find expected node content"))
            }
            _ => {
                let s = self.plain_flow()?;
                self.typed_at(s, Style::Plain, &props, start)?
            }
        };
        self.register(props, v)
    }

    fn plain_flow(&mut self) -> Result<String, YamlError> {
        let mut out = String::new();
        loop {
            let part = self.plain_line(true);
            if !out.is_empty() && !part.is_empty() {
                out.push(' ');
            }
            out.push_str(&part);
            // Continue across a line break if the next line goes on with text.
            if self.peek() != Some(b'\n') {
                return Ok(out);
            }
            let save = self.pos;
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n')) {
                self.pos += 1;
            }
            match self.peek() {
                Some(c) if !is_flow_indicator(c) && c != b'#' && c != b':' => {}
                _ => {
                    self.pos = save;
                    return Ok(out);
                }
            }
        }
    }

    fn flow_seq(&mut self) -> Result<Value, YamlError> {
        self.enter(self.pos)?;
        self.flow_depth += 1;
        let v = self.flow_seq_items();
        self.flow_depth -= 1;
        self.depth -= 1;
        v
    }

    fn flow_map(&mut self) -> Result<Value, YamlError> {
        self.enter(self.pos)?;
        self.flow_depth += 1;
        let v = self.flow_map_items();
        self.flow_depth -= 1;
        self.depth -= 1;
        v
    }

    fn flow_seq_items(&mut self) -> Result<Value, YamlError> {
        let open = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        let mut comments = Vec::new();
        loop {
            self.flow_ws(&mut comments)?;
            items.extend(comments.drain(..).map(ListItem::Comment));
            match self.peek() {
                None => return Err(self.syntax(open, "unterminated flow sequence")),
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::List(items));
                }
                _ => {}
            }
            let v = self.flow_node(&mut comments)?;
            self.flow_ws(&mut comments)?;
            let v = if self.peek() == Some(b':') {
                // A single-pair mapping inside a sequence: `[a: b]`.
                self.pos += 1;
                let key = match v {
                    Value::Scalar(Scalar::Str(s)) => s,
                    other => {
                        let (line, column) = self.line_col(open);
                        return Err(YamlError::NonStringKey {
                            line,
                            column,
                            found: kind_name(&other),
                        });
                    }
                };
                self.flow_ws(&mut comments)?;
                let value = if matches!(self.peek(), Some(b',' | b']')) {
                    Value::Scalar(Scalar::Null)
                } else {
                    self.flow_node(&mut comments)?
                };
                Value::Map(vec![MapItem::Entry { key, value }])
            } else {
                v
            };
            items.extend(comments.drain(..).map(ListItem::Comment));
            if let Some(c) = self.same_line_comment() {
                items.push(ListItem::Comment(c));
            }
            items.push(ListItem::Value(v));
            self.flow_ws(&mut comments)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {}
                None => return Err(self.syntax(open, "unterminated flow sequence")),
                _ => return Err(self.syntax(self.pos, "expected `,` or `]` in a flow sequence")),
            }
        }
    }

    fn flow_map_items(&mut self) -> Result<Value, YamlError> {
        let open = self.pos;
        self.pos += 1;
        let mut items: Map = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut comments = Vec::new();
        loop {
            self.flow_ws(&mut comments)?;
            items.extend(comments.drain(..).map(MapItem::Comment));
            match self.peek() {
                None => return Err(self.syntax(open, "unterminated flow mapping")),
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Map(items));
                }
                Some(b'?') if self.followed_by_space(1) => {
                    self.pos += 1;
                    self.flow_ws(&mut comments)?;
                }
                _ => {}
            }
            let key_pos = self.pos;
            let key = match self.flow_node(&mut comments)? {
                Value::Scalar(Scalar::Str(s)) => s,
                other => {
                    let (line, column) = self.line_col(key_pos);
                    return Err(YamlError::NonStringKey { line, column, found: kind_name(&other) });
                }
            };
            if let Some(&first) = seen.get(&key) {
                return Err(self.duplicate(key, key_pos, first));
            }
            seen.insert(key.clone(), key_pos);
            self.flow_ws(&mut comments)?;
            let value = if self.peek() == Some(b':') {
                self.pos += 1;
                self.flow_ws(&mut comments)?;
                if matches!(self.peek(), Some(b',' | b'}')) {
                    Value::Scalar(Scalar::Null)
                } else {
                    self.flow_node(&mut comments)?
                }
            } else {
                Value::Scalar(Scalar::Null)
            };
            if key == "<<" && self.b[key_pos] == b'<' {
                self.check_merge(&value, key_pos)?;
            }
            items.extend(comments.drain(..).map(MapItem::Comment));
            if let Some(c) = self.same_line_comment() {
                items.push(MapItem::Comment(c));
            }
            items.push(MapItem::Entry { key, value });
            self.flow_ws(&mut comments)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                None => return Err(self.syntax(open, "unterminated flow mapping")),
                _ => return Err(self.syntax(self.pos, "expected `,` or `}` in a flow mapping")),
            }
        }
    }
}

/// The largest char boundary at or before `pos`.
fn floor_char(s: &str, mut pos: usize) -> usize {
    while pos > 0 && !s.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}
