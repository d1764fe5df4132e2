//! Attribute values: strings, numbers, sizes, lists, with a diagnostic when the type is wrong.

use std::ops::Range;

use hcl::Value;
use hcl_edit::expr::Expression as Expr;
use hcl_edit::structure::Attribute;
use hcl_edit::Span;

use super::Resolver;
use crate::inventory::diag::{closest, ProblemBuilder};
use crate::inventory::eval::type_name;
use crate::inventory::model::*;

impl Resolver<'_> {
    pub(super) fn value(&mut self, attr: &Attribute) -> Option<Value> {
        self.ev.eval(self.diags, &attr.value)
    }

    pub(super) fn wrong_type(&mut self, expr: &Expr, expected: &str, got: &Value) {
        let help = match got {
            Value::Number(_) | Value::Bool(_) if expected == "a string" => {
                format!("quote it: `\"{got}\"`")
            }
            Value::String(_) if expected == "a list of strings" => {
                "put it in brackets: `[\"...\"]`".to_owned()
            }
            Value::String(s) if expected == "a number" && s.trim().parse::<u64>().is_ok() => {
                format!("numbers are written without quotes: `{}`", s.trim())
            }
            _ if expected == "a number" => "write a whole number, e.g. `2`".to_owned(),
            _ if expected.starts_with("a size") => {
                "write a size with a unit, like \"512M\" or \"4G\" (or a whole number of MiB)"
                    .to_owned()
            }
            _ => format!("give {expected} here"),
        };
        self.diags.push(
            ProblemBuilder::new(format!("expected {expected}, got {}", type_name(got)))
                .at(expr.span(), format!("this is {}", type_name(got)))
                .help(help),
        );
    }

    /// A string of one of the [`forms`](crate::inventory::forms), reported at the value with
    /// the allowed form otherwise.
    pub(super) fn string_of(
        &mut self,
        attr: &Attribute,
        form: &crate::inventory::forms::Form,
    ) -> Option<String> {
        let s = self.string(attr)?;
        if (form.check)(&s) {
            return Some(s);
        }
        let short = form.what.rsplit(' ').next().unwrap_or(form.what);
        self.diags.push(
            ProblemBuilder::new(format!("`{}` is not a valid {}", attr.key.as_str(), form.what))
                .at(attr.value.span(), format!("not a {short}"))
                .help(format!("use {}", form.allowed)),
        );
        None
    }

    pub(super) fn string(&mut self, attr: &Attribute) -> Option<String> {
        match self.value(attr)? {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(&attr.value, "a string", &other);
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, attr: &Attribute) -> Option<bool> {
        match self.value(attr)? {
            Value::Bool(b) => Some(b),
            other => {
                self.wrong_type(&attr.value, "true or false", &other);
                None
            }
        }
    }

    pub(super) fn sensitive(&mut self, attr: &Attribute) -> Option<Sensitive> {
        match self.value(attr)? {
            Value::String(s) => Some(Sensitive(s)),
            // Name only the type: the value is a credential.
            other => {
                self.diags.push(
                    ProblemBuilder::new(format!("expected a string, got {}", type_name(&other)))
                        .at(attr.value.span(), format!("this is {}", type_name(&other)))
                        .help("credentials are strings; read them with `env(\"NAME\")`"),
                );
                None
            }
        }
    }

    /// A string that must be one of `allowed`.
    pub(super) fn one_of(&mut self, attr: &Attribute, allowed: &[&str]) -> Option<String> {
        let s = self.string(attr)?;
        if allowed.contains(&s.as_str()) {
            return Some(s);
        }
        let list: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
        let help = match closest(&s, allowed.iter().copied()) {
            Some(c) => format!("did you mean \"{c}\"? allowed: {}", list.join(", ")),
            None => format!("allowed: {}", list.join(", ")),
        };
        self.diags.push(
            ProblemBuilder::new(format!(
                "`{}` must be one of {}",
                attr.key.as_str(),
                list.join(", ")
            ))
            .at(attr.value.span(), "not an allowed value")
            .help(help),
        );
        None
    }

    /// A list of strings; each element's span where the list is written literally.
    pub(super) fn strings(
        &mut self,
        attr: &Attribute,
    ) -> Option<Vec<(String, Option<Range<usize>>)>> {
        let value = self.value(attr)?;
        let Value::Array(items) = value else {
            self.wrong_type(&attr.value, "a list of strings", &value);
            return None;
        };
        let literal: Option<Vec<&Expr>> = match &attr.value {
            Expr::Array(a) if a.len() == items.len() => Some(a.iter().collect()),
            _ => None,
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            let span = literal.as_ref().and_then(|l| l[i].span()).or(attr.value.span());
            match item {
                Value::String(s) => out.push((s, span)),
                other => {
                    ok = false;
                    let e = literal.as_ref().map_or(&attr.value, |l| l[i]);
                    self.wrong_type(e, "a string", &other);
                }
            }
        }
        ok.then_some(out)
    }

    pub(super) fn integer(&mut self, attr: &Attribute, min: u64, max: u64) -> Option<u64> {
        let value = self.value(attr)?;
        match value.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) | None if matches!(value, Value::Number(_)) => {
                self.diags.push(
                    ProblemBuilder::new(format!(
                        "`{}` must be a whole number from {min} to {max}",
                        attr.key.as_str()
                    ))
                    .at(attr.value.span(), "out of range")
                    .help(format!("use a value between {min} and {max}")),
                );
                None
            }
            _ => {
                self.wrong_type(&attr.value, "a number", &value);
                None
            }
        }
    }

    /// `memory`/`disk_size`: a whole number of MiB, or a string with a unit ("2G", "512M").
    pub(super) fn mib(&mut self, attr: &Attribute) -> Option<u64> {
        let value = self.value(attr)?;
        let parsed = match &value {
            Value::Number(n) => n.as_u64().filter(|n| *n > 0).ok_or(()),
            Value::String(s) => parse_size(s).and_then(|s| match s {
                PartitionSize::Mib(m) => Ok(m),
                PartitionSize::Rest => Err(()),
            }),
            _ => {
                self.wrong_type(&attr.value, "a size like \"2G\"", &value);
                return None;
            }
        };
        match parsed {
            Ok(m) => Some(m),
            Err(()) => {
                self.diags.push(
                    ProblemBuilder::new(format!("`{}` is not a valid size", attr.key.as_str()))
                        .at(attr.value.span(), "expected a size")
                        .help("write a size with a unit, like \"512M\", \"4G\" or \"1T\" (or a whole number of MiB)"),
                );
                None
            }
        }
    }
}

