//! Extractors whose rejections are problem documents (axum's defaults answer
//! plain text, which clients and the OpenAPI contract do not expect).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use weir_protocol::ErrorCode;

use super::error::ApiError;

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let names: Vec<String> = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(|m| {
                m.as_str()
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| path_error(e, &names))
    }
}

/// A path parameter that does not parse: name it and say what it accepts
/// (axum's own words name Rust types).
fn path_error(e: axum::extract::rejection::PathRejection, names: &[String]) -> ApiError {
    use axum::extract::path::ErrorKind;
    use axum::extract::rejection::PathRejection;
    let PathRejection::FailedToDeserializePathParams(failed) = e else {
        return ApiError::new(ErrorCode::InvalidRequest, e.body_text());
    };
    let body = failed.body_text();
    let (name, value, expected) = match failed.into_kind() {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => (key, value, expected_type),
        ErrorKind::ParseErrorAtIndex {
            index,
            value,
            expected_type,
        } => (
            names
                .get(index)
                .cloned()
                .unwrap_or_else(|| format!("path parameter {index}")),
            value,
            expected_type,
        ),
        ErrorKind::ParseError {
            value,
            expected_type,
        } => (
            names
                .first()
                .cloned()
                .unwrap_or_else(|| "path parameter".to_owned()),
            value,
            expected_type,
        ),
        _ => return ApiError::new(ErrorCode::InvalidRequest, body),
    };
    let accepts = match expected {
        "u32" => "a partition number (a non-negative integer)",
        "u64" | "usize" => "a non-negative integer",
        _ => "a valid value",
    };
    ApiError::invalid(
        name.clone(),
        format!("path parameter `{name}` must be {accepts}, got `{value}`"),
    )
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Integers in the query are int64, as in the spec: a larger one is
        // a 400, not silently accepted as a u64.
        if let Ok(pairs) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
            for (name, value) in &pairs.0 {
                if is_integer_literal(value) && value.parse::<i64>().is_err() {
                    return Err(ApiError::invalid(
                        name.as_str(),
                        format!("`{name}` is out of range (at most {})", i64::MAX),
                    ));
                }
            }
        }
        let _ = state;
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                field_error(
                    e.path().to_string(),
                    &e.into_inner().to_string(),
                    "query parameter",
                )
            })
    }
}

/// A 400 naming the field at fault and, for the fields whose error serde
/// words in Rust terms, what the field accepts.
fn field_error(path: String, error: &str, what: &str) -> ApiError {
    let field = path.trim_start_matches('.').to_owned();
    let leaf = field.rsplit('.').next().unwrap_or_default();
    let accepted = match leaf {
        "start" => Some("`start` accepts \"earliest\", \"latest\" or {\"timestamp\": <ms since the epoch>}"),
        "to" => Some("`to` accepts \"earliest\", \"latest\", {\"timestamp\": <ms>} or {\"offsets\": {\"<partition>\": <offset>}}"),
        "mode" => Some("`mode` accepts \"queue\" or \"stream\""),
        "ordering" => Some("`ordering` accepts \"none\" or \"key\""),
        "state" => Some("`state` accepts \"waiting\", \"redriven\" or \"purged\""),
        _ => None,
    };
    // serde's own words name Rust types (`untagged enum Start`, `u32`):
    // say what the API accepts instead.
    let detail = match accepted {
        Some(accepted) if field.is_empty() || error.contains("variant") => accepted.to_owned(),
        _ => {
            let plain = error
                .replace("u32", "a non-negative 32-bit integer")
                .replace("u64", "a non-negative integer")
                .replace("usize", "a non-negative integer")
                .replace("i64", "an integer");
            if field.is_empty() || field == "?" {
                format!("invalid {what}: {plain}")
            } else {
                format!("invalid {what} `{field}`: {plain}")
            }
        }
    };
    if field.is_empty() || field == "?" {
        ApiError::new(ErrorCode::InvalidRequest, detail)
    } else {
        ApiError::invalid(field, detail)
    }
}

fn is_integer_literal(value: &str) -> bool {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A JSON body. An empty body, or `null`, is read as `{}` so that "every
/// field optional" bodies may be omitted (the spec declares them optional,
/// `null` or the object).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = json_content_type(req.headers());
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return parse_json(b"{}").map(ApiJson);
        }
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected `Content-Type: application/json`",
            ));
        }
        if bytes.trim_ascii() == b"null" {
            return parse_json(b"{}").map(ApiJson);
        }
        parse_json(&bytes).map(ApiJson)
    }
}

