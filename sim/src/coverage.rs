//! Coverage marks: counts of the hard paths a run went through. Green seeds
//! prove little unless they reached these; the seed suite fails if any mark
//! stays at zero across its seeds.

use serde::{Deserialize, Serialize};

macro_rules! marks {
    ($($variant:ident => $label:literal,)*) => {
        /// A hard path of the core or the world.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Mark { $($variant,)* }

        impl Mark {
            pub const ALL: &'static [Mark] = &[$(Mark::$variant,)*];

            pub fn label(self) -> &'static str {
                match self { $(Mark::$variant => $label,)* }
            }
        }
    };
}

marks! {
    QueueOverflow => "queue overflow (waited for room)",
    Overloaded => "503 overloaded",
    EnqueueTimeout => "enqueue timeout",
    DeadlineDuringStream => "deadline during a stream",
    DeadlineDuringRules => "deadline during a rules call",
    ClientGoneDuringRun => "client gone during a run",
    Undo => "undo after every ticket left a write",
    UndoFailed => "undo write failed",
    PersistFailed => "journal write failed",
    Crash => "crash and restore",
    CrashMidCompaction => "crash mid compaction",
    ZerosCut => "preallocated zeros cut at recovery",
    StaleBlocksCut => "a removed file's blocks cut at recovery",
    Compaction => "journal compaction",
    JoinedTicket => "joined ticket",
    StaleVerdict => "stale verdict",
    ReplayAfterRestart => "replay after restart",
    Replay => "idempotent replay",
    KeyReused => "key reused with another payload",
    KeyInFlight => "key in flight (joiners full)",
    KeyExpired => "key reused after its TTL",
    LateDelivery => "late delivery after CancelCall",
    DuplicateDelivery => "duplicate delivery",
    StreamError => "stream error",
    RulesError => "rules error or timeout",
    BatchFull => "batch full (stream cut)",
    Refetch => "refetch after a denied batch",
    NoAvailability => "409 no availability",
    Invalid => "422 invalid",
    Assigned => "201 assigned",
    CancelOk => "200 cancelled",
    CancelNotFound => "404 on cancel",
    CancelJournalFailed => "cancel refused by the journal",
    DependencyUnavailable => "503 dependency unavailable",
    DeadlineExceeded => "504 deadline exceeded",
    Drain => "drain (shutdown)",
    DrainDeadline => "drain deadline refused running requests",
}

/// How often each mark was hit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    counts: Vec<u64>,
}

impl Coverage {
    pub fn hit(&mut self, mark: Mark) {
        let i = mark as usize;
        if self.counts.len() <= i {
            self.counts.resize(Mark::ALL.len(), 0);
        }
        self.counts[i] += 1;
    }

    pub fn count(&self, mark: Mark) -> u64 {
        self.counts.get(mark as usize).copied().unwrap_or(0)
    }

    pub fn add(&mut self, other: &Coverage) {
        for &m in Mark::ALL {
            let n = other.count(m);
            if n > 0 {
                if self.counts.len() < Mark::ALL.len() {
                    self.counts.resize(Mark::ALL.len(), 0);
                }
                self.counts[m as usize] += n;
            }
        }
    }

    /// Marks never hit.
    pub fn missing(&self) -> Vec<Mark> {
        Mark::ALL
            .iter()
            .copied()
            .filter(|&m| self.count(m) == 0)
            .collect()
    }
}
