//! What a GraphQL document may cost, checked before async-graphql validates or
//! runs it: a cheap scan of the text (length, tokens, nesting) before it is
//! parsed, then one linear pass over the parsed document that counts what
//! execution would really do — every field after inlining every fragment
//! spread, with its multiplicity — rather than what the text looks like.
//!
//! async-graphql's own depth and complexity limits count a fragment once
//! however often it is spread, and its recursion checks walk every spread
//! again, so a 1 KB document of fragments that each spread the next one
//! twice is 2^30 fields to them. Here each fragment is analysed once and
//! its summary reused at every spread, so the analysis costs no more than
//! the document is long.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{
    ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{Request, ServerError};

/// Longest query text accepted (bytes).
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Most lexical tokens (names, punctuators, values) in a query text.
pub const MAX_TOKENS: usize = 10_000;
/// Deepest nesting: of brackets in the text, and of fields, inline
/// fragments and fragment spreads after expansion (the latter is also
/// async-graphql's `limit_recursive_depth`, which then never fires first).
pub const MAX_NESTING: usize = 32;
/// Most fields a document may expand to once every fragment spread is
/// inlined (each spread counts the fragment's fields again).
pub const MAX_EXPANDED_FIELDS: u64 = 5_000;
/// Most aliased fields, after expansion.
pub const MAX_ALIASES: u64 = 100;
/// Most root fields of the document's operations, after expansion.
pub const MAX_ROOT_FIELDS: u64 = 50;
/// Most directives, after expansion.
pub const MAX_DIRECTIVES: u64 = 50;
/// Most directives on one field (async-graphql's `limit_directives`).
pub const MAX_DIRECTIVES_PER_FIELD: usize = 5;

/// The limits a document must stay within; [`Default`] is the consts above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    pub max_query_bytes: usize,
    pub max_tokens: usize,
    pub max_nesting: usize,
    pub max_expanded_fields: u64,
    pub max_aliases: u64,
    pub max_root_fields: u64,
    pub max_directives: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_query_bytes: MAX_QUERY_BYTES,
            max_tokens: MAX_TOKENS,
            max_nesting: MAX_NESTING,
            max_expanded_fields: MAX_EXPANDED_FIELDS,
            max_aliases: MAX_ALIASES,
            max_root_fields: MAX_ROOT_FIELDS,
            max_directives: MAX_DIRECTIVES,
        }
    }
}

/// Why a document was refused; the message names the limit and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the query is {bytes} bytes long, more than the limit of {limit}")]
    TooLong { bytes: usize, limit: usize },
    #[error("the query has more than {limit} tokens")]
    TooManyTokens { limit: usize },
    #[error("the query nests deeper than the limit of {limit} levels")]
    TooDeep { limit: usize },
    #[error(
        "the query expands to {fields} fields once fragment spreads are inlined, more than the limit of {limit}"
    )]
    TooManyFields { fields: u64, limit: u64 },
    #[error("the query has {aliases} aliases once fragment spreads are inlined, more than the limit of {limit}")]
    TooManyAliases { aliases: u64, limit: u64 },
    #[error("the query has {fields} root fields once fragment spreads are inlined, more than the limit of {limit}")]
    TooManyRootFields { fields: u64, limit: u64 },
    #[error("the query has {directives} directives once fragment spreads are inlined, more than the limit of {limit}")]
    TooManyDirectives { directives: u64, limit: u64 },
    #[error("fragment `{0}` spreads itself")]
    FragmentCycle(String),
    #[error("fragment `{0}` is not defined")]
    UnknownFragment(String),
    #[error(
        "mutation field `{0}` appears more than once; a request may run each mutation at most once"
    )]
    RepeatedMutation(String),
    #[error("a subscription must select exactly one root field, this one selects {0}")]
    SubscriptionRootFields(u64),
}

/// Checks `request`'s query against `limits`: the text first, so a huge
/// document is never parsed, then the parsed document (the parse is cached
/// in the request, so the schema does not parse it again). A syntax error is
/// returned as async-graphql reports it.
pub fn check_request(request: &mut Request, limits: &QueryLimits) -> Result<(), ServerError> {
    check_text(&request.query, limits).map_err(refusal)?;
    let document = request.parsed_query()?;
    check_document(document, limits).map_err(refusal)
}

