//! The step filter of a follower (`?step=a,b`); the messages themselves are
//! [`synqx_api::gateway`]'s, shared with the CLI that reads them.

use std::collections::BTreeSet;

use synqx_api::gateway::{Body, Message};
use synqx_api::run::StepStatus;

/// The steps a follower asked for with `?step=a,b` (none: every step).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepFilter(Option<BTreeSet<String>>);

impl StepFilter {
    /// `a,b` as a filter; empty names are ignored, and an empty list means every step.
    pub fn parse(list: Option<&str>) -> Self {
        let names: BTreeSet<String> = list
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        Self((!names.is_empty()).then_some(names))
    }

    fn keeps(&self, step: &str) -> bool {
        self.0.as_ref().is_none_or(|names| names.contains(step))
    }

    /// The message as this follower sees it: `None` when nothing of it concerns the steps
    /// asked for. Run messages and snapshots always pass (a snapshot with only those steps).
    pub fn apply(&self, message: &Message) -> Option<Message> {
        if self.0.is_none() {
            return Some(message.clone());
        }
        let body = match &message.body {
            Body::Snapshot { reset, run, logs } => {
                let mut run = run.clone();
                run.status.steps.retain(|s| self.keeps(&s.name));
                let logs = logs.iter().filter(|l| self.keeps(&l.step)).cloned();
                Body::Snapshot {
                    reset: *reset,
                    run,
                    logs: logs.collect(),
                }
            }
            Body::Step { step, .. } if !self.keeps(&step.name) => return None,
            Body::Log { step, .. } if !self.keeps(step) => return None,
            Body::Counters { steps } => {
                let steps: Vec<StepStatus> = steps
                    .iter()
                    .filter(|s| self.keeps(&s.name))
                    .cloned()
                    .collect();
                if steps.is_empty() {
                    return None;
                }
                Body::Counters { steps }
            }
            other => other.clone(),
        };
        Some(Message {
            seq: message.seq,
            body,
        })
    }
}
