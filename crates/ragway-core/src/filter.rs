//! Metadata filters on a search, in the operator syntax vector databases share (Pinecone,
//! Chroma, MongoDB): `{"lang": "en", "year": {"$gte": 2020}, "$or": [{...}, {...}]}`.
//!
//! An object's keys all hold (and). A key is a metadata field; its value is a scalar to equal,
//! or an object of operators: `$eq`, `$ne`, `$in`, `$nin`, `$contains` (a list field holds
//! the value), and the ranges `$gt`, `$gte`,
//! `$lt`, `$lte` on numbers or dates (`YYYY-MM-DD` or RFC 3339; a time without an offset is
//! UTC). `$and` and `$or` take a list of filters, `$not` one filter.
//!
//! The meaning is the same in every store: [`Filter::matches`] is its definition, which FAISS
//! applies as it is and the other stores translate (and refuse with a message when they cannot).
//! Numbers equal by value (`1` equals `1.0`); a range holds only for a number (or a date
//! string) on both sides; `$ne` and `$nin` hold when the field is missing, as the negation of
//! `$eq` and `$in`.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

/// At most this many field conditions in one filter.
pub const MAX_CONDITIONS: usize = 100;
/// At most this many `$and` / `$or` / `$not` levels.
pub const MAX_DEPTH: usize = 8;
/// At most this many values in all the filter's `$in` and `$nin` lists together.
pub const MAX_VALUES: usize = 1_000;

/// A parsed filter; the default (and `{}`) matches everything.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every filter holds (`$and`, and the keys of one object); none is everything.
    All(Vec<Filter>),
    /// At least one filter holds (`$or`).
    Any(Vec<Filter>),
    /// The filter does not hold (`$not`).
    Not(Box<Filter>),
    /// A test on one metadata field.
    Field(Condition),
}

impl Default for Filter {
    fn default() -> Self {
        Filter::All(Vec::new())
    }
}

/// A test on one metadata field.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub key: String,
    pub test: Test,
}

/// What a field must be.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    /// Equal to a string, number or boolean.
    Eq(Value),
    /// Missing or not equal.
    Ne(Value),
    /// Equal to one of the values.
    In(Vec<Value>),
    /// Missing or equal to none of the values.
    Nin(Vec<Value>),
    /// A list holding an element equal to the value.
    Contains(Value),
    /// A number or date on the given side of a bound.
    Range(Comparison, Bound),
}

/// The side of a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    /// The operator as a request writes it.
    pub fn operator(self) -> &'static str {
        match self {
            Comparison::Gt => "$gt",
            Comparison::Gte => "$gte",
            Comparison::Lt => "$lt",
            Comparison::Lte => "$lte",
        }
    }

    /// Whether a value ordered `ordering` against the bound satisfies the comparison.
    pub fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Gt => ordering == Ordering::Greater,
            Comparison::Gte => ordering != Ordering::Less,
            Comparison::Lt => ordering == Ordering::Less,
            Comparison::Lte => ordering != Ordering::Greater,
        }
    }

    /// The comparison that holds exactly when this one does not, for numbers on both sides.
    pub fn opposite(self) -> Self {
        match self {
            Comparison::Gt => Comparison::Lte,
            Comparison::Gte => Comparison::Lt,
            Comparison::Lt => Comparison::Gte,
            Comparison::Lte => Comparison::Gt,
        }
    }
}

/// The bound of a range.
#[derive(Clone, Debug, PartialEq)]
pub enum Bound {
    Number(f64),
    /// An instant, and the text the request wrote it as.
    Date(DateTime<Utc>, String),
}

/// Why a filter cannot be read, and where in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    /// Keys and list positions from the top of the filter to the problem.
    pub path: Vec<String>,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "filter: {}", self.message)
        } else {
            write!(f, "filter.{}: {}", self.path.join("."), self.message)
        }
    }
}

impl std::error::Error for FilterError {}

impl Filter {
    /// Reads a filter from its JSON form, checking every operator and value.
    pub fn parse(value: &Value) -> Result<Self, FilterError> {
        let mut reader = Reader::default();
        let Value::Object(map) = value else {
            return Err(reader.error(format!(
                "must be an object of metadata keys and operators, not {}",
                kind(value)
            )));
        };
        reader.object(map, 0)
    }

