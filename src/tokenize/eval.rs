//! Evaluation of rules on JSON records, once per tokenizer where `tokens(...)` is used.
//!
//! Values are either uniform (one value) or per-tokenizer (one value per tokenizer, as soon
//! as `tokens(...)` is involved); operators broadcast. A rule holds when it is `true`, or
//! `true` for every tokenizer. `same(e)` is `true` when `e` has one value across all
//! tokenizers. Within one record every distinct `tokens(...)` expression (by canonical
//! text) is evaluated once, and every distinct text is tokenized once per tokenizer; chunk
//! counts are memoised across records in the per-thread [`EvalCache`].
//!
//! Integer `/` and `%` truncate toward zero (as in Rust and C); a division by zero or an
//! overflow fails the rule. `==`/`!=` between different types are false/true; `<` etc.
//! need two numbers or two strings (compared by code point).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use super::error::RuleError;
use super::registry::{CountCache, Tokenizer, TokenizerSet};
use super::rules::{BinOp, Expr, Func, PathSeg, Rule};

/// Compiled expression: like [`Expr`], with `tokens(...)` numbered for the per-record memo.
#[derive(Debug)]
enum Node {
    Int(i64),
    Str(String),
    Bool(bool),
    Null,
    Field(Vec<PathSeg>, String),
    Neg(Box<Node>),
    Not(Box<Node>),
    Bin(BinOp, Box<Node>, Box<Node>),
    Len(Box<Node>),
    Same(Box<Node>),
    Tokens(usize, Box<Node>),
}

fn compile(e: &Expr, token_exprs: &mut Vec<String>) -> Node {
    match e {
        Expr::Int(n) => Node::Int(*n),
        Expr::Str(s) => Node::Str(s.clone()),
        Expr::Bool(b) => Node::Bool(*b),
        Expr::Null => Node::Null,
        Expr::Field(p) => Node::Field(p.clone(), Expr::path_text(p)),
        Expr::Neg(a) => Node::Neg(Box::new(compile(a, token_exprs))),
        Expr::Not(a) => Node::Not(Box::new(compile(a, token_exprs))),
        Expr::Binary(op, a, b) => Node::Bin(
            *op,
            Box::new(compile(a, token_exprs)),
            Box::new(compile(b, token_exprs)),
        ),
        Expr::Call(Func::Len, a) => Node::Len(Box::new(compile(a, token_exprs))),
        Expr::Call(Func::Same, a) => Node::Same(Box::new(compile(a, token_exprs))),
        Expr::Call(Func::Tokens, a) => {
            let arg = compile(a, token_exprs);
            let text = e.to_string();
            let id = match token_exprs.iter().position(|t| *t == text) {
                Some(i) => i,
                None => {
                    token_exprs.push(text);
                    token_exprs.len() - 1
                }
            };
            Node::Tokens(id, Box::new(arg))
        }
    }
}

/// One scalar value.
#[derive(Debug, Clone)]
enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// A JSON array or object from the record.
    Json(&'a Value),
}

impl V<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            V::Null => "null",
            V::Bool(_) => "boolean",
            V::Int(_) => "int",
            V::Float(_) => "float",
            V::Str(_) => "string",
            V::Json(Value::Array(_)) => "array",
            V::Json(_) => "object",
        }
    }
    fn show(&self) -> String {
        match self {
            V::Null => "null".into(),
            V::Bool(b) => b.to_string(),
            V::Int(n) => n.to_string(),
            V::Float(x) => x.to_string(),
            V::Str(s) => {
                let short: String = s.chars().take(40).collect();
                let more = if short.len() < s.len() { "..." } else { "" };
                format!("{}{more}", Value::String(short))
            }
            V::Json(v) => v.to_string().chars().take(40).collect(),
        }
    }
    fn num(&self) -> Option<f64> {
        match self {
            V::Int(n) => Some(*n as f64),
            V::Float(x) => Some(*x),
            _ => None,
        }
    }
}

