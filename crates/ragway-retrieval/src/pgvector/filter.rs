//! A metadata filter as the SQL condition a pgvector search adds: its text made of fixed
//! fragments and parameter numbers only, every key, value and bound a bound parameter. See the
//! store's module doc for what it means and why dates are read without a cast.

use ragway_core::Filter;
use ragway_core::filter::{Bound, Comparison, Condition, Test};
use serde_json::Value;

use super::json_holds_nul;

/// A metadata filter as a SQL condition on the document (`d`), and the values it binds.
///
/// The text is made of fixed fragments and parameter numbers only: every key, value and bound
/// is a parameter (`$n`, numbered after the statement's own), a list at most two. Every
/// fragment is true or false, never NULL (a missing field fails a test and passes its
/// negation), so `NOT`, `AND` and `OR` combine them as [`Filter::matches`] combines its tests.
pub(super) struct SqlFilter {
    /// The condition, on the document as `d`.
    pub(super) condition: String,
    values: Vec<SqlValue>,
    /// The first parameter number of the filter's values.
    first: usize,
    /// The parameter holding [`date_pattern`], once a date range needs it.
    date_pattern: Option<String>,
}

/// A value a filter binds.
enum SqlValue {
    Text(String),
    Number(f64),
    Numbers(Vec<f64>),
    Integer(i64),
}

impl SqlFilter {
    /// `filter` as a condition whose parameters start at `$first`.
    pub(super) fn new(filter: &Filter, first: usize) -> Self {
        let mut sql = Self {
            condition: String::new(),
            values: Vec::new(),
            first,
            date_pattern: None,
        };
        sql.condition = sql.filter(filter);
        sql
    }