    /// The empty filter: every passage passes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Equality on every key of `pairs` (`{"lang": "en"}`).
    pub fn equals(pairs: impl IntoIterator<Item = (String, Value)>) -> Self {
        Filter::All(
            pairs
                .into_iter()
                .map(|(key, value)| Filter::Field(Condition::new(key, Test::Eq(value))))
                .collect(),
        )
        .simplified()
    }

    /// Whether it matches everything.
    pub fn is_empty(&self) -> bool {
        matches!(self, Filter::All(filters) if filters.is_empty())
    }

    /// Both this filter and `other`.
    pub fn and(self, other: Filter) -> Filter {
        let members = |filter: Filter| match filter {
            Filter::All(filters) => filters,
            other => vec![other],
        };
        let mut filters = members(self);
        filters.extend(members(other));
        Filter::All(filters).simplified()
    }

    /// Whether a passage with this metadata passes: the meaning every store keeps.
    pub fn matches(&self, metadata: &Map<String, Value>) -> bool {
        match self {
            Filter::All(filters) => filters.iter().all(|f| f.matches(metadata)),
            Filter::Any(filters) => filters.iter().any(|f| f.matches(metadata)),
            Filter::Not(filter) => !filter.matches(metadata),
            Filter::Field(condition) => condition.matches(metadata.get(&condition.key)),
        }
    }

    /// The filter in its JSON form, as [`parse`](Self::parse) reads it.
    pub fn to_json(&self) -> Value {
        match self {
            Filter::All(filters) => {
                json!({ "$and": filters.iter().map(Filter::to_json).collect::<Vec<_>>() })
            }
            Filter::Any(filters) => {
                json!({ "$or": filters.iter().map(Filter::to_json).collect::<Vec<_>>() })
            }
            Filter::Not(filter) => json!({ "$not": filter.to_json() }),
            Filter::Field(Condition { key, test }) => {
                let test = match test {
                    Test::Eq(v) => json!({ "$eq": v }),
                    Test::Ne(v) => json!({ "$ne": v }),
                    Test::In(vs) => json!({ "$in": vs }),
                    Test::Nin(vs) => json!({ "$nin": vs }),
                    Test::Contains(v) => json!({ "$contains": v }),
                    Test::Range(comparison, Bound::Number(n)) => {
                        json!({ comparison.operator(): n })
                    }
                    Test::Range(comparison, Bound::Date(_, text)) => {
                        json!({ comparison.operator(): text })
                    }
                };
                let mut map = Map::new();
                map.insert(key.clone(), test);
                Value::Object(map)
            }
        }
    }

    /// A one-member `All` or `Any` as its member.
    fn simplified(self) -> Filter {
        match self {
            Filter::All(mut filters) | Filter::Any(mut filters) if filters.len() == 1 => {
                filters.swap_remove(0)
            }
            other => other,
        }
    }
}

impl Condition {
    pub fn new(key: impl Into<String>, test: Test) -> Self {
        Self {
            key: key.into(),
            test,
        }
    }

    /// Whether the field's value (`None` when the passage has no such field) passes.
    pub fn matches(&self, value: Option<&Value>) -> bool {
        match &self.test {
            Test::Eq(expected) => value.is_some_and(|v| same(v, expected)),
            Test::Ne(expected) => !value.is_some_and(|v| same(v, expected)),
            Test::In(expected) => value.is_some_and(|v| expected.iter().any(|e| same(v, e))),
            Test::Nin(expected) => !value.is_some_and(|v| expected.iter().any(|e| same(v, e))),
            Test::Contains(expected) => {
                matches!(value, Some(Value::Array(items)) if items.iter().any(|i| same(i, expected)))
            }
            Test::Range(comparison, bound) => {
                let ordering = match (bound, value) {
                    (Bound::Number(bound), Some(Value::Number(n))) => {
                        n.as_f64().and_then(|n| n.partial_cmp(bound))
                    }
                    (Bound::Date(bound, _), Some(Value::String(s))) => {
                        parse_date(s).map(|date| date.cmp(bound))
                    }
                    _ => None,
                };
                ordering.is_some_and(|o| comparison.holds(o))
            }
        }
    }
}

/// Equality as filters mean it: numbers by value, everything else exactly.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => a == b,
    }
}

/// A date as filters read one: `YYYY-MM-DD` (midnight UTC), or a date and time with `T`,
/// seconds and fractions optional, an offset or `Z` optional (UTC without one).
pub fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|t| t.and_utc())
}

/// Walks a filter's JSON, keeping the path for errors and the budgets of [`MAX_CONDITIONS`],
/// [`MAX_DEPTH`] and [`MAX_VALUES`].
#[derive(Default)]
struct Reader {
    path: Vec<String>,
    conditions: usize,
    values: usize,
}

