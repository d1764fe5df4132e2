//! Expression evaluation: `variable` and `locals` blocks, the `env()` and `file()` functions,
//! and errors that point at the failing sub-expression (hcl-rs evaluation errors carry no
//! position, so we find the innermost failing part of the hcl-edit tree, which has spans).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use hcl::eval::{Context, ErrorKind, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::Value;
use hcl_edit::expr::{Expression as Expr, TraversalOperator};
use hcl_edit::structure::{Block, Body};
use hcl_edit::template::{Directive, Element, Template};
use hcl_edit::Span;

use super::diag::{closest, suggest, Diagnostics, ProblemBuilder};

/// What `env()` and `file()` see. hcl-rs functions are plain `fn` pointers, so the scope of
/// one `load` is handed to them through a thread-local set for the duration of the load.
struct FuncScope {
    env: BTreeMap<String, String>,
    root: PathBuf,
    /// Every value `env()` returned from the environment: they are redacted in output.
    returned: Vec<String>,
}

thread_local! {
    static SCOPE: RefCell<Option<FuncScope>> = const { RefCell::new(None) };
}

/// Clears the function scope when the load ends (also on panic).
pub(crate) struct ScopeGuard(());

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        SCOPE.with(|s| s.borrow_mut().take());
    }
}

pub(crate) fn enter_scope(env: BTreeMap<String, String>, root: PathBuf) -> ScopeGuard {
    SCOPE.with(|s| *s.borrow_mut() = Some(FuncScope { env, root, returned: Vec::new() }));
    ScopeGuard(())
}

/// The values `env()` has returned from the environment in this load so far.
pub(crate) fn env_values() -> Vec<String> {
    SCOPE.with(|s| s.borrow().as_ref().map(|s| s.returned.clone()).unwrap_or_default())
}

/// Separates the message from the help inside a function's error string.
const HELP_SEP: char = '\u{1f}';

fn env_fn(args: FuncArgs) -> Result<Value, String> {
    let name = args[0].as_str().unwrap_or_default().to_owned();
    if args.len() > 2 {
        return Err(format!(
            "env() takes one or two arguments{HELP_SEP}write `env(\"NAME\")`, or `env(\"NAME\", \"default\")` to fall back to a default"
        ));
    }
    let value = SCOPE.with(|s| {
        let mut s = s.borrow_mut();
        let s = s.as_mut()?;
        let v = s.env.get(&name).cloned()?;
        s.returned.push(v.clone());
        Some(v)
    });
    match (value, args.get(1)) {
        (Some(v), _) => Ok(Value::String(v)),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set{HELP_SEP}set it before running cairn (`export {name}=...`), or give a fallback: `env(\"{name}\", \"default\")`"
        )),
    }
}

/// The largest file `file()` reads.
pub(crate) const FILE_LIMIT: u64 = 16 * 1024 * 1024;

fn file_fn(args: FuncArgs) -> Result<Value, String> {
    let rel = args[0].as_str().unwrap_or_default().to_owned();
    let root = SCOPE.with(|s| s.borrow().as_ref().map(|s| s.root.clone())).unwrap_or_default();
    let relative_help = format!(
        "paths given to file() are relative to the inventory's directory ({})",
        root.display()
    );
    if std::path::Path::new(&rel).components().any(|c| c == std::path::Component::ParentDir) {
        return Err(format!(
            "file `{rel}` goes up with `..`{HELP_SEP}give a path inside the repository (relative to the inventory's directory) or an absolute path"
        ));
    }
    let path = root.join(&rel);
    read_regular_file(&path).map(Value::String).map_err(|why| {
        let help = match why {
            FileProblem::NotRegular(_) => {
                "file() reads regular files only, not devices, FIFOs or directories".to_owned()
            }
            FileProblem::TooLarge => format!(
                "file() reads at most {} MiB; keep large data out of the inventory",
                FILE_LIMIT >> 20
            ),
            FileProblem::NotUtf8 => "file() returns text; the file must be UTF-8".to_owned(),
            FileProblem::Io(_) => relative_help,
        };
        format!("file `{rel}` {why}{HELP_SEP}{help}")
    })
}

