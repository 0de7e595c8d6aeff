//! Arithmetic expressions of `map.derive`: numbers, field names, `+ - * /`, unary minus and
//! parentheses, e.g. `"kwh * 1000"` or `"(peak + offpeak) / 2"`. Parsed when the job is loaded (so
//! a typo is a `FILE:LINE:COL` error); the engine resolves field names to slots once, then
//! evaluates per record.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// An expression over fields named by `F` (names when parsed, slots once resolved).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr<F = String> {
    Num(f64),
    Field(F),
    Neg(Box<Expr<F>>),
    Bin(Box<Expr<F>>, BinOp, Box<Expr<F>>),
}

/// A parse error at a byte offset of the expression text.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Expr<String> {
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let mut p = Parser { text, pos: 0 };
        let e = p.sum()?;
        p.skip_ws();
        if p.pos < text.len() {
            return Err(p.error(format!(
                "unexpected `{}` in expression",
                &text[p.pos..].chars().next().unwrap_or(' ')
            )));
        }
        Ok(e)
    }
}

impl<F> Expr<F> {
    /// Every field the expression reads, in order of appearance.
    pub fn fields(&self) -> Vec<&F> {
        let mut out = Vec::new();
        self.visit(&mut |f| out.push(f));
        out
    }

    fn visit<'a>(&'a self, f: &mut impl FnMut(&'a F)) {
        match self {
            Expr::Num(_) => {}
            Expr::Field(x) => f(x),
            Expr::Neg(e) => e.visit(f),
            Expr::Bin(a, _, b) => {
                a.visit(f);
                b.visit(f);
            }
        }
    }

    /// The same expression with every field reference replaced by `resolve(field)`.
    pub fn map_fields<G>(&self, resolve: &mut impl FnMut(&F) -> G) -> Expr<G> {
        match self {
            Expr::Num(n) => Expr::Num(*n),
            Expr::Field(x) => Expr::Field(resolve(x)),
            Expr::Neg(e) => Expr::Neg(Box::new(e.map_fields(resolve))),
            Expr::Bin(a, op, b) => Expr::Bin(
                Box::new(a.map_fields(resolve)),
                *op,
                Box::new(b.map_fields(resolve)),
            ),
        }
    }

    /// The value, or `None` when a field is missing (`get` returned `None`).
    pub fn eval(&self, get: &impl Fn(&F) -> Option<f64>) -> Option<f64> {
        Some(match self {
            Expr::Num(n) => *n,
            Expr::Field(x) => get(x)?,
            Expr::Neg(e) => -e.eval(get)?,
            Expr::Bin(a, op, b) => {
                let (a, b) = (a.eval(get)?, b.eval(get)?);
                match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                }
            }
        })
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: String) -> ExprError {
        ExprError {
            offset: self.pos,
            message,
        }
    }

    fn skip_ws(&mut self) {
        while self.text[self.pos..].starts_with([' ', '\t']) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.text[self.pos..].chars().next()
    }

    fn sum(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.product()?;
        while let Some(c @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            let op = if c == '+' { BinOp::Add } else { BinOp::Sub };
            left = Expr::Bin(Box::new(left), op, Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.unary()?;
        while let Some(c @ ('*' | '/')) = self.peek() {
            self.pos += 1;
            let op = if c == '*' { BinOp::Mul } else { BinOp::Div };
            left = Expr::Bin(Box::new(left), op, Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.peek() == Some('-') {
            self.pos += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, ExprError> {
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let e = self.sum()?;
                if self.peek() != Some(')') {
                    return Err(self.error("missing `)`".into()));
                }
                self.pos += 1;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let rest = &self.text[self.pos..];
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
                    .unwrap_or(rest.len());
                let n: f64 = rest[..len]
                    .parse()
                    .map_err(|_| self.error(format!("bad number `{}`", &rest[..len])))?;
                self.pos += len;
                Ok(Expr::Num(n))
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let rest = &self.text[self.pos..];
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                self.pos += len;
                Ok(Expr::Field(rest[..len].to_string()))
            }
            Some(c) => Err(self.error(format!(
                "expected a number, a field name or `(`, found `{c}`"
            ))),
            None => Err(self.error("expression ends too early".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, kwh: f64) -> Option<f64> {
        Expr::parse(text)
            .unwrap()
            .eval(&|f: &String| (f == "kwh").then_some(kwh))
    }

    #[test]
    fn precedence_parentheses_and_unary_minus() {
        assert_eq!(eval("kwh * 1000", 0.5), Some(500.0));
        assert_eq!(eval("1 + 2 * 3", 0.0), Some(7.0));
        assert_eq!(eval("(1 + 2) * 3", 0.0), Some(9.0));
        assert_eq!(eval("-kwh - -1", 2.0), Some(-1.0));
        assert_eq!(eval("10 / 4 / 5", 0.0), Some(0.5));
        assert_eq!(eval("other + 1", 0.0), None, "a missing field");
    }

    #[test]
    fn errors_point_into_the_text() {
        let e = Expr::parse("kwh * ").unwrap_err();
        assert_eq!(e.offset, 6);
        assert_eq!(Expr::parse("(kwh + 1").unwrap_err().message, "missing `)`");
        assert_eq!(Expr::parse("kwh $ 2").unwrap_err().offset, 4);
        assert!(Expr::parse("1.2.3")
            .unwrap_err()
            .message
            .contains("bad number"));
        assert_eq!(
            Expr::parse("a + b * a").unwrap().fields(),
            vec!["a", "b", "a"]
        );
    }
}
