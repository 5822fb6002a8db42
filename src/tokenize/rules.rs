//! The rule language of `batchline validate`: lexer, parser, syntax tree, canonical
//! printing, and the `--rules FILE` format.
//!
//! Grammar (lowest precedence first):
//! ```text
//! rule    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | cmp
//! cmp     := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)?     -- not chainable
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/" | "%") unary)*
//! unary   := "-" unary | primary
//! primary := INT | STRING | "true" | "false" | "null" | "(" or ")"
//!          | FUNC "(" or ")"            -- FUNC: len, tokens, same
//!          | IDENT ("." (IDENT | INT))* -- record field path: a.b, a.0
//! ```
//! Strings take `"..."` or `'...'` with escapes `\" \' \\ \n \r \t \0 \u{1F600} \uXXXX`.
//! Identifiers are `[A-Za-z_][A-Za-z0-9_]*`; `and or not true false null` are reserved.
//! A rule must be a condition: a comparison, `and`/`or`/`not`, `same(...)`, `true`/`false`
//! or a field path (a boolean field).

use std::fmt;

use super::error::{ParseError, RuleError};

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
    fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 4,
            BinOp::Add | BinOp::Sub => 5,
            BinOp::Mul | BinOp::Div | BinOp::Rem => 6,
        }
    }
}

/// Built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// Length in characters (strings) or elements (arrays).
    Len,
    /// Token count, once per tokenizer.
    Tokens,
    /// True when the argument has one value across all tokenizers.
    Same,
}

impl Func {
    fn name(self) -> &'static str {
        match self {
            Func::Len => "len",
            Func::Tokens => "tokens",
            Func::Same => "same",
        }
    }
}

/// One segment of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// Object key.
    Key(String),
    /// Array index (also tried as an object key).
    Index(usize),
}

/// Syntax tree of a rule expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Int(i64),
    Str(String),
    Bool(bool),
    Null,
    Field(Vec<PathSeg>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Box<Expr>),
}

impl Expr {
    /// Whether the expression contains `tokens(...)` anywhere.
    pub fn uses_tokens(&self) -> bool {
        match self {
            Expr::Call(Func::Tokens, _) => true,
            Expr::Call(_, e) | Expr::Neg(e) | Expr::Not(e) => e.uses_tokens(),
            Expr::Binary(_, a, b) => a.uses_tokens() || b.uses_tokens(),
            _ => false,
        }
    }

    fn precedence(&self) -> u8 {
        match self {
            Expr::Binary(op, ..) => op.precedence(),
            Expr::Not(_) => 3,
            Expr::Neg(_) => 7,
            _ => 8,
        }
    }

    /// Path text of a field, e.g. `a.b.0`.
    pub fn path_text(path: &[PathSeg]) -> String {
        let mut s = String::new();
        for (i, seg) in path.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            match seg {
                PathSeg::Key(k) => s.push_str(k),
                PathSeg::Index(n) => s.push_str(&n.to_string()),
            }
        }
        s
    }
}