    /// `query` with the filter's values bound after its own.
    pub(super) fn bind<'q>(
        self,
        mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        for value in self.values {
            query = match value {
                SqlValue::Text(text) => query.bind(text),
                SqlValue::Number(number) => query.bind(number),
                SqlValue::Numbers(numbers) => query.bind(numbers),
                SqlValue::Integer(integer) => query.bind(integer),
            };
        }
        query
    }

    /// A parameter holding `value`, as `$n`.
    fn parameter(&mut self, value: SqlValue) -> String {
        self.values.push(value);
        format!("${}", self.first + self.values.len() - 1)
    }

    fn filter(&mut self, filter: &Filter) -> String {
        match filter {
            Filter::All(filters) => self.join(filters, " AND ", "TRUE"),
            Filter::Any(filters) => self.join(filters, " OR ", "FALSE"),
            Filter::Not(filter) => format!("NOT ({})", self.filter(filter)),
            Filter::Field(condition) => self.condition(condition),
        }
    }

    /// `filters` joined by `operator`; `empty` when there are none (all of none holds, any of
    /// none does not).
    fn join(&mut self, filters: &[Filter], operator: &str, empty: &str) -> String {
        if filters.is_empty() {
            return empty.to_owned();
        }
        let members: Vec<String> = filters
            .iter()
            .map(|filter| format!("({})", self.filter(filter)))
            .collect();
        members.join(operator)
    }

    fn condition(&mut self, condition: &Condition) -> String {
        let Condition { key, test } = condition;
        // Postgres text holds no NUL, so no stored key or string does: a key with one is
        // missing from every document, a value with one equal to no field. Bound, either
        // would fail the statement.
        let nowhere = key.contains('\0')
            || match test {
                Test::Eq(value) | Test::Ne(value) | Test::Contains(value) => json_holds_nul(value),
                Test::In(values) | Test::Nin(values) => values.iter().all(json_holds_nul),
                Test::Range(..) => false,
            };
        if nowhere {
            return if condition.matches(None) {
                "TRUE"
            } else {
                "FALSE"
            }
            .to_owned();
        }
        let key = self.parameter(SqlValue::Text(key.clone()));
        let field = format!("(d.metadata -> {key}::text)");
        match test {
            Test::Eq(value) => self.equals(&key, &field, value),
            Test::Ne(value) => format!("NOT ({})", self.equals(&key, &field, value)),
            Test::In(values) => self.one_of(&field, values),
            Test::Nin(values) => format!("NOT ({})", self.one_of(&field, values)),
            Test::Contains(value) => self.contains(&key, &field, value),
            Test::Range(comparison, Bound::Number(bound)) => {
                let bound = self.parameter(SqlValue::Number(*bound));
                let op = sql_operator(*comparison);
                format!(
                    "CASE WHEN jsonb_typeof({field}) = 'number' \
                     THEN {field}::float8 {op} {bound}::float8 ELSE false END"
                )
            }
            Test::Range(comparison, Bound::Date(instant, _)) => {
                let seconds = self.parameter(SqlValue::Integer(instant.timestamp()));
                let nanos = i64::from(instant.timestamp_subsec_nanos());
                let nanos = self.parameter(SqlValue::Integer(nanos));
                let pattern = match &self.date_pattern {
                    Some(pattern) => pattern.clone(),
                    None => {
                        let pattern = self.parameter(SqlValue::Text(date_pattern()));
                        self.date_pattern = Some(pattern.clone());
                        pattern
                    }
                };
                date_range(&key, &pattern, sql_operator(*comparison), &seconds, &nanos)
            }
        }
    }

    /// The field equals `value`: numbers by value as `f64`s (as [`ragway_core::filter::same`]
    /// compares them: jsonb's own `=` would tell 2⁵³ + 1 from 2⁵³), strings and booleans
    /// exactly, by `@>`, which the GIN index on the metadata serves.
    fn equals(&mut self, key: &str, field: &str, value: &Value) -> String {
        match value.as_f64() {
            Some(number) => {
                let number = self.parameter(SqlValue::Number(number));
                format!(
                    "CASE WHEN jsonb_typeof({field}) = 'number' \
                     THEN {field}::float8 = {number}::float8 ELSE false END"
                )
            }
            None => {
                let value = self.parameter(SqlValue::Text(value.to_string()));
                format!("d.metadata @> jsonb_build_object({key}::text, {value}::jsonb)")
            }
        }
    }

    /// The field equals one of `values` (those holding a NUL left out: they equal nothing).
    /// The numbers are one `float8[]` parameter, the strings and booleans one jsonb list.
    fn one_of(&mut self, field: &str, values: &[Value]) -> String {
        let numbers: Vec<f64> = values.iter().filter_map(Value::as_f64).collect();
        let others: Vec<Value> = values
            .iter()
            .filter(|value| !value.is_number() && !json_holds_nul(value))
            .cloned()
            .collect();
        let mut tests = Vec::new();
        if !numbers.is_empty() {
            let numbers = self.parameter(SqlValue::Numbers(numbers));
            tests.push(format!(
                "CASE WHEN jsonb_typeof({field}) = 'number' \
                 THEN {field}::float8 = ANY({numbers}::float8[]) ELSE false END"
            ));
        }
        if !others.is_empty() {
            let others = self.parameter(SqlValue::Text(Value::Array(others).to_string()));
            tests.push(format!(
                "EXISTS (SELECT 1 FROM jsonb_array_elements({others}::jsonb) AS listed (value) \
                 WHERE listed.value = {field})"
            ));
        }
        if tests.is_empty() {
            return "FALSE".to_owned();
        }
        tests.join(" OR ")
    }

    /// The field is a list holding an element equal to `value`.
    fn contains(&mut self, key: &str, field: &str, value: &Value) -> String {
        match value.as_f64() {
            Some(number) => {
                let number = self.parameter(SqlValue::Number(number));
                format!(
                    "CASE WHEN jsonb_typeof({field}) = 'array' THEN EXISTS (
                         SELECT 1 FROM jsonb_array_elements({field}) AS item (value)
                         WHERE CASE WHEN jsonb_typeof(item.value) = 'number'
                                    THEN item.value::float8 = {number}::float8 ELSE false END)
                     ELSE false END"
                )
            }
            // A scalar inside a list `@>` a one-element list: the element, exactly.
            None => {
                let value = self.parameter(SqlValue::Text(value.to_string()));
                format!(
                    "d.metadata @> jsonb_build_object({key}::text, \
                     jsonb_build_array({value}::jsonb))"
                )
            }
        }
    }
}

/// The SQL operator of a range's side.
fn sql_operator(comparison: Comparison) -> &'static str {
    match comparison {
        Comparison::Gt => ">",
        Comparison::Gte => ">=",
        Comparison::Lt => "<",
        Comparison::Lte => "<=",
    }
}

