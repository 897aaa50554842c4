//! Store routes: list the stores with their sizes, and add or remove documents in the
//! writable ones (FAISS; Kendra is read-only). Adding and removing documents is a grant of its
//! own (`write_stores`): a key that may search a store, and so sees its document ids in every
//! passage, still cannot delete them without it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use ragway_core::{Document, DocumentStore, IngestReport};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::Gateway;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::json::Body;
use crate::openapi::responses::{Access, BadBody, Upstream};
use crate::openapi::schemas::{Deleted, ErrorMessage, StoreList};

/// `GET /stores`: every store the caller may read, the size of the writable ones, and
/// whether the caller may write each.
#[utoipa::path(
    get,
    path = "/stores",
    tag = "stores",
    responses(
        (status = 200, description = "Every store", body = StoreList),
        Upstream,
        Access,
    ),
)]
pub async fn list(
    State(registry): State<Arc<Gateway>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<Value>, ApiError> {
    let mut stores = Vec::new();
    for store in registry.stores().filter(|s| caller.may_use_store(&s.name)) {
        let writable = store.documents.is_some();
        let mut entry = json!({
            "name": store.name,
            "type": store.kind,
            "writable": writable,
            "may_write": writable && caller.may_write_store(&store.name),
        });
        // One store that cannot be counted now (its database is down) is reported as such;
        // the others are still listed.
        if let Some(documents) = &store.documents {
            match documents.stats().await {
                Ok(stats) => {
                    entry["documents"] = json!(stats.documents);
                    entry["chunks"] = json!(stats.chunks);
                    entry["dimension"] = json!(stats.dimension);
                }
                Err(error) => {
                    tracing::warn!(store = %store.name, %error, "cannot count the store's documents");
                    entry["error"] = json!(error.to_string());
                }
            }
        }
        stores.push(entry);
    }
    Ok(Json(json!({ "stores": stores })))
}

/// Documents to add, or to replace by id. Other fields are ignored.
#[derive(Deserialize, ToSchema)]
pub struct AddDocuments {
    /// From 1 to 1000 documents, each with a non-blank id and text.
    #[schema(min_items = 1, max_items = 1000)]
    documents: Vec<Document>,
}

/// Most documents one request may carry; larger sets go through `ragway ingest` or several calls.
const MAX_DOCUMENTS_PER_REQUEST: usize = 1000;

/// `POST /stores/{name}/documents`: add or replace documents by id. Needs the store in the
/// key's `write_stores`.
#[utoipa::path(
    post,
    path = "/stores/{name}/documents",
    tag = "stores",
    description = "Adds documents to a writable store, or replaces them by id. With API keys, the \
        key needs the store in its `write_stores` (`[[server.auth.keys]]`, or `[server.auth] \
        write_stores` for keys from `keys_file`): `stores` alone lets it search, not write, and \
        the 403 says which grant is missing.",
    params(("name" = String, Path, description = "A writable store")),
    request_body = AddDocuments,
    responses(
        (status = 200, description = "What the store did", body = IngestReport),
        (status = 404, description = "No store of that name", body = ErrorMessage),
        (status = 405, description = "The store is read-only (Kendra)", body = ErrorMessage),
        BadBody,
        Upstream,
        Access,
    ),
)]
pub async fn add(
    State(registry): State<Arc<Gateway>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(name): Path<String>,
    Body(request): Body<AddDocuments>,
) -> Result<Json<Value>, ApiError> {
    // Read-only and unknown stores are refused as such (405, 404) before the key's grant is
    // looked at: nobody can write them, whatever the key holds.
    caller.check_store(&name)?;
    let store = writable(&registry, &name)?;
    caller.check_write_store(&name)?;
    let mut errors = Vec::new();
    if request.documents.is_empty() {
        errors.push(FieldError::new(
            &["body", "documents"],
            "List should have at least 1 item",
            "too_short",
        ));
    }
    if request.documents.len() > MAX_DOCUMENTS_PER_REQUEST {
        errors.push(FieldError::new(
            &["body", "documents"],
            format!("List should have at most {MAX_DOCUMENTS_PER_REQUEST} items"),
            "too_long",
        ));
    }
    for (i, document) in request.documents.iter().enumerate() {
        let index = i.to_string();
        if document.id.trim().is_empty() {
            errors.push(FieldError::new(
                &["body", "documents", &index, "id"],
                "String should have at least 1 character",
                "string_too_short",
            ));
        }
        if document.text.trim().is_empty() {
            errors.push(FieldError::new(
                &["body", "documents", &index, "text"],
                "String should have at least 1 character",
                "string_too_short",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let report = store.add(request.documents).await?;
    Ok(Json(json!(report)))
}

/// `DELETE /stores/{name}/documents/{id}`: remove a document and its chunks. The id may hold
/// slashes (ids of ingested files are their relative paths). Needs the store in the key's
/// `write_stores`: document ids come back in every search, to any key that may read.
#[utoipa::path(
    delete,
    path = "/stores/{name}/documents/{id}",
    tag = "stores",
    description = "Removes a document and its chunks from a writable store. With API keys, the key \
        needs the store in its `write_stores` (`[[server.auth.keys]]`, or `[server.auth] \
        write_stores` for keys from `keys_file`): a key that may only search the store sees \
        document ids in every passage but cannot delete them (403 naming the missing grant).",
    params(
        ("name" = String, Path, description = "A writable store"),
        ("id" = String, Path, description = "The document's id; it may hold slashes"),
    ),
    responses(
        (status = 200, description = "The document and its chunks are gone", body = Deleted),
        (status = 404, description = "No store of that name, or no document of that id in it", body = ErrorMessage),
        (status = 405, description = "The store is read-only (Kendra)", body = ErrorMessage),
        Upstream,
        Access,
    ),
)]
pub async fn delete(
    State(registry): State<Arc<Gateway>>,
    Extension(caller): Extension<Arc<Caller>>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.check_store(&name)?;
    let store = writable(&registry, &name)?;
    caller.check_write_store(&name)?;
    if store.delete(&id).await? {
        Ok(Json(json!({ "deleted": id })))
    } else {
        Err(ApiError::NoSuchDocument { store: name, id })
    }
}

fn writable(registry: &Gateway, name: &str) -> Result<Arc<dyn DocumentStore>, ApiError> {
    let Some(store) = registry.stores().find(|s| s.name == name) else {
        return Err(ApiError::NoSuchStore {
            name: name.to_owned(),
            known: registry.stores().map(|s| s.name.clone()).collect(),
        });
    };
    store
        .documents
        .clone()
        .ok_or_else(|| ApiError::ReadOnlyStore {
            name: name.to_owned(),
            kind: store.kind.to_owned(),
            writable: registry
                .stores()
                .filter(|s| s.documents.is_some())
                .map(|s| s.name.clone())
                .collect(),
        })
}
