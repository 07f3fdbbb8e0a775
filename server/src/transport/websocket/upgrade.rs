//! Upgrade requests (`Connection: upgrade`), which actix-http hands over with their
//! connection: the request goes through the app like any other, and when its answer is a
//! WebSocket handshake's 101 ([`websocket::Takeover`]), this writes the answer and runs the
//! WebSocket on the socket itself, as a task of its own ([`websocket::spawn`]). Any other answer (an error, or a route
//! that is not `/api/ws`) is written whole and the connection closes.

use std::rc::Rc;

use actix_codec::Framed;
use actix_http::body::{BodySize, MessageBody};
use actix_http::h1::{Codec, Message};
use actix_http::header::{CONNECTION, HeaderValue};
use actix_http::{HttpMessage, Request, Response, StatusCode};
use actix_service::{Service, ServiceFactory, fn_factory, fn_service};
use actix_web::dev::ServiceResponse;
use futures_util::SinkExt;

use crate::connection::tls;
use crate::transport::websocket::{self, Takeover, Upgrading};

/// A connection handed over with its upgrade request.
pub type Upgraded = (Request, Framed<tls::Io, Codec>);

/// The upgrade service over `app`, the same app a worker serves every other request with.
pub fn factory<F, B>(
    app: F,
) -> impl ServiceFactory<Upgraded, Config = (), Response = (), Error = actix_web::Error, InitError = ()>
where
    F: ServiceFactory<
            Request,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    F::Service: 'static,
    B: MessageBody + 'static,
{
    let app = Rc::new(app);
    fn_factory(move || {
        let app = app.clone();
        async move {
            let service = Rc::new(app.new_service(()).await?);
            Ok(fn_service(move |(req, framed): Upgraded| {
                serve(service.clone(), req, framed)
            }))
        }
    })
}

/// Answers one upgrade request; a failure ends the connection (actix-http logs it).
async fn serve<S, B>(
    app: Rc<S>,
    req: Request,
    mut framed: Framed<tls::Io, Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    req.extensions_mut().insert(Upgrading);
    let failed = |what: &str, err: &dyn std::fmt::Display| {
        actix_web::error::ErrorInternalServerError(format!("{what}: {err}"))
    };
    let response: Response<B> = app.call(req).await?.into();
    let (mut head, body) = response.into_parts();
    let takeover = head.extensions_mut().remove::<Takeover>();
    if let Some(takeover) = takeover.filter(|_| head.status() == StatusCode::SWITCHING_PROTOCOLS) {
        framed
            .send(Message::Item((head, BodySize::None)))
            .await
            .map_err(|err| failed("writing the handshake's answer", &err))?;
        // The WebSocket becomes a task of its own and this request ends: actix-http's
        // dispatcher and its buffers (kilobytes each) go now, not with the connection, and a
        // publish wakes the WebSocket's task alone, not the dispatcher around it. Only what
        // the client sent after the handshake is kept.
        let parts = framed.into_parts();
        websocket::spawn(parts.io, parts.read_buf.to_vec(), takeover);
        return Ok(());
    }
    // Not a WebSocket: the answer, whole, and the connection ends.
    let body = actix_http::body::to_bytes(body).await.unwrap_or_default();
    head.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    framed
        .send(Message::Item((head, BodySize::Sized(body.len() as u64))))
        .await
        .map_err(|err| failed("writing an answer", &err))?;
    if !body.is_empty() {
        framed
            .send(Message::Chunk(Some(body)))
            .await
            .map_err(|err| failed("writing an answer", &err))?;
    }
    Ok(())
}