/// Why `file()` refused a path.
enum FileProblem {
    NotRegular(&'static str),
    TooLarge,
    NotUtf8,
    Io(std::io::ErrorKind),
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRegular(what) => write!(f, "is {what}, not a regular file"),
            Self::TooLarge => write!(f, "is larger than {} MiB", FILE_LIMIT >> 20),
            Self::NotUtf8 => write!(f, "is not UTF-8 text"),
            Self::Io(std::io::ErrorKind::NotFound) => write!(f, "does not exist"),
            Self::Io(kind) => write!(f, "cannot be read: {}", std::io::Error::from(*kind)),
        }
    }
}

/// Reads a regular file of at most [`FILE_LIMIT`] bytes. The file is opened without
/// blocking (a FIFO would otherwise wait for a writer) and checked on the open handle, so a
/// path swapped for a device between a check and the read is still refused.
fn read_regular_file(path: &std::path::Path) -> Result<String, FileProblem> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    use std::io::Read as _;
    use std::os::unix::fs::FileTypeExt as _;
    let file = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| FileProblem::Io(e.kind()))?;
    let meta = file.metadata().map_err(|e| FileProblem::Io(e.kind()))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(FileProblem::NotRegular(if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "a special file"
        }));
    }
    if meta.len() > FILE_LIMIT {
        return Err(FileProblem::TooLarge);
    }
    let mut bytes = Vec::new();
    // The size may change after the check: never read more than the limit.
    file.take(FILE_LIMIT + 1).read_to_end(&mut bytes).map_err(|e| FileProblem::Io(e.kind()))?;
    if bytes.len() as u64 > FILE_LIMIT {
        return Err(FileProblem::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| FileProblem::NotUtf8)
}

pub(crate) const FUNCTIONS: [&str; 2] = ["env", "file"];

fn base_context() -> Context<'static> {
    let mut ctx = Context::new();
    ctx.declare_func(
        "env",
        FuncDef::builder().param(ParamType::String).variadic_param(ParamType::Any).build(env_fn),
    );
    ctx.declare_func("file", FuncDef::builder().param(ParamType::String).build(file_fn));
    ctx
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The declared type of a variable, used to convert `--var` and environment strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VarType {
    String,
    Number,
    Bool,
    /// `any`, or no type given: flag and environment values stay strings.
    Any,
    /// list(...), map(...), object(...): flag and environment values are HCL expressions.
    Complex,
}

/// Evaluates expressions against `var`, `local` and the functions, reporting failures.
pub(crate) struct Evaluator {
    ctx: Context<'static>,
    vars: BTreeSet<String>,
    locals: BTreeSet<String>,
    /// Names whose own definition failed (already reported): uses of them stay quiet.
    failed: BTreeSet<String>,
    /// The values of variables declared `sensitive = true` (every string, number and bool
    /// in them), redacted in output.
    pub sensitive: Vec<String>,
}

impl Evaluator {
    /// Reads `variable` and `locals` blocks of the top-level body.
    pub fn new(
        diags: &mut Diagnostics,
        body: &Body,
        cli_vars: &[String],
        env: &BTreeMap<String, String>,
    ) -> Self {
        let mut ev = Evaluator {
            ctx: base_context(),
            vars: BTreeSet::new(),
            locals: BTreeSet::new(),
            failed: BTreeSet::new(),
            sensitive: Vec::new(),
        };
        ev.declare_variables(diags, body, cli_vars, env);
        ev.declare_locals(diags, body);
        ev
    }

