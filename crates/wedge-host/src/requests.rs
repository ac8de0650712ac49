//! What the control endpoint's requests do to the self.

use serde_json::json;
use wedge_runtime::RuntimeError;

use crate::control::server::Handler;
use crate::control::{Request, Response};
use crate::host::{Host, TWIN_IN_CLOUD};

impl Handler for Host {
    async fn handle(&self, request: Request) -> Response {
        match request {
            Request::Status => Response::Ok(self.status()),
            Request::TwinGet => match &self.local {
                Some(local) => Response::Ok(local.twin_document()),
                None => Response::Error(TWIN_IN_CLOUD.into()),
            },
            Request::TwinSet { module, patch } => {
                if self.runtime.config(&module).is_none() {
                    return Response::Error(RuntimeError::UnknownModule(module).to_string());
                }
                let deployment = json!({ "modules": { &module: { "config": patch } } });
                match self.deploy(&deployment).await {
                    Ok(_) => Response::Ok(json!({
                        "module": module,
                        "config": self.runtime.config(&module),
                    })),
                    Err(e) => Response::Error(e),
                }
            }
            Request::Deploy { deployment } => match self.deploy(&deployment).await {
                Ok(answer) => Response::Ok(answer),
                Err(e) => Response::Error(e),
            },
            Request::Logs { module, query } => match self.runtime.logs(&module, &query) {
                Ok(page) => Response::Ok(json!(page)),
                Err(e) => Response::Error(e.to_string()),
            },
            Request::Call {
                module,
                method,
                payload,
            } => match self.runtime.invoke(&module, &method, &payload).await {
                Ok(result) => Response::Ok(json!(result)),
                Err(e) => Response::Error(e.to_string()),
            },
        }
    }
}
