//! A shutdown signal shared by every task of a server: the caller's shutdown future
//! fires it once, and each task awaits its own clone.
//!
//! It must never be the only way a task ends: tasks still stop when their input
//! closes, and the server bounds the wait for all of them with a timeout.

use tokio::sync::watch;

/// Fires the signal.
pub struct Trigger(watch::Sender<bool>);

/// Resolves once the signal has fired; cheap to clone.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }

    pub async fn wait(mut self) {
        // An Err means the trigger was dropped: treat it as fired.
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}
