//! A request's metadata `filter` (`/search`, `/generate`, and `/v1/chat/completions` as an
//! extra body field), read into [`Filter`] with the place of any problem in the body.

use ragway_core::Filter;
use ragway_core::filter::FilterError;
use serde_json::Value;

use crate::error::FieldError;

/// The filter a body holds; absent or `null` is no filter.
pub fn read_filter(value: Option<&Value>) -> Result<Filter, FilterError> {
    match value {
        None | Some(Value::Null) => Ok(Filter::new()),
        Some(value) => Filter::parse(value),
    }
}

/// A filter's problem at its place in the body: `["body", "filter", "$or", "1", "year"]`.
pub fn filter_field_error(error: &FilterError) -> FieldError {
    FieldError {
        loc: ["body", "filter"]
            .into_iter()
            .map(str::to_owned)
            .chain(error.path.iter().cloned())
            .collect(),
        msg: error.message.clone(),
        kind: "filter".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn absent_and_null_are_no_filter_and_errors_keep_their_place() {
        assert!(read_filter(None).unwrap().is_empty());
        assert!(read_filter(Some(&Value::Null)).unwrap().is_empty());
        let filter = read_filter(Some(&json!({"lang": "en"}))).unwrap();
        assert!(filter.matches(json!({"lang": "en"}).as_object().unwrap()));
        let error = read_filter(Some(&json!({"$or": [{"year": {"$gt": "soon"}}]}))).unwrap_err();
        let field = filter_field_error(&error);
        assert_eq!(field.loc, ["body", "filter", "$or", "0", "year", "$gt"]);
        assert!(field.msg.contains("numbers or dates"), "{}", field.msg);
    }
}