    fn declare_variables(
        &mut self,
        diags: &mut Diagnostics,
        body: &Body,
        cli_vars: &[String],
        env: &BTreeMap<String, String>,
    ) {
        let mut flags: BTreeMap<String, String> = BTreeMap::new();
        for raw in cli_vars {
            match raw.split_once('=') {
                Some((name, value)) if !name.trim().is_empty() => {
                    flags.insert(name.trim().to_owned(), value.to_owned());
                }
                _ => {
                    let name = raw.split('=').next().unwrap_or_default();
                    diags.push(
                        ProblemBuilder::new(format!(
                            "`--var {name}` is not of the form NAME=VALUE"
                        ))
                        .help("write `--var NAME=VALUE`, e.g. `--var region=eu-central-1`"),
                    );
                }
            }
        }

        let mut values = hcl::Map::new();
        let mut seen: BTreeMap<String, Option<Range<usize>>> = BTreeMap::new();
        for block in body.get_blocks("variable") {
            let Some((name, label_span)) = single_label(diags, block, "variable", "region") else {
                continue;
            };
            if let Some(first) = seen.get(&name) {
                diags.push(
                    ProblemBuilder::new(format!("variable `{name}` is declared twice"))
                        .at(label_span.clone(), "declared again here")
                        .also(first.clone(), "first declared here")
                        .help("remove one of the two `variable` blocks or rename it"),
                );
                continue;
            }
            seen.insert(name.clone(), label_span.clone());
            self.vars.insert(name.clone());
            if !is_identifier(&name) {
                diags.push(
                    ProblemBuilder::new(format!("`{name}` is not a valid variable name"))
                        .at(label_span.clone(), "cannot be written as `var.NAME`")
                        .help("use letters, digits, `_` and `-`, starting with a letter or `_`"),
                );
            }
            check_attributes(
                diags,
                &block.body,
                "variable",
                &["default", "description", "type", "sensitive"],
                &[],
            );

            let var_type = match block.body.get_attribute("type") {
                Some(attr) => match parse_type(&attr.value) {
                    Some(t) => t,
                    None => {
                        diags.push(
                            ProblemBuilder::new(format!("unknown type for variable `{name}`"))
                                .at(attr.value.span(), "not a type")
                                .help("use `string`, `number`, `bool`, `any`, or `list(...)`, `map(...)`, `object({...})`"),
                        );
                        VarType::Any
                    }
                },
                None => VarType::Any,
            };

            let env_name = format!("CAIRN_VAR_{name}");
            let (raw, origin) = if let Some(v) = flags.get(&name) {
                (Some(v.clone()), format!("`--var {name}=...`"))
            } else if let Some(v) = env.get(&env_name) {
                (Some(v.clone()), format!("environment variable `{env_name}`"))
            } else {
                (None, String::new())
            };

            let value = match raw {
                Some(raw) => match convert_raw(&raw, var_type, &self.ctx) {
                    Ok(v) => Some(v),
                    Err(expected) => {
                        diags.push(
                            ProblemBuilder::new(format!(
                                "the value of variable `{name}` from {origin} is not {expected}"
                            ))
                            .at(label_span.clone(), format!("declared as {expected} here"))
                            .help(format!("give {origin} {expected}")),
                        );
                        self.failed.insert(format!("var.{name}"));
                        continue;
                    }
                },
                None => match block.body.get_attribute("default") {
                    Some(attr) => {
                        let v = self.eval(diags, &attr.value);
                        if let Some(v) = &v {
                            check_var_type(diags, &name, var_type, v, attr.value.span());
                        }
                        v
                    }
                    None => {
                        diags.push(
                            ProblemBuilder::new(format!("variable `{name}` has no value"))
                                .at(label_span.clone(), "declared here without a default")
                                .help(format!(
                                    "pass `--var {name}=VALUE`, set `{env_name}` in the environment, or add `default = ...` to the block"
                                )),
                        );
                        None
                    }
                },
            };
            let sensitive = block
                .body
                .get_attribute("sensitive")
                .and_then(|a| self.eval(diags, &a.value))
                .is_some_and(|v| v == Value::Bool(true));
            match value {
                Some(v) => {
                    if sensitive {
                        leaves(&v, &mut self.sensitive);
                    }
                    values.insert(name, v);
                }
                None => {
                    self.failed.insert(format!("var.{name}"));
                }
            }
        }

        for name in flags.keys() {
            if !seen.contains_key(name) {
                let help = match closest(name, seen.keys().map(String::as_str)) {
                    Some(c) => format!("did you mean `--var {c}=...`?"),
                    None => format!("declare it first: `variable \"{name}\" {{}}`"),
                };
                diags.push(
                    ProblemBuilder::new(format!(
                        "`--var {name}=...` sets a variable the inventory does not declare"
                    ))
                    .help(help),
                );
            }
        }
        self.ctx.declare_var("var", Value::Object(values));
    }