pub async fn read_body<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "request body exceeds the server's `max_request_bytes`",
                )
            } else {
                ApiError::new(ErrorCode::InvalidRequest, e.body_text())
            }
        })
}

pub fn json_content_type(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m == "application/json" || m.ends_with("+json"))
}

/// The media type of the request without parameters, lowercased.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The common case, a valid body, is parsed without tracking the path
    // of every field (which costs on each field of a 100-message body);
    // only a body that fails is parsed again to name the field at fault.
    if let Ok(value) = from_json_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T =
        serde_path_to_error::deserialize(numbers::Numbers::new(&mut de)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("invalid JSON body: {inner}"),
                )
            } else {
                field_error(path, &inner.to_string(), "field")
            }
        })?;
    de.end()
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// `serde_json::from_slice` with the integer rules of the OpenAPI spec
/// (JSON Schema 2020-12, OpenAPI formats), which serde alone does not
/// follow:
/// - an integer may be spelled as a whole number with a fraction or an
///   exponent (`2.0`, `1e3`): JSON Schema counts it as an integer, and
///   clients that compute with floats (Python, JavaScript) send it so;
/// - integers are `int64` (`int32` where the field is a `u32`): larger
///   ones are rejected instead of being read as unsigned.
///
/// Raw JSON payloads (`value` of a produced message) are kept byte for byte.
pub fn from_json_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(numbers::Numbers::new(&mut de))?;
    de.end()?;
    Ok(value)
}

/// A deserializer adapter that applies the integer rules of
/// [`from_json_slice`] to every number it passes on.
mod numbers {
    use std::fmt;

    use serde::de::{
        self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess,
        Visitor,
    };

    /// serde_json's marker for `RawValue`: passed through untouched.
    const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

    /// Largest magnitude an integer may have where the target is a `u32`
    /// (`int32` in the spec) or anything else (`int64`).
    #[derive(Clone, Copy)]
    enum Width {
        Int32,
        Int64,
    }

    pub struct Numbers<D>(D);

    impl<D> Numbers<D> {
        pub fn new(inner: D) -> Self {
            Numbers(inner)
        }
    }

    struct Wrap<V> {
        inner: V,
        width: Width,
        /// A struct: only a JSON object, not serde's array form.
        object_only: bool,
    }

    impl<V> Wrap<V> {
        fn new(inner: V) -> Self {
            Wrap {
                inner,
                width: Width::Int64,
                object_only: false,
            }
        }

        fn int32(inner: V) -> Self {
            Wrap {
                width: Width::Int32,
                ..Wrap::new(inner)
            }
        }

        fn object(inner: V) -> Self {
            Wrap {
                object_only: true,
                ..Wrap::new(inner)
            }
        }
    }