fn values_equal(a: &V, b: &V) -> bool {
    match (a, b) {
        (V::Int(x), V::Int(y)) => x == y,
        (V::Str(x), V::Str(y)) => x == y,
        (V::Bool(x), V::Bool(y)) => x == y,
        (V::Null, V::Null) => true,
        (V::Json(x), V::Json(y)) => x == y,
        _ => match (a.num(), b.num()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// A value, uniform or one per tokenizer.
#[derive(Debug, Clone)]
enum Val<'a> {
    One(V<'a>),
    Per(Vec<V<'a>>),
}

type R<T> = Result<T, String>;

fn binary<'a>(op: BinOp, a: V<'a>, b: V<'a>) -> R<V<'a>> {
    use BinOp::*;
    let mismatch = |verb: &str| format!("cannot {verb} {} and {}", a.type_name(), b.type_name());
    match op {
        Eq => Ok(V::Bool(values_equal(&a, &b))),
        Ne => Ok(V::Bool(!values_equal(&a, &b))),
        Lt | Le | Gt | Ge => {
            let ord = match (&a, &b) {
                (V::Int(x), V::Int(y)) => x.cmp(y),
                (V::Str(x), V::Str(y)) => x.cmp(y),
                _ => match (a.num(), b.num()) {
                    (Some(x), Some(y)) => x
                        .partial_cmp(&y)
                        .ok_or_else(|| "cannot compare NaN".to_string())?,
                    _ => {
                        return Err(format!(
                            "cannot compare {} with {}",
                            a.type_name(),
                            b.type_name()
                        ))
                    }
                },
            };
            Ok(V::Bool(match op {
                Lt => ord.is_lt(),
                Le => ord.is_le(),
                Gt => ord.is_gt(),
                _ => ord.is_ge(),
            }))
        }
        And | Or => match (&a, &b) {
            (V::Bool(x), V::Bool(y)) => Ok(V::Bool(if op == And { *x && *y } else { *x || *y })),
            _ => Err(format!(
                "'{}' expects booleans, got {} and {}",
                if op == And { "and" } else { "or" },
                a.type_name(),
                b.type_name()
            )),
        },
        Add | Sub | Mul | Div | Rem => {
            if let (Add, V::Str(x), V::Str(y)) = (op, &a, &b) {
                let mut s = String::with_capacity(x.len() + y.len());
                s.push_str(x);
                s.push_str(y);
                return Ok(V::Str(Cow::Owned(s)));
            }
            let verb = match op {
                Add => "add",
                Sub => "subtract",
                Mul => "multiply",
                Div => "divide",
                _ => "take the remainder of",
            };
            match (&a, &b) {
                (V::Int(x), V::Int(y)) => {
                    let (x, y) = (*x, *y);
                    if matches!(op, Div | Rem) && y == 0 {
                        return Err("division by zero".into());
                    }
                    let r = match op {
                        Add => x.checked_add(y),
                        Sub => x.checked_sub(y),
                        Mul => x.checked_mul(y),
                        Div => x.checked_div(y),
                        _ => x.checked_rem(y),
                    };
                    r.map(V::Int).ok_or_else(|| "integer overflow".to_string())
                }
                _ => match (a.num(), b.num()) {
                    (Some(x), Some(y)) => Ok(V::Float(match op {
                        Add => x + y,
                        Sub => x - y,
                        Mul => x * y,
                        Div => x / y,
                        _ => x % y,
                    })),
                    _ => Err(mismatch(verb)),
                },
            }
        }
    }
}

fn map1<'a>(v: Val<'a>, f: impl Fn(V<'a>) -> R<V<'a>>) -> R<Val<'a>> {
    Ok(match v {
        Val::One(x) => Val::One(f(x)?),
        Val::Per(xs) => Val::Per(xs.into_iter().map(f).collect::<R<_>>()?),
    })
}

fn map2<'a>(a: Val<'a>, b: Val<'a>, f: impl Fn(V<'a>, V<'a>) -> R<V<'a>>) -> R<Val<'a>> {
    Ok(match (a, b) {
        (Val::One(x), Val::One(y)) => Val::One(f(x, y)?),
        (Val::Per(xs), Val::One(y)) => {
            Val::Per(xs.into_iter().map(|x| f(x, y.clone())).collect::<R<_>>()?)
        }
        (Val::One(x), Val::Per(ys)) => {
            Val::Per(ys.into_iter().map(|y| f(x.clone(), y)).collect::<R<_>>()?)
        }
        (Val::Per(xs), Val::Per(ys)) => Val::Per(
            xs.into_iter()
                .zip(ys)
                .map(|(x, y)| f(x, y))
                .collect::<R<_>>()?,
        ),
    })
}

fn lookup<'a>(record: &'a Value, path: &[PathSeg]) -> Option<&'a Value> {
    let mut v = record;
    for seg in path {
        v = match (seg, v) {
            (PathSeg::Key(k), Value::Object(m)) => m.get(k)?,
            (PathSeg::Index(i), Value::Array(a)) => a.get(*i)?,
            (PathSeg::Index(i), Value::Object(m)) => m.get(&i.to_string())?,
            _ => return None,
        };
    }
    Some(v)
}

