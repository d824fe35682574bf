//! The Sigma rule language (specification v2.1): documents, values,
//! modifiers, detections and conditions, lowered into [`Cond`] trees.

pub mod condition;
pub mod detection;
pub mod document;
pub mod modifiers;
pub mod predicate;
pub mod value;

pub use document::{parse_document, Document, Level, LogSource, RuleMeta, SigmaFilter, SigmaRule};
pub use modifiers::Placeholders;
pub use predicate::{CmpOp, Cond, Predicate, RefMatch, RegexFlags, Target, Test, TimePart};
pub use value::{Part, SigmaString};
