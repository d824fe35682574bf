//! The rows each field is read in, as a [`FieldGate`] for the decoders: a
//! rule reads its fields only in the rows of its logsource, so a field
//! whose every reader has a logsource that needs one of a few values in
//! one field (the Windows profile's services each need their event log
//! channel) need not be decoded in other rows. A field read by a
//! logsource condition, by a rule of a logsource with no such value, or
//! by anything else, is read in every row.

use super::{node_leaves, CompiledRule, FieldId, Leaf, LeafKind, Mode, Node, TextCheck};

/// Rows that hold one of `values` in one of `columns` (text equal to one,
/// ignoring case): the only rows a field so gated is read in. The
/// decoders use it where they can tell it (`vagt_connectors::Gate::new`:
/// no pattern among the columns, ASCII values), and fill the field in
/// every row otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldGate {
    pub columns: Vec<String>,
    pub values: Vec<String>,
}

impl FieldGate {
    /// Either gate's rows: `None` if their columns differ.
    fn or(mut self, other: &FieldGate) -> Option<FieldGate> {
        (self.columns == other.columns).then(|| {
            for value in &other.values {
                if !self.values.contains(value) {
                    self.values.push(value.clone());
                }
            }
            self
        })
    }
}

/// Per field of a rule set: the gate every row it is read in meets, or
/// `None` for every row.
pub(super) fn field_gates(
    rules: &[CompiledRule],
    routes: &[Option<Node>],
    leaves: &[Leaf],
    fields: &[Vec<String>],
) -> Vec<Option<FieldGate>> {
    let route_gates: Vec<Option<FieldGate>> = routes
        .iter()
        .map(|route| route.as_ref().and_then(|n| node_gate(n, leaves, fields)))
        .collect();
    // Per field: the routes whose rules read it, or `None` once something
    // reads it in every row.
    let mut read: Vec<Option<Vec<usize>>> = vec![Some(Vec::new()); fields.len()];
    let mut reads = |field: FieldId, route: Option<usize>| match (
        route.filter(|r| route_gates[*r].is_some()),
        &mut read[field],
    ) {
        (Some(route), Some(routes)) if routes.last() != Some(&route) => routes.push(route),
        (Some(_), _) => {}
        (None, read) => *read = None,
    };
    let mut ids = Vec::new();
    let rules_leaves = rules.iter().map(|r| (&r.node, Some(r.route)));
    let routes_leaves = routes.iter().flatten().map(|n| (n, None));
    for (node, route) in rules_leaves.chain(routes_leaves) {
        ids.clear();
        node_leaves(node, &mut ids);
        for &id in &ids {
            let leaf = &leaves[id];
            reads(leaf.field, route);
            if let LeafKind::FieldRef { other, .. } = leaf.kind {
                reads(other, route);
            }
        }
    }
    read.into_iter()
        .zip(fields)
        .map(|(routes, columns)| {
            let mut routes = routes.filter(|r| !r.is_empty())?;
            if columns.iter().any(|c| c == crate::RAW_COLUMN) {
                return None;
            }
            routes.sort_unstable();
            routes.dedup();
            let mut gates = routes.iter().filter_map(|r| route_gates[*r].as_ref());
            let first = gates.next()?.clone();
            gates.try_fold(first, |all, gate| all.or(gate))
        })
        .collect()
}

/// A gate every row that satisfies `node` meets, if one can be told: an
/// exact text of one field, any of a disjunction's, one of a
/// conjunction's.
fn node_gate(node: &Node, leaves: &[Leaf], fields: &[Vec<String>]) -> Option<FieldGate> {
    match node {
        Node::Leaf(id) => {
            let leaf = &leaves[*id];
            match &leaf.kind {
                LeafKind::Text {
                    check:
                        TextCheck::Literal {
                            mode: Mode::Exact,
                            text,
                            int: None,
                            ..
                        },
                    ..
                } => Some(FieldGate {
                    columns: fields[leaf.field].clone(),
                    values: vec![text.clone()],
                }),
                _ => None,
            }
        }
        Node::And(children) => children
            .iter()
            .find_map(|child| node_gate(child, leaves, fields)),
        Node::Or(children) => {
            let mut gates = children.iter().map(|c| node_gate(c, leaves, fields));
            let first = gates.next()??;
            gates.try_fold(first, |all, gate| all.or(&gate?))
        }
        Node::Not(_) | Node::AtLeast(..) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::{Profile, RuleSetBuilder};

    /// Each column the rules of `yaml` read, with its gate's values (none
    /// for every row), under the Windows profile.
    fn gates_of(yaml: &str) -> HashMap<String, Option<Vec<String>>> {
        let collection = crate::loader::rules_from_yaml(yaml);
        let set = RuleSetBuilder::new(Profile::windows().unwrap())
            .build(&collection)
            .set;
        let channel = ["Event.System.Channel", "Channel"].map(String::from);
        set.fields_gated()
            .flat_map(|(columns, gate)| columns.iter().map(move |c| (c, gate)))
            .map(|(column, gate)| {
                let values = gate.map(|g| {
                    assert_eq!(g.columns, channel, "{column}");
                    let mut values = g.values.clone();
                    values.sort();
                    values
                });
                (column.to_string(), values)
            })
            .collect()
    }

    fn rule(logsource: &str, selection: &str) -> String {
        format!("title: t\nlogsource: {{product: windows, {logsource}}}\ndetection:\n  selection: {{{selection}}}\n  condition: selection\n---\n")
    }

    #[test]
    fn a_field_is_gated_by_the_channels_of_every_logsource_reading_it() {
        let yaml = [
            rule("service: application", "Message|contains: Atera"),
            rule("service: security", "TargetUserName: x, Message: y"),
            rule("service: system", "TargetUserName: z"),
            rule("service: application", "Provider_Name: MsiInstaller"),
            rule("category: process_creation", "Provider_Name: p"),
        ]
        .concat();
        let gates = gates_of(&yaml);
        let values = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(gates["Message"], values(&["Application", "Security"]));
        assert_eq!(gates["TargetUserName"], values(&["Security", "System"]));
        // Read by a logsource that tells its rows by channel and event id,
        // and by one that needs the channel alone.
        let provider = gates["Provider_Name"].clone().expect("gated");
        assert!(provider.contains(&"Application".to_string()) && provider.len() >= 3);
        // The logsources' own field is read in every row.
        assert_eq!(gates["Channel"], None);
    }

    #[test]
    fn a_field_also_read_where_no_channel_is_needed_is_read_in_every_row() {
        let yaml = [
            rule("service: application", "Message|contains: Atera"),
            rule("category: process_creation", "CommandLine|contains: x"),
        ]
        .concat()
            + "title: t\nlogsource: {product: windows}\ndetection:\n  selection: {Message: y}\n  condition: selection\n";
        let gates = gates_of(&yaml);
        assert_eq!(gates["Message"], None);
        assert!(gates["CommandLine"].is_some());
        // A field one rule compares with another is read where that rule is.
        let field_ref = rule("service: application", "Message|fieldref: TargetUserName")
            + &rule("category: process_creation", "Image: x");
        let gates = gates_of(&field_ref);
        assert_eq!(gates["TargetUserName"], gates["Message"]);
        assert!(gates["TargetUserName"].is_some());
    }
}