/// The whitespace Rust's `str::trim` removes (Unicode's `White_Space`), as a regex class:
/// `\s` in Postgres depends on the database's locale.
const WHITE_SPACE: &str =
    r"[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// The date strings [`parse_date`](ragway_core::filter::parse_date) reads, as a Postgres
/// regex, with chrono's leniency (whitespace before a number, a year of 1 to 4 digits or signed
/// with any number, months, days and times of 1 or 2 digits). Groups 1 to 7: year, month,
/// day, hour, minute, second and fraction of a date with `T` and no offset (chrono's
/// `%Y-%m-%dT%H:%M:%S%.f`, seconds optional, or `%Y-%m-%d`); 8 to 17: the same and the offset's
/// sign, hours and minutes for RFC 3339 (`Z` for none).
fn date_pattern() -> String {
    let w = WHITE_SPACE;
    let naive = format!(
        "([+-][0-9]+|[0-9]{{1,4}})-{w}*([0-9]{{1,2}})-{w}*([0-9]{{1,2}})\
         (?:T{w}*([0-9]{{1,2}}):{w}*([0-9]{{1,2}})(?::{w}*([0-9]{{1,2}})(?:\\.([0-9]+))?)?)?"
    );
    let rfc3339 = "([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})\
         (?:\\.([0-9]+))?(?:[Zz]|([+\u{2212}-])([0-9]{2}):([0-9]{2}))";
    format!("^{w}*(?:{naive}|{rfc3339}){w}*$")
}

