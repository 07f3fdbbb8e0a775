//! The middleware that charges each request's bytes to its transport and meter, and answers a
//! metered request with its meter's totals (the `tickscope-wire` header).

use std::rc::Rc;
use std::sync::atomic::Ordering;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpMessage, ResponseError};
use futures_util::future::Either;
use tickscope_shared::wire::WireReport;

use super::{Account, Charge, Connection, Metering, Wire};
use crate::error::ApiError;
use crate::metrics::Transport;

/// The longest meter name: 16 hex digits, a 64-bit number.
const MAX_METER_DIGITS: usize = 16;

/// Middleware, outermost (`App::wrap_fn`): charges each request's bytes to its transport and
/// meter (see the module comment), and gives a metered request's answer its meter's report in
/// the `tickscope-wire` header. A bad `meter=` or `transport=` is answered 400.
///
/// The charge is settled here, in the service call, not in the future it returns: actix-http
/// makes that call for each HTTP/2 request in the order the client opened their streams,
/// which is how a stream is matched to its request ([`h2`]).
pub fn attribute<S, B>(
    wire: &Wire,
    req: ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let mut meter = None;
    if let Some(connection) = req.conn_data::<Rc<Connection>>().cloned() {
        match charge(wire, &req) {
            Ok(charge) => {
                meter = charge.meter.clone();
                req.extensions_mut().insert(Metering(meter.clone()));
                connection.begin(charge);
            }
            Err(err) => {
                connection.begin(Charge {
                    account: Account::of_path(req.path()).unwrap_or(Account::Other),
                    meter: None,
                });
                let response = req.into_response(err.error_response());
                return Either::Left(std::future::ready(Ok(response)));
            }
        }
    }
    let call = service.call(req);
    Either::Right(async move {
        let mut response = call.await?.map_into_boxed_body();
        if let Some(meter) = meter {
            let value = HeaderValue::from_str(&meter.report().to_header())
                .expect("a report's header is ASCII digits and punctuation");
            response
                .headers_mut()
                .insert(HeaderName::from_static(WireReport::HEADER), value);
        }
        Ok(response)
    })
}

/// What `req` is charged to, from its path and its `meter=` and `transport=` parameters.
fn charge(wire: &Wire, req: &ServiceRequest) -> Result<Charge, ApiError> {
    let mut meter_name = None;
    let mut transport = None;
    for pair in req.query_string().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "meter" => meter_name = Some(parse_meter(value)?),
            "transport" => transport = Some(parse_transport(value)?),
            _ => {}
        }
    }
    let account = match Account::of_path(req.path()) {
        Some(account) => account,
        // A clock exchange is the cost of the transport it is for.
        None if req.path() == "/api/time" => transport.map_or(Account::Other, Account::Transport),
        None => Account::Other,
    };
    let meter = match (meter_name, req.peer_addr()) {
        (Some(name), Some(peer)) => wire.meter(wire.clients.ip(Some(peer), req.headers()), name),
        _ => None,
    };
    if let Some(meter) = &meter {
        meter.requests.fetch_add(1, Ordering::Relaxed);
    }
    Ok(Charge { account, meter })
}

pub(super) fn parse_meter(value: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "meter must be 1 to {MAX_METER_DIGITS} hex digits naming the page's meter, \
             not {value:?}"
        ))
    };
    if value.is_empty()
        || value.len() > MAX_METER_DIGITS
        || !value.bytes().all(|byte| byte.is_ascii_hexdigit())
    {
        return Err(bad());
    }
    u64::from_str_radix(value, 16).map_err(|_| bad())
}

fn parse_transport(value: &str) -> Result<Transport, ApiError> {
    Transport::ALL
        .into_iter()
        .find(|transport| transport.as_str() == value)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "transport must be one of polling, long_polling, websocket, sse, stream, webtransport, not {:?}",
                value.chars().take(32).collect::<String>()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_and_transport_parameters_are_checked() {
        assert_eq!(parse_meter("00ff").ok(), Some(255));
        assert_eq!(parse_meter("ffffffffffffffff").ok(), Some(u64::MAX));
        for bad in ["", "x", "1ffffffffffffffff", "-1", "+1"] {
            assert!(parse_meter(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_transport("sse").ok(), Some(Transport::Sse));
        assert!(parse_transport("carrier-pigeon").is_err());
    }
}
