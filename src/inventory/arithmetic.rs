//! hcl's arithmetic panics where it should fail: an integer `%` by zero always, and a result
//! that is not a finite number (`1/0`, `0/0`, `1e308 * 10`) in debug builds. Every operation
//! that would is refused here first, as an evaluation error at its place, following only
//! the code hcl will evaluate: the branch a conditional or an `%{ if }` takes, and the body
//! of a `for` once per element, with the loop's variables bound as hcl binds them.
//! (Found by the inventory fuzz target: `port = 70*0/0`, then `7 % 0`.)

use hcl::eval::{Context, Error, ErrorKind, Evaluate};
use hcl::Value;
use hcl_edit::expr::{BinaryOperator as Op, Expression as Expr, ObjectKey, TraversalOperator};
use hcl_edit::template::{Directive, Element, Template};

/// Evaluates `expr` in `ctx` after [`check`]ing it.
pub(super) fn eval(ctx: &Context<'_>, expr: &Expr) -> Result<Value, Error> {
    check(ctx, expr)?;
    hcl::Expression::from(expr.clone()).evaluate(ctx)
}

/// Refuses the arithmetic in `expr` that would make hcl panic when it evaluates `expr` in
/// `ctx`.
pub(super) fn check(ctx: &Context<'_>, expr: &Expr) -> Result<(), Error> {
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp(b) if is_arithmetic(b.operator.value()) => {
                // Operands are checked by their own evaluation; their failure is the whole
                // expression's.
                let (l, r) = (eval(ctx, &b.lhs_expr)?, eval(ctx, &b.rhs_expr)?);
                let (Value::Number(l), Value::Number(r)) = (l, r) else { continue };
                if !fits_in_integers(b.operator.value(), &l, &r) {
                    return Err(ErrorKind::Message(format!(
                        "the result of {} does not fit in a 64-bit integer",
                        b.operator.value().as_str()
                    ))
                    .into());
                }
                let (l, r) = (l.as_f64().unwrap_or(f64::NAN), r.as_f64().unwrap_or(f64::NAN));
                let result = match b.operator.value() {
                    Op::Plus => l + r,
                    Op::Minus => l - r,
                    Op::Mul => l * r,
                    _ if r == 0.0 => {
                        return Err(ErrorKind::Message("division by zero".into()).into())
                    }
                    Op::Div => l / r,
                    _ => l % r,
                };
                if !result.is_finite() {
                    return Err(ErrorKind::Message(format!(
                        "the result of {} is not a finite number",
                        b.operator.value().as_str()
                    ))
                    .into());
                }
            }
            Expr::BinaryOp(b) => stack.extend([&b.lhs_expr, &b.rhs_expr]),
            Expr::Array(a) => stack.extend(a.iter()),
            Expr::Object(o) => object_exprs(o, &mut stack),
            Expr::Parenthesis(p) => stack.push(p.inner()),
            Expr::UnaryOp(u) => stack.push(&u.expr),
            Expr::FuncCall(f) => stack.extend(f.args.iter()),
            Expr::Conditional(c) => {
                // Only the branch the condition takes is evaluated.
                stack.push(&c.cond_expr);
                match eval(ctx, &c.cond_expr) {
                    Ok(Value::Bool(true)) => stack.push(&c.true_expr),
                    Ok(Value::Bool(false)) => stack.push(&c.false_expr),
                    _ => {}
                }
            }
            Expr::StringTemplate(t) => check_template(ctx, t)?,
            Expr::HeredocTemplate(h) => check_template(ctx, &h.template)?,
            Expr::Traversal(t) => traversal_exprs(t, &mut stack),
            Expr::ForExpr(f) => {
                let intro = &f.intro;
                check(ctx, &intro.collection_expr)?;
                let bodies = [f.cond.as_ref().map(|c| &c.expr), f.key_expr.as_ref()]
                    .into_iter()
                    .flatten()
                    .chain([&f.value_expr]);
                if !bodies.clone().any(has_arithmetic) {
                    continue;
                }
                let key_var = intro.key_var.as_ref().map(|k| k.as_str());
                for_each(
                    ctx,
                    key_var,
                    intro.value_var.as_str(),
                    &intro.collection_expr,
                    |inner| {
                        if let Some(cond) = &f.cond {
                            // An element the condition skips is never evaluated.
                            if !matches!(eval(inner, &cond.expr)?, Value::Bool(true)) {
                                return Ok(());
                            }
                        }
                        bodies.clone().try_for_each(|body| check(inner, body))
                    },
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// How hcl holds a number: two integers of the same sign are added, subtracted, multiplied
/// and divided with a remainder as 64-bit integers (unchecked: a panic in a debug build, a
/// wrong number in a release one), anything else as floats.
enum Held {
    Positive(u64),
    Negative(i64),
    Float,
}

fn held(n: &hcl::Number) -> Held {
    match (n.is_f64(), n.as_u64(), n.as_i64()) {
        (false, Some(u), _) => Held::Positive(u),
        (false, None, Some(i)) => Held::Negative(i),
        _ => Held::Float,
    }
}

/// Whether hcl's integer arithmetic for `l op r` stays within its integers.
fn fits_in_integers(op: &Op, l: &hcl::Number, r: &hcl::Number) -> bool {
    use Held::{Negative as N, Positive as P};
    match (op, held(l), held(r)) {
        (Op::Plus, P(a), P(b)) => a.checked_add(b).is_some(),
        (Op::Plus, N(a), N(b)) => a.checked_add(b).is_some(),
        (Op::Minus, P(a), P(b)) if b > a => match (i64::try_from(a), i64::try_from(b)) {
            (Ok(a), Ok(b)) => a.checked_sub(b).is_some(),
            _ => false,
        },
        (Op::Mul, P(a), P(b)) => a.checked_mul(b).is_some(),
        (Op::Mul, N(a), N(b)) => a.checked_mul(b).is_some(),
        (Op::Mod, N(a), N(b)) => a.checked_rem(b).is_some(),
        _ => true,
    }
}

/// An object's computed keys and its values, for a walk.
/// A traversal's children: the expression traversed, then the index expressions (`a[i]`).
pub(super) fn traversal_exprs<'e>(t: &'e hcl_edit::expr::Traversal, out: &mut Vec<&'e Expr>) {
    out.push(&t.expr);
    for op in &t.operators {
        if let TraversalOperator::Index(i) = op.value() {
            out.push(i);
        }
    }
}

pub(super) fn object_exprs<'e>(o: &'e hcl_edit::expr::Object, out: &mut Vec<&'e Expr>) {
    for (k, v) in o.iter() {
        if let ObjectKey::Expression(k) = k {
            out.push(k);
        }
        out.push(v.expr());
    }
}

fn is_arithmetic(op: &Op) -> bool {
    matches!(op, Op::Plus | Op::Minus | Op::Mul | Op::Div | Op::Mod)
}

/// Whether `expr` holds an arithmetic operation anywhere: only then is a `for` body walked
/// once per element (a syntactic look, so that plain `for`s over many hosts cost no more).
fn has_arithmetic(expr: &Expr) -> bool {
    let mut stack = vec![expr];
    let mut templates: Vec<&Template> = Vec::new();
    loop {
        while let Some(t) = templates.pop() {
            for el in t.iter() {
                match el {
                    Element::Interpolation(i) => stack.push(&i.expr),
                    Element::Directive(d) => match &**d {
                        Directive::If(i) => {
                            stack.push(&i.if_expr.cond_expr);
                            templates.push(&i.if_expr.template);
                            templates.extend(i.else_expr.as_ref().map(|e| &e.template));
                        }
                        Directive::For(f) => {
                            stack.push(&f.for_expr.collection_expr);
                            templates.push(&f.for_expr.template);
                        }
                    },
                    Element::Literal(_) => {}
                }
            }
        }
        let Some(e) = stack.pop() else { return false };
        match e {
            Expr::BinaryOp(b) if is_arithmetic(b.operator.value()) => return true,
            Expr::BinaryOp(b) => stack.extend([&b.lhs_expr, &b.rhs_expr]),
            Expr::Array(a) => stack.extend(a.iter()),
            Expr::Object(o) => object_exprs(o, &mut stack),
            Expr::Parenthesis(p) => stack.push(p.inner()),
            Expr::UnaryOp(u) => stack.push(&u.expr),
            Expr::FuncCall(f) => stack.extend(f.args.iter()),
            Expr::Conditional(c) => stack.extend([&c.cond_expr, &c.true_expr, &c.false_expr]),
            Expr::StringTemplate(t) => templates.push(t),
            Expr::HeredocTemplate(h) => templates.push(&h.template),
            Expr::Traversal(t) => traversal_exprs(t, &mut stack),
            Expr::ForExpr(f) => {
                stack.extend([&f.intro.collection_expr, &f.value_expr]);
                stack.extend(f.key_expr.as_ref());
                stack.extend(f.cond.as_ref().map(|c| &c.expr));
            }
            _ => {}
        }
    }
}

/// The interpolations of a template, with its directives followed as hcl evaluates them.
fn check_template(ctx: &Context<'_>, t: &Template) -> Result<(), Error> {
    for el in t.iter() {
        match el {
            Element::Interpolation(i) => check(ctx, &i.expr)?,
            Element::Directive(d) => match &**d {
                Directive::If(i) => match eval(ctx, &i.if_expr.cond_expr)? {
                    Value::Bool(true) => check_template(ctx, &i.if_expr.template)?,
                    Value::Bool(false) => {
                        if let Some(e) = &i.else_expr {
                            check_template(ctx, &e.template)?;
                        }
                    }
                    _ => {}
                },
                Directive::For(f) => {
                    let f = &f.for_expr;
                    check(ctx, &f.collection_expr)?;
                    let key_var = f.key_var.as_ref().map(|k| k.as_str());
                    for_each(ctx, key_var, f.value_var.as_str(), &f.collection_expr, |inner| {
                        check_template(inner, &f.template)
                    })?;
                }
            },
            Element::Literal(_) => {}
        }
    }
    Ok(())
}

/// Runs `body` once per element of the collection `collection` evaluates to, in a copy of
/// `ctx` that binds the loop's variables as hcl does (an array's index or an object's key,
/// and the value). A value that is not a collection is left to hcl, which reports it.
fn for_each(
    ctx: &Context<'_>,
    key_var: Option<&str>,
    value_var: &str,
    collection: &Expr,
    mut body: impl FnMut(&Context<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let items: Vec<(Value, Value)> = match eval(ctx, collection) {
        Ok(Value::Array(a)) => {
            a.into_iter().enumerate().map(|(i, v)| (Value::from(i as u64), v)).collect()
        }
        Ok(Value::Object(o)) => o.into_iter().map(|(k, v)| (Value::String(k), v)).collect(),
        _ => return Ok(()),
    };
    // One copy for the whole loop: the variables are rebound per element.
    let mut inner = ctx.clone();
    for (k, v) in items {
        if let Some(key_var) = key_var {
            inner.declare_var(key_var, k);
        }
        inner.declare_var(value_var, v);
        body(&inner)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each expression fails with a message containing its text, or (an empty text)
    /// evaluates.
    fn assert_errors(cases: &[(&str, &str)]) {
        for (text, why) in cases {
            let expr = hcl_edit::parser::parse_expr(text).unwrap();
            let err = eval(&Context::new(), &expr).err().map(|e| e.to_string()).unwrap_or_default();
            if why.is_empty() {
                assert_eq!(err, "", "{text}: evaluated, or never evaluated by hcl");
            } else {
                assert!(err.contains(why), "{text}: {err}");
            }
        }
    }

    #[test]
    fn port_70_times_0_over_0_and_other_arithmetic_without_a_number_is_an_error() {
        assert_errors(&[
            ("70*0/0", "division by zero"),
            ("7 % 0", "division by zero"),
            ("[1, (2 + 7 % (1 - 1))]", "division by zero"),
            ("1e308 * 10", "is not a finite number"),
            ("true ? 1 : 1 / 0", ""),
            // Integers that leave 64 bits (found by fuzzing: a 40-digit product).
            ("33333 * 3333333333333333333", "does not fit in a 64-bit integer"),
            ("18446744073709551615 + 1", "does not fit in a 64-bit integer"),
            ("-9223372036854775807 + -2", "does not fit in a 64-bit integer"),
            ("-9223372036854775807 * -2", "does not fit in a 64-bit integer"),
            ("1 - 18446744073709551615", "does not fit in a 64-bit integer"),
            ("(-9223372036854775807 - 1) % -1", "does not fit in a 64-bit integer"),
            ("4294967296 * 4294967295", ""),
            ("1 - 9223372036854775807", ""),
            ("0.5 * 18446744073709551615", ""),
        ]);
    }

    /// The loop's variables only exist while hcl runs the loop: the body is checked once per
    /// element with them bound, and only where hcl evaluates it.
    #[test]
    fn arithmetic_in_for_bodies_and_template_directives_is_checked_per_element() {
        assert_errors(&[
            ("[for x in [1, 0] : 7 % x]", "division by zero"),
            ("{for k, v in {a = 1, b = 0} : k => 7 / v}", "division by zero"),
            ("[for i, x in [5, 6] : 1 % i]", "division by zero"),
            ("[for x in [1, 1e308] : x * 10]", "is not a finite number"),
            ("[for x in [[1, 0]] : [for y in x : 7 % y]]", "division by zero"),
            ("\"%{ for x in [2, 0] }${7 % x}%{ endfor }\"", "division by zero"),
            ("\"%{ if true }${7 % 0}%{ endif }\"", "division by zero"),
            ("\"%{ if false }x%{ else }${1 % 0}%{ endif }\"", "division by zero"),
            // What hcl never evaluates is not refused.
            ("[for x in [1, 0] : 7 % x if x != 0]", ""),
            ("\"%{ if false }${7 % 0}%{ endif }\"", ""),
            ("[for x in [] : 7 % x]", ""),
            ("[for x in [1, 2] : 7 % x]", ""),
        ]);
    }

    #[test]
    fn a_for_body_without_arithmetic_is_not_walked_per_element() {
        let plain =
            hcl_edit::parser::parse_expr("{ name = x, port = x.port > 0 ? 1 : 2 }").unwrap();
        assert!(!has_arithmetic(&plain));
        let sum =
            hcl_edit::parser::parse_expr("\"${x.a}-%{ if x.b }${x.c - 1}%{ endif }\"").unwrap();
        assert!(has_arithmetic(&sum));
    }
}