/// "512M", "4G", "1T" (optionally "MiB"/"GiB"/"TiB"), "rest" or "100%".
pub(super) fn parse_size(s: &str) -> Result<PartitionSize, ()> {
    let s = s.trim();
    if s == "rest" || s == "100%" {
        return Ok(PartitionSize::Rest);
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let n: u64 = num.parse().map_err(|_| ())?;
    let factor = match unit.trim() {
        "M" | "MiB" | "MB" => 1,
        "G" | "GiB" | "GB" => 1024,
        "T" | "TiB" | "TB" => 1024 * 1024,
        _ => return Err(()),
    };
    match n.checked_mul(factor) {
        Some(m) if m > 0 => Ok(PartitionSize::Mib(m)),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(PartitionSize::Mib(512)));
        assert_eq!(parse_size("1G"), Ok(PartitionSize::Mib(1024)));
        assert_eq!(parse_size("2GiB"), Ok(PartitionSize::Mib(2048)));
        assert_eq!(parse_size("1T"), Ok(PartitionSize::Mib(1024 * 1024)));
        assert_eq!(parse_size("rest"), Ok(PartitionSize::Rest));
        assert_eq!(parse_size("100%"), Ok(PartitionSize::Rest));
        for bad in ["", "0M", "512", "1.5G", "2 gigs", "50%", "-1G", "99999999999999999999T"] {
            assert_eq!(parse_size(bad), Err(()), "{bad:?}");
        }
    }
}
