//! Admin HTTP: owns the actix-web server (admin API, page, health and metrics).

use actix::prelude::*;
use actix_web::dev::ServerHandle;

use super::Shutdown;

pub struct AdminHttp {
    server: ServerHandle,
}

impl AdminHttp {
    pub fn new(server: ServerHandle) -> Self {
        Self { server }
    }
}

impl Actor for AdminHttp {
    type Context = Context<Self>;
}

impl Handler<Shutdown> for AdminHttp {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        // Graceful: in-flight requests finish, new connections are refused.
        let server = self.server.clone();
        Box::pin(
            async move { server.stop(true).await }
                .into_actor(self)
                .map(|_, _, ctx| ctx.stop()),
        )
    }
}