/// A rule that did not hold for a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRule {
    /// The rule's position in [`RuleSet::rules`] (what counts are kept by).
    pub index: usize,
    /// The rule's name.
    pub name: String,
    /// Why: `false ...`, `differs across tokenizers: ...`, `missing field a.b`, a type error.
    pub reason: String,
}

/// The outcome for one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordVerdict {
    /// All rules held.
    pub valid: bool,
    /// The rules that did not hold, in rule order.
    pub failed: Vec<FailedRule>,
    /// Each `tokens(...)` expression evaluated for this record (canonical text, e.g.
    /// `tokens(prompt + " " + single_token)`), with its count per tokenizer, in order of
    /// first appearance in the rules.
    pub counts: Vec<(String, Vec<usize>)>,
}

/// Per-thread scratch space and memo for [`RuleSet::evaluate`]. Create one per worker
/// thread with [`RuleSet::new_cache`]; it must not be shared between rule sets.
pub struct EvalCache {
    counts: CountCache,
    token_results: Vec<Option<R<Vec<usize>>>>,
    texts: Vec<(String, Vec<usize>)>,
    scratch: Vec<usize>,
}

impl EvalCache {
    /// The chunk memo (its size is useful in benchmarks).
    pub fn count_cache(&self) -> &CountCache {
        &self.counts
    }
}

/// Parsed rules and the tokenizers they are evaluated with. `Send + Sync`.
pub struct RuleSet {
    rules: Vec<Rule>,
    nodes: Vec<Node>,
    token_exprs: Vec<String>,
    tokenizers: TokenizerSet,
    special: bool,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field(
                "rules",
                &self.rules.iter().map(|r| &r.name).collect::<Vec<_>>(),
            )
            .field("tokenizers", &self.tokenizers.names())
            .field("special", &self.special)
            .finish()
    }
}

struct Ctx<'s, 'a> {
    set: &'s RuleSet,
    record: &'a Value,
    cache: &'s mut EvalCache,
}

