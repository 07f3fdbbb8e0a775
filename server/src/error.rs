//! How errors become HTTP answers: every 4xx carries `{"error": "..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tickscope_shared::wire::ErrorBody;

use crate::query::InputError;

/// An error a route answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client sent something malformed or out of range.
    #[error("{0}")]
    BadRequest(String),
    /// No such endpoint.
    #[error("{0}")]
    NotFound(String),
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
            Self::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: self.to_string(),
        })
    }
}
