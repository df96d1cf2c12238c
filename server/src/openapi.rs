//! The OpenAPI document of the JSON API, generated from the handlers' annotations and
//! served at `/api/openapi.json`. No bundled UI: nothing is downloaded at build time.
//!
//! Must list every `/api/` route of the router (a test compares them).

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "Parc API", description = "Fleet inventory and maintenance of classroom devices. \
        Authenticate with `Authorization: Bearer pat_…` (an API token from `parc-server user token`) \
        or the dashboard's session cookie (state-changing requests then need `X-CSRF-Token`). \
        Every read is limited to the caller's scope: an object outside it answers 404."),
    paths(
        crate::http::me,
        crate::http::summary,
        crate::http::overview,
        crate::http::devices,
        crate::http::devices_csv,
        crate::http::device,
        crate::http::health,
        crate::http::hourly,
        crate::http::inventory,
        crate::http::changes,
        crate::http::events,
        crate::http::usage,
        crate::http::quarantine,
        crate::http_procurement::import_deliveries,
        crate::http_procurement::reconciliation,
        crate::http_procurement::warranty,
        crate::http_procurement::warranties,
        crate::http_procurement::warranties_csv,
        crate::http_procurement::lots,
        crate::http_procurement::scorecard,
        crate::http_procurement::scorecard_csv,
        crate::http_procurement::carts,
        crate::http_procurement::orders,
        crate::http_procurement::sites,
        crate::http_tickets::list,
        crate::http_tickets::one,
        crate::http_tickets::change_status,
    ),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::http_auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// The document, as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub(crate) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