fn refusal(err: LimitError) -> ServerError {
    ServerError::new(err.to_string(), None)
}

/// The pre-parse check: length, token count and bracket nesting, in one
/// pass over the bytes that allocates nothing and stops at the first excess.
pub fn check_text(query: &str, limits: &QueryLimits) -> Result<(), LimitError> {
    if query.len() > limits.max_query_bytes {
        return Err(LimitError::TooLong {
            bytes: query.len(),
            limit: limits.max_query_bytes,
        });
    }
    let bytes = query.as_bytes();
    let mut tokens = 0usize;
    let mut depth = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            // Ignored tokens: whitespace, line terminators, commas.
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' => i = skip_string(bytes, i),
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > limits.max_nesting {
                    return Err(LimitError::TooDeep {
                        limit: limits.max_nesting,
                    });
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            // Names and numbers (with their signs, exponents and points).
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'_' | b'-' | b'+' | b'.'))
                {
                    i += 1;
                }
            }
            // Punctuators, and anything the parser will refuse anyway.
            _ => i += 1,
        }
        tokens += 1;
        if tokens > limits.max_tokens {
            return Err(LimitError::TooManyTokens {
                limit: limits.max_tokens,
            });
        }
    }
    Ok(())
}

/// Index just past the string starting at `start` (a `"`): a block string
/// `"""…"""` (where `\"""` is an escaped quote triple) or a one-line string
/// with backslash escapes. An unterminated string runs to the end of the
/// line (plain) or text (block); the parser reports it.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    if bytes[start..].starts_with(b"\"\"\"") {
        let mut i = start + 3;
        while i < bytes.len() {
            if bytes[i..].starts_with(b"\\\"\"\"") {
                i += 4;
            } else if bytes[i..].starts_with(b"\"\"\"") {
                return i + 3;
            } else {
                i += 1;
            }
        }
        return i;
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'\n' | b'\r' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// What a selection set costs once every fragment spread in it is inlined.
/// Counts saturate, so 2^60 fields are reported as such, not wrapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cost {
    /// Fields at every level.
    fields: u64,
    /// Fields at the top level of the set (through fragments).
    top_fields: u64,
    aliases: u64,
    directives: u64,
    /// How many selection sets deep the set nests (through fields with
    /// sub-selections, inline fragments and fragment spreads, as
    /// async-graphql's recursion limit counts them); 0 for leaves only.
    depth: usize,
}

impl Cost {
    fn add(&mut self, other: &Cost) {
        self.fields = self.fields.saturating_add(other.fields);
        self.top_fields = self.top_fields.saturating_add(other.top_fields);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.directives = self.directives.saturating_add(other.directives);
        self.depth = self.depth.max(other.depth);
    }
}

#[derive(Clone, Copy)]
enum Fragment {
    /// On the current path: reaching it again is a cycle.
    InProgress,
    Done(Cost),
}

/// One pass over a document; every fragment is analysed once.
struct Analysis<'a> {
    document: &'a ExecutableDocument,
    limits: &'a QueryLimits,
    fragments: HashMap<&'a str, Fragment>,
}

