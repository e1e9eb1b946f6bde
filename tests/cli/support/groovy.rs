//! The Groovy the Jenkinsfile is written in, as far as the Jenkins-shaped harness needs it: a
//! parser for declarative sections (`stage('X') { … }`), calls with named arguments, closures,
//! assignments, `try`/`catch`/`finally`, `if`, and an evaluator for the expressions the pipeline
//! computes its variables with (`?:`, `?.`, ternaries, GStrings). Anything else is an error, so a
//! Jenkinsfile construct the harness cannot run fails the harness instead of being skipped.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String, bool), // text, interpolated (double-quoted)
    Num(i64),
    Op(&'static str),
    Nl,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = vec![];
    const OPS: [&str; 23] = [
        "?.", "?:", "==", "!=", "&&", "||", "->", "<<", "!", "?", ":", ".", ",", "(", ")", "[",
        "]", "{", "}", "=", "+", ";", "<",
    ];
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            out.push(Tok::Nl);
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            while i + 1 < c.len() && !(c[i] == '*' && c[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if ch == '\'' || ch == '"' {
            let q = ch;
            i += 1;
            let mut s = String::new();
            let mut depth = 0;
            while i < c.len() && !(c[i] == q && depth == 0) {
                if c[i] == '\\' && i + 1 < c.len() {
                    s.push(c[i]);
                    s.push(c[i + 1]);
                    i += 2;
                    continue;
                }
                if q == '"' && c[i] == '$' && c.get(i + 1) == Some(&'{') {
                    depth += 1;
                    s.push_str("${");
                    i += 2;
                    continue;
                }
                if depth > 0 && (c[i] == '\'' || c[i] == '"') {
                    // A string inside `${…}`: copied whole.
                    let iq = c[i];
                    s.push(iq);
                    i += 1;
                    while i < c.len() && c[i] != iq {
                        s.push(c[i]);
                        i += 1;
                    }
                } else if depth > 0 && c[i] == '{' {
                    depth += 1;
                } else if depth > 0 && c[i] == '}' {
                    depth -= 1;
                }
                s.push(c[i]);
                i += 1;
            }
            if i >= c.len() {
                return Err("unterminated string".into());
            }
            i += 1;
            out.push(Tok::Str(s, q == '"'));
        } else if ch.is_ascii_digit() {
            let st = i;
            while i < c.len() && c[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Tok::Num(
                c[st..i].iter().collect::<String>().parse().unwrap(),
            ));
        } else if ch.is_alphabetic() || ch == '_' || ch == '$' {
            let st = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '$') {
                i += 1;
            }
            out.push(Tok::Ident(c[st..i].iter().collect()));
        } else {
            let rest: String = c[i..(i + 2).min(c.len())].iter().collect();
            match OPS.iter().find(|o| rest.starts_with(**o)) {
                Some(o) => {
                    out.push(Tok::Op(o));
                    i += o.len();
                }
                None => return Err(format!("unexpected character {ch:?}")),
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub enum Expr {
    Str(String),
    GStr(String),
    Num(i64),
    Bool(bool),
    Null,
    Var(String),
    Prop(Box<Expr>, String, bool), // safe navigation
    Call(Option<Box<Expr>>, String, Vec<Arg>, Option<Vec<Stmt>>, bool),
    List(Vec<Expr>),
    Map(Vec<(String, Expr)>),
    Not(Box<Expr>),
    Bin(Box<Expr>, &'static str, Box<Expr>),
    Elvis(Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    Closure(Vec<Stmt>),
}

#[derive(Debug, Clone)]
pub enum Arg {
    Pos(Expr),
    Named(String, Expr),
}

#[derive(Debug, Clone)]
pub enum Stmt {
    /// `name(args) { block }`, `name args`, `name { block }`, or a method-call expression.
    Expr(Expr),
    Assign(Vec<String>, Expr),
    Try(Vec<Stmt>, Option<(String, Vec<Stmt>)>, Vec<Stmt>),
    If(Expr, Vec<Stmt>, Vec<Stmt>),
    /// `def name(…) { … }`: the harness runs the pipeline's own helpers by name.
    FnDef(String, Vec<String>, Vec<Stmt>),
    While(Expr, Vec<Stmt>),
    For(String, Expr, Vec<Stmt>),
}

struct P {
    t: Vec<Tok>,
    i: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.t.get(self.i + n)
    }
    fn is_op(&self, o: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(x)) if *x == o)
    }
    fn eat_op(&mut self, o: &str) -> bool {
        if self.is_op(o) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, o: &str) -> Result<(), String> {
        if self.eat_op(o) {
            Ok(())
        } else {
            Err(format!("expected `{o}`, found {:?}", self.peek()))
        }
    }
    fn skip_nl(&mut self) {
        while matches!(self.peek(), Some(Tok::Nl) | Some(Tok::Op(";"))) {
            self.i += 1;
        }
    }
    fn skip_only_nl(&mut self) {
        while matches!(self.peek(), Some(Tok::Nl)) {
            self.i += 1;
        }
    }
    fn ident(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Tok::Ident(s)) => {
                self.i += 1;
                Ok(s)
            }
            t => Err(format!("expected a name, found {t:?}")),
        }
    }

    fn block(&mut self) -> Result<Vec<Stmt>, String> {
        self.skip_only_nl();
        self.expect("{")?;
        // A closure's parameter list (`{ k, v -> … }`) is not needed: `it` and named parameters
        // are bound by the caller.
        let save = self.i;
        let mut params = false;
        while let Some(t) = self.peek() {
            match t {
                Tok::Op("->") => {
                    params = true;
                    break;
                }
                Tok::Ident(_) | Tok::Op(",") => self.i += 1,
                _ => break,
            }
        }
        if params {
            self.i += 1;
        } else {
            self.i = save;
        }
        let mut out = vec![];
        loop {
            self.skip_nl();
            if self.eat_op("}") {
                return Ok(out);
            }
            if self.peek().is_none() {
                return Err("unclosed `{`".into());
            }
            out.push(self.stmt()?);
        }
    }

    fn stmt(&mut self) -> Result<Stmt, String> {
        match self.peek().cloned() {
            Some(Tok::Ident(k)) if k == "def" => {
                self.i += 1;
                let name = self.ident()?;
                if self.eat_op("(") {
                    let mut params = vec![];
                    while !self.eat_op(")") {
                        if let Some(Tok::Ident(_)) = self.peek()
                            && let Some(Tok::Ident(_)) = self.peek_at(1)
                        {
                            self.i += 1; // a type
                        }
                        params.push(self.ident()?);
                        if self.eat_op("=") {
                            self.expr()?;
                        }
                        self.eat_op(",");
                    }
                    let body = self.block()?;
                    return Ok(Stmt::FnDef(name, params, body));
                }
                self.expect("=")?;
                Ok(Stmt::Assign(vec![name], self.expr()?))
            }
            Some(Tok::Ident(k)) if k == "try" => {
                self.i += 1;
                let body = self.block()?;
                self.skip_only_nl();
                let mut catch = None;
                if matches!(self.peek(), Some(Tok::Ident(c)) if c == "catch") {
                    self.i += 1;
                    self.expect("(")?;
                    let mut v = self.ident()?;
                    if let Some(Tok::Ident(_)) = self.peek() {
                        v = self.ident()?;
                    }
                    self.expect(")")?;
                    catch = Some((v, self.block()?));
                    self.skip_only_nl();
                }
                let mut fin = vec![];
                if matches!(self.peek(), Some(Tok::Ident(c)) if c == "finally") {
                    self.i += 1;
                    fin = self.block()?;
                }
                Ok(Stmt::Try(body, catch, fin))
            }
            Some(Tok::Ident(k)) if k == "for" => {
                self.i += 1;
                self.expect("(")?;
                let var = self.ident()?;
                match self.peek() {
                    Some(Tok::Ident(x)) if x == "in" => self.i += 1,
                    t => return Err(format!("expected `in`, found {t:?}")),
                }
                let over = self.expr()?;
                self.expect(")")?;
                Ok(Stmt::For(var, over, self.block()?))
            }
            Some(Tok::Ident(k)) if k == "if" || k == "while" => {
                self.i += 1;
                self.expect("(")?;
                let cond = self.expr()?;
                self.expect(")")?;
                let then = self.block()?;
                if k == "while" {
                    return Ok(Stmt::While(cond, then));
                }
                let save = self.i;
                self.skip_only_nl();
                let els = if matches!(self.peek(), Some(Tok::Ident(e)) if e == "else") {
                    self.i += 1;
                    if matches!(self.peek(), Some(Tok::Ident(i)) if i == "if") {
                        vec![self.stmt()?]
                    } else {
                        self.block()?
                    }
                } else {
                    self.i = save;
                    vec![]
                };
                Ok(Stmt::If(cond, then, els))
            }
            Some(Tok::Ident(name)) => {
                // `name = …`, `env.NAME = …`
                if matches!(self.peek_at(1), Some(Tok::Op("="))) {
                    self.i += 2;
                    return Ok(Stmt::Assign(vec![name], self.expr()?));
                }
                if matches!(self.peek_at(1), Some(Tok::Op(".")))
                    && matches!(self.peek_at(2), Some(Tok::Ident(_)))
                    && matches!(self.peek_at(3), Some(Tok::Op("=")))
                {
                    let Some(Tok::Ident(field)) = self.peek_at(2).cloned() else {
                        unreachable!()
                    };
                    self.i += 4;
                    return Ok(Stmt::Assign(vec![name, field], self.expr()?));
                }
                // `name { … }` (a declarative section), `name args` (a command without parens).
                if matches!(self.peek_at(1), Some(Tok::Op("{"))) {
                    self.i += 1;
                    let b = self.block()?;
                    return Ok(Stmt::Expr(Expr::Call(None, name, vec![], Some(b), false)));
                }
                if matches!(
                    self.peek_at(1),
                    Some(Tok::Str(..)) | Some(Tok::Num(_)) | Some(Tok::Op("["))
                ) || (matches!(self.peek_at(1), Some(Tok::Ident(_)))
                    && matches!(self.peek_at(2), Some(Tok::Op(":"))))
                {
                    self.i += 1;
                    let args = self.args_until_end()?;
                    return Ok(Stmt::Expr(Expr::Call(None, name, args, None, false)));
                }
                Ok(Stmt::Expr(self.expr()?))
            }
            _ => Ok(Stmt::Expr(self.expr()?)),
        }
    }

    fn args_until_end(&mut self) -> Result<Vec<Arg>, String> {
        let mut args = vec![self.arg()?];
        while self.eat_op(",") {
            self.skip_only_nl();
            args.push(self.arg()?);
        }
        Ok(args)
    }

    fn arg(&mut self) -> Result<Arg, String> {
        if let (Some(Tok::Ident(n)), Some(Tok::Op(":"))) = (self.peek().cloned(), self.peek_at(1)) {
            self.i += 2;
            return Ok(Arg::Named(n, self.expr()?));
        }
        Ok(Arg::Pos(self.expr()?))
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let c = self.or()?;
        if self.eat_op("?:") {
            return Ok(Expr::Elvis(Box::new(c), Box::new(self.expr()?)));
        }
        if self.eat_op("?") {
            let a = self.expr()?;
            self.expect(":")?;
            let b = self.expr()?;
            return Ok(Expr::Cond(Box::new(c), Box::new(a), Box::new(b)));
        }
        Ok(c)
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.eat_op("||") {
            l = Expr::Bin(Box::new(l), "||", Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.eq()?;
        while self.eat_op("&&") {
            l = Expr::Bin(Box::new(l), "&&", Box::new(self.eq()?));
        }
        Ok(l)
    }
    fn eq(&mut self) -> Result<Expr, String> {
        let mut l = self.add()?;
        loop {
            if self.eat_op("==") {
                l = Expr::Bin(Box::new(l), "==", Box::new(self.add()?));
            } else if self.eat_op("!=") {
                l = Expr::Bin(Box::new(l), "!=", Box::new(self.add()?));
            } else if self.eat_op("<") {
                l = Expr::Bin(Box::new(l), "<", Box::new(self.add()?));
            } else {
                return Ok(l);
            }
        }
    }
    fn add(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        loop {
            if self.eat_op("+") {
                l = Expr::Bin(Box::new(l), "+", Box::new(self.unary()?));
            } else if self.eat_op("<<") {
                l = Expr::Bin(Box::new(l), "<<", Box::new(self.unary()?));
            } else {
                return Ok(l);
            }
        }
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat_op("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.postfix()
    }
    fn call_args(&mut self) -> Result<Vec<Arg>, String> {
        let mut args = vec![];
        self.skip_only_nl();
        while !self.eat_op(")") {
            args.push(self.arg()?);
            self.skip_only_nl();
            self.eat_op(",");
            self.skip_only_nl();
        }
        Ok(args)
    }
    fn trailing_block(&mut self) -> Result<Option<Vec<Stmt>>, String> {
        if self.is_op("{") {
            Ok(Some(self.block()?))
        } else {
            Ok(None)
        }
    }
    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            let safe = self.is_op("?.");
            if self.eat_op(".") || self.eat_op("?.") {
                let name = self.ident()?;
                if self.eat_op("(") {
                    let args = self.call_args()?;
                    let b = self.trailing_block()?;
                    e = Expr::Call(Some(Box::new(e)), name, args, b, safe);
                } else if self.is_op("{") {
                    let b = self.trailing_block()?;
                    e = Expr::Call(Some(Box::new(e)), name, vec![], b, safe);
                } else {
                    e = Expr::Prop(Box::new(e), name, safe);
                }
            } else {
                return Ok(e);
            }
        }
    }
    fn primary(&mut self) -> Result<Expr, String> {
        match self.peek().cloned() {
            Some(Tok::Str(s, interp)) => {
                self.i += 1;
                Ok(if interp { Expr::GStr(s) } else { Expr::Str(s) })
            }
            Some(Tok::Num(n)) => {
                self.i += 1;
                Ok(Expr::Num(n))
            }
            Some(Tok::Ident(n)) => {
                self.i += 1;
                match n.as_str() {
                    "true" => return Ok(Expr::Bool(true)),
                    "false" => return Ok(Expr::Bool(false)),
                    "null" => return Ok(Expr::Null),
                    _ => {}
                }
                if self.eat_op("(") {
                    let args = self.call_args()?;
                    let b = self.trailing_block()?;
                    return Ok(Expr::Call(None, n, args, b, false));
                }
                if self.is_op("{") {
                    let b = self.trailing_block()?;
                    return Ok(Expr::Call(None, n, vec![], b, false));
                }
                // `[] as Set`
                if n == "as" {
                    return Err("`as` out of place".into());
                }
                Ok(Expr::Var(n))
            }
            Some(Tok::Op("(")) => {
                self.i += 1;
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Tok::Op("{")) => Ok(Expr::Closure(self.block()?)),
            Some(Tok::Op("[")) => {
                self.i += 1;
                self.skip_only_nl();
                if self.eat_op(":") {
                    self.expect("]")?;
                    return Ok(Expr::Map(vec![]));
                }
                let mut items = vec![];
                let mut map = vec![];
                while !self.eat_op("]") {
                    if let (Some(Tok::Ident(k)), Some(Tok::Op(":"))) =
                        (self.peek().cloned(), self.peek_at(1))
                    {
                        self.i += 2;
                        map.push((k, self.expr()?));
                    } else {
                        items.push(self.expr()?);
                    }
                    self.skip_only_nl();
                    self.eat_op(",");
                    self.skip_only_nl();
                }
                // `[] as Set`: a list.
                if matches!(self.peek(), Some(Tok::Ident(a)) if a == "as") {
                    self.i += 2;
                }
                Ok(if map.is_empty() {
                    Expr::List(items)
                } else {
                    Expr::Map(map)
                })
            }
            t => Err(format!("unexpected {t:?}")),
        }
    }
}

/// Parse a whole file (a sequence of statements).
pub fn parse(src: &str) -> Result<Vec<Stmt>, String> {
    let mut p = P { t: lex(src)?, i: 0 };
    let mut out = vec![];
    loop {
        p.skip_nl();
        if p.peek().is_none() {
            return Ok(out);
        }
        let at = p.i;
        out.push(p.stmt().map_err(|e| {
            let near: Vec<String> = p.t[at..(at + 8).min(p.t.len())]
                .iter()
                .map(|t| format!("{t:?}"))
                .collect();
            format!("{e} (near {})", near.join(" "))
        })?);
    }
}

/// Parse one expression (the inside of a GString's `${…}`).
pub fn parse_expr(src: &str) -> Result<Expr, String> {
    let mut p = P { t: lex(src)?, i: 0 };
    p.expr()
}

/// A Groovy value, as far as the pipeline uses them.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Null,
    Bool(bool),
    Num(i64),
    Str(String),
    List(Vec<V>),
    Map(BTreeMap<String, V>),
}

impl V {
    pub fn truthy(&self) -> bool {
        match self {
            V::Null => false,
            V::Bool(b) => *b,
            V::Num(n) => *n != 0,
            V::Str(s) => !s.is_empty(),
            V::List(l) => !l.is_empty(),
            V::Map(m) => !m.is_empty(),
        }
    }
    pub fn text(&self) -> String {
        match self {
            V::Null => "null".into(),
            V::Bool(b) => b.to_string(),
            V::Num(n) => n.to_string(),
            V::Str(s) => s.clone(),
            V::List(l) => format!("[{}]", l.iter().map(V::text).collect::<Vec<_>>().join(", ")),
            V::Map(m) => format!("{m:?}"),
        }
    }
}

/// Find the top-level section calls named `name` in `stmts` (`stage('X') { … }` → its args and block).
pub fn sections<'a>(stmts: &'a [Stmt], name: &str) -> Vec<(&'a [Arg], &'a [Stmt])> {
    stmts
        .iter()
        .filter_map(|s| match s {
            Stmt::Expr(Expr::Call(None, n, args, Some(b), _)) if n == name => {
                Some((args.as_slice(), b.as_slice()))
            }
            _ => None,
        })
        .collect()
}

