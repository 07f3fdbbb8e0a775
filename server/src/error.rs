//! How errors become HTTP answers: every 4xx carries `{"error": "..."}`.

use std::time::Duration;

use actix_web::http::header::ContentType;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use tickscope_shared::wire::ErrorBody;

use crate::query::InputError;

/// An error a route answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client sent something malformed or out of range.
    #[error("{0}")]
    BadRequest(String),
    /// A browser page of another origin asked for a stream it may not open.
    #[error("{0}")]
    Forbidden(String),
    /// No such endpoint.
    #[error("{0}")]
    NotFound(String),
    /// This client is over one of its limits (per IP, or polling too often).
    #[error("{message}")]
    TooMany {
        message: String,
        retry_after: Duration,
    },
    /// The server is at its connection limit.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
    },
}

impl From<InputError> for ApiError {
    fn from(err: InputError) -> Self {
        Self::BadRequest(err.0)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Self::TooMany { retry_after, .. } | Self::Unavailable { retry_after, .. } = self {
            // Whole seconds, rounded up: a client that waits that long is not refused again
            // for the same reason.
            let seconds = retry_after.as_millis().div_ceil(1000).max(1);
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(ErrorBody {
            error: self.to_string(),
        })
    }
}

/// A JSON answer that no cache keeps: every feed answer is live.
pub fn json_body(body: impl actix_web::body::MessageBody + 'static) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}
