//! The `vagt` binary's answer to a second stop signal. The first SIGTERM or
//! Ctrl-C stops a run gracefully (the pipeline listens for it itself and
//! finishes what was taken in); should that take too long — an output that
//! no longer takes alerts, a sender that never finishes its message — a
//! second one exits at once.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM and SIGINT (Ctrl-C), listened to from the moment of
/// registration, so that no signal slips by before the task runs.
pub struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    /// Registers the listeners; needs a Tokio runtime context.
    pub fn register() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Says on the first signal what a second one does, and exits the
    /// process on the second with 128 + its number, as a shell would
    /// report a process killed by it.
    pub async fn exit_on_the_second(mut self) {
        for count in 1.. {
            let kind = tokio::select! {
                _ = self.terminate.recv() => SignalKind::terminate(),
                _ = self.interrupt.recv() => SignalKind::interrupt(),
            };
            if count == 1 {
                eprintln!(
                    "vagt: stopping: finishing what was taken in (a second SIGTERM or Ctrl-C exits at once)"
                );
            } else {
                eprintln!(
                    "vagt: exiting at once on a second stop signal: what was taken in but not yet written is not processed; files and Kafka resume from their last saved positions"
                );
                std::process::exit(128 + kind.as_raw_value());
            }
        }
    }
}