/// Canonical text: single spaces around binary operators, minimal parentheses,
/// strings in double quotes. E.g. `tokens(prompt + " " + single_token)`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Int(n) => write!(f, "{n}"),
            Expr::Str(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        '\r' => f.write_str("\\r")?,
                        '\t' => f.write_str("\\t")?,
                        '\0' => f.write_str("\\0")?,
                        c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
            Expr::Bool(b) => write!(f, "{b}"),
            Expr::Null => f.write_str("null"),
            Expr::Field(p) => f.write_str(&Expr::path_text(p)),
            Expr::Neg(e) => {
                if e.precedence() < 7 || matches!(**e, Expr::Neg(_) | Expr::Int(_)) {
                    write!(f, "-({e})")
                } else {
                    write!(f, "-{e}")
                }
            }
            Expr::Not(e) => {
                if e.precedence() < 3 {
                    write!(f, "not ({e})")
                } else {
                    write!(f, "not {e}")
                }
            }
            Expr::Call(func, e) => write!(f, "{}({e})", func.name()),
            Expr::Binary(op, a, b) => {
                let p = op.precedence();
                // Left-associative: left operand may share the precedence, right may not.
                // Comparisons are not chainable: both sides need a higher precedence.
                let cmp = p == 4;
                if a.precedence() < p || (cmp && a.precedence() == p) {
                    write!(f, "({a})")?;
                } else {
                    write!(f, "{a}")?;
                }
                write!(f, " {} ", op.symbol())?;
                if b.precedence() <= p {
                    write!(f, "({b})")
                } else {
                    write!(f, "{b}")
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    Str(String),
    Ident(String),
    Op(&'static str),
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Int(n) => format!("number {n}"),
        Tok::Str(_) => "a string".into(),
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Op(o) => format!("'{o}'"),
        Tok::End => "end of rule".into(),
    }
}

/// Lexes into (token, 1-based column) pairs.
fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |col: usize, msg: String| ParseError {
        column: col + 1,
        message: msg,
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i < chars.len() && (chars[i].is_alphabetic() || chars[i] == '_') {
                return Err(err(start, "a name cannot start with a digit".into()));
            }
            let text: String = chars[start..i].iter().collect();
            let n = text
                .parse::<i64>()
                .map_err(|_| err(start, format!("integer {text} is too large")))?;
            out.push((Tok::Int(n), start + 1));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start + 1));
            continue;
        }
        if c == '"' || c == '\'' {
            let quote = c;
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err(err(start, "unterminated string".into()));
                };
                i += 1;
                if ch == quote {
                    break;
                }
                if ch != '\\' {
                    s.push(ch);
                    continue;
                }
                let esc_col = i - 1;
                let Some(&e) = chars.get(i) else {
                    return Err(err(start, "unterminated string".into()));
                };
                i += 1;
                match e {
                    '"' => s.push('"'),
                    '\'' => s.push('\''),
                    '\\' => s.push('\\'),
                    'n' => s.push('\n'),
                    'r' => s.push('\r'),
                    't' => s.push('\t'),
                    '0' => s.push('\0'),
                    'u' => {
                        let (hex, braced) = if chars.get(i) == Some(&'{') {
                            let close = chars[i..].iter().position(|&c| c == '}');
                            let Some(close) = close else {
                                return Err(err(esc_col, "unterminated \\u{...} escape".into()));
                            };
                            let h: String = chars[i + 1..i + close].iter().collect();
                            i += close + 1;
                            (h, true)
                        } else {
                            let h: String = chars
                                .get(i..i + 4)
                                .map(|s| s.iter().collect())
                                .unwrap_or_default();
                            i += 4;
                            (h, false)
                        };
                        let ok =
                            (braced && (1..=6).contains(&hex.len())) || (!braced && hex.len() == 4);
                        let ch = ok
                            .then(|| u32::from_str_radix(&hex, 16).ok())
                            .flatten()
                            .and_then(char::from_u32);
                        match ch {
                            Some(ch) => s.push(ch),
                            None => return Err(err(esc_col, "invalid \\u escape".into())),
                        }
                    }
                    other => return Err(err(esc_col, format!("unknown escape \\{other}"))),
                }
            }
            out.push((Tok::Str(s), start + 1));
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (op, len): (&'static str, usize) = match (c, next) {
            ('=', Some('=')) => ("==", 2),
            ('!', Some('=')) => ("!=", 2),
            ('<', Some('=')) => ("<=", 2),
            ('>', Some('=')) => (">=", 2),
            ('=', _) => return Err(err(start, "unexpected '=' (use '==' to compare)".into())),
            ('!', _) => return Err(err(start, "unexpected '!' (use 'not' or '!=')".into())),
            ('&', _) => return Err(err(start, "unexpected '&' (use 'and')".into())),
            ('|', _) => return Err(err(start, "unexpected '|' (use 'or')".into())),
            ('<', _) => ("<", 1),
            ('>', _) => (">", 1),
            ('+', _) => ("+", 1),
            ('-', _) => ("-", 1),
            ('*', _) => ("*", 1),
            ('/', _) => ("/", 1),
            ('%', _) => ("%", 1),
            ('(', _) => ("(", 1),
            (')', _) => (")", 1),
            ('.', _) => (".", 1),
            _ => return Err(err(start, format!("unexpected character '{c}'"))),
        };
        out.push((Tok::Op(op), start + 1));
        i += len;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    fn col(&self) -> usize {
        self.toks[self.pos].1
    }
    fn bump(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            column: self.col(),
            message: message.into(),
        })
    }
    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }
    fn expect_op(&mut self, op: &str) -> Result<(), ParseError> {
        if self.is_op(op) {
            self.bump();
            Ok(())
        } else {
            self.error(format!("expected '{op}', found {}", describe(self.peek())))
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.and()?;
        while self.is_word("or") {
            self.bump();
            let r = self.and()?;
            e = Expr::Binary(BinOp::Or, Box::new(e), Box::new(r));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.not()?;
        while self.is_word("and") {
            self.bump();
            let r = self.not()?;
            e = Expr::Binary(BinOp::And, Box::new(e), Box::new(r));
        }
        Ok(e)
    }
    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.is_word("not") {
            self.bump();
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }
    fn cmp_op(&self) -> Option<BinOp> {
        match self.peek() {
            Tok::Op("==") => Some(BinOp::Eq),
            Tok::Op("!=") => Some(BinOp::Ne),
            Tok::Op("<") => Some(BinOp::Lt),
            Tok::Op("<=") => Some(BinOp::Le),
            Tok::Op(">") => Some(BinOp::Gt),
            Tok::Op(">=") => Some(BinOp::Ge),
            _ => None,
        }
    }
    fn cmp(&mut self) -> Result<Expr, ParseError> {
        let e = self.sum()?;
        if let Some(op) = self.cmp_op() {
            self.bump();
            let r = self.sum()?;
            if self.cmp_op().is_some() {
                return self.error("comparisons cannot be chained; use 'and'");
            }
            return Ok(Expr::Binary(op, Box::new(e), Box::new(r)));
        }
        Ok(e)
    }
    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.product()?;
        loop {
            let op = match self.peek() {
                Tok::Op("+") => BinOp::Add,
                Tok::Op("-") => BinOp::Sub,
                _ => return Ok(e),
            };
            self.bump();
            let r = self.product()?;
            e = Expr::Binary(op, Box::new(e), Box::new(r));
        }
    }
    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Op("*") => BinOp::Mul,
                Tok::Op("/") => BinOp::Div,
                Tok::Op("%") => BinOp::Rem,
                _ => return Ok(e),
            };
            self.bump();
            let r = self.unary()?;
            e = Expr::Binary(op, Box::new(e), Box::new(r));
        }
    }
    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.is_op("-") {
            self.bump();
            return Ok(match self.unary()? {
                Expr::Int(n) => Expr::Int(-n),
                e => Expr::Neg(Box::new(e)),
            });
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<Expr, ParseError> {
        let col = self.col();
        match self.peek().clone() {
            Tok::Int(n) => {
                self.bump();
                Ok(Expr::Int(n))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Str(s))
            }
            Tok::Op("(") => {
                self.bump();
                let e = self.or()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                self.bump();
                match name.as_str() {
                    "true" => return Ok(Expr::Bool(true)),
                    "false" => return Ok(Expr::Bool(false)),
                    "null" => return Ok(Expr::Null),
                    "and" | "or" | "not" => {
                        return Err(ParseError {
                            column: col,
                            message: format!("expected a value, found '{name}'"),
                        })
                    }
                    _ => {}
                }
                if self.is_op("(") {
                    let func = match name.as_str() {
                        "len" => Func::Len,
                        "tokens" => Func::Tokens,
                        "same" => Func::Same,
                        _ => {
                            return Err(ParseError {
                                column: col,
                                message: format!(
                                    "unknown function '{name}' (known: len, tokens, same)"
                                ),
                            })
                        }
                    };
                    self.bump();
                    if self.is_op(")") {
                        return self.error(format!("{}() takes one argument", func.name()));
                    }
                    let arg = self.or()?;
                    self.expect_op(")")?;
                    return Ok(Expr::Call(func, Box::new(arg)));
                }
                let mut path = vec![PathSeg::Key(name)];
                while self.is_op(".") {
                    self.bump();
                    match self.bump() {
                        Tok::Ident(k) => path.push(PathSeg::Key(k)),
                        Tok::Int(n) if n >= 0 => path.push(PathSeg::Index(n as usize)),
                        _ => {
                            self.pos -= 1;
                            return self.error("expected a field name or index after '.'");
                        }
                    }
                }
                Ok(Expr::Field(path))
            }
            Tok::End => self.error("expected a value, found end of rule"),
            t => self.error(format!("expected a value, found {}", describe(&t))),
        }
    }
}