impl<'a> Ctx<'_, 'a> {
    fn eval(&mut self, n: &'a Node) -> R<Val<'a>> {
        match n {
            Node::Int(i) => Ok(Val::One(V::Int(*i))),
            Node::Str(s) => Ok(Val::One(V::Str(Cow::Borrowed(s)))),
            Node::Bool(b) => Ok(Val::One(V::Bool(*b))),
            Node::Null => Ok(Val::One(V::Null)),
            Node::Field(path, text) => {
                let v = lookup(self.record, path).ok_or_else(|| format!("missing field {text}"))?;
                Ok(Val::One(match v {
                    Value::Null => V::Null,
                    Value::Bool(b) => V::Bool(*b),
                    Value::Number(n) => match n.as_i64() {
                        Some(i) => V::Int(i),
                        None => V::Float(n.as_f64().unwrap_or(f64::NAN)),
                    },
                    Value::String(s) => V::Str(Cow::Borrowed(s)),
                    other => V::Json(other),
                }))
            }
            Node::Neg(a) => map1(self.eval(a)?, |x| match x {
                V::Int(i) => i
                    .checked_neg()
                    .map(V::Int)
                    .ok_or_else(|| "integer overflow".into()),
                V::Float(f) => Ok(V::Float(-f)),
                other => Err(format!("cannot negate {}", other.type_name())),
            }),
            Node::Not(a) => map1(self.eval(a)?, |x| match x {
                V::Bool(b) => Ok(V::Bool(!b)),
                other => Err(format!(
                    "'not' expects a boolean, got {}",
                    other.type_name()
                )),
            }),
            Node::Bin(op @ (BinOp::And | BinOp::Or), a, b) => {
                let l = self.eval(a)?;
                if let Val::One(V::Bool(x)) = l {
                    if x == (*op == BinOp::Or) {
                        return Ok(l); // short circuit
                    }
                }
                let r = self.eval(b)?;
                map2(l, r, |x, y| binary(*op, x, y))
            }
            Node::Bin(op, a, b) => {
                let l = self.eval(a)?;
                let r = self.eval(b)?;
                map2(l, r, |x, y| binary(*op, x, y))
            }
            Node::Len(a) => map1(self.eval(a)?, |x| match x {
                V::Str(s) => Ok(V::Int(s.chars().count() as i64)),
                V::Json(Value::Array(a)) => Ok(V::Int(a.len() as i64)),
                V::Json(Value::Object(m)) => Ok(V::Int(m.len() as i64)),
                other => Err(format!(
                    "len() expects a string or an array, got {}",
                    other.type_name()
                )),
            }),
            Node::Same(a) => Ok(Val::One(V::Bool(match self.eval(a)? {
                Val::One(_) => true,
                Val::Per(xs) => xs.windows(2).all(|w| values_equal(&w[0], &w[1])),
            }))),
            Node::Tokens(id, a) => {
                if self.cache.token_results[*id].is_none() {
                    let r = self.eval(a).and_then(|arg| self.count(arg));
                    self.cache.token_results[*id] = Some(r);
                }
                match self.cache.token_results[*id].as_ref().unwrap() {
                    Ok(counts) => Ok(Val::Per(counts.iter().map(|&c| V::Int(c as i64)).collect())),
                    Err(e) => Err(e.clone()),
                }
            }
        }
    }

    fn count(&mut self, arg: Val<'a>) -> R<Vec<usize>> {
        let set = &self.set.tokenizers;
        let special = self.set.special;
        let not_string = |v: &V| format!("tokens() expects a string, got {}", v.type_name());
        match arg {
            Val::One(V::Str(s)) => {
                if let Some((_, c)) = self.cache.texts.iter().find(|(t, _)| *t == *s) {
                    return Ok(c.clone());
                }
                let c = &mut self.cache;
                set.count_all(&s, special, &mut c.counts, &mut c.scratch)
                    .map_err(|e| e.to_string())?;
                let counts = c.scratch.clone();
                c.texts.push((s.into_owned(), counts.clone()));
                Ok(counts)
            }
            Val::One(v) => Err(not_string(&v)),
            Val::Per(xs) => {
                let mut out = Vec::with_capacity(xs.len());
                for (i, x) in xs.iter().enumerate() {
                    match x {
                        V::Str(s) => out.push(
                            set.count_one(i, s, special, &mut self.cache.counts)
                                .map_err(|e| e.to_string())?,
                        ),
                        v => return Err(not_string(v)),
                    }
                }
                Ok(out)
            }
        }
    }
}