impl<'a> Analysis<'a> {
    /// The cost of `set`, found at nesting `depth` (to stop early, so the
    /// recursion is never deeper than the limit).
    fn selection_set(&mut self, set: &'a SelectionSet, depth: usize) -> Result<Cost, LimitError> {
        if depth > self.limits.max_nesting {
            return Err(LimitError::TooDeep {
                limit: self.limits.max_nesting,
            });
        }
        let mut cost = Cost::default();
        for selection in &set.items {
            cost.directives = cost
                .directives
                .saturating_add(selection.node.directives().len() as u64);
            // The selection set this selection opens, if any, and its cost.
            let nested = match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    cost.fields = cost.fields.saturating_add(1);
                    cost.top_fields = cost.top_fields.saturating_add(1);
                    cost.aliases = cost
                        .aliases
                        .saturating_add(u64::from(field.alias.is_some()));
                    if field.selection_set.node.items.is_empty() {
                        None
                    } else {
                        let child = self.selection_set(&field.selection_set.node, depth + 1)?;
                        // Its fields are not at this set's top level.
                        Some(Cost {
                            top_fields: 0,
                            ..child
                        })
                    }
                }
                Selection::InlineFragment(inline) => {
                    Some(self.selection_set(&inline.node.selection_set.node, depth + 1)?)
                }
                Selection::FragmentSpread(spread) => {
                    Some(self.fragment(spread.node.fragment_name.node.as_str(), depth + 1)?)
                }
            };
            if let Some(child) = nested {
                cost.add(&Cost {
                    depth: child.depth + 1,
                    ..child
                });
            }
        }
        Ok(cost)
    }

    /// The cost of fragment `name`, memoised. An unknown fragment is refused
    /// here rather than left to validation: async-graphql walks every spread
    /// before it validates, and spreads of undefined fragments count no
    /// fields, so without this a chain of them doubling at each level would
    /// cost nothing here and 2^n steps there.
    fn fragment(&mut self, name: &'a str, depth: usize) -> Result<Cost, LimitError> {
        match self.fragments.get(name) {
            Some(Fragment::InProgress) => Err(LimitError::FragmentCycle(excerpt(name))),
            Some(Fragment::Done(cost)) => {
                if depth + cost.depth > self.limits.max_nesting {
                    return Err(LimitError::TooDeep {
                        limit: self.limits.max_nesting,
                    });
                }
                Ok(*cost)
            }
            None => {
                let Some((key, definition)) = self.document.fragments.get_key_value(name) else {
                    return Err(LimitError::UnknownFragment(excerpt(name)));
                };
                self.fragments.insert(key.as_str(), Fragment::InProgress);
                let mut cost = self.selection_set(&definition.node.selection_set.node, depth)?;
                cost.directives = cost
                    .directives
                    .saturating_add(definition.node.directives.len() as u64);
                self.fragments.insert(key.as_str(), Fragment::Done(cost));
                Ok(cost)
            }
        }
    }

    fn operation(&mut self, operation: &'a OperationDefinition) -> Result<Cost, LimitError> {
        let mut cost = self.selection_set(&operation.selection_set.node, 0)?;
        let variable_directives: usize = operation
            .variable_definitions
            .iter()
            .map(|v| v.node.directives.len())
            .sum();
        cost.directives = cost
            .directives
            .saturating_add(operation.directives.len() as u64)
            .saturating_add(variable_directives as u64);
        Ok(cost)
    }
}

/// Checks a parsed document: expanded fields, aliases, root fields,
/// directives, nesting and fragment cycles over all its operations, then the
/// once-per-request rule for mutations and the single root field of
/// subscriptions. Linear in the size of the document.
pub fn check_document(
    document: &ExecutableDocument,
    limits: &QueryLimits,
) -> Result<(), LimitError> {
    let mut analysis = Analysis {
        document,
        limits,
        fragments: HashMap::with_capacity(document.fragments.len()),
    };
    let mut total = Cost::default();
    for (_, operation) in document.operations.iter() {
        let cost = analysis.operation(&operation.node)?;
        if operation.node.ty == OperationType::Subscription && cost.top_fields != 1 {
            return Err(LimitError::SubscriptionRootFields(cost.top_fields));
        }
        total.add(&cost);
    }
    // Fragments no operation uses are refused by validation, but a cycle
    // among them must be refused before anything walks them.
    for name in document.fragments.keys() {
        analysis.fragment(name.as_str(), 0)?;
    }
    if total.fields > limits.max_expanded_fields {
        return Err(LimitError::TooManyFields {
            fields: total.fields,
            limit: limits.max_expanded_fields,
        });
    }
    if total.aliases > limits.max_aliases {
        return Err(LimitError::TooManyAliases {
            aliases: total.aliases,
            limit: limits.max_aliases,
        });
    }
    if total.top_fields > limits.max_root_fields {
        return Err(LimitError::TooManyRootFields {
            fields: total.top_fields,
            limit: limits.max_root_fields,
        });
    }
    if total.directives > limits.max_directives {
        return Err(LimitError::TooManyDirectives {
            directives: total.directives,
            limit: limits.max_directives,
        });
    }
    for (_, operation) in document.operations.iter() {
        if operation.node.ty == OperationType::Mutation {
            let mut seen = HashSet::new();
            root_fields_once(document, &operation.node.selection_set.node, &mut seen)?;
        }
    }
    Ok(())
}

