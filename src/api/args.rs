//! Arguments from JavaScript, checked at the boundary. Every exported function takes its
//! arguments as `JsValue` and converts them here, so that a page passing the wrong kind of
//! value gets an `INVALID_ARGUMENT` error naming the argument, never a trap, a bare
//! `TypeError` or a copy of an arbitrarily large string into wasm memory.

use wasm_bindgen::{JsCast, JsValue};

use crate::error::Error;

/// The longest CID string accepted (a CIDv1 with a 64-byte digest in base32 is ~110 chars).
pub(crate) const MAX_CID_CHARS: u32 = 512;
/// The longest address or URL accepted.
pub(crate) const MAX_ADDRESS_CHARS: u32 = 2048;

/// What kind of JS value `value` is, for messages.
pub(crate) fn kind_of(value: &JsValue) -> String {
    if value.is_null() {
        "null".into()
    } else if js_sys::Array::is_array(value) {
        "an array".into()
    } else {
        value.js_typeof().as_string().unwrap_or_else(|| "a value".into())
    }
}

fn invalid(what: &str, reason: String) -> Error {
    Error::InvalidArgument { what: what.into(), reason }
}

/// A string of at most `max_chars` UTF-16 units; its length is checked before it is copied.
pub(crate) fn string(value: &JsValue, what: &str, max_chars: u32) -> Result<String, Error> {
    let Some(js) = value.dyn_ref::<js_sys::JsString>() else {
        return Err(invalid(what, format!("expected a string, got {}", kind_of(value))));
    };
    if js.length() > max_chars {
        return Err(invalid(what, format!("{} characters, at most {max_chars}", js.length())));
    }
    Ok(String::from(js))
}

/// A finite number within `range`.
pub(crate) fn number(value: &JsValue, what: &str, range: std::ops::RangeInclusive<f64>) -> Result<f64, Error> {
    let n = value.as_f64().ok_or_else(|| invalid(what, format!("expected a number, got {}", kind_of(value))))?;
    if !n.is_finite() || !range.contains(&n) {
        return Err(invalid(what, format!("{n} is not in [{}, {}]", range.start(), range.end())));
    }
    Ok(n)
}

/// A JS object of class `T` (checked with `instanceof`).
pub(crate) fn instance<T: JsCast>(value: &JsValue, what: &str, class: &str) -> Result<T, Error> {
    value.clone().dyn_into::<T>().map_err(|v| invalid(what, format!("expected {class}, got {}", kind_of(&v))))
}

/// Bytes: a `Uint8Array` (or an `ArrayBuffer`, viewed whole).
pub(crate) fn bytes(value: &JsValue, what: &str) -> Result<js_sys::Uint8Array, Error> {
    if let Some(array) = value.dyn_ref::<js_sys::Uint8Array>() {
        return Ok(array.clone());
    }
    if let Some(buffer) = value.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(js_sys::Uint8Array::new(buffer));
    }
    Err(invalid(what, format!("expected a Uint8Array, got {}", kind_of(value))))
}

/// `undefined` and `null` as `None`, anything else through `convert`.
pub(crate) fn optional<T>(
    value: &JsValue,
    convert: impl FnOnce(&JsValue) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    if value.is_undefined() || value.is_null() { Ok(None) } else { convert(value).map(Some) }
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::error::ErrorCode;

    fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorCode {
        r.unwrap_err().code()
    }

    #[test]
    fn strings_are_checked_for_kind_and_length_before_copying() {
        assert_eq!(string(&"bafy".into(), "cid", 10).unwrap(), "bafy");
        for wrong in [JsValue::from(42), JsValue::NULL, JsValue::UNDEFINED, js_sys::Object::new().into()] {
            assert_eq!(code(string(&wrong, "cid", 10)), ErrorCode::InvalidArgument);
        }
        let long = JsValue::from("x".repeat(11));
        let e = string(&long, "cid", 10).unwrap_err();
        assert_eq!(e.to_string(), "invalid cid: 11 characters, at most 10");
    }

    #[test]
    fn numbers_must_be_finite_and_in_range() {
        assert_eq!(number(&3.5.into(), "secs", 0.0..=10.0).unwrap(), 3.5);
        for wrong in [JsValue::from(f64::NAN), JsValue::from(-1), JsValue::from(11), JsValue::from("3")] {
            assert_eq!(code(number(&wrong, "secs", 0.0..=10.0)), ErrorCode::InvalidArgument);
        }
    }

    #[test]
    fn bytes_and_instances_are_checked_by_class() {
        assert_eq!(bytes(&js_sys::Uint8Array::new_with_length(3).into(), "bytes").unwrap().length(), 3);
        assert_eq!(bytes(&js_sys::ArrayBuffer::new(4).into(), "bytes").unwrap().length(), 4);
        assert_eq!(code(bytes(&JsValue::from("abc"), "bytes")), ErrorCode::InvalidArgument);
        let e = instance::<js_sys::Function>(&JsValue::from(1), "listener", "a function").unwrap_err();
        assert_eq!(e.to_string(), "invalid listener: expected a function, got number");
        assert!(optional(&JsValue::UNDEFINED, |v| number(v, "n", 0.0..=1.0)).unwrap().is_none());
    }
}