    fn declare_locals(&mut self, diags: &mut Diagnostics, body: &Body) {
        // name -> (key span, expression), in file order.
        let mut defs: Vec<(String, Option<Range<usize>>, &Expr)> = Vec::new();
        for block in body.get_blocks("locals") {
            if let Some(label) = block.labels.first() {
                diags.push(
                    ProblemBuilder::new("a `locals` block takes no label")
                        .at(label.span(), "remove this label")
                        .help("write `locals { name = value }`"),
                );
            }
            for b in block.body.blocks() {
                diags.push(
                    ProblemBuilder::new(format!(
                        "unexpected block `{}` in `locals`",
                        b.ident.as_str()
                    ))
                    .at(b.ident.span(), "not allowed here")
                    .help("a `locals` block holds only attributes: `name = value`"),
                );
            }
            for attr in block.body.attributes() {
                let name = attr.key.as_str().to_owned();
                if let Some((_, first, _)) = defs.iter().find(|d| d.0 == name) {
                    diags.push(
                        ProblemBuilder::new(format!("local `{name}` is defined twice"))
                            .at(attr.key.span(), "defined again here")
                            .also(first.clone(), "first defined here")
                            .help("each local needs a unique name across all `locals` blocks"),
                    );
                    continue;
                }
                defs.push((name, attr.key.span(), &attr.value));
            }
        }
        for (name, _, _) in &defs {
            self.locals.insert(name.clone());
        }

        // Evaluate in dependency order; a cycle is reported once, at its first member.
        let deps: BTreeMap<&str, Vec<String>> = defs
            .iter()
            .map(|(name, _, expr)| {
                let mut refs = Vec::new();
                collect_refs(expr, "local", &mut refs);
                (name.as_str(), refs)
            })
            .collect();
        let mut values = hcl::Map::new();
        let mut state: BTreeMap<String, u8> = BTreeMap::new(); // 1 = visiting, 2 = done
        for (name, _, _) in &defs {
            self.visit_local(diags, name, &defs, &deps, &mut state, &mut Vec::new(), &mut values);
        }
        self.ctx.declare_var("local", Value::Object(values));
    }

    #[allow(clippy::too_many_arguments)]
    fn visit_local(
        &mut self,
        diags: &mut Diagnostics,
        name: &str,
        defs: &[(String, Option<Range<usize>>, &Expr)],
        deps: &BTreeMap<&str, Vec<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
        values: &mut hcl::Map<String, Value>,
    ) {
        match state.get(name) {
            Some(2) => return,
            Some(1) => {
                // A cycle: path holds it from its first occurrence of `name`.
                let start = path.iter().position(|p| p == name).unwrap_or(0);
                let mut cycle: Vec<String> =
                    path[start..].iter().map(|p| format!("local.{p}")).collect();
                cycle.push(format!("local.{name}"));
                let span = defs.iter().find(|d| d.0 == name).and_then(|d| d.2.span());
                diags.push(
                    ProblemBuilder::new(format!("local `{name}` depends on itself"))
                        .at(span, format!("cycle: {}", cycle.join(" → ")))
                        .help("break the cycle: one of these locals must not refer back to the others"),
                );
                for p in &path[start..] {
                    self.failed.insert(format!("local.{p}"));
                }
                return;
            }
            _ => {}
        }
        let Some((_, _, expr)) = defs.iter().find(|d| d.0 == name) else {
            return; // not a local: reported when evaluated
        };
        state.insert(name.to_owned(), 1);
        path.push(name.to_owned());
        for dep in deps.get(name).into_iter().flatten() {
            self.visit_local(diags, dep, defs, deps, state, path, values);
        }
        path.pop();
        state.insert(name.to_owned(), 2);
        let key = format!("local.{name}");
        if self.failed.contains(&key) {
            return;
        }
        let depends_on_failed = deps
            .get(name)
            .into_iter()
            .flatten()
            .any(|d| self.failed.contains(&format!("local.{d}")));
        if depends_on_failed {
            self.failed.insert(key);
            return;
        }
        self.ctx.declare_var("local", Value::Object(values.clone()));
        match self.eval(diags, expr) {
            Some(v) => {
                values.insert(name.to_owned(), v);
            }
            None => {
                self.failed.insert(key);
            }
        }
    }

    fn try_eval(&self, expr: &Expr) -> Result<Value, hcl::eval::Error> {
        super::arithmetic::eval(&self.ctx, expr)
    }