impl RuleSet {
    /// Builds a rule set. Fails (before any record is read) when a rule uses `tokens()`
    /// without tokenizers, when there is no rule, or when two rules share a name.
    pub fn new(
        rules: Vec<Rule>,
        tokenizers: TokenizerSet,
        special: bool,
    ) -> Result<RuleSet, RuleError> {
        if rules.is_empty() {
            return Err(RuleError::Empty);
        }
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|q| q.name == r.name) {
                return Err(RuleError::DuplicateName(r.name.clone()));
            }
            if tokenizers.is_empty() && r.expr.uses_tokens() {
                return Err(RuleError::NoTokenizer(r.name.clone()));
            }
        }
        let mut token_exprs = Vec::new();
        let nodes = rules
            .iter()
            .map(|r| compile(&r.expr, &mut token_exprs))
            .collect();
        Ok(RuleSet {
            rules,
            nodes,
            token_exprs,
            tokenizers,
            special,
        })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The tokenizers, in order (the order of every per-tokenizer count).
    pub fn tokenizers(&self) -> &[Arc<Tokenizer>] {
        self.tokenizers.tokenizers()
    }

    /// Canonical texts of the distinct `tokens(...)` expressions, in order.
    pub fn token_exprs(&self) -> &[String] {
        &self.token_exprs
    }

    /// A fresh per-thread cache.
    pub fn new_cache(&self) -> EvalCache {
        EvalCache {
            counts: self.tokenizers.new_cache(),
            token_results: vec![None; self.token_exprs.len()],
            texts: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Evaluates every rule on one record.
    pub fn evaluate(&self, record: &Value, cache: &mut EvalCache) -> RecordVerdict {
        cache.token_results.iter_mut().for_each(|r| *r = None);
        cache.texts.clear();
        let mut failed = Vec::new();
        for (index, (rule, node)) in self.rules.iter().zip(&self.nodes).enumerate() {
            let mut ctx = Ctx {
                set: self,
                record,
                cache,
            };
            let reason = match ctx.eval(node) {
                Err(reason) => Some(reason),
                Ok(Val::One(V::Bool(true))) => None,
                Ok(Val::Per(xs)) if xs.iter().all(|x| matches!(x, V::Bool(true))) => None,
                Ok(v) => Some(ctx.explain(node, v)),
            };
            if let Some(reason) = reason {
                failed.push(FailedRule {
                    index,
                    name: rule.name.clone(),
                    reason,
                });
            }
        }
        let counts = self
            .token_exprs
            .iter()
            .zip(&cache.token_results)
            .filter_map(|(t, r)| match r {
                Some(Ok(c)) => Some((t.clone(), c.clone())),
                _ => None,
            })
            .collect();
        RecordVerdict {
            valid: failed.is_empty(),
            failed,
            counts,
        }
    }
}

impl<'a> Ctx<'_, 'a> {
    /// A reason for a rule whose value `v` is not (all) true. Re-evaluation is cheap:
    /// `tokens(...)` results are memoised for the record.
    fn explain(&mut self, node: &'a Node, v: Val<'a>) -> String {
        let set = self.set;
        let names = set.tokenizers.names();
        let not_bool = |x: &V| !matches!(x, V::Bool(_));
        match &v {
            Val::One(x) if not_bool(x) => {
                return format!("rule gave {}, not a boolean", x.type_name())
            }
            Val::Per(xs) if xs.iter().any(not_bool) => {
                let x = xs.iter().find(|x| not_bool(x)).unwrap();
                return format!("rule gave {}, not a boolean", x.type_name());
            }
            _ => {}
        }
        if let Node::Same(inner) = node {
            if let Ok(Val::Per(xs)) = self.eval(inner) {
                let parts: Vec<String> = names
                    .iter()
                    .zip(&xs)
                    .map(|(n, x)| format!("{n}={}", x.show()))
                    .collect();
                return format!("differs across tokenizers: {}", parts.join(", "));
            }
        }
        let detail = |i: Option<usize>, this: &mut Self| -> String {
            if let Node::Bin(op, a, b) = node {
                if op.symbol_is_comparison() {
                    if let (Ok(l), Ok(r)) = (this.eval(a), this.eval(b)) {
                        let pick = |v: &Val<'a>| match (v, i) {
                            (Val::One(x), _) => x.show(),
                            (Val::Per(xs), Some(i)) => xs[i].show(),
                            (Val::Per(xs), None) => xs[0].show(),
                        };
                        return format!(" ({} {} {})", pick(&l), op.symbol_text(), pick(&r));
                    }
                }
            }
            String::new()
        };
        match v {
            Val::Per(xs) => {
                let parts: Vec<String> = xs
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| !matches!(x, V::Bool(true)))
                    .map(|(i, _)| format!("{}{}", names[i], detail(Some(i), self)))
                    .collect();
                format!("false for {}", parts.join(", "))
            }
            Val::One(_) => format!("false{}", detail(None, self)),
        }
    }
}

impl BinOp {
    fn symbol_is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }
    fn symbol_text(self) -> &'static str {
        match self {
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            _ => ">=",
        }
    }
}
