//! The OpenAPI document: info, tags, security scheme and the shared error
//! responses. Paths come from the handlers' `#[utoipa::path]` declarations,
//! the same ones that build the router (`api/mod.rs`).

use std::borrow::Cow;

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};
use weir_protocol::{Problem, ProduceMessage, ProduceRequest};

pub const TAG_TOPICS: &str = "topics";
pub const TAG_MESSAGES: &str = "messages";
pub const TAG_SUBSCRIPTIONS: &str = "subscriptions";
pub const TAG_OPS: &str = "operations";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Weir",
        description = "Durable partitioned topics with queue and stream subscriptions over HTTP and WebSocket.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "topics", description = "Replayable partitioned logs"),
        (name = "messages", description = "Produce and stateless replay"),
        (name = "subscriptions", description = "Named durable readers: queue and stream modes"),
        (name = "operations", description = "Health, readiness, metrics"),
    ),
    components(schemas(Problem, Name, ProduceMessage)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// A topic or subscription name (path parameters).
pub struct Name;

impl PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(weir_protocol::names::NAME_PATTERN))
            .description(Some(
                "A topic or subscription name: a letter or digit, then up to 199 letters, \
                 digits, `.`, `_` or `-`.",
            ))
            .into()
    }
}

impl ToSchema for Name {}

/// The raw body of an `application/octet-stream` produce: the value of
/// one message, any bytes.
pub struct RawPayload;

impl PartialSchema for RawPayload {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .content_media_type("application/octet-stream")
            .into()
    }
}

impl ToSchema for RawPayload {}

/// An `application/x-ndjson` produce: one message object per line, each
/// an item of this array (the `messages` of the JSON form).
pub struct NdjsonMessages;

impl PartialSchema for NdjsonMessages {
    fn schema() -> RefOr<Schema> {
        match ProduceRequest::schema() {
            RefOr::T(Schema::Object(request)) => request
                .properties
                .get("messages")
                .cloned()
                .unwrap_or_else(Vec::<ProduceMessage>::schema),
            _ => Vec::<ProduceMessage>::schema(),
        }
    }
}

impl ToSchema for NdjsonMessages {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NdjsonMessages")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ProduceMessage::name().into(), ProduceMessage::schema()));
    }
}

/// Declares the bearer scheme used when tokens are configured.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// Error responses every `/v1` operation may answer, as problem documents.
#[allow(dead_code)] // Only its derived `IntoResponses` is used.
#[derive(IntoResponses)]
pub enum Errors {
    /// Malformed or invalid request.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(#[to_schema] Problem),
    /// Unknown topic, subscription or partition.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// Conflicting configuration.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// Body or message too large.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// Wrong content type.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// Internal error (details are in the server log).
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// Overloaded, stalled or shutting down; retry after `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    /// The committed spec must equal the generated one. Regenerate with
    /// `make openapi` (sets `WEIR_UPDATE_OPENAPI=1`).
    #[test]
    fn committed_spec_is_current() {
        let generated = crate::api::openapi().to_pretty_json().unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
        if std::env::var_os("WEIR_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "openapi/openapi.json is out of date: run `make openapi` and commit it"
        );
    }
}