    /// Evaluates an expression; on failure reports the innermost failing part and returns None.
    pub fn eval(&self, diags: &mut Diagnostics, expr: &Expr) -> Option<Value> {
        match self.try_eval(expr) {
            Ok(v) => Some(v),
            Err(whole) => {
                let culprit = self.narrow(expr);
                let err = self.try_eval(culprit).err().unwrap_or(whole);
                self.report(diags, culprit, &err);
                None
            }
        }
    }

    /// The innermost sub-expression that fails on its own (following only the branch a
    /// conditional takes, and never into `for` bodies, whose names are bound by the loop).
    fn narrow<'e>(&self, expr: &'e Expr) -> &'e Expr {
        let mut children: Vec<&Expr> = Vec::new();
        match expr {
            Expr::Array(a) => children.extend(a.iter()),
            Expr::Object(o) => super::arithmetic::object_exprs(o, &mut children),
            Expr::StringTemplate(t) => template_exprs(t, &mut children),
            Expr::HeredocTemplate(h) => template_exprs(&h.template, &mut children),
            Expr::Parenthesis(p) => children.push(p.inner()),
            Expr::Conditional(c) => match self.try_eval(&c.cond_expr) {
                Err(_) => children.push(&c.cond_expr),
                Ok(Value::Bool(true)) => children.push(&c.true_expr),
                Ok(Value::Bool(false)) => children.push(&c.false_expr),
                Ok(_) => {}
            },
            Expr::FuncCall(f) => children.extend(f.args.iter()),
            Expr::Traversal(t) => super::arithmetic::traversal_exprs(t, &mut children),
            Expr::UnaryOp(u) => children.push(&u.expr),
            Expr::BinaryOp(b) => {
                children.push(&b.lhs_expr);
                children.push(&b.rhs_expr);
            }
            _ => {}
        }
        for child in children {
            if self.try_eval(child).is_err() {
                return self.narrow(child);
            }
        }
        expr
    }

    fn report(&self, diags: &mut Diagnostics, culprit: &Expr, err: &hcl::eval::Error) {
        let span = culprit.span();
        let p = match err.kind() {
            ErrorKind::NoSuchKey(key) => match traversal_root(culprit) {
                Some((root @ ("var" | "local"), first)) if first == *key => {
                    if self.failed.contains(&format!("{root}.{key}")) {
                        return; // its definition is already reported
                    }
                    let (declared, what, how) = if root == "var" {
                        (
                            &self.vars,
                            "variable",
                            format!("declare it: `variable \"{key}\" {{ default = ... }}`"),
                        )
                    } else {
                        (&self.locals, "local", format!("define it: `locals {{ {key} = ... }}`"))
                    };
                    let help = match closest(key, declared.iter().map(String::as_str)) {
                        Some(c) => format!("did you mean `{root}.{c}`?"),
                        None => how,
                    };
                    ProblemBuilder::new(format!("`{root}.{key}` is not declared"))
                        .at(span, format!("no {what} named `{key}`"))
                        .help(help)
                }
                _ => ProblemBuilder::new(format!("no attribute `{key}` in this object"))
                    .at(span, "missing key")
                    .help("check the spelling of the attribute name"),
            },
            ErrorKind::UndefinedVar(ident) if matches!(ident.as_str(), "var" | "local") => {
                ProblemBuilder::new(format!("`{ident}` cannot be used here"))
                    .at(span, "not available in a variable's default")
                    .help("defaults must be constant; derive values from variables in a `locals` block")
            }
            ErrorKind::UndefinedVar(ident) => {
                let ident = ident.as_str();
                let help = if self.vars.contains(ident) {
                    format!("variables are referenced as `var.{ident}`")
                } else if self.locals.contains(ident) {
                    format!("locals are referenced as `local.{ident}`")
                } else {
                    format!("if you meant the text, quote it: `\"{ident}\"`; variables are `var.NAME`, locals `local.NAME`")
                };
                ProblemBuilder::new(format!("unknown name `{ident}`"))
                    .at(span, "not a variable, local or value")
                    .help(help)
            }
            ErrorKind::UndefinedFunc(name) => {
                let name = name.to_string();
                let help = match closest(&name, FUNCTIONS) {
                    Some(c) => format!("did you mean `{c}()`?"),
                    None => "cairn provides `env(NAME)`, `env(NAME, DEFAULT)` and `file(PATH)`"
                        .to_owned(),
                };
                ProblemBuilder::new(format!("unknown function `{name}`"))
                    .at(span, "no such function")
                    .help(help)
            }
            ErrorKind::FuncCall(name, msg) => {
                let (message, help) = match msg.split_once(HELP_SEP) {
                    Some((m, h)) => (m.to_owned(), Some(h.to_owned())),
                    None => (format!("bad call to `{name}()`: {msg}"), None),
                };
                let help = help.unwrap_or_else(|| match name.to_string().as_str() {
                    "env" => "write `env(\"NAME\")` or `env(\"NAME\", \"default\")`".to_owned(),
                    "file" => "write `file(\"relative/path\")`".to_owned(),
                    _ => "check the function's arguments".to_owned(),
                });
                ProblemBuilder::new(message).at(span, "in this call").help(help)
            }
            ErrorKind::Unexpected(value, expected) => {
                ProblemBuilder::new(format!("expected {expected}, got {}", type_name(value)))
                    .at(span, format!("this is {}", type_name(value)))
                    .help("change the expression so that it has the expected type")
            }
            ErrorKind::BinaryOp(lhs, op, rhs) => ProblemBuilder::new(format!(
                "operator `{op}` cannot combine {} and {}",
                type_name(lhs),
                type_name(rhs)
            ))
            .at(span, "in this operation")
            .help("use string interpolation (\"${a}-${b}\") to join text"),
            ErrorKind::UnaryOp(op, value) => ProblemBuilder::new(format!(
                "operator `{op}` cannot be applied to {}",
                type_name(value)
            ))
            .at(span, "in this operation")
            .help("check the operand's type"),
            ErrorKind::Index(i) => ProblemBuilder::new(format!("index {i} is out of bounds"))
                .at(span, "here")
                .help("lists are indexed from 0"),
            ErrorKind::Message(m) => ProblemBuilder::new(m.clone())
                .at(span, "cannot be evaluated")
                .help("check this expression"),
            _ => ProblemBuilder::new("this expression cannot be evaluated")
                .at(span, "here")
                .help("check this expression"),
        };
        diags.push(p);
    }
}

