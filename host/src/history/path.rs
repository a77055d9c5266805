//! Field paths: how a user names one field of an object, in either of two spellings —
//! dotted (`spec.template.spec.containers[0].image`, `metadata.labels["app.kubernetes.io/name"]`,
//! `spec.containers[name=web].image`) or an RFC 6901 JSON pointer
//! (`/spec/template/spec/containers/0/image`). Both parse to the same [`FieldPath`], which
//! looks the field up in a version and renders itself back in the dotted form.
//!
//! `[field=value]` selects a list element by a key field instead of its index, so the path
//! keeps naming the same container when another one is inserted before it; blame relies on
//! that, and users can use it too.

use std::fmt;

use serde_json::Value;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// A map key; on a list, a key that is a decimal number is an index (as in JSON pointers).
    Key(String),
    /// A list index (`[3]`).
    Index(usize),
    /// The first list element that is a map whose `field` renders as `value` (`[name=web]`).
    Match { field: String, value: String },
    /// The first list element equal to this value (`[="--verbose"]`): scalar list members
    /// keep their identity when other members are added or removed.
    Item(Value),
}

/// A parsed field path; the empty path is the whole object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldPath {
    pub segments: Vec<Segment>,
}

/// The text is neither a valid dotted path nor a valid JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field path {path:?}: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: &'static str,
}

impl FieldPath {
    /// Parse a dotted path or, when it starts with `/`, a JSON pointer. The empty text is the
    /// whole object.
    pub fn parse(text: &str) -> Result<FieldPath, PathError> {
        let error = |reason| PathError {
            path: text.to_owned(),
            reason,
        };
        if let Some(pointer) = text.strip_prefix('/') {
            let segments = pointer
                .split('/')
                .map(|token| Segment::Key(token.replace("~1", "/").replace("~0", "~")))
                .collect();
            return Ok(FieldPath { segments });
        }
        let body = text.strip_prefix('.').unwrap_or(text);
        let mut segments = Vec::new();
        let mut rest = body;
        let mut expect_key = true;
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('[') {
                let (segment, after) = parse_bracket(inner).map_err(error)?;
                segments.push(segment);
                rest = after;
                expect_key = false;
            } else if expect_key {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                if end == 0 {
                    return Err(error("empty field name"));
                }
                segments.push(Segment::Key(rest[..end].to_owned()));
                rest = &rest[end..];
                expect_key = false;
            } else if let Some(after) = rest.strip_prefix('.') {
                if after.is_empty() || after.starts_with(['.', '[']) {
                    return Err(error("empty field name"));
                }
                rest = after;
                expect_key = true;
            } else {
                return Err(error("expected `.` or `[` after a field"));
            }
        }
        Ok(FieldPath { segments })
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// This path with one more step.
    pub fn child(&self, segment: Segment) -> FieldPath {
        let mut segments = self.segments.clone();
        segments.push(segment);
        FieldPath { segments }
    }

    /// The value at this path in `object`, if the field exists.
    pub fn lookup<'a>(&self, object: &'a Value) -> Option<&'a Value> {
        self.segments
            .iter()
            .try_fold(object, |value, segment| step_into(value, segment))
    }

    /// The concrete JSON pointer of this path in `object` (list selectors resolved to
    /// indices) and the value there, if the field exists.
    pub fn resolve<'a>(&self, object: &'a Value) -> Option<(String, &'a Value)> {
        let mut pointer = String::new();
        let mut value = object;
        for segment in &self.segments {
            let (token, next) = step(value, segment)?;
            pointer.push('/');
            match token {
                Token::Key(key) => pointer.push_str(&key.replace('~', "~0").replace('/', "~1")),
                Token::Index(index) => pointer.push_str(&index.to_string()),
            }
            value = next;
        }
        Some((pointer, value))
    }

    /// The JSON pointer spelling of this path, when it has only keys and indices (a selector
    /// has no pointer until it is resolved against a version).
    pub fn plain_pointer(&self) -> Option<String> {
        let mut pointer = String::new();
        for segment in &self.segments {
            let token = match segment {
                Segment::Key(key) => key.clone(),
                Segment::Index(index) => index.to_string(),
                Segment::Match { .. } | Segment::Item(_) => return None,
            };
            pointer.push('/');
            pointer.push_str(&token.replace('~', "~0").replace('/', "~1"));
        }
        Some(pointer)
    }
}

