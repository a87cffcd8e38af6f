//! The OpenAPI document: info, tags, security scheme and the shared error
//! responses. Paths come from the handlers' `#[utoipa::path]` declarations,
//! the same ones that build the router (`api/mod.rs`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};
use weir_protocol::{ErrorCode, Problem, ProduceMessage, ProduceRequest};

pub const TAG_TOPICS: &str = "topics";
pub const TAG_MESSAGES: &str = "messages";
pub const TAG_SUBSCRIPTIONS: &str = "subscriptions";
pub const TAG_OPS: &str = "operations";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Weir",
        description = "Durable partitioned topics with queue and stream subscriptions over HTTP and WebSocket.\n\nThis page is the reference. The guide — concepts, the API guide with examples, configuration, operations, monitoring, security, generated clients — is the `docs/` directory of the Weir repository: start at `docs/README.md` (API guide: `docs/api.md`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "topics", description = "Replayable partitioned logs"),
        (name = "messages", description = "Produce and stateless replay"),
        (name = "subscriptions", description = "Named durable readers: queue and stream modes"),
        (name = "operations", description = "Health, readiness, metrics, online backups"),
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

/// A body in the binary batch encoding (`application/vnd.weir.batch`):
/// an 8-byte header (magic `WB`, version 1, kind, record count) and
/// length-prefixed records; the layout is in the API guide.
pub struct BinaryBatch;

impl PartialSchema for BinaryBatch {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .content_media_type(weir_protocol::binary::CONTENT_TYPE)
            .description(Some(
                "A binary batch: magic `WB` (0x57 0x42), version 1, kind (1 produce, 2 \
                 messages, 3 WebSocket publish, 4 produce results), record count (u32 LE), \
                 then length-prefixed records. Layout: docs/api.md, section \"Binary \
                 batches\".",
            ))
            .into()
    }
}

impl ToSchema for BinaryBatch {}

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
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "A token from the server's tokens file, or a JWT verified against its JWKS. \
                             WebSocket upgrades from browsers may offer it as the subprotocol `bearer.<token>`.",
                        ))
                        .build(),
                ),
            );
        }
    }
}

/// Error responses every operation may answer, as problem documents:
/// one response per status of the error-code table (`weir_protocol::ErrorCode`),
/// listing the codes answered with it. The table is the only source.
pub struct Errors;

impl IntoResponses for Errors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
        for code in ErrorCode::ALL {
            if code != ErrorCode::Unknown {
                by_status.entry(code.status()).or_default().push(code);
            }
        }
        by_status
            .into_iter()
            .map(|(status, codes)| {
                let names: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
                let mut description = format!(
                    "{}: problem document with `code` {}.",
                    codes[0].title(),
                    names.join(", ")
                );
                if status == 401 {
                    description.push_str(" Sent with `WWW-Authenticate: Bearer`.");
                }
                if status == 429 || status == 503 || status == 507 {
                    description.push_str(" Sent with `Retry-After` (seconds).");
                }
                let response = ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(RefOr::Ref(Ref::from_schema_name("Problem"))))
                            .build(),
                    )
                    .build();
                (status.to_string(), RefOr::T(response))
            })
            .collect()
    }
}

/// Completes the document once every route is in it: every `/v1`
/// operation accepts a bearer token (required when the server has
/// authentication configured, so the empty alternative is listed too), and
/// the WebSocket frame unions are flattened (each variant one plain
/// object, no `allOf`), a shape code generators can parse.
/// Adds `Weir-Leader` to the successful answers of an operation about
/// subscriptions (`api/forward.rs` sets it on every one in a cluster).
fn document_serving_node(operation: &mut utoipa::openapi::path::Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let (true, RefOr::T(response)) =
            (status.starts_with('1') || status.starts_with('2'), response)
        else {
            continue;
        };
        let mut header = utoipa::openapi::header::Header::new(utoipa::openapi::Object::with_type(
            utoipa::openapi::Type::Integer,
        ));
        header.description = Some(
            "In a cluster: the node serving the topic's subscriptions (the leader of its partition 0)"
                .into(),
        );
        response.headers.insert("Weir-Leader".into(), header);
    }
}

pub fn finish(openapi: &mut utoipa::openapi::OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        let about_subscriptions = path.starts_with("/v1/topics/{topic}/subscriptions");
        for operation in operations.into_iter().flatten() {
            operation.security = Some(vec![
                SecurityRequirement::new("bearer", Vec::<String>::new()),
                SecurityRequirement::default(),
            ]);
            if about_subscriptions {
                document_serving_node(operation);
            }
        }
    }
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    let all = components.schemas.clone();
    let mut variants = Vec::new();
    for union in ["ServerFrame", "TailFrame", "ClientFrame"] {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(union) {
            for item in one_of.items.iter_mut() {
                let Some(flat) = flatten(item, &all, 0) else {
                    continue;
                };
                let Some(tag) = frame_type(&flat) else {
                    continue;
                };
                // A named schema per variant (`ServerFrameAcked`, ...):
                // generators name nested models after it, uniquely.
                let name = format!("{union}{}", camel(&tag));
                *item = RefOr::Ref(Ref::from_schema_name(name.clone()));
                variants.push((name, RefOr::T(Schema::Object(flat))));
            }
        }
    }
    components.schemas.extend(variants);
}

/// The single value of a frame variant's `type` property.
fn frame_type(object: &Object) -> Option<String> {
    match object.properties.get("type")? {
        RefOr::T(Schema::Object(t)) => t.enum_values.as_ref()?.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `dead_letter` → `DeadLetter`.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// One object with the properties of every part of `schema` (following
/// `$ref`s and `allOf`), or `None` for shapes that are not objects.
fn flatten(
    schema: &RefOr<Schema>,
    all: &BTreeMap<String, RefOr<Schema>>,
    depth: usize,
) -> Option<Object> {
    if depth > 8 {
        return None;
    }
    match schema {
        RefOr::Ref(r) => {
            let name = r.ref_location.rsplit('/').next()?;
            flatten(all.get(name)?, all, depth + 1)
        }
        RefOr::T(Schema::Object(object)) => Some(object.clone()),
        RefOr::T(Schema::AllOf(all_of)) => {
            let mut merged: Option<Object> = None;
            for part in &all_of.items {
                let part = flatten(part, all, depth + 1)?;
                match merged.as_mut() {
                    None => merged = Some(part),
                    Some(m) => {
                        m.properties.extend(part.properties);
                        for name in part.required {
                            if !m.required.contains(&name) {
                                m.required.push(name);
                            }
                        }
                    }
                }
            }
            if let Some(m) = merged.as_mut() {
                if all_of.description.is_some() {
                    m.description = all_of.description.clone();
                }
            }
            merged
        }
        _ => None,
    }
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