/// The scalar values inside `v`, as text.
fn leaves(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push(b.to_string()),
        Value::Number(n) => out.push(n.to_string()),
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| leaves(v, out)),
        Value::Object(o) => o.values().for_each(|v| leaves(v, out)),
    }
}

fn template_exprs<'e>(t: &'e Template, out: &mut Vec<&'e Expr>) {
    for el in t.iter() {
        match el {
            Element::Interpolation(i) => out.push(&i.expr),
            Element::Directive(d) => match &**d {
                Directive::If(i) => out.push(&i.if_expr.cond_expr),
                Directive::For(f) => out.push(&f.for_expr.collection_expr),
            },
            Element::Literal(_) => {}
        }
    }
}

/// `var.x...` → ("var", "x").
fn traversal_root(expr: &Expr) -> Option<(&str, &str)> {
    let Expr::Traversal(t) = expr else { return None };
    let Expr::Variable(root) = &t.expr else { return None };
    match t.operators.first().map(|o| o.value()) {
        Some(TraversalOperator::GetAttr(attr)) => Some((root.as_str(), attr.as_str())),
        _ => None,
    }
}

/// Names `root.NAME` referenced anywhere in `expr`.
fn collect_refs(expr: &Expr, root: &str, out: &mut Vec<String>) {
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        if let Some((r, name)) = traversal_root(e) {
            if r == root && !out.iter().any(|o| o == name) {
                out.push(name.to_owned());
            }
        }
        match e {
            Expr::Array(a) => stack.extend(a.iter()),
            Expr::Object(o) => super::arithmetic::object_exprs(o, &mut stack),
            Expr::StringTemplate(t) => template_exprs(t, &mut stack),
            Expr::HeredocTemplate(h) => template_exprs(&h.template, &mut stack),
            Expr::Parenthesis(p) => stack.push(p.inner()),
            Expr::Conditional(c) => stack.extend([&c.cond_expr, &c.true_expr, &c.false_expr]),
            Expr::FuncCall(f) => stack.extend(f.args.iter()),
            Expr::Traversal(t) => super::arithmetic::traversal_exprs(t, &mut stack),
            Expr::UnaryOp(u) => stack.push(&u.expr),
            Expr::BinaryOp(b) => stack.extend([&b.lhs_expr, &b.rhs_expr]),
            Expr::ForExpr(f) => {
                stack.push(&f.intro.collection_expr);
                stack.push(&f.value_expr);
                if let Some(k) = &f.key_expr {
                    stack.push(k);
                }
                if let Some(c) = &f.cond {
                    stack.push(&c.expr);
                }
            }
            _ => {}
        }
    }
}

