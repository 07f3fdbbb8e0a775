//! Which browser pages may open a stream (WebSocket or SSE): the server's own origin, its
//! sibling (the same host's other port, with `--http1-addr`), and the origins of
//! `--allowed-origins`. This is what stops cross-site WebSocket hijacking: a page
//! elsewhere cannot open a feed in a visitor's browser. Requests without an `Origin` header
//! come from programs, not pages, and are let through.

use actix_web::HttpRequest;
use actix_web::http::header;

use crate::config::Config;
use crate::error::ApiError;

/// Refuses a request whose `Origin` is neither the server's own (or its sibling's) nor allowed.
pub fn check(req: &HttpRequest, config: &Config) -> Result<(), ApiError> {
    let allowed = &config.allowed_origins;
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
    if host.is_some_and(|host| sibling(origin, host, config)) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "pages from {origin} may not open this stream: the server allows its own origin and \
         those of --allowed-origins"
    )))
}

/// Whether `origin` is this server on the host the request named (`host`, its `Host` header)
/// at its other HTTPS port: with `--http1-addr`, the page of the main port runs transports
/// against the HTTP/1.1 port, and the two are one site served by one process.
pub fn sibling(origin: &str, host: &str, config: &Config) -> bool {
    let Some(http1) = config.http1_addr else {
        return false;
    };
    let Some(("https", rest)) = origin.split_once("://") else {
        return false;
    };
    let (Some((origin_name, port)), Some((name, _))) =
        (rest.rsplit_once(':'), host.rsplit_once(':'))
    else {
        return false;
    };
    origin_name.eq_ignore_ascii_case(name)
        && port
            .parse::<u16>()
            .is_ok_and(|port| port == config.addr.port() || port == http1.port())
}

/// Refuses a WebTransport session (`origin`: its `Origin` header, `authority`: the host and
/// UDP port it was opened to) unless it comes from a program (no `Origin`), an allowed origin,
/// or a page this server served: the same host name at the server's HTTP port (or its
/// HTTP/1.1 port), over http or https as the server serves.
pub fn check_webtransport(
    origin: Option<&str>,
    authority: &str,
    config: &Config,
) -> Result<(), String> {
    let Some(origin) = origin else {
        return Ok(());
    };
    if config
        .allowed_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let served = origin
        .split_once("://")
        .filter(|(origin_scheme, _)| *origin_scheme == scheme)
        .and_then(|(_, rest)| rest.rsplit_once(':'))
        .zip(authority.rsplit_once(':'))
        .is_some_and(|((origin_name, port), (name, _))| {
            same_host(origin_name, name)
                && port.parse::<u16>().is_ok_and(|port| {
                    port == config.addr.port()
                        || config.http1_addr.is_some_and(|http1| http1.port() == port)
                })
        });
    if served {
        Ok(())
    } else {
        Err(format!(
            "pages from {origin} may not open this session: the server allows its own pages \
             and those of --allowed-origins"
        ))
    }
}

/// Whether two host names name the same host: equal, or both this machine's loopback
/// (`localhost`, `127.0.0.1`, `[::1]`), which `/api/webtransport` names by address.
fn same_host(a: &str, b: &str) -> bool {
    let loopback = |name: &str| {
        name.eq_ignore_ascii_case("localhost")
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| {
                    ip == std::net::Ipv4Addr::LOCALHOST || ip == std::net::Ipv6Addr::LOCALHOST
                })
    };
    a.eq_ignore_ascii_case(b) || (loopback(a) && loopback(b))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn allowing(origins: &[&str]) -> Config {
        let mut config = Config::defaults();
        config.allowed_origins = origins.iter().map(|origin| origin.to_string()).collect();
        config
    }

    fn request(origin: Option<&str>) -> HttpRequest {
        let mut req = TestRequest::get().insert_header((header::HOST, "ticks.example:8080"));
        if let Some(origin) = origin {
            req = req.insert_header((header::ORIGIN, origin));
        }
        req.to_http_request()
    }

    #[test]
    fn webtransport_sessions_come_from_the_servers_pages() {
        let config = allowing(&["https://app.example"]);
        let udp = "127.0.0.1:4433";
        assert!(check_webtransport(None, udp, &config).is_ok());
        assert!(check_webtransport(Some("http://127.0.0.1:8080"), udp, &config).is_ok());
        assert!(check_webtransport(Some("https://app.example"), udp, &config).is_ok());
        // The same machine by name: the page of `localhost` gets the loopback address.
        assert!(check_webtransport(Some("http://localhost:8080"), udp, &config).is_ok());
        // Another port, another host, another scheme: not a page this server served.
        for origin in [
            "http://127.0.0.1:9999",
            "http://127.0.0.2:8080",
            "https://127.0.0.1:8080",
            "null",
        ] {
            let refused = check_webtransport(Some(origin), udp, &config).unwrap_err();
            assert!(refused.contains(origin), "{refused}");
        }
    }

    #[test]
    fn same_origin_and_programs_pass() {
        assert!(check(&request(None), &allowing(&[])).is_ok());
        assert!(check(&request(Some("http://ticks.example:8080")), &allowing(&[])).is_ok());
        assert!(check(&request(Some("https://TICKS.example:8080")), &allowing(&[])).is_ok());
    }

    #[test]
    fn other_origins_need_the_allowlist() {
        let evil = request(Some("https://evil.example"));
        assert!(matches!(
            check(&evil, &allowing(&[])),
            Err(ApiError::Forbidden(_))
        ));
        assert!(check(&request(Some("null")), &allowing(&[])).is_err());
        assert!(
            check(&request(Some("http://ticks.example")), &allowing(&[])).is_err(),
            "another port"
        );
        assert!(check(&evil, &allowing(&["https://evil.example"])).is_ok());
        assert!(check(&evil, &allowing(&["*"])).is_ok());
    }

    #[test]
    fn the_http1_port_and_the_main_port_are_one_site() {
        let mut config = allowing(&[]);
        config.tls_cert = Some("cert.pem".into());
        config.addr = "127.0.0.1:8080".parse().unwrap();
        assert!(!sibling(
            "https://ticks.example:8081",
            "ticks.example:8080",
            &config
        ));
        config.http1_addr = Some("127.0.0.1:8081".parse().unwrap());
        let http1 = TestRequest::get()
            .insert_header((header::HOST, "ticks.example:8081"))
            .insert_header((header::ORIGIN, "https://ticks.example:8080"))
            .to_http_request();
        assert!(check(&http1, &config).is_ok());
        assert!(sibling(
            "https://ticks.example:8081",
            "ticks.example:8080",
            &config
        ));
        for other in [
            "http://ticks.example:8080",
            "https://evil.example:8080",
            "https://ticks.example:8082",
            "https://ticks.example",
            "https://ticks.example:x",
        ] {
            assert!(!sibling(other, "ticks.example:8081", &config), "{other}");
        }
    }
}