/// One step down from `value`, if the field exists.
pub fn step_into<'a>(value: &'a Value, segment: &Segment) -> Option<&'a Value> {
    step(value, segment).map(|(_, v)| v)
}

/// Which way a step went: a map's key or a list's index. Borrowed, so a lookup that only
/// wants the value allocates nothing (blame and field history step through every version).
enum Token<'s> {
    Key(&'s str),
    Index(usize),
}

/// One step down: the token of the concrete pointer and the value reached.
fn step<'a, 's>(value: &'a Value, segment: &'s Segment) -> Option<(Token<'s>, &'a Value)> {
    match (segment, value) {
        (Segment::Key(key), Value::Object(map)) => map.get(key).map(|v| (Token::Key(key), v)),
        (Segment::Key(key), Value::Array(items)) => {
            let index: usize = key.parse().ok()?;
            items.get(index).map(|v| (Token::Index(index), v))
        }
        (Segment::Index(index), Value::Array(items)) => {
            items.get(*index).map(|v| (Token::Index(*index), v))
        }
        (
            Segment::Match {
                field,
                value: wanted,
            },
            Value::Array(items),
        ) => items
            .iter()
            .enumerate()
            .find(|(_, item)| item.get(field).is_some_and(|v| scalar_is(v, wanted)))
            .map(|(index, item)| (Token::Index(index), item)),
        (Segment::Item(wanted), Value::Array(items)) => items
            .iter()
            .enumerate()
            .find(|(_, item)| *item == wanted)
            .map(|(index, item)| (Token::Index(index), item)),
        _ => None,
    }
}

/// Whether `value`'s [`scalar_text`] is `text`, without allocating for a string.
pub fn scalar_is(value: &Value, text: &str) -> bool {
    match value {
        Value::String(own) => own == text,
        Value::Bool(true) => text == "true",
        Value::Bool(false) => text == "false",
        Value::Number(number) => number.to_string() == text,
        _ => false,
    }
}

/// A scalar as `[field=value]` compares it: strings bare, numbers and booleans as JSON.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

/// Parse the inside of `[...]` (after the `[`); returns the segment and the text after `]`.
fn parse_bracket(inner: &str) -> Result<(Segment, &str), &'static str> {
    if let Some(quoted) = inner.strip_prefix('=') {
        let (value, after) = take_json(quoted)?;
        return Ok((Segment::Item(value), close(after)?));
    }
    if inner.starts_with('"') {
        let (value, after) = take_json(inner)?;
        let Value::String(key) = value else {
            return Err("a quoted key must be a string");
        };
        return Ok((Segment::Key(key), close(after)?));
    }
    let end = inner.find(['=', ']']).ok_or("unclosed `[`")?;
    let head = &inner[..end];
    if inner[end..].starts_with(']') {
        let index = head
            .parse()
            .map_err(|_| "expected a list index, `\"key\"` or `field=value` in `[...]`")?;
        return Ok((Segment::Index(index), &inner[end + 1..]));
    }
    if head.is_empty() {
        return Err("empty field name before `=`");
    }
    let value_text = &inner[end + 1..];
    let (value, after) = if value_text.starts_with('"') {
        match take_json(value_text)? {
            (Value::String(text), after) => (text, after),
            _ => return Err("a quoted value must be a string"),
        }
    } else {
        let close_at = value_text.find(']').ok_or("unclosed `[`")?;
        (value_text[..close_at].to_owned(), &value_text[close_at..])
    };
    Ok((
        Segment::Match {
            field: head.to_owned(),
            value,
        },
        close(after)?,
    ))
}

/// Read one JSON value from the front of `text`.
fn take_json(text: &str) -> Result<(Value, &str), &'static str> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match stream.next() {
        Some(Ok(value)) => Ok((value, &text[stream.byte_offset()..])),
        _ => Err("invalid quoted text in `[...]`"),
    }
}

fn close(text: &str) -> Result<&str, &'static str> {
    text.strip_prefix(']').ok_or("expected `]`")
}