fn parse_type(expr: &Expr) -> Option<VarType> {
    match expr {
        Expr::Variable(v) => match v.as_str() {
            "string" => Some(VarType::String),
            "number" => Some(VarType::Number),
            "bool" => Some(VarType::Bool),
            "any" => Some(VarType::Any),
            _ => None,
        },
        Expr::FuncCall(f) => match f.name.name.as_str() {
            "list" | "set" | "map" | "object" | "tuple" => Some(VarType::Complex),
            _ => None,
        },
        _ => None,
    }
}

fn convert_raw(raw: &str, t: VarType, ctx: &Context) -> Result<Value, &'static str> {
    match t {
        VarType::String | VarType::Any => Ok(Value::String(raw.to_owned())),
        VarType::Number => {
            if let Ok(i) = raw.trim().parse::<i64>() {
                Ok(Value::from(i))
            } else {
                raw.trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(hcl::Number::from_f64)
                    .map(Value::Number)
                    .ok_or("a number")
            }
        }
        VarType::Bool => match raw.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("a bool (`true` or `false`)"),
        },
        VarType::Complex => hcl_edit::parser::parse_expr(raw)
            .ok()
            .and_then(|e| hcl::Expression::from(e).evaluate(ctx).ok())
            .ok_or("an HCL value (like `[\"a\", \"b\"]` or `{ k = \"v\" }`)"),
    }
}

fn check_var_type(
    diags: &mut Diagnostics,
    name: &str,
    t: VarType,
    v: &Value,
    span: Option<Range<usize>>,
) {
    let expected = match (t, v) {
        (VarType::String, Value::String(_))
        | (VarType::Number, Value::Number(_))
        | (VarType::Bool, Value::Bool(_))
        | (VarType::Any | VarType::Complex, _) => return,
        (VarType::String, _) => "a string",
        (VarType::Number, _) => "a number",
        (VarType::Bool, _) => "a bool",
    };
    diags.push(
        ProblemBuilder::new(format!(
            "the default of variable `{name}` is {}, not {expected}",
            type_name(v)
        ))
        .at(span, format!("expected {expected}"))
        .help("make the default match the variable's `type`"),
    );
}

/// The one label of a block (`host "web1"`), reporting a missing or extra label.
pub(crate) fn single_label(
    diags: &mut Diagnostics,
    block: &Block,
    kind: &str,
    example: &str,
) -> Option<(String, Option<Range<usize>>)> {
    match block.labels.as_slice() {
        [label] => Some((label.as_str().to_owned(), label.span())),
        [] => {
            diags.push(
                ProblemBuilder::new(format!("{} `{kind}` block needs a name", a(kind)))
                    .at(block.ident.span(), "missing its label")
                    .help(format!("write `{kind} \"{example}\" {{ ... }}`")),
            );
            None
        }
        [_, extra @ ..] => {
            let span =
                match (extra.first().and_then(|l| l.span()), extra.last().and_then(|l| l.span())) {
                    (Some(a), Some(b)) => Some(a.start..b.end),
                    _ => None,
                };
            diags.push(
                ProblemBuilder::new(format!("{} `{kind}` block takes exactly one label", a(kind)))
                    .at(span, "unexpected label")
                    .help(format!("write `{kind} \"{example}\" {{ ... }}`")),
            );
            None
        }
    }
}

/// Reports attributes and blocks of `body` not in the allowed lists (with a suggestion) and
/// attributes set twice.
pub(crate) fn check_attributes(
    diags: &mut Diagnostics,
    body: &Body,
    kind: &str,
    attrs: &[&str],
    blocks: &[&str],
) {
    check_attributes_with(diags, body, kind, attrs, blocks, |_| None);
}

