//! The YAML store of cairn's sops implementation: a parser and an emitter for YAML as sops
//! users write it, producing and consuming the shared [`tree`](crate::secrets::tree).
//!
//! sops reads and writes YAML with Go's yaml.v3; files cairn writes must be byte-identical to
//! what sops 3.11 writes, and cairn must type values exactly as sops does (the type is part
//! of every encrypted value). No Rust YAML crate keeps comments and key order and emits like
//! yaml.v3, hence this module. See the sops format notes (§9) in the design references for the rules.
//!
//! * [`parse`]: text → documents (one [`Map`](crate::secrets::tree::Map) per YAML document),
//!   comments kept as items where they occur, anchors expanded, scalars typed like yaml.v3.
//! * [`emit`]: documents → text, in yaml.v3's layout with the given indent (sops: 4).

mod emit;
mod parse;
mod resolve;

use crate::secrets::tree::Documents;

pub use resolve::parse_scalar_plain;

/// The indentation sops uses unless `.sops.yaml` sets `stores.yaml.indent`.
pub const DEFAULT_INDENT: usize = 4;

/// Why a YAML text could not be read. Positions are 1-based.
///
/// Messages never quote values (they may be secrets); keys are quoted, as sops keeps them in
/// clear anyway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum YamlError {
    #[error("the file is empty")]
    #[diagnostic(
        code(cairn::secrets::yaml::empty),
        help("a sops YAML file must contain at least one document, e.g. `key: value`")
    )]
    Empty,

    #[error("the file contains no YAML document, only comments or blank lines")]
    #[diagnostic(
        code(cairn::secrets::yaml::no_document),
        help("add at least one `key: value` entry")
    )]
    NoDocument,

    #[error("line {line}, column {column}: {message}")]
    #[diagnostic(code(cairn::secrets::yaml::syntax), help("fix the YAML syntax at this position"))]
    Syntax { line: usize, column: usize, message: String },

    #[error("line {line}, column {column}: tab characters are not allowed for indentation")]
    #[diagnostic(
        code(cairn::secrets::yaml::tab),
        help("indent with spaces; YAML forbids tabs in indentation")
    )]
    TabIndent { line: usize, column: usize },

    #[error("line {line}, column {column}: bad indentation of {what}")]
    #[diagnostic(
        code(cairn::secrets::yaml::indentation),
        help("align this line with its siblings, or indent it under a key that has no value yet")
    )]
    BadIndent { line: usize, column: usize, what: &'static str },

    #[error("line {line}, column {column}: unterminated {what} string")]
    #[diagnostic(
        code(cairn::secrets::yaml::unterminated),
        help("close the string with a matching quote")
    )]
    Unterminated { line: usize, column: usize, what: &'static str },

    #[error(
        "line {line}, column {column}: key {key:?} is defined twice (first at line {first_line})"
    )]
    #[diagnostic(
        code(cairn::secrets::yaml::duplicate_key),
        help("remove or rename one of the two entries; sops rejects duplicate keys")
    )]
    DuplicateKey { line: usize, column: usize, key: String, first_line: usize },

    #[error("line {line}, column {column}: a key must be a string, this one is {found}")]
    #[diagnostic(
        code(cairn::secrets::yaml::non_string_key),
        help("quote the key (e.g. `\"1\": value`); sops only supports string keys")
    )]
    NonStringKey { line: usize, column: usize, found: &'static str },

    #[error("line {line}, column {column}: the top level of a document must be a mapping, found {found}")]
    #[diagnostic(
        code(cairn::secrets::yaml::top_level),
        help("sops only supports YAML documents whose top level is `key: value` entries")
    )]
    TopLevelNotMapping { line: usize, column: usize, found: &'static str },

    #[error("line {line}, column {column}: integer does not fit in a signed 64-bit integer")]
    #[diagnostic(
        code(cairn::secrets::yaml::integer_range),
        help(
            "sops cannot encrypt integers beyond 64 bits; quote the value to keep it as a string"
        )
    )]
    IntegerOutOfRange { line: usize, column: usize },

    #[error("line {line}, column {column}: unknown anchor {name:?}")]
    #[diagnostic(
        code(cairn::secrets::yaml::unknown_anchor),
        help("define the anchor with `&{name}` before using `*{name}`")
    )]
    UnknownAnchor { line: usize, column: usize, name: String },

    #[error("line {line}, column {column}: collections are nested more than {max} levels deep")]
    #[diagnostic(
        code(cairn::secrets::yaml::too_deep),
        help("flatten the structure; sops files are rarely more than a few levels deep")
    )]
    TooDeep { line: usize, column: usize, max: usize },

    #[error("line {line}, column {column}: {message}")]
    #[diagnostic(
        code(cairn::secrets::yaml::tag),
        help("remove the tag or make the value match it")
    )]
    Tag { line: usize, column: usize, message: String },
}

/// Parses a YAML stream into its documents, typing scalars as yaml.v3 does for sops.
pub fn parse(text: &str) -> Result<Documents, YamlError> {
    parse::parse(text)
}

/// Writes documents as sops (yaml.v3) writes them; `indent` is 4 in sops by default.
pub fn emit(docs: &Documents, indent: usize) -> String {
    let mut e = emit::Emitter::new(indent);
    for (i, doc) in docs.iter().enumerate() {
        e.document(i == 0, doc);
    }
    e.finish()
}
