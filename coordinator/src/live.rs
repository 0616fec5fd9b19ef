//! The live report over HTTP: the HTML report of the grid so far, refreshing itself, plus
//! `results.json`, served from the same state the gRPC services change.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::service::Shared;

/// Seconds between reloads of the live page.
const REFRESH_SECONDS: u32 = 3;

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/results.json", get(results))
        .with_state(shared)
}

async fn page(State(shared): State<Shared>) -> Html<String> {
    let results = shared.lock().results();
    Html(results.to_live_html(REFRESH_SECONDS))
}

async fn results(State(shared): State<Shared>) -> impl IntoResponse {
    let json = shared.lock().results().to_json();
    ([(header::CONTENT_TYPE, "application/json")], json)
}

/// Serves until `stop` turns true.
pub async fn serve(
    shared: Shared,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await?;
    Ok(())
}