/// [`check_attributes`] with a better help for some unknown attributes (`hint` returns it).
pub(crate) fn check_attributes_with(
    diags: &mut Diagnostics,
    body: &Body,
    kind: &str,
    attrs: &[&str],
    blocks: &[&str],
    hint: impl Fn(&str) -> Option<String>,
) {
    let mut seen: BTreeMap<&str, Option<Range<usize>>> = BTreeMap::new();
    for attr in body.attributes() {
        let key = attr.key.as_str();
        if let Some(first) = seen.get(key) {
            diags.push(
                ProblemBuilder::new(format!(
                    "attribute `{key}` is set twice in this `{kind}` block"
                ))
                .at(attr.key.span(), "set again here")
                .also(first.clone(), "first set here")
                .help("remove one of them"),
            );
            continue;
        }
        seen.insert(key, attr.key.span());
        if !attrs.contains(&key) {
            let help = if let Some(h) = hint(key) {
                h
            } else if blocks.contains(&key) {
                format!("`{key}` is a block: write `{key} {{ ... }}` without `=`")
            } else if attrs.is_empty() {
                format!("{} `{kind}` block takes no attributes", a(kind))
            } else {
                suggest(
                    key,
                    attrs.iter().copied(),
                    &format!("attributes of {} `{kind}` block", a(kind)),
                )
            };
            diags.push(
                ProblemBuilder::new(format!(
                    "unknown attribute `{key}` in {} `{kind}` block",
                    a(kind)
                ))
                .at(attr.key.span(), "not allowed here")
                .help(help),
            );
        }
    }
    for block in body.blocks() {
        let ident = block.ident.as_str();
        if !blocks.contains(&ident) {
            let help = if attrs.contains(&ident) {
                format!("`{ident}` is an attribute: write `{ident} = ...`")
            } else if blocks.is_empty() {
                format!("{} `{kind}` block contains no blocks", a(kind))
            } else {
                suggest(
                    ident,
                    blocks.iter().copied(),
                    &format!("blocks inside {} `{kind}` block", a(kind)),
                )
            };
            diags.push(
                ProblemBuilder::new(format!(
                    "unknown block `{ident}` in {} `{kind}` block",
                    a(kind)
                ))
                .at(block.ident.span(), "not allowed here")
                .help(help),
            );
        }
    }
}

/// "a" or "an" before a block name.
fn a(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) || kind.starts_with("ssh") {
        "an"
    } else {
        "a"
    }
}

/// An HCL identifier: what can follow `var.` or `local.`.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::diag::Source;

    /// Found by the inventory fuzz target (`port = 70*0/0`); `7 % 0` panicked even in a
    /// release build (hcl's integer remainder). Each is an error at its place now.
    fn location(flags: &[&str], env: &[(&str, &str)]) -> (Option<String>, usize) {
        let text = "variable \"location\" {\n  default = \"fsn1\"\n}\n";
        let body = hcl_edit::parser::parse_body(text).unwrap();
        let source = Source::new("cairn.hcl".into(), "cairn.hcl".into(), text.to_owned());
        let mut diags = Diagnostics::new(source);
        let env: BTreeMap<String, String> =
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        let ev = Evaluator::new(&mut diags, &body, &flags, &env);
        let expr = hcl_edit::parser::parse_expr("var.location").unwrap();
        let v = ev.eval(&mut diags, &expr).and_then(|v| v.as_str().map(str::to_owned));
        (v, diags.count())
    }

    #[test]
    fn variable_precedence() {
        assert_eq!(location(&[], &[]), (Some("fsn1".into()), 0));
        assert_eq!(location(&[], &[("CAIRN_VAR_location", "nbg1")]), (Some("nbg1".into()), 0));
        assert_eq!(
            location(&["location=hel1"], &[("CAIRN_VAR_location", "nbg1")]),
            (Some("hel1".into()), 0)
        );
        // A value may itself contain `=`.
        assert_eq!(location(&["location=a=b"], &[]), (Some("a=b".into()), 0));
        // Other variables' environment entries do not matter.
        assert_eq!(location(&[], &[("CAIRN_VAR_other", "x")]), (Some("fsn1".into()), 0));
    }
}