impl Reader {
    fn error(&self, message: impl Into<String>) -> FilterError {
        FilterError {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn at<T>(
        &mut self,
        step: impl Into<String>,
        read: impl FnOnce(&mut Self) -> Result<T, FilterError>,
    ) -> Result<T, FilterError> {
        self.path.push(step.into());
        let result = read(self);
        self.path.pop();
        result
    }

    fn object(&mut self, map: &Map<String, Value>, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!(
                "nests $and, $or and $not more than {MAX_DEPTH} levels deep"
            )));
        }
        let mut filters = Vec::with_capacity(map.len());
        for (key, value) in map {
            let filter = self.at(key, |r| match key.as_str() {
                "$and" | "$or" => {
                    let members = r.list(value, depth)?;
                    Ok(if key == "$and" {
                        Filter::All(members)
                    } else {
                        Filter::Any(members)
                    }
                    .simplified())
                }
                "$not" => match value {
                    Value::Object(inner) => Ok(Filter::Not(Box::new(r.object(inner, depth + 1)?))),
                    other => {
                        Err(r.error(format!("$not takes one filter object, not {}", kind(other))))
                    }
                },
                "" => Err(r.error("a metadata key cannot be empty")),
                operator if operator.starts_with('$') => Err(r.error(format!(
                    "unknown operator {operator}: here a key is $and, $or, $not or a metadata field"
                ))),
                _ => r.field(key, value),
            })?;
            filters.push(filter);
        }
        Ok(Filter::All(filters).simplified())
    }

    fn list(&mut self, value: &Value, depth: usize) -> Result<Vec<Filter>, FilterError> {
        let Value::Array(items) = value else {
            return Err(self.error(format!(
                "takes a list of filter objects, not {}",
                kind(value)
            )));
        };
        if items.is_empty() {
            return Err(self.error("takes at least one filter"));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                self.at(i.to_string(), |r| match item {
                    Value::Object(map) => r.object(map, depth + 1),
                    other => Err(r.error(format!("must be a filter object, not {}", kind(other)))),
                })
            })
            .collect()
    }

    fn field(&mut self, key: &str, value: &Value) -> Result<Filter, FilterError> {
        match value {
            Value::Object(operators) => {
                if operators.is_empty() {
                    return Err(self.error(
                        "an empty object tests nothing: write a value, or operators such as $eq, $in or $gte",
                    ));
                }
                let mut tests = Vec::with_capacity(operators.len());
                for (operator, operand) in operators {
                    let test = self.at(operator, |r| r.test(operator, operand))?;
                    tests.push(self.condition(key, test)?);
                }
                Ok(Filter::All(tests).simplified())
            }
            Value::Array(_) => Err(self.error(
                "a list is not a value to equal: write {\"$in\": [...]} to match any of several \
                 values, or {\"$contains\": value} for a list field holding one",
            )),
            Value::Null => {
                Err(self.error("null is not a value to equal: a string, number or boolean is"))
            }
            scalar => {
                let test = Test::Eq(scalar.clone());
                self.condition(key, test)
            }
        }
    }

    fn condition(&mut self, key: &str, test: Test) -> Result<Filter, FilterError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(self.error(format!("has more than {MAX_CONDITIONS} conditions")));
        }
        Ok(Filter::Field(Condition::new(key, test)))
    }

    fn test(&mut self, operator: &str, operand: &Value) -> Result<Test, FilterError> {
        match operator {
            "$eq" => Ok(Test::Eq(self.scalar(operator, operand)?)),
            "$ne" => Ok(Test::Ne(self.scalar(operator, operand)?)),
            "$in" => Ok(Test::In(self.values(operator, operand)?)),
            "$nin" => Ok(Test::Nin(self.values(operator, operand)?)),
            "$contains" => Ok(Test::Contains(self.scalar(operator, operand)?)),
            "$gt" => self.range(operator, operand, Comparison::Gt),
            "$gte" => self.range(operator, operand, Comparison::Gte),
            "$lt" => self.range(operator, operand, Comparison::Lt),
            "$lte" => self.range(operator, operand, Comparison::Lte),
            other if other.starts_with('$') => Err(self.error(format!(
                "unknown operator {other}: a field takes $eq, $ne, $in, $nin, $contains, $gt, $gte, \
                 $lt or $lte"
            ))),
            other => Err(self.error(format!(
                "\"{other}\" is not an operator: nested fields are not supported; a field \
                 takes a value or operators such as $eq, $in or $gte"
            ))),
        }
    }

    fn range(
        &self,
        operator: &str,
        operand: &Value,
        comparison: Comparison,
    ) -> Result<Test, FilterError> {
        let bound = match operand {
            Value::Number(n) => n.as_f64().map(Bound::Number),
            Value::String(s) => parse_date(s).map(|date| Bound::Date(date, s.clone())),
            _ => None,
        };
        bound.map(|b| Test::Range(comparison, b)).ok_or_else(|| {
            self.error(format!(
                "{operator} compares numbers or dates (YYYY-MM-DD or RFC 3339), not {}",
                describe(operand)
            ))
        })
    }

    fn scalar(&self, operator: &str, operand: &Value) -> Result<Value, FilterError> {
        match operand {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(operand.clone()),
            other => Err(self.error(format!(
                "{operator} takes a string, number or boolean, not {}",
                kind(other)
            ))),
        }
    }

    fn values(&mut self, operator: &str, operand: &Value) -> Result<Vec<Value>, FilterError> {
        let Value::Array(items) = operand else {
            return Err(self.error(format!(
                "{operator} takes a list of values, not {}",
                kind(operand)
            )));
        };
        if items.is_empty() {
            return Err(self.error(format!("{operator} takes at least one value")));
        }
        self.values += items.len();
        if self.values > MAX_VALUES {
            return Err(self.error(format!(
                "the filter's $in and $nin lists hold more than {MAX_VALUES} values"
            )));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.at(i.to_string(), |r| r.scalar(operator, item)))
            .collect()
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value for a message: strings quoted and cut short, other kinds by name.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => {
            let short: String = s.chars().take(40).collect();
            let more = if short.len() < s.len() { "…" } else { "" };
            format!("\"{short}{more}\"")
        }
        other => kind(other).to_owned(),
    }
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Filter::parse(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(value: Value) -> Filter {
        Filter::parse(&value).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    fn error(value: Value) -> String {
        match Filter::parse(&value) {
            Ok(f) => panic!("{value} parsed as {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn meta(value: Value) -> Map<String, Value> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn every_operator_means_what_it_says() {
        let doc = meta(json!({
            "lang": "en", "year": 2021, "score": 0.5, "draft": false,
            "published": "2021-06-01", "seen": "2021-06-01T12:30:00+02:00", "tags": ["a"]
        }));
        let holds = [
            json!({}),
            json!({"lang": "en"}),
            json!({"year": 2021.0}),
            json!({"draft": false}),
            json!({"lang": {"$eq": "en"}}),
            json!({"lang": {"$ne": "fr"}}),
            json!({"missing": {"$ne": "fr"}}),
            json!({"lang": {"$in": ["fr", "en"]}}),
            json!({"lang": {"$nin": ["fr", "de"]}}),
            json!({"missing": {"$nin": ["fr"]}}),
            json!({"year": {"$gte": 2021, "$lt": 2022}}),
            json!({"score": {"$gt": 0.25, "$lte": 0.5}}),
            json!({"published": {"$gte": "2021-01-01", "$lt": "2021-06-01T00:00:01Z"}}),
            json!({"seen": {"$lt": "2021-06-01T12:00:00Z", "$gt": "2021-06-01T10:29:59"}}),
            json!({"$or": [{"lang": "fr"}, {"year": 2021}]}),
            json!({"$and": [{"lang": "en"}, {"$not": {"year": {"$lt": 2000}}}]}),
            json!({"$not": {"lang": "fr"}}),
            json!({"tags": {"$contains": "a"}}),
        ];
        for f in holds {
            assert!(filter(f.clone()).matches(&doc), "{f} should hold");
        }
        let fails = [
            json!({"lang": "fr"}),
            json!({"missing": "x"}),
            json!({"year": "2021"}),
            json!({"lang": {"$ne": "en"}}),
            json!({"lang": {"$nin": ["en"]}}),
            json!({"missing": {"$in": ["x"]}}),
            json!({"year": {"$gt": 2021}}),
            json!({"lang": {"$gt": 1}}),
            json!({"missing": {"$lt": 1}}),
            json!({"published": {"$gt": "2021-06-01"}}),
            json!({"year": {"$lt": "2030-01-01"}}),
            json!({"lang": {"$gt": "2020-01-01"}}),
            json!({"$or": [{"lang": "fr"}, {"year": 1999}]}),
            json!({"$not": {"lang": "en"}}),
            json!({"tags": "a"}),
            json!({"tags": {"$contains": "b"}}),
            json!({"lang": {"$contains": "en"}}),
        ];
        for f in fails {
            assert!(!filter(f.clone()).matches(&doc), "{f} should fail");
        }
    }

    #[test]
    fn a_filter_reads_back_from_its_json() {
        for f in [
            json!({"lang": "en", "year": {"$gte": 2020, "$lt": "2024-01-01"}}),
            json!({"$or": [{"a": {"$in": [1, "x", true]}}, {"$not": {"b": {"$nin": ["y"]}}}]}),
            json!({"tags": {"$contains": "x"}}),
        ] {
            let parsed = filter(f);
            assert_eq!(filter(parsed.to_json()), parsed);
        }
        assert!(filter(json!({})).is_empty());
        let (a, b) = (filter(json!({"a": 1, "b": 2})), filter(json!({"c": 3})));
        assert_eq!(a.clone().and(b), filter(json!({"a": 1, "b": 2, "c": 3})));
        assert_eq!(Filter::default().and(a.clone()), a);
        assert_eq!(
            filter(json!({"$and": [{"a": 1}]})),
            Filter::equals([("a".to_owned(), json!(1))])
        );
    }

    #[test]
    fn hostile_filters_are_refused_with_the_place() {
        let cases = [
            (json!([]), "filter: must be an object"),
            (json!({"a": null}), "filter.a: null"),
            (json!({"a": [1]}), "filter.a: a list is not a value"),
            (json!({"a": {}}), "filter.a: an empty object"),
            (
                json!({"a": {"b": 1}}),
                "filter.a.b: \"b\" is not an operator",
            ),
            (
                json!({"a": {"$regex": "x"}}),
                "filter.a.$regex: unknown operator",
            ),
            (json!({"$where": "1"}), "filter.$where: unknown operator"),
            (json!({"": 1}), "filter.: a metadata key cannot be empty"),
            (json!({"$or": []}), "filter.$or: takes at least one"),
            (json!({"$or": {"a": 1}}), "filter.$or: takes a list"),
            (
                json!({"$or": [{"a": 1}, 2]}),
                "filter.$or.1: must be a filter object",
            ),
            (
                json!({"$not": [{"a": 1}]}),
                "filter.$not: $not takes one filter object",
            ),
            (
                json!({"a": {"$in": []}}),
                "filter.a.$in: $in takes at least one",
            ),
            (
                json!({"a": {"$in": [{"b": 1}]}}),
                "filter.a.$in.0: $in takes a string",
            ),
            (
                json!({"a": {"$eq": [1]}}),
                "filter.a.$eq: $eq takes a string",
            ),
            (json!({"a": {"$gt": "soon"}}), "not \"soon\""),
            (
                json!({"a": {"$gt": "2021-02-30"}}),
                "compares numbers or dates",
            ),
            (json!({"a": {"$lt": true}}), "not a boolean"),
        ];
        for (value, expected) in cases {
            let message = error(value.clone());
            assert!(
                message.starts_with(expected) || message.contains(expected),
                "{value}: {message}"
            );
        }
    }

    #[test]
    fn budgets_bound_what_a_filter_costs() {
        let mut deep = json!({"a": 1});
        for _ in 0..=MAX_DEPTH {
            deep = json!({ "$not": deep });
        }
        assert!(error(deep).contains("levels deep"));
        let wide: Map<String, Value> = (0..=MAX_CONDITIONS)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        assert!(error(Value::Object(wide)).contains("conditions"));
        let many: Vec<Value> = (0..=MAX_VALUES).map(|i| json!(i)).collect();
        assert!(error(json!({"a": {"$in": many}})).contains("values"));
    }

    #[test]
    fn dates_read_in_the_forms_documents_use() {
        let midnight = parse_date("2024-02-29").expect("a date");
        assert_eq!(midnight.to_rfc3339(), "2024-02-29T00:00:00+00:00");
        assert_eq!(parse_date("2024-02-29T00:00:00Z"), Some(midnight));
        assert_eq!(parse_date("2024-02-29T01:00:00+01:00"), Some(midnight));
        assert_eq!(parse_date("2024-02-29T00:00"), Some(midnight));
        assert_eq!(parse_date("2024-02-29T00:00:00.000"), Some(midnight));
        for bad in ["2023-02-29", "29/02/2024", "now", "2024", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