/// Parses one expression. Columns in errors are 1-based characters of `src`.
pub fn parse_expr(src: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    let e = p.or()?;
    match p.peek() {
        Tok::End => Ok(e),
        Tok::Op(")") => p.error("unmatched ')'"),
        t => p.error(format!(
            "expected an operator or end of rule, found {}",
            describe(t)
        )),
    }
}

/// A named rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The given name, or the expression text as written (trimmed).
    pub name: String,
    /// The expression text as written (trimmed).
    pub source: String,
    pub expr: Expr,
}

fn is_condition(e: &Expr) -> bool {
    match e {
        Expr::Bool(_) | Expr::Field(_) | Expr::Not(_) | Expr::Call(Func::Same, _) => true,
        Expr::Binary(op, ..) => op.precedence() <= 4,
        _ => false,
    }
}

/// Byte offset of a `name:` separator outside string literals, if any.
fn name_separator(src: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in src.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                ':' => return Some(i),
                _ => {}
            },
        }
    }
    None
}

impl Rule {
    /// Parses `name: expr` or `expr`. Error columns are 1-based characters of `src`.
    pub fn parse(src: &str) -> Result<Rule, ParseError> {
        let (name, expr_src, offset) = match name_separator(src) {
            Some(i) => {
                let name = src[..i].trim();
                if name.is_empty() {
                    return Err(ParseError {
                        column: src[..i].chars().count() + 1,
                        message: "empty rule name before ':'".into(),
                    });
                }
                (
                    Some(name.to_string()),
                    &src[i + 1..],
                    src[..=i].chars().count(),
                )
            }
            None => (None, src, 0),
        };
        let expr = parse_expr(expr_src).map_err(|e| ParseError {
            column: e.column + offset,
            message: e.message,
        })?;
        if !is_condition(&expr) {
            let lead = expr_src.chars().take_while(|c| c.is_whitespace()).count();
            return Err(ParseError {
                column: offset + lead + 1,
                message:
                    "a rule must be a condition (a comparison, and/or/not, same(...)), not a value"
                        .into(),
            });
        }
        let source = expr_src.trim().to_string();
        Ok(Rule {
            name: name.unwrap_or_else(|| source.clone()),
            source,
            expr,
        })
    }

