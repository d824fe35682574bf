//! Read access to the Arrow columns of one batch as the matcher needs it:
//! string columns as values (and, for the fingerprints, their contiguous
//! bytes), and any column's value(s) of one row as text.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, UInt64Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::DataType;

/// One column of a batch, typed for matching.
#[derive(Debug, Clone)]
pub(crate) enum Column {
    /// Utf8, or the flat element values of a `List<Utf8>` with the list
    /// offsets mapping elements to rows.
    Str {
        values: StringArray,
        list: Option<(OffsetBuffer<i32>, Option<arrow_buffer::NullBuffer>)>,
    },
    Int(Int64Array),
    UInt(UInt64Array),
    Float(Float64Array),
    Bool(BooleanArray),
    /// A type the matcher does not read (treated as absent).
    Other,
}

impl Column {
    pub(crate) fn new(array: &ArrayRef) -> Column {
        match array.data_type() {
            DataType::Utf8 => Column::Str {
                values: array.as_string::<i32>().clone(),
                list: None,
            },
            DataType::List(field) if field.data_type() == &DataType::Utf8 => {
                let list = array.as_list::<i32>();
                Column::Str {
                    values: list.values().as_string::<i32>().clone(),
                    list: Some((list.offsets().clone(), list.nulls().cloned())),
                }
            }
            DataType::Int64 => Column::Int(array.as_primitive::<Int64Type>().clone()),
            DataType::UInt64 => Column::UInt(array.as_primitive::<UInt64Type>().clone()),
            DataType::Float64 => Column::Float(array.as_primitive::<Float64Type>().clone()),
            DataType::Boolean => Column::Bool(array.as_boolean().clone()),
            _ => Column::Other,
        }
    }

    /// True if the row has a (non-null) value.
    pub(crate) fn is_valid(&self, row: usize) -> bool {
        match self {
            Column::Str { values, list: None } => values.is_valid(row),
            Column::Str {
                list: Some((_, nulls)),
                ..
            } => nulls.as_ref().is_none_or(|n| n.is_valid(row)),
            Column::Int(a) => a.is_valid(row),
            Column::UInt(a) => a.is_valid(row),
            Column::Float(a) => a.is_valid(row),
            Column::Bool(a) => a.is_valid(row),
            Column::Other => false,
        }
    }

    /// True if `f` holds for some value of the row (every element of a
    /// list; numbers and booleans as their JSON text).
    pub(crate) fn any_value(&self, row: usize, f: &mut dyn FnMut(&str) -> bool) -> bool {
        if !self.is_valid(row) {
            return false;
        }
        match self {
            Column::Str { values, list: None } => f(values.value(row)),
            Column::Str {
                values,
                list: Some((offsets, _)),
            } => {
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                (start..end).any(|e| values.is_valid(e) && f(values.value(e)))
            }
            Column::Int(a) => f(itoa::Buffer::new().format(a.value(row))),
            Column::UInt(a) => f(itoa::Buffer::new().format(a.value(row))),
            Column::Float(a) => f(&a.value(row).to_string()),
            Column::Bool(a) => f(if a.value(row) { "true" } else { "false" }),
            Column::Other => false,
        }
    }

    /// The row's value as a number, if it is one (strings are parsed).
    pub(crate) fn any_number(&self, row: usize, f: &mut dyn FnMut(f64) -> bool) -> bool {
        if !self.is_valid(row) {
            return false;
        }
        match self {
            Column::Int(a) => f(a.value(row) as f64),
            Column::UInt(a) => f(a.value(row) as f64),
            Column::Float(a) => f(a.value(row)),
            Column::Str { .. } => {
                self.any_value(row, &mut |s| parse_number(s).is_some_and(&mut *f))
            }
            Column::Bool(_) | Column::Other => false,
        }
    }

    /// Calls `found` with each row whose integer is `wanted`, in order;
    /// none for a column of other values. One pass over the values, which
    /// is what an `EventID: 4688` costs per batch.
    pub(crate) fn rows_with_int(&self, wanted: i128, found: &mut impl FnMut(usize)) {
        fn each<T: Copy>(
            values: &[T],
            nulls: Option<&arrow_buffer::NullBuffer>,
            wanted: i128,
            found: &mut impl FnMut(usize),
        ) where
            i128: From<T>,
        {
            for (row, &v) in values.iter().enumerate() {
                if i128::from(v) == wanted && nulls.is_none_or(|n| n.is_valid(row)) {
                    found(row);
                }
            }
        }
        match self {
            Column::Int(a) => each(a.values(), a.nulls(), wanted, found),
            Column::UInt(a) => each(a.values(), a.nulls(), wanted, found),
            _ => {}
        }
    }

    /// True for string columns (searched by the multi-pattern prefilter).
    pub(crate) fn is_text(&self) -> bool {
        matches!(self, Column::Str { .. })
    }

    /// The string elements of a row (one, unless this is a list column).
    pub(crate) fn elements_of(&self, row: usize) -> std::ops::Range<usize> {
        match self {
            Column::Str {
                list: Some((offsets, _)),
                ..
            } => offsets[row] as usize..offsets[row + 1] as usize,
            _ => row..row + 1,
        }
    }

    /// Row of a string element (identity unless this is a list column).
    pub(crate) fn row_of_element(&self, element: usize) -> usize {
        match self {
            Column::Str {
                list: Some((offsets, _)),
                ..
            } => offsets
                .partition_point(|&o| o as usize <= element)
                .saturating_sub(1),
            _ => element,
        }
    }
}

/// Parses decimal integers, floats and `0x` hexadecimal integers.
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray, UInt64Array};

    use super::*;

    fn rows_with(array: ArrayRef, wanted: i128) -> Vec<usize> {
        let mut rows = Vec::new();
        Column::new(&array).rows_with_int(wanted, &mut |row| rows.push(row));
        rows
    }

    #[test]
    fn rows_with_an_integer_skip_nulls_and_other_types() {
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(4688),
            None,
            Some(1),
            Some(4688),
        ]));
        assert_eq!(rows_with(ints.clone(), 4688), [0, 3]);
        assert_eq!(rows_with(ints, 0), Vec::<usize>::new());
        // A null slot's value (0) is not taken for a value.
        let nulls: ArrayRef = Arc::new(Int64Array::from(vec![None, Some(0)]));
        assert_eq!(rows_with(nulls, 0), [1]);
        let big: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX, 7]));
        assert_eq!(rows_with(big, i128::from(u64::MAX)), [0]);
        let text: ArrayRef = Arc::new(StringArray::from(vec!["4688"]));
        assert_eq!(rows_with(text, 4688), Vec::<usize>::new());
    }
}