/// The field is a string [`parse_date`](ragway_core::filter::parse_date) reads as an instant
/// on the `op` side of the bound (`seconds` since the epoch and `nanos`, as chrono has them).
///
/// The instant is worked out in integers from the parts [`date_pattern`] finds, as chrono
/// does, never by casting to a Postgres timestamp: a cast fails the statement on a string it
/// cannot read ("2023-02-30"), reads words ("now", "epoch"), keeps microseconds and reads a
/// time without an offset in the session's time zone. Days since 1970 come from the civil date
/// (the proleptic Gregorian calendar, year 0 being 1 BC, as chrono's); a leap second (`:60`) is
/// second 59 and a second's worth of nanoseconds, as chrono orders it. Every part is checked
/// as chrono checks it: a date that does not exist, an hour of 24, a year beyond chrono's
/// ±262,142 is no date, so the test fails.
fn date_range(key: &str, pattern: &str, op: &str, seconds: &str, nanos: &str) -> String {
    format!(
        "coalesce((
         SELECT ((era * 146097 + year_of_era * 365 + year_of_era / 4 - year_of_era / 100
                  + (153 * ((month_no + 9) % 12) + 2) / 5 + day_no - 1 - 719468)::int8 * 86400
                 + hour_no * 3600 + minute_no * 60 + least(second_no, 59)
                 - offset_sign * (offset_hours * 3600 + offset_minutes * 60),
                 fraction + CASE WHEN second_no = 60 THEN 1000000000 ELSE 0 END)
                {op} ({seconds}::int8, {nanos}::int8)
         FROM (SELECT regexp_match(d.metadata ->> {key}::text, {pattern}::text) AS m
               WHERE jsonb_typeof(d.metadata -> {key}::text) = 'string') date_text
         CROSS JOIN LATERAL (SELECT
             coalesce(m[1], m[8]) AS year_text,
             ltrim(ltrim(coalesce(m[1], m[8]), '+-'), '0') AS year_digits,
             coalesce(m[2], m[9])::int AS month_no,
             coalesce(m[3], m[10])::int AS day_no,
             coalesce(m[4], m[11], '0')::int AS hour_no,
             coalesce(m[5], m[12], '0')::int AS minute_no,
             coalesce(m[6], m[13], '0')::int AS second_no,
             rpad(left(coalesce(m[7], m[14], ''), 9), 9, '0')::int8 AS fraction,
             CASE WHEN m[15] IS NULL THEN 0 WHEN m[15] = '+' THEN 1 ELSE -1 END AS offset_sign,
             coalesce(m[16], '0')::int AS offset_hours,
             coalesce(m[17], '0')::int AS offset_minutes) date_parts
         CROSS JOIN LATERAL (SELECT CASE WHEN length(year_digits) <= 6
             THEN CASE WHEN left(year_text, 1) = '-' THEN -1 ELSE 1 END
                  * coalesce(nullif(year_digits, '')::int, 0) END AS year_no) date_year
         CROSS JOIN LATERAL (SELECT year_no - (month_no <= 2)::int AS march_year) date_march
         CROSS JOIN LATERAL (SELECT (march_year - CASE WHEN march_year < 0 THEN 399 ELSE 0 END)
             / 400 AS era) date_era
         CROSS JOIN LATERAL (SELECT march_year - era * 400 AS year_of_era) date_cycle
         WHERE year_no BETWEEN -262143 AND 262142
           AND month_no BETWEEN 1 AND 12
           AND day_no BETWEEN 1 AND CASE
               WHEN month_no = 2 THEN CASE WHEN (year_no % 4 = 0 AND year_no % 100 <> 0)
                                            OR year_no % 400 = 0 THEN 29 ELSE 28 END
               WHEN month_no IN (4, 6, 9, 11) THEN 30 ELSE 31 END
           AND hour_no <= 23 AND minute_no <= 59 AND second_no <= 60
           AND offset_hours <= 23 AND offset_minutes <= 59
     ), false)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filters_keys_values_and_bounds_are_parameters_never_sql_text() {
        let filter = Filter::parse(&serde_json::json!({
            "x') OR 1=1 --": {"$in": ["'; DROP TABLE documents; --", 1.5]},
            "published": {"$gt": "2021-01-01", "$lt": "2022-01-01T00:00:00.5Z"},
        }))
        .unwrap();
        let sql = SqlFilter::new(&filter, 3);
        for written in ["DROP", "1=1", "1.5", "2021", "published"] {
            assert!(
                !sql.condition.contains(written),
                "{written} in {}",
                sql.condition
            );
        }
        // Two keys, the list as its numbers and its strings, two bounds of two integers each,
        // and the date pattern once: $3 to $12, after the statement's own $1 and $2.
        assert_eq!(sql.values.len(), 10);
        assert!(sql.condition.contains("$12") && !sql.condition.contains("$13"));
        assert!(!sql.condition.contains("$2 ") && !sql.condition.contains("$2:"));
        let nanos: Vec<i64> = sql
            .values
            .iter()
            .filter_map(|value| match value {
                SqlValue::Integer(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert!(nanos.contains(&500_000_000), "{nanos:?}");
    }

    #[test]
    fn a_nul_in_a_key_or_value_decides_the_test_without_reaching_postgres() {
        let cases = [
            (serde_json::json!({"a\u{0}": "x"}), "FALSE"),
            (serde_json::json!({"a\u{0}": {"$ne": "x"}}), "TRUE"),
            (serde_json::json!({"a": {"$eq": "x\u{0}"}}), "FALSE"),
            (serde_json::json!({"a": {"$ne": "x\u{0}"}}), "TRUE"),
            (serde_json::json!({"a": {"$contains": "x\u{0}"}}), "FALSE"),
            (serde_json::json!({"a": {"$in": ["x\u{0}"]}}), "FALSE"),
            (serde_json::json!({"a": {"$nin": ["x\u{0}"]}}), "TRUE"),
            (serde_json::json!({"a\u{0}": {"$gt": 1}}), "FALSE"),
            (
                serde_json::json!({"$not": {"a\u{0}": {"$lt": "2020-01-01"}}}),
                "NOT (FALSE)",
            ),
        ];
        for (value, expected) in cases {
            let sql = SqlFilter::new(&Filter::parse(&value).unwrap(), 3);
            assert_eq!(sql.condition, expected, "{value}");
            assert!(sql.values.is_empty(), "{value}");
        }
        // In a list, the values with a NUL are left out and the others bound.
        let sql = SqlFilter::new(
            &Filter::parse(&serde_json::json!({"a": {"$in": ["x\u{0}", "y"]}})).unwrap(),
            3,
        );
        assert_eq!(sql.values.len(), 2);
        assert!(matches!(&sql.values[1], SqlValue::Text(list) if list == r#"["y"]"#));
    }
}