/// Whether a key can be written bare in the dotted form.
fn is_bare(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(key) if is_bare(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => write!(f, "[{}]", Value::String(key.clone()))?,
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Match { field, value } if !value.contains([']', '"']) => {
                    write!(f, "[{field}={value}]")?;
                }
                Segment::Match { field, value } => {
                    write!(f, "[{field}={}]", Value::String(value.clone()))?;
                }
                Segment::Item(value) => write!(f, "[={value}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn key(k: &str) -> Segment {
        Segment::Key(k.to_owned())
    }

    #[rstest]
    #[case("spec.replicas", vec![key("spec"), key("replicas")])]
    #[case(".spec.replicas", vec![key("spec"), key("replicas")])]
    #[case(
        "spec.template.spec.containers[0].image",
        vec![key("spec"), key("template"), key("spec"), key("containers"), Segment::Index(0), key("image")]
    )]
    #[case(
        "/spec/template/spec/containers/0/image",
        vec![key("spec"), key("template"), key("spec"), key("containers"), key("0"), key("image")]
    )]
    #[case(
        r#"metadata.labels["app.kubernetes.io/name"]"#,
        vec![key("metadata"), key("labels"), key("app.kubernetes.io/name")]
    )]
    #[case("/metadata/annotations/a~1b~0c", vec![key("metadata"), key("annotations"), key("a/b~c")])]
    #[case(
        "spec.containers[name=web].image",
        vec![key("spec"), key("containers"), Segment::Match { field: "name".into(), value: "web".into() }, key("image")]
    )]
    #[case(
        r#"spec.containers[name="a]b"]"#,
        vec![key("spec"), key("containers"), Segment::Match { field: "name".into(), value: "a]b".into() }]
    )]
    #[case(r#"args[="--v"]"#, vec![key("args"), Segment::Item(json!("--v"))])]
    #[case("", vec![])]
    fn parses_both_spellings(#[case] text: &str, #[case] expected: Vec<Segment>) {
        assert_eq!(FieldPath::parse(text).unwrap().segments, expected);
    }

    #[rstest]
    #[case("spec..replicas")]
    #[case("spec.")]
    #[case("spec[x")]
    #[case("spec[abc]")]
    #[case("spec[0]x")]
    #[case("[=nope]")]
    fn rejects_malformed_paths(#[case] text: &str) {
        let error = FieldPath::parse(text).unwrap_err();
        assert_eq!(error.path, text);
    }

    #[rstest]
    #[case("spec.template.spec.containers[0].image")]
    #[case(r#"metadata.labels["app.kubernetes.io/name"]"#)]
    #[case("spec.containers[name=web].ports[0].containerPort")]
    #[case(r#"spec.containers[name="a]b"].args[="-x"]"#)]
    fn dotted_form_round_trips(#[case] text: &str) {
        let path = FieldPath::parse(text).unwrap();
        assert_eq!(path.to_string(), text);
        assert_eq!(FieldPath::parse(&path.to_string()).unwrap(), path);
    }

    #[test]
    fn looks_up_and_resolves_selectors_to_indices() {
        let object = json!({"spec": {"containers": [
            {"name": "sidecar", "image": "envoy"},
            {"name": "web", "image": "nginx:1.27", "args": ["-a", "-b"]}
        ]}});
        let by_name = FieldPath::parse("spec.containers[name=web].image").unwrap();
        assert_eq!(by_name.lookup(&object), Some(&json!("nginx:1.27")));
        assert_eq!(
            by_name.resolve(&object).map(|(p, _)| p),
            Some("/spec/containers/1/image".to_owned())
        );
        let pointer = FieldPath::parse("/spec/containers/0/name").unwrap();
        assert_eq!(pointer.lookup(&object), Some(&json!("sidecar")));
        let item = FieldPath::parse(r#"spec.containers[1].args[="-b"]"#).unwrap();
        assert_eq!(
            item.resolve(&object).map(|(p, _)| p),
            Some("/spec/containers/1/args/1".to_owned())
        );
        assert_eq!(
            FieldPath::parse("spec.missing").unwrap().lookup(&object),
            None
        );
        assert_eq!(
            FieldPath::parse("spec.containers[9]")
                .unwrap()
                .lookup(&object),
            None
        );
    }
}
