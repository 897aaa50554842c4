//! The OpenAPI 3.1 document of the whole API, assembled from the handlers' `#[utoipa::path]`
//! annotations and the types they read and write; served at `/openapi.json` and shown by
//! Swagger UI at `/docs`.

pub mod responses;
pub mod schemas;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, SecurityRequirement};
use utoipa::{Modify, OpenApi};

use crate::routes;

/// Routes anyone may call without an API key: the welcome, health, metrics and the documents
/// that describe the API. Every other route requires `bearer` or `api_key`.
pub const PUBLIC_PATHS: &[&str] = &[
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/ui",
    "/docs",
    "/docs/{asset}",
    "/openapi.json",
];

/// The security schemes' names in the document.
pub const BEARER: &str = "bearer";
pub const API_KEY: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ragway",
        description = "A retrieval-augmented LLM gateway: one call names a prompt, a model and \
                       a vector store; ragway retrieves context, calls the model and returns \
                       the answer with its sources. ragway's own routes answer errors in \
                       FastAPI's shape (`{\"detail\": ...}`), the OpenAI-compatible routes under \
                       `/v1` in OpenAI's (`{\"error\": {...}}`), unknown `/v1` URLs included.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::meta::root,
        routes::meta::healthz,
        routes::meta::readyz,
        crate::metrics::render,
        routes::meta::models,
        routes::generate::generate,
        routes::search::search,
        routes::stores::list,
        routes::stores::add,
        routes::stores::delete,
        routes::ui::playground,
        routes::v1::chat::completions,
        routes::v1::models,
        routes::v1::model,
        routes::v1::embeddings::embeddings,
        routes::docs::openapi_json,
        routes::docs::swagger_ui,
        routes::docs::asset,
    ),
    components(schemas(
        schemas::ErrorMessage,
        schemas::ValidationErrors,
        schemas::OpenAiErrorBody,
        schemas::GenerateSourcesEvent,
        schemas::GenerateDeltaEvent,
        schemas::GenerateDoneEvent,
        schemas::GenerateErrorEvent,
        schemas::ChatCompletionChunk,
    )),
    tags(
        (name = "service", description = "Welcome, health, readiness and metrics"),
        (name = "generate", description = "Retrieval-augmented answers and retrieval alone"),
        (name = "stores", description = "Vector stores and their documents"),
        (name = "openai", description = "OpenAI-compatible API"),
        (name = "docs", description = "This document, Swagger UI and the playground"),
    ),
    modifiers(&Security),
)]
struct ApiDoc;

/// The document, built from the annotations (cheap: no I/O).
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// Declares the two ways to pass the API key and requires one of them everywhere except on
/// [`PUBLIC_PATHS`].
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "`x-api-key: <key>`",
            ))),
        );
        let either = vec![
            SecurityRequirement::new(BEARER, Vec::<String>::new()),
            SecurityRequirement::new(API_KEY, Vec::<String>::new()),
        ];
        for (path, item) in &mut openapi.paths.paths {
            let public = PUBLIC_PATHS.contains(&path.as_str());
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                operation.security = Some(if public { Vec::new() } else { either.clone() });
            }
        }
    }
}

#[cfg(test)]
mod tests;