/// Refuses a root field seen twice in a mutation, through aliases, inline
/// fragments and fragment spreads. Only called once the document is known
/// to be small and acyclic, so walking every spread is cheap.
fn root_fields_once<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    seen: &mut HashSet<&'a str>,
) -> Result<(), LimitError> {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let name = field.node.name.node.as_str();
                // `__typename` has no side effect.
                if name != "__typename" && !seen.insert(name) {
                    return Err(LimitError::RepeatedMutation(excerpt(name)));
                }
            }
            Selection::InlineFragment(inline) => {
                root_fields_once(document, &inline.node.selection_set.node, seen)?;
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    root_fields_once(document, &fragment.node.selection_set.node, seen)?;
                }
            }
        }
    }
    Ok(())
}

/// A name from the document as a message may quote it (bounded).
fn excerpt(name: &str) -> String {
    hearth_domain::error::quoted(name)
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn check(query: &str, limits: &QueryLimits) -> Result<(), LimitError> {
        check_text(query, limits)?;
        let document = parse_query(query).expect("test documents parse");
        check_document(&document, limits)
    }

    fn ok(query: &str) -> Result<(), LimitError> {
        check(query, &QueryLimits::default())
    }

    /// F0 spreads F1 twice, F1 spreads F2 twice, …: 2^levels fields.
    fn nested_fragments(levels: usize) -> String {
        let mut query = String::from("query { ...F0 }");
        for i in 0..levels {
            query.push_str(&format!(
                " fragment F{i} on Query {{ ...F{n} ...F{n} }}",
                n = i + 1
            ));
        }
        query.push_str(&format!(" fragment F{levels} on Query {{ __typename }}"));
        query
    }

    #[test]
    fn fragment_spreads_count_with_their_multiplicity() {
        // Given 30 levels of fragments that each spread the next one twice
        let query = nested_fragments(30);
        // When it is checked
        let refused = ok(&query);
        // Then it is refused for its expanded size, 2^30 fields, not its text
        assert!(query.len() < 2_000);
        assert_eq!(
            refused,
            Err(LimitError::TooManyFields {
                fields: 1 << 30,
                limit: MAX_EXPANDED_FIELDS
            })
        );
        // And a fragment spread twice counts its three fields twice
        let twice = "query { ...A ...A } fragment A on Query { a b c }";
        let limits = |n| QueryLimits {
            max_expanded_fields: n,
            ..QueryLimits::default()
        };
        assert_eq!(
            check(twice, &limits(5)),
            Err(LimitError::TooManyFields {
                fields: 6,
                limit: 5
            })
        );
        assert_eq!(check(twice, &limits(6)), Ok(()));
    }

    #[test]
    fn spreads_of_undefined_fragments_are_refused() {
        // Given doubling fragments whose last level is never defined, so
        // that they expand to no fields at all (found by the fuzzer: it
        // made async-graphql walk 2^29 spreads before validating)
        let query = nested_fragments(30).replace("fragment F30 ", "fragment G30 ");
        // Then the spread of the undefined fragment is refused
        assert_eq!(ok(&query), Err(LimitError::UnknownFragment("F30".into())));
    }

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        // Given fragments that expand to far more than 2^64 fields
        let query = nested_fragments(31).replace("__typename", "a b c d e f g h");
        let limits = QueryLimits {
            max_nesting: 100,
            ..QueryLimits::default()
        };
        let mut deep = String::from("query { ...F0 }");
        for i in 0..70 {
            deep.push_str(&format!(
                " fragment F{i} on Query {{ ...F{n} ...F{n} }}",
                n = i + 1
            ));
        }
        deep.push_str(" fragment F70 on Query { a }");
        // Then both are refused with a finite count
        assert!(matches!(
            check(&query, &limits),
            Err(LimitError::TooManyFields { .. })
        ));
        assert_eq!(
            check(&deep, &limits),
            Err(LimitError::TooManyFields {
                fields: u64::MAX,
                limit: MAX_EXPANDED_FIELDS
            })
        );
    }

    #[test]
    fn fragment_cycles_are_refused_used_or_not() {
        // Given a self-spread, a two-fragment cycle, and a cycle no operation uses
        let own = "query { ...A } fragment A on Query { a ...A }";
        let pair = "query { ...A } fragment A on Query { ...B } fragment B on Query { b { ...A } }";
        let unused = "query { a } fragment X on Query { ...Y } fragment Y on Query { ...X }";
        // Then each is refused as a cycle
        for query in [own, pair, unused] {
            assert!(
                matches!(ok(query), Err(LimitError::FragmentCycle(_))),
                "{query}: {:?}",
                ok(query)
            );
        }
        // And a diamond (two paths to one fragment) is no cycle
        assert_eq!(
            ok("query { ...A ...B } fragment A on Query { ...C } fragment B on Query { ...C } fragment C on Query { c }"),
            Ok(())
        );
    }

    #[test]
    fn aliases_are_counted_after_expansion() {
        // Given 60 aliases in a fragment spread twice, and 60 written out
        let aliases: String = (0..60).map(|i| format!(" a{i}: x")).collect();
        let spread = format!("query {{ ...A ...A }} fragment A on Query {{{aliases} }}");
        let inline = format!("query {{{aliases} }}");
        // Then the spread twice (120) is refused and the plain one passes
        assert_eq!(
            ok(&spread),
            Err(LimitError::TooManyAliases {
                aliases: 120,
                limit: MAX_ALIASES
            })
        );
        assert_eq!(
            ok(&inline),
            Err(LimitError::TooManyRootFields {
                fields: 60,
                limit: MAX_ROOT_FIELDS
            })
        );
        let nested = format!("query {{ me {{{aliases} }} }}");
        assert_eq!(ok(&nested), Ok(()));
    }

    #[test]
    fn root_fields_and_directives_are_limited() {
        // Given 51 root fields, and 51 directives spread over nested fields
        let roots: String = (0..51).map(|i| format!(" f{i}")).collect();
        let directives: String = (0..51).map(|i| format!(" f{i} @skip(if: false)")).collect();
        // Then both are refused, each naming its limit
        assert_eq!(
            ok(&format!("{{{roots} }}")),
            Err(LimitError::TooManyRootFields {
                fields: 51,
                limit: MAX_ROOT_FIELDS
            })
        );
        assert_eq!(
            ok(&format!("{{ me {{{directives} }} }}")),
            Err(LimitError::TooManyDirectives {
                directives: 51,
                limit: MAX_DIRECTIVES
            })
        );
    }

    #[test]
    fn a_mutation_runs_each_field_at_most_once() {
        // Given two logins by alias, by fragment, and by inline fragment
        let login = r#"login(email: "a@b.c", password: "p") { token }"#;
        let aliased = format!("mutation {{ a: {login} b: {login} }}");
        let spread =
            format!("mutation {{ a: {login} ...L }} fragment L on Mutation {{ b: {login} }}");
        let inline = format!("mutation {{ a: {login} ... on Mutation {{ b: {login} }} }}");
        // Then each is refused, naming the field
        for query in [&aliased, &spread, &inline] {
            assert_eq!(
                ok(query),
                Err(LimitError::RepeatedMutation("login".into())),
                "{query}"
            );
        }
        // And different mutations, `__typename` twice, or the same field in a query pass
        assert_eq!(
            ok(&format!("mutation {{ {login} writeParameter(deviceId: \"d\", point: \"p\", value: 1) {{ status }} __typename t: __typename }}")),
            Ok(())
        );
        assert_eq!(ok("query { a: me { role } b: me { role } }"), Ok(()));
    }

    #[test]
    fn a_subscription_has_exactly_one_root_field() {
        // Given a subscription with two root fields (one through a fragment)
        let two = "subscription { a: liveValues(deviceIds: []) { value } ...S } fragment S on Subscription { deviceStatus { online } }";
        // Then it is refused, and one root field passes
        assert_eq!(ok(two), Err(LimitError::SubscriptionRootFields(2)));
        assert_eq!(
            ok("subscription { liveValues(deviceIds: []) { value } }"),
            Ok(())
        );
    }

    #[test]
    fn nesting_is_limited_in_the_text_and_after_expansion() {
        // Given text nested past the limit, and a chain of fragments past it
        let deep_text = format!(
            "{}{}",
            "{ a ".repeat(MAX_NESTING + 1),
            "}".repeat(MAX_NESTING + 1)
        );
        let mut chain = String::from("query { ...F0 }");
        for i in 0..MAX_NESTING {
            chain.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        chain.push_str(&format!(" fragment F{MAX_NESTING} on Query {{ a }}"));
        let too_deep = Err(LimitError::TooDeep { limit: MAX_NESTING });
        // Then the text is refused before parsing, the chain after
        assert_eq!(check_text(&deep_text, &QueryLimits::default()), too_deep);
        assert_eq!(check_text(&chain, &QueryLimits::default()), Ok(()));
        assert_eq!(ok(&chain), too_deep);
        // And a fragment first seen shallow is still too deep when spread deep
        let mut reused = String::from("query { ...G x");
        reused.push_str(&" { x".repeat(MAX_NESTING - 1));
        reused.push_str(" { ...G }");
        reused.push_str(&" }".repeat(MAX_NESTING));
        reused.push_str(" } fragment G on Query { a { b } }");
        assert_eq!(ok(&reused), too_deep);
    }

    #[test]
    fn the_text_is_measured_before_parsing() {
        // Given a text over the byte limit, and one of many short tokens
        let long = format!("{{ a }}{}", " ".repeat(MAX_QUERY_BYTES));
        let many = format!("{{{} }}", " a".repeat(MAX_TOKENS));
        // Then both are refused by the scan alone
        assert_eq!(
            check_text(&long, &QueryLimits::default()),
            Err(LimitError::TooLong {
                bytes: long.len(),
                limit: MAX_QUERY_BYTES
            })
        );
        assert_eq!(
            check_text(&many, &QueryLimits::default()),
            Err(LimitError::TooManyTokens { limit: MAX_TOKENS })
        );
        // And brackets, commas and comments inside strings, block strings and comments are no tokens
        let quoted = format!(
            "{{ a(s: \"{b}\", t: \"\"\"{b} \\\"\"\" {b}\"\"\") }} # {b}",
            b = "{[(,".repeat(MAX_TOKENS)
        );
        assert_eq!(
            check_text(
                &quoted,
                &QueryLimits {
                    max_query_bytes: usize::MAX,
                    ..QueryLimits::default()
                }
            ),
            Ok(())
        );
    }

    /// What GraphiQL (graphql-js `getIntrospectionQuery`) sends on load.
    const INTROSPECTION: &str = r#"query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}"#;

    #[test]
    fn graphiqls_introspection_query_passes() {
        // Given the introspection query of GraphiQL, fragments and all
        // Then it is within every limit (async-graphql's depth limit is another matter)
        assert_eq!(ok(INTROSPECTION), Ok(()));
    }

    #[test]
    fn a_normal_device_query_passes() {
        // Given the kind of query the web app sends
        let query = "query($first: Int) { devices(first: $first) { totalCount pageInfo { hasNextPage endCursor }
            edges { cursor node { ...Dev } } } } fragment Dev on Device { id name online area { id name }
            points { key name value unit quality updatedAt writable writeLevel min max } }";
        // Then it passes
        assert_eq!(ok(query), Ok(()));
    }
}