    macro_rules! forward_deserialize {
        ($($method:ident)*) => {$(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(Wrap::new(visitor))
            }
        )*};
    }

    impl<'de, D: Deserializer<'de>> Deserializer<'de> for Numbers<D> {
        type Error = D::Error;

        forward_deserialize!(
            deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i64
            deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u64 deserialize_u128
            deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
            deserialize_bytes deserialize_byte_buf deserialize_option deserialize_unit
            deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
        );

        fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.deserialize_i32(Wrap::int32(visitor))
        }

        fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.deserialize_u32(Wrap::int32(visitor))
        }

        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_unit_struct(name, Wrap::new(visitor))
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            if name == RAW_VALUE_TOKEN {
                self.0.deserialize_newtype_struct(name, visitor)
            } else {
                self.0.deserialize_newtype_struct(name, Wrap::new(visitor))
            }
        }

        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_tuple(len, Wrap::new(visitor))
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0
                .deserialize_tuple_struct(name, len, Wrap::new(visitor))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0
                .deserialize_struct(name, fields, Wrap::object(visitor))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_enum(name, variants, Wrap::new(visitor))
        }

        fn is_human_readable(&self) -> bool {
            self.0.is_human_readable()
        }
    }

    impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
        type Value = V::Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            self.inner.expecting(f)
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<V::Value, E> {
            self.inner.visit_bool(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<V::Value, E> {
            if matches!(self.width, Width::Int32) && i32::try_from(v).is_err() {
                return Err(E::custom(format_args!(
                    "integer {v} is out of range (int32: {} to {})",
                    i32::MIN,
                    i32::MAX
                )));
            }
            self.inner.visit_i64(v)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<V::Value, E> {
            let max = match self.width {
                Width::Int32 => i32::MAX as u64,
                Width::Int64 => i64::MAX as u64,
            };
            if v > max {
                return Err(E::custom(format_args!(
                    "integer {v} is out of range (at most {max})"
                )));
            }
            self.inner.visit_u64(v)
        }

        fn visit_i128<E: de::Error>(self, v: i128) -> Result<V::Value, E> {
            match i64::try_from(v) {
                Ok(v) => self.visit_i64(v),
                Err(_) => Err(E::custom(format_args!("integer {v} is out of range"))),
            }
        }

        fn visit_u128<E: de::Error>(self, v: u128) -> Result<V::Value, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format_args!("integer {v} is out of range"))),
            }
        }

        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
            // A whole number is an integer whatever its spelling; the casts
            // are exact for whole values inside these bounds.
            if v.is_finite() && v.fract() == 0.0 {
                if (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                    return self.visit_u64(v as u64);
                }
                if (-9_223_372_036_854_775_808.0..0.0).contains(&v) {
                    return self.visit_i64(v as i64);
                }
            }
            self.inner.visit_f64(v)
        }

        fn visit_char<E: de::Error>(self, v: char) -> Result<V::Value, E> {
            self.inner.visit_char(v)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
            self.inner.visit_str(v)
        }

        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
            self.inner.visit_borrowed_str(v)
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
            self.inner.visit_string(v)
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
            self.inner.visit_bytes(v)
        }

        fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
            self.inner.visit_borrowed_bytes(v)
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
            self.inner.visit_byte_buf(v)
        }

        fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
            self.inner.visit_none()
        }

        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
            self.inner.visit_some(Numbers(d))
        }

        fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
            self.inner.visit_unit()
        }

        fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
            self.inner.visit_newtype_struct(Numbers(d))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
            if self.object_only {
                return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
            }
            self.inner.visit_seq(Access(seq))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
            self.inner.visit_map(Access(map))
        }

        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
            self.inner.visit_enum(Access(data))
        }
    }

    /// Seeds, sequences, maps and enums whose contents go through [`Numbers`].
    struct Access<A>(A);

    impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Access<S> {
        type Value = S::Value;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
            self.0.deserialize(Numbers(d))
        }
    }

    impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<A> {
        type Error = A::Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, A::Error> {
            self.0.next_element_seed(Access(seed))
        }

        fn size_hint(&self) -> Option<usize> {
            self.0.size_hint()
        }
    }

    impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<A> {
        type Error = A::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, A::Error> {
            self.0.next_key_seed(Access(seed))
        }

        fn next_value_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<T::Value, A::Error> {
            self.0.next_value_seed(Access(seed))
        }

        fn size_hint(&self) -> Option<usize> {
            self.0.size_hint()
        }
    }

    impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Access<A> {
        type Error = A::Error;
        type Variant = Access<A::Variant>;

        fn variant_seed<T: DeserializeSeed<'de>>(
            self,
            seed: T,
        ) -> Result<(T::Value, Self::Variant), A::Error> {
            let (value, variant) = self.0.variant_seed(Access(seed))?;
            Ok((value, Access(variant)))
        }
    }

    impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<A> {
        type Error = A::Error;

        fn unit_variant(self) -> Result<(), A::Error> {
            self.0.unit_variant()
        }

        fn newtype_variant_seed<T: DeserializeSeed<'de>>(
            self,
            seed: T,
        ) -> Result<T::Value, A::Error> {
            self.0.newtype_variant_seed(Access(seed))
        }

        fn tuple_variant<V: Visitor<'de>>(
            self,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, A::Error> {
            self.0.tuple_variant(len, Wrap::new(visitor))
        }

        fn struct_variant<V: Visitor<'de>>(
            self,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, A::Error> {
            self.0.struct_variant(fields, Wrap::object(visitor))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use weir_protocol::{ProduceRequest, SeekRequest, SeekTarget, SubscriptionSpec, TopicSpec};

    use super::{from_json_slice, parse_json};

    #[test]
    fn errors_name_the_field_and_what_it_accepts() {
        let e = parse_json::<SubscriptionSpec>(br#"{"start": 5}"#).unwrap_err();
        assert_eq!(e.problem.field.as_deref(), Some("start"));
        assert!(
            e.problem.detail.contains("\"earliest\""),
            "{}",
            e.problem.detail
        );
        assert!(
            !e.problem.detail.contains("untagged"),
            "{}",
            e.problem.detail
        );
        let e = parse_json::<SubscriptionSpec>(br#"{"retry": {"backoff": {"max_ms": "soon"}}}"#)
            .unwrap_err();
        assert_eq!(e.problem.field.as_deref(), Some("retry.backoff.max_ms"));
        let e = parse_json::<SeekRequest>(br#"{"to": "middle"}"#).unwrap_err();
        assert_eq!(e.problem.field.as_deref(), Some("to"));
        assert!(e.problem.detail.contains("offsets"), "{}", e.problem.detail);
        let e = parse_json::<SubscriptionSpec>(br#"{"mode": "fifo"}"#).unwrap_err();
        assert!(
            e.problem.detail.contains("\"queue\""),
            "{}",
            e.problem.detail
        );
        let e = parse_json::<SubscriptionSpec>(b"{").unwrap_err();
        assert!(
            e.problem.detail.starts_with("invalid JSON body"),
            "{}",
            e.problem.detail
        );
    }

    #[test]
    fn whole_floats_are_integers() {
        let spec: TopicSpec =
            from_json_slice(br#"{"partitions": 3.0, "dedupe_window_ms": 1e3}"#).unwrap();
        assert_eq!(spec.partitions, Some(3));
        assert_eq!(spec.dedupe_window_ms, Some(1000));
        let seek: SeekRequest = from_json_slice(br#"{"to": {"timestamp": 5.0}}"#).unwrap();
        assert!(matches!(seek.to, SeekTarget::Timestamp(t) if t.timestamp == 5));
        let sub: SubscriptionSpec =
            from_json_slice(br#"{"retry": {"max_attempts": 2.0, "backoff": {"initial_ms": 1, "max_ms": 2, "multiplier": 2, "jitter": 0}}}"#)
                .unwrap();
        assert_eq!(sub.retry.unwrap().max_attempts, Some(Some(2)));
        assert!(from_json_slice::<TopicSpec>(br#"{"partitions": 2.5}"#).is_err());
    }

    #[test]
    fn integers_are_int64_or_int32() {
        assert!(
            from_json_slice::<TopicSpec>(br#"{"dedupe_window_ms": 9223372036854775807}"#).is_ok()
        );
        assert!(
            from_json_slice::<TopicSpec>(br#"{"dedupe_window_ms": 9223372036854775808}"#).is_err()
        );
        assert!(
            from_json_slice::<SeekRequest>(br#"{"to": {"timestamp": 9223372036854775808}}"#)
                .is_err()
        );
        assert!(from_json_slice::<TopicSpec>(br#"{"partitions": 2147483647}"#).is_ok());
        assert!(from_json_slice::<TopicSpec>(br#"{"partitions": 2147483648}"#).is_err());
        assert!(from_json_slice::<TopicSpec>(br#"{"partitions": 3} x"#).is_err());
    }

    #[test]
    fn structs_are_objects_only() {
        assert!(from_json_slice::<TopicSpec>(br#"[3]"#).is_err());
        assert!(from_json_slice::<TopicSpec>(br#"{"retention": [null, null]}"#).is_err());
        // Not covered: struct variants of untagged enums (`start`, `to`)
        // are buffered by serde before this adapter sees their type, so
        // `{"to": [5]}` still reads as `{"to": {"timestamp": 5}}`.
        assert!(from_json_slice::<SubscriptionSpec>(br#"{"start": {"timestamp": 5}}"#).is_ok());
    }

    #[test]
    fn raw_payloads_are_kept_verbatim() {
        let body = br#"{"messages": [{"value": {"b": 2.0, "a": 18446744073709551615}, "partition": 0.0}]}"#;
        let request: ProduceRequest = from_json_slice(body).unwrap();
        let m = &request.messages[0];
        assert_eq!(
            m.value.as_ref().unwrap().get(),
            r#"{"b": 2.0, "a": 18446744073709551615}"#
        );
        assert_eq!(m.partition, Some(0));
    }
}