/// The one section named `name`, if any.
pub fn section<'a>(stmts: &'a [Stmt], name: &str) -> Option<&'a [Stmt]> {
    sections(stmts, name).first().map(|(_, b)| *b)
}

/// Unescape a Groovy string literal's text.
pub fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Split a GString into literal text and `${…}` expressions.
pub fn gstring_parts(s: &str) -> Result<Vec<Result<String, Expr>>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = vec![];
    let mut lit = String::new();
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\\' && i + 1 < c.len() {
            lit.push(c[i]);
            lit.push(c[i + 1]);
            i += 2;
        } else if c[i] == '$' && c.get(i + 1) == Some(&'{') {
            let mut depth = 1;
            let mut j = i + 2;
            let mut q: Option<char> = None;
            while j < c.len() {
                match (q, c[j]) {
                    (None, '\'' | '"') => q = Some(c[j]),
                    (Some(x), y) if x == y => q = None,
                    (None, '{') => depth += 1,
                    (None, '}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            out.push(Ok(unescape(&std::mem::take(&mut lit))));
            out.push(Err(parse_expr(&c[i + 2..j].iter().collect::<String>())?));
            i = j + 1;
        } else {
            lit.push(c[i]);
            i += 1;
        }
    }
    out.push(Ok(unescape(&lit)));
    Ok(out)
}
