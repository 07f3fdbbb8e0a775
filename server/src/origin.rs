//! Which browser pages may open a stream (WebSocket or SSE): the server's own origin, and the
//! origins of `--allowed-origins`. This is what stops cross-site WebSocket hijacking: a page
//! elsewhere cannot open a feed in a visitor's browser. Requests without an `Origin` header
//! come from programs, not pages, and are let through.

use actix_web::HttpRequest;
use actix_web::http::header;

use crate::error::ApiError;

/// Refuses a request whose `Origin` is neither the server's own nor allowed.
pub fn check(req: &HttpRequest, allowed: &[String]) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| ApiError::Forbidden("the Origin header is not readable text".into()))?;
    if allowed
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    if let (Some(host), Some(origin_host)) = (host, origin_host)
        && host.eq_ignore_ascii_case(origin_host)
    {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "pages from {origin} may not open this stream: the server allows its own origin and \
         those of --allowed-origins"
    )))
}

/// Checks the shape of a configured origin: `*`, or `scheme://host[:port]` with no path.
pub fn validate(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{origin:?} is not an origin; write it as scheme://host[:port], like https://app.example.com"
        ))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn request(origin: Option<&str>) -> HttpRequest {
        let mut req = TestRequest::get().insert_header((header::HOST, "ticks.example:8080"));
        if let Some(origin) = origin {
            req = req.insert_header((header::ORIGIN, origin));
        }
        req.to_http_request()
    }

    #[test]
    fn same_origin_and_programs_pass() {
        assert!(check(&request(None), &[]).is_ok());
        assert!(check(&request(Some("http://ticks.example:8080")), &[]).is_ok());
        assert!(check(&request(Some("https://TICKS.example:8080")), &[]).is_ok());
    }

    #[test]
    fn other_origins_need_the_allowlist() {
        let evil = request(Some("https://evil.example"));
        assert!(matches!(check(&evil, &[]), Err(ApiError::Forbidden(_))));
        assert!(check(&request(Some("null")), &[]).is_err());
        assert!(
            check(&request(Some("http://ticks.example")), &[]).is_err(),
            "another port"
        );
        assert!(check(&evil, &["https://evil.example".into()]).is_ok());
        assert!(check(&evil, &["*".into()]).is_ok());
    }

    #[test]
    fn configured_origins_are_checked() {
        assert!(validate("https://app.example.com").is_ok());
        assert!(validate("http://127.0.0.1:8081").is_ok());
        assert!(validate("*").is_ok());
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "ftp://x",
            "https://",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
