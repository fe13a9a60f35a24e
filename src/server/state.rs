//! What `/readyz` reports and what handlers check before taking a request:
//! the server's phase (starting, ready, draining) and whether the journal
//! can write. Shared between the driver, the handlers and the shutdown path.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Ready,
    Draining,
}

#[derive(Debug)]
pub struct ServerState {
    phase: AtomicU8,
    journal_writable: AtomicBool,
}

impl Default for ServerState {
    fn default() -> Self {
        ServerState {
            phase: AtomicU8::new(Phase::Starting as u8),
            journal_writable: AtomicBool::new(true),
        }
    }
}

impl ServerState {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    /// Recovery is done and the server takes requests.
    pub fn set_ready(&self) {
        let _ = self.phase.compare_exchange(
            Phase::Starting as u8,
            Phase::Ready as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Shutdown began; there is no way back.
    pub fn set_draining(&self) {
        self.phase.store(Phase::Draining as u8, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.phase() == Phase::Draining
    }

    pub fn set_journal_writable(&self, writable: bool) {
        self.journal_writable.store(writable, Ordering::Release);
    }

    /// Why the server is not ready, if it is not.
    pub fn not_ready_because(&self) -> Option<&'static str> {
        match self.phase() {
            Phase::Starting => Some("the server is starting (recovering its journal)"),
            Phase::Draining => Some("the server is shutting down"),
            Phase::Ready if !self.journal_writable.load(Ordering::Acquire) => {
                Some("the journal cannot write")
            }
            Phase::Ready => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_move_forward_only() {
        let s = ServerState::default();
        assert!(s.not_ready_because().is_some());
        s.set_ready();
        assert_eq!(s.not_ready_because(), None);
        s.set_journal_writable(false);
        assert_eq!(s.not_ready_because(), Some("the journal cannot write"));
        s.set_journal_writable(true);
        s.set_draining();
        s.set_ready();
        assert!(s.is_draining(), "draining is final");
        assert!(s.not_ready_because().is_some());
    }
}