    /// Parses the `index`-th (1-based) `--rule` argument, for error messages
    /// like `rule 2, column 14: expected ')'`.
    pub fn parse_arg(index: usize, src: &str) -> Result<Rule, RuleError> {
        Rule::parse(src).map_err(|e| RuleError::Syntax {
            rule: index,
            column: e.column,
            message: e.message,
        })
    }
}

/// Parses a `--rules FILE` text: one rule per line, `name: expr` or `expr`; lines whose
/// first non-blank character is `#` and blank lines are ignored. `file` names the file in
/// errors, e.g. `rules.txt line 3, column 14: expected ')'`.
pub fn parse_rules_file(file: &str, text: &str) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let rule = Rule::parse(line).map_err(|e| RuleError::FileSyntax {
            file: file.to_string(),
            line: i + 1,
            column: e.column,
            message: e.message,
        })?;
        rules.push(rule);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        parse_expr(s).unwrap().to_string()
    }

    #[test]
    fn precedence() {
        assert_eq!(canon("1+2*3"), "1 + 2 * 3");
        assert_eq!(canon("(1+2)*3"), "(1 + 2) * 3");
        assert_eq!(canon("a - (b - c)"), "a - (b - c)");
        assert_eq!(canon("a - b - c"), "a - b - c");
        assert_eq!(canon("not a == b and c or d"), "not a == b and c or d");
        assert_eq!(canon("not (a or b)"), "not (a or b)");
        assert_eq!(canon("a or b and c"), "a or b and c");
        assert_eq!(canon("(a or b) and c"), "(a or b) and c");
        assert_eq!(canon("- 3"), "-3");
        assert_eq!(canon("-(a+b)"), "-(a + b)");
        match parse_expr("a or b and c").unwrap() {
            Expr::Binary(BinOp::Or, _, r) => assert!(matches!(*r, Expr::Binary(BinOp::And, ..))),
            e => panic!("{e:?}"),
        }
        match parse_expr("tokens(x) - tokens(y) == 1").unwrap() {
            Expr::Binary(BinOp::Eq, l, _) => assert!(matches!(*l, Expr::Binary(BinOp::Sub, ..))),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn canonical_text_roundtrips() {
        for s in [
            r#"same(tokens(prompt + " " + single_token))"#,
            r#"tokens(prompt + " " + multi_token) - tokens(prompt + " " + single_token) == 1"#,
            r#"len(a.b.0) % 2 != 0 or not x.y"#,
            r#""q\"\\\n\t" == s"#,
        ] {
            let c = canon(s);
            assert_eq!(c, s);
            assert_eq!(canon(&c), c);
        }
        assert_eq!(
            canon("tokens( prompt+' '+x )"),
            r#"tokens(prompt + " " + x)"#
        );
    }

    #[test]
    fn literals_and_paths() {
        assert_eq!(
            parse_expr(r#""a\u{1F600}\u00e9""#).unwrap(),
            Expr::Str("a😀é".into())
        );
        assert_eq!(
            parse_expr("a.b.0").unwrap(),
            Expr::Field(vec![
                PathSeg::Key("a".into()),
                PathSeg::Key("b".into()),
                PathSeg::Index(0)
            ])
        );
        assert_eq!(parse_expr("'it''s'").unwrap_err().column, 5);
    }

    #[test]
    fn errors_have_columns() {
        let e = Rule::parse_arg(2, r#"same(tokens(prompt + " " x))"#).unwrap_err();
        assert_eq!(e.to_string(), "rule 2, column 26: expected ')', found 'x'");
        let e = Rule::parse_arg(1, "same(tokens(prompt)").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rule 1, column 20: expected ')', found end of rule"
        );
        let e = parse_expr("a = 1").unwrap_err();
        assert_eq!(
            (e.column, e.message.as_str()),
            (3, "unexpected '=' (use '==' to compare)")
        );
        let e = parse_expr("\"abc").unwrap_err();
        assert_eq!((e.column, e.message.as_str()), (1, "unterminated string"));
        let e = parse_expr("foo(x) == 1").unwrap_err();
        assert_eq!(e.column, 1);
        assert!(e.message.contains("unknown function 'foo'"));
        let e = parse_expr("1 < 2 < 3").unwrap_err();
        assert_eq!(e.column, 7);
        let e = parse_expr("a == (1").unwrap_err();
        assert_eq!(e.column, 8);
        let e = parse_expr("a == 1)").unwrap_err();
        assert_eq!((e.column, e.message.as_str()), (7, "unmatched ')'"));
        let e = parse_expr("a. == 1").unwrap_err();
        assert_eq!(e.column, 4);
        let e = parse_expr("é == ü £").unwrap_err();
        assert_eq!(e.column, 8); // columns count characters, not bytes
        let e = Rule::parse("tokens(x) + 1").unwrap_err();
        assert!(e.message.contains("must be a condition"));
        assert!(parse_expr("").unwrap_err().message.contains("end of rule"));
    }

    #[test]
    fn names_and_files() {
        let r = Rule::parse(r#"  short : tokens(p) < 10"#).unwrap();
        assert_eq!(r.name, "short");
        assert_eq!(r.source, "tokens(p) < 10");
        let r = Rule::parse(r#"p == "a:b""#).unwrap();
        assert_eq!(r.name, r#"p == "a:b""#);
        let e = Rule::parse("n: p == (1").unwrap_err();
        assert_eq!(e.column, 11);
        let text = "# comment\n\nsame_single: same(tokens(prompt + \" \" + single_token))\n  # indented comment\nlen(prompt) > 0\nbad: (a\n";
        let e = parse_rules_file("rules.txt", text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rules.txt line 6, column 8: expected ')', found end of rule"
        );
        let rules = parse_rules_file("rules.txt", &text[..text.find("bad").unwrap()]).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].name, "same_single");
        assert_eq!(rules[1].name, "len(prompt) > 0");
    }
}
