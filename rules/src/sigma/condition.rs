//! The Sigma condition grammar: `and`, `or`, `not`, parentheses,
//! `1 of pattern`, `all of pattern`, `N of pattern`, `them`.
//!
//! Precedence, least to most binding: `or`, `and`, `not`, `x of`, `( )`.
//! The parser produces a [`ConditionAst`] whose identifiers are resolved
//! against the detection's search identifiers by [`crate::sigma::detection`].

use std::fmt;

/// Parsed condition expression, identifiers still unresolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionAst {
    /// A search identifier by name.
    Ident(String),
    /// All operands must hold.
    And(Vec<ConditionAst>),
    /// At least one operand must hold.
    Or(Vec<ConditionAst>),
    /// The operand must not hold.
    Not(Box<ConditionAst>),
    /// `N of pattern` / `all of pattern` / `1 of them`.
    Of {
        /// How many of the selected identifiers must hold.
        quantity: Quantity,
        /// Which identifiers: a pattern with `*`, or `them`.
        selection: OfSelection,
    },
}

/// The quantifier of an `of` expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// `all of`.
    All,
    /// `N of` (`any of` is `1 of`).
    AtLeast(usize),
}

/// What an `of` expression ranges over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfSelection {
    /// `them`: every identifier not starting with `_`.
    Them,
    /// Identifiers matching a pattern with `*` wildcards.
    Pattern(String),
}

/// A condition that does not parse, with the position of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionSyntaxError {
    /// Character offset into the condition text.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConditionSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at character {}", self.message, self.position)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    LParen,
    RParen,
}

/// How deep parentheses and `not` may nest in a condition. Real rules
/// nest a few levels; the bound keeps a hostile rule from exhausting the
/// stack of every parser and walker after this one.
pub const MAX_CONDITION_DEPTH: usize = 64;

const AGGREGATION: &str =
    "aggregation expressions (`| count() ...`) are deprecated Sigma 1.0 syntax; use a correlation rule";

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ConditionSyntaxError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(pos, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                tokens.push((pos, Token::LParen));
                chars.next();
            }
            ')' => {
                tokens.push((pos, Token::RParen));
                chars.next();
            }
            '|' => {
                return Err(ConditionSyntaxError {
                    position: pos,
                    message: AGGREGATION.to_string(),
                })
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '*' | '-' | '.') => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_alphanumeric() || matches!(c, '_' | '*' | '-' | '.') {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push((pos, Token::Word(word)));
            }
            other => {
                return Err(ConditionSyntaxError {
                    position: pos,
                    message: format!("unexpected character '{other}'"),
                })
            }
        }
    }
    Ok(tokens)
}

/// Parses one condition string.
pub fn parse_condition(text: &str) -> Result<ConditionAst, ConditionSyntaxError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        len: text.len(),
        depth: 0,
    };
    let ast = parser.parse_or()?;
    if let Some((position, token)) = parser.tokens.get(parser.pos) {
        let message = match token {
            Token::RParen => "unbalanced parenthesis: ')' without '('".to_string(),
            Token::Word(w) => format!("unexpected '{w}'"),
            Token::LParen => "unexpected '('".to_string(),
        };
        return Err(ConditionSyntaxError {
            position: *position,
            message,
        });
    }
    Ok(ast)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    len: usize,
    /// Parentheses and `not`s open around the current position.
    depth: usize,
}

impl Parser {
    fn peek_word(&self) -> Option<&str> {
        match self.tokens.get(self.pos) {
            Some((_, Token::Word(w))) => Some(w.as_str()),
            _ => None,
        }
    }

