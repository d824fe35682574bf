//! Stop signals: SIGTERM and Ctrl-C (SIGINT), listened to from the moment
//! [`StopSignals::listen`] is called, so that a signal that comes while a
//! run starts waits for the stop handling instead of being lost.

/// SIGTERM and Ctrl-C.
#[derive(Debug)]
pub struct StopSignals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    /// Starts listening; needs a Tokio runtime context.
    ///
    /// # Errors
    /// The signal handlers cannot be installed.
    pub fn listen() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = Some((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ));
            Ok(StopSignals { unix })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Resolves on the next SIGTERM or Ctrl-C, with the signal's number.
    pub async fn next(&mut self) -> i32 {
        #[cfg(unix)]
        if let Some((term, interrupt)) = self.unix.as_mut() {
            use tokio::signal::unix::SignalKind;
            return tokio::select! {
                _ = term.recv() => SignalKind::terminate().as_raw_value(),
                _ = interrupt.recv() => SignalKind::interrupt().as_raw_value(),
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        2
    }
}
