//! What the process does on signals: SIGHUP reloads the strategies (the old
//! set keeps serving if the file is bad), SIGTERM and Ctrl-C stop it.

use std::sync::Arc;

use crate::serve::node::Node;

/// Waits for SIGTERM or Ctrl-C, reloading strategies on each SIGHUP meanwhile.
#[cfg(unix)]
pub async fn wait_for_signals(node: &Arc<Node>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                // compiling strategies is CPU work: off the serving threads
                // (a rejected reload is logged and counted by `Node::reload`)
                let reloading = node.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || reloading.reload()).await {
                    tracing::error!(error = %e, "strategy reload task failed");
                }
            }
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}

/// Waits for Ctrl-C.
#[cfg(not(unix))]
pub async fn wait_for_signals(_node: &Arc<Node>) {
    let _ = tokio::signal::ctrl_c().await;
}
