//! The normalized form every Sigma detection is lowered into before
//! compilation: a boolean tree ([`Cond`]) over single-field tests
//! ([`Predicate`]).

use crate::sigma::value::SigmaString;
use ipnet::IpNet;

/// A boolean expression over predicates.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Cond {
    /// A single test.
    Pred(Predicate),
    /// All must hold (empty: true).
    And(Vec<Cond>),
    /// One must hold (empty: false).
    Or(Vec<Cond>),
    /// Negation.
    Not(Box<Cond>),
    /// At least `n` of the operands hold.
    AtLeast(usize, Vec<Cond>),
}

impl Cond {
    /// Builds an `And`, flattening a single operand.
    pub fn and(mut operands: Vec<Cond>) -> Cond {
        if operands.len() == 1 {
            operands.remove(0)
        } else {
            Cond::And(operands)
        }
    }

    /// Builds an `Or`, flattening a single operand.
    pub fn or(mut operands: Vec<Cond>) -> Cond {
        if operands.len() == 1 {
            operands.remove(0)
        } else {
            Cond::Or(operands)
        }
    }

    /// Visits every predicate in the tree.
    pub fn for_each_predicate<'a>(&'a self, f: &mut dyn FnMut(&'a Predicate)) {
        match self {
            Cond::Pred(p) => f(p),
            Cond::And(v) | Cond::Or(v) | Cond::AtLeast(_, v) => {
                v.iter().for_each(|c| c.for_each_predicate(f))
            }
            Cond::Not(c) => c.for_each_predicate(f),
        }
    }
}

/// Where a predicate looks.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Target {
    /// A named event field (Sigma name, mapped to columns by the profile).
    Field(String),
    /// The raw event text (keyword searches).
    Raw,
}

/// A test on one field of one event.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Predicate {
    /// What is tested.
    pub target: Target,
    /// How.
    pub test: Test,
}

/// Numeric comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CmpOp {
    /// `lt`.
    Lt,
    /// `lte`.
    Lte,
    /// `gt`.
    Gt,
    /// `gte`.
    Gte,
    /// Equality (time parts without a comparison modifier).
    Eq,
}

impl CmpOp {
    /// Applies the comparison.
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            CmpOp::Lt => left < right,
            CmpOp::Lte => left <= right,
            CmpOp::Gt => left > right,
            CmpOp::Gte => left >= right,
            CmpOp::Eq => left == right,
        }
    }
}

/// The part of a timestamp a time modifier extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TimePart {
    /// 0..=59.
    Minute,
    /// 0..=23.
    Hour,
    /// 1..=31.
    Day,
    /// ISO week, 1..=53.
    Week,
    /// 1..=12.
    Month,
    /// The year.
    Year,
}

/// Regex flags from the `re` sub-modifiers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct RegexFlags {
    /// `i`: case-insensitive.
    pub insensitive: bool,
    /// `m`: `^`/`$` match at line boundaries.
    pub multi_line: bool,
    /// `s`: `.` matches newline.
    pub dot_all: bool,
}

/// The kinds of test a predicate performs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Test {
    /// Whole-value match of a Sigma string (wildcards express
    /// contains/startswith/endswith). Case-insensitive unless `cased`.
    Match {
        /// The pattern.
        pattern: SigmaString,
        /// `cased` modifier.
        cased: bool,
    },
    /// Unanchored regular expression search.
    Regex {
        /// The pattern as written.
        pattern: String,
        /// Sub-modifier flags.
        flags: RegexFlags,
    },
    /// Numeric comparison of the field value with a constant.
    Compare {
        /// Operator.
        op: CmpOp,
        /// Right-hand side.
        value: f64,
    },
    /// IP address inside a network.
    Cidr(IpNet),
    /// Field missing or null.
    Null,
    /// Field present (with any value).
    Exists,
    /// Field equal to, starting with, ending with or containing another
    /// field of the same event.
    FieldRef {
        /// The other field's Sigma name.
        other: String,
        /// Case-sensitive comparison.
        cased: bool,
        /// How the field's value is compared with the other's.
        how: RefMatch,
    },
    /// The value is an indicator of a threat intelligence feed
    /// (`%feed:NAME%`), looked up in the feed's version in force.
    InFeed {
        /// The feed's name.
        feed: String,
        /// Only its addresses and networks (`cidr`): the value is an
        /// address inside one.
        addresses_only: bool,
    },
    /// A part of a timestamp compared with a constant.
    TimePart {
        /// Which part.
        part: TimePart,
        /// Operator.
        op: CmpOp,
        /// Right-hand side.
        value: f64,
    },
}

/// How `fieldref` compares a field's value with the other field's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RefMatch {
    /// The same value.
    Equal,
    /// The value starts with the other's (`fieldref|startswith`).
    StartsWith,
    /// The value ends with the other's (`fieldref|endswith`).
    EndsWith,
    /// The value contains the other's (`fieldref|contains`).
    Contains,
}

impl RefMatch {
    /// Whether `value` relates to `other` this way; `cased` compares
    /// case-sensitively, otherwise case is ignored (Unicode lowercase).
    pub fn holds(self, value: &str, other: &str, cased: bool) -> bool {
        let ascii = value.is_ascii() && other.is_ascii();
        if !cased && !ascii {
            return self.holds(&value.to_lowercase(), &other.to_lowercase(), true);
        }
        let (v, o) = (value.as_bytes(), other.as_bytes());
        let fold = |a: &[u8], b: &[u8]| {
            if cased {
                a == b
            } else {
                a.eq_ignore_ascii_case(b)
            }
        };
        match self {
            RefMatch::Equal => fold(v, o),
            RefMatch::StartsWith => v.len() >= o.len() && fold(&v[..o.len()], o),
            RefMatch::EndsWith => v.len() >= o.len() && fold(&v[v.len() - o.len()..], o),
            RefMatch::Contains => o.is_empty() || v.windows(o.len()).any(|w| fold(w, o)),
        }
    }
}