    fn position(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map(|(p, _)| *p)
            .unwrap_or(self.len)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ConditionSyntaxError> {
        Err(ConditionSyntaxError {
            position: self.position(),
            message: message.into(),
        })
    }

    /// Enters one more level of nesting, refusing beyond the bound.
    fn nest(&mut self) -> Result<(), ConditionSyntaxError> {
        self.depth += 1;
        if self.depth > MAX_CONDITION_DEPTH {
            return self.error(format!(
                "the condition nests parentheses and 'not' more than {MAX_CONDITION_DEPTH} levels deep"
            ));
        }
        Ok(())
    }

    fn keyword(&self, kw: &str) -> bool {
        self.peek_word().is_some_and(|w| w.eq_ignore_ascii_case(kw))
    }

    fn parse_or(&mut self) -> Result<ConditionAst, ConditionSyntaxError> {
        let mut operands = vec![self.parse_and()?];
        while self.keyword("or") {
            self.pos += 1;
            operands.push(self.parse_and()?);
        }
        Ok(if operands.len() == 1 {
            operands.remove(0)
        } else {
            ConditionAst::Or(operands)
        })
    }

    fn parse_and(&mut self) -> Result<ConditionAst, ConditionSyntaxError> {
        let mut operands = vec![self.parse_not()?];
        while self.keyword("and") {
            self.pos += 1;
            operands.push(self.parse_not()?);
        }
        Ok(if operands.len() == 1 {
            operands.remove(0)
        } else {
            ConditionAst::And(operands)
        })
    }

    fn parse_not(&mut self) -> Result<ConditionAst, ConditionSyntaxError> {
        if self.keyword("not") {
            self.pos += 1;
            self.nest()?;
            let inner = self.parse_not()?;
            self.depth -= 1;
            return Ok(ConditionAst::Not(Box::new(inner)));
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<ConditionAst, ConditionSyntaxError> {
        match self.tokens.get(self.pos).cloned() {
            None => self.error("condition ends where an identifier was expected"),
            Some((_, Token::LParen)) => {
                self.pos += 1;
                self.nest()?;
                let inner = self.parse_or()?;
                self.depth -= 1;
                match self.tokens.get(self.pos) {
                    Some((_, Token::RParen)) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    _ => self.error("unbalanced parenthesis: '(' is never closed"),
                }
            }
            Some((_, Token::RParen)) => self.error("unexpected ')'"),
            Some((_, Token::Word(word))) => {
                let lower = word.to_ascii_lowercase();
                if matches!(lower.as_str(), "and" | "or") {
                    return self.error(format!("'{word}' where an identifier was expected"));
                }
                let quantity = if lower == "all" {
                    Some(Quantity::All)
                } else if lower == "any" {
                    Some(Quantity::AtLeast(1))
                } else {
                    lower.parse::<usize>().ok().map(Quantity::AtLeast)
                };
                let next_is_of = matches!(
                    self.tokens.get(self.pos + 1),
                    Some((_, Token::Word(w))) if w.eq_ignore_ascii_case("of")
                );
                if let (Some(quantity), true) = (quantity, next_is_of) {
                    self.pos += 2;
                    let Some(target) = self.peek_word().map(str::to_string) else {
                        return self
                            .error("'of' must be followed by 'them' or an identifier pattern");
                    };
                    self.pos += 1;
                    let selection = if target.eq_ignore_ascii_case("them") {
                        OfSelection::Them
                    } else {
                        OfSelection::Pattern(target)
                    };
                    if quantity == Quantity::AtLeast(0) {
                        return self.error("'0 of' never selects anything");
                    }
                    return Ok(ConditionAst::Of {
                        quantity,
                        selection,
                    });
                }
                self.pos += 1;
                Ok(ConditionAst::Ident(word))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(s: &str) -> ConditionAst {
        ConditionAst::Ident(s.to_string())
    }

    #[test]
    fn precedence_is_or_and_not() {
        let ast = parse_condition("a or b and not c").unwrap();
        assert_eq!(
            ast,
            ConditionAst::Or(vec![
                ident("a"),
                ConditionAst::And(vec![ident("b"), ConditionAst::Not(Box::new(ident("c")))])
            ])
        );
    }

    #[test]
    fn of_expressions_and_parentheses() {
        let ast = parse_condition("(1 of sel* or all of them) and not 2 of filter_*").unwrap();
        let ConditionAst::And(parts) = ast else {
            panic!("expected and")
        };
        assert!(matches!(&parts[0], ConditionAst::Or(v) if v.len() == 2));
        assert!(matches!(
            &parts[1],
            ConditionAst::Not(inner) if matches!(**inner, ConditionAst::Of { quantity: Quantity::AtLeast(2), .. })
        ));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(parse_condition("(a and b")
            .unwrap_err()
            .message
            .contains("unbalanced"));
        assert!(parse_condition("a and")
            .unwrap_err()
            .message
            .contains("condition ends"));
        assert!(parse_condition("sel | count() > 5")
            .unwrap_err()
            .message
            .contains("correlation"));
        assert!(parse_condition("a b")
            .unwrap_err()
            .message
            .contains("unexpected 'b'"));
    }

    /// Regression: 15,000 parentheses or 30,000 `not`s overflowed the stack
    /// and aborted the process (SIGABRT), taking every other rule with it.
    #[test]
    fn nesting_beyond_the_bound_is_refused_not_a_stack_overflow() {
        let deep =
            |open: &str, close: &str, n: usize| format!("{}sel{}", open.repeat(n), close.repeat(n));
        for text in [deep("(", ")", 15_000), deep("not ", "", 30_000)] {
            let e = parse_condition(&text).unwrap_err();
            assert!(e.message.contains("more than 64 levels deep"), "{e}");
        }
        // The bound itself is fine.
        assert!(parse_condition(&deep("(", ")", MAX_CONDITION_DEPTH)).is_ok());
        assert!(parse_condition(&deep("not ", "", MAX_CONDITION_DEPTH)).is_ok());
        assert!(parse_condition(&deep("(not ", ")", MAX_CONDITION_DEPTH / 2)).is_ok());
    }
}
