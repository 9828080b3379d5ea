use synqx_api::run::{PipelineRunStatus, RunPhase, StepPhase, StepStatus};

use super::*;
use crate::filter::StepFilter;
use synqx_api::gateway::LogLine;

fn step(name: &str, phase: StepPhase, rows: u64) -> StepStatus {
    StepStatus {
        name: name.into(),
        phase: Some(phase),
        rows_read: Some(rows),
        ..Default::default()
    }
}

fn view(phase: RunPhase, steps: Vec<StepStatus>) -> RunView {
    RunView {
        name: "r".into(),
        namespace: "ns".into(),
        pipeline: "p".into(),
        created: None,
        status: PipelineRunStatus {
            phase: Some(phase),
            steps,
            ..Default::default()
        },
    }
}

/// A bound by count only.
fn count(messages: usize) -> Bound {
    Bound {
        messages,
        bytes: u64::MAX,
    }
}

fn seqs(start: &Start) -> Vec<u64> {
    match start {
        Start::Replay(messages) => messages.iter().map(|m| m.seq).collect(),
        Start::Snapshot(_) => panic!("expected a replay, got {start:?}"),
    }
}

fn reset(start: &Start) -> (u64, Option<Reset>) {
    match start {
        Start::Snapshot(message) => match &message.body {
            Body::Snapshot { reset, .. } => (message.seq, *reset),
            other => panic!("a snapshot start holds {other:?}"),
        },
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[test]
fn a_run_starts_before_its_steps_and_ends_after_them() {
    let mut log = RunLog::new(view(RunPhase::Pending, vec![]), 100, count(10));
    let started = log.observe(view(
        RunPhase::Running,
        vec![step("a", StepPhase::Running, 0)],
    ));
    let kinds: Vec<(u64, String)> = started.iter().map(|m| (m.seq, kind(&m.body))).collect();
    assert_eq!(
        kinds,
        [
            (101, "run Running".to_string()),
            (102, "step a Running".to_string())
        ]
    );
    let ended = log.observe(view(
        RunPhase::Succeeded,
        vec![step("a", StepPhase::Succeeded, 7)],
    ));
    let kinds: Vec<(u64, String)> = ended.iter().map(|m| (m.seq, kind(&m.body))).collect();
    assert_eq!(
        kinds,
        [
            (103, "step a Succeeded".to_string()),
            (104, "run Succeeded".to_string())
        ]
    );
    let Body::Step { from, step } = &ended[0].body else {
        panic!("{ended:?}")
    };
    assert_eq!((*from, step.rows_read), (Some(StepPhase::Running), Some(7)));
}

fn kind(body: &Body) -> String {
    match body {
        Body::Run { phase, .. } => format!("run {phase:?}")
            .replace("Some(", "")
            .replace(')', ""),
        Body::Step { step, .. } => format!("step {} {:?}", step.name, step.phase)
            .replace("Some(", "")
            .replace(')', ""),
        Body::Counters { steps } => format!("counters {}", steps.len()),
        Body::Snapshot { .. } => "snapshot".into(),
        Body::Log { step, lines, .. } => format!("log {step} {}", lines.len()),
    }
}

#[test]
fn counters_wait_for_the_flush_and_a_transition_supersedes_them() {
    let running = |rows| {
        view(
            RunPhase::Running,
            vec![
                step("a", StepPhase::Running, rows),
                step("b", StepPhase::Running, rows),
            ],
        )
    };
    let mut log = RunLog::new(running(0), 0, count(10));
    assert!(log.observe(running(5)).is_empty());
    assert!(log.observe(running(9)).is_empty());
    let flushed = log.flush_counters().map(|m| m.body.clone());
    let Some(Body::Counters { steps }) = flushed else {
        panic!("{flushed:?}")
    };
    let rows: Vec<_> = steps
        .iter()
        .map(|s| (s.name.as_str(), s.rows_read))
        .collect();
    assert_eq!(rows, [("a", Some(9)), ("b", Some(9))]);
    assert_eq!(log.flush_counters(), None, "nothing moved since");
    // b's counters move, then b succeeds: its transition carries them, nothing stays pending.
    log.observe(view(
        RunPhase::Running,
        vec![
            step("a", StepPhase::Running, 9),
            step("b", StepPhase::Running, 12),
        ],
    ));
    let done = log.observe(view(
        RunPhase::Running,
        vec![
            step("a", StepPhase::Running, 9),
            step("b", StepPhase::Succeeded, 12),
        ],
    ));
    assert_eq!(done.len(), 1);
    assert_eq!(log.flush_counters(), None);
}

#[test]
fn since_replays_exactly_the_messages_after_it() {
    let mut log = RunLog::new(view(RunPhase::Pending, vec![]), 1000, count(10));
    for n in 0..5 {
        log.push(Body::Counters {
            steps: vec![StepStatus {
                name: format!("s{n}"),
                ..Default::default()
            }],
        });
    }
    assert_eq!(log.last_seq(), 1005);
    assert_eq!(seqs(&log.start(Some(1002))), [1003, 1004, 1005]);
    assert_eq!(seqs(&log.start(Some(1005))), Vec::<u64>::new());
    assert_eq!(seqs(&log.start(Some(1000))), [1001, 1002, 1003, 1004, 1005]);
    assert_eq!(reset(&log.start(None)), (1005, None));
    assert_eq!(reset(&log.start(Some(1006))), (1005, Some(Reset::Unknown)));
    // A number of another process (an earlier base) is not kept here.
    assert_eq!(reset(&log.start(Some(7))), (1005, Some(Reset::NotKept)));
}

#[test]
fn evicted_messages_give_a_snapshot_marked_not_kept() {
    let mut log = RunLog::new(view(RunPhase::Running, vec![]), 0, count(3));
    for _ in 0..5 {
        log.push(Body::Counters { steps: vec![] });
    }
    // Kept: 3, 4, 5. Resuming after 2 still loses nothing; after 1, message 2 is gone.
    assert_eq!(seqs(&log.start(Some(2))), [3, 4, 5]);
    assert_eq!(reset(&log.start(Some(1))), (5, Some(Reset::NotKept)));
    assert_eq!(reset(&log.start(Some(0))), (5, Some(Reset::NotKept)));
}

#[test]
fn a_fresh_log_resumes_from_its_base_only() {
    let log = RunLog::new(view(RunPhase::Running, vec![]), 50, count(3));
    assert_eq!(seqs(&log.start(Some(50))), Vec::<u64>::new());
    assert_eq!(reset(&log.start(Some(49))), (50, Some(Reset::NotKept)));
}

#[test]
fn a_step_filter_keeps_its_steps_and_the_run() {
    let filter = StepFilter::parse(Some("b, c,"));
    let snapshot = Message {
        seq: 3,
        body: Body::Snapshot {
            reset: None,
            logs: Vec::new(),
            run: view(
                RunPhase::Running,
                vec![
                    step("a", StepPhase::Running, 1),
                    step("b", StepPhase::Running, 2),
                ],
            ),
        },
    };
    let Some(Message {
        body: Body::Snapshot { run, .. },
        ..
    }) = filter.apply(&snapshot)
    else {
        panic!("the snapshot passes")
    };
    let names: Vec<_> = run.status.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["b"]);
    let of = |name: &str| Message {
        seq: 4,
        body: Body::Step {
            from: None,
            step: step(name, StepPhase::Running, 0),
        },
    };
    assert_eq!(filter.apply(&of("a")), None);
    assert_eq!(filter.apply(&of("c")), Some(of("c")));
    let counters = Message {
        seq: 5,
        body: Body::Counters {
            steps: vec![
                StepStatus {
                    name: "a".into(),
                    ..Default::default()
                },
                StepStatus {
                    name: "b".into(),
                    ..Default::default()
                },
            ],
        },
    };
    let Some(Message {
        body: Body::Counters { steps },
        seq: 5,
    }) = filter.apply(&counters)
    else {
        panic!("b's counters pass")
    };
    assert_eq!(steps.len(), 1);
    let only_a = Message {
        seq: 6,
        body: Body::Counters {
            steps: vec![StepStatus {
                name: "a".into(),
                ..Default::default()
            }],
        },
    };
    assert_eq!(filter.apply(&only_a), None);
    let run = Message {
        seq: 7,
        body: Body::Run {
            from: None,
            phase: Some(RunPhase::Running),
            progress: None,
            completion_time: None,
            duration: None,
        },
    };
    assert_eq!(filter.apply(&run), Some(run.clone()));
    let log = |name: &str| Message {
        seq: 8,
        body: Body::Log {
            step: name.into(),
            attempt: 1,
            lines: vec![],
        },
    };
    assert_eq!(filter.apply(&log("a")), None);
    assert_eq!(filter.apply(&log("b")), Some(log("b")));
    assert_eq!(StepFilter::parse(Some(" , ")), StepFilter::default());
}

#[test]
fn a_snapshot_carries_the_log_lines_still_kept() {
    let line = |text: &str| LogLine {
        time: "2026-12-02T07:30:00.000Z".into(),
        level: Some("INFO".into()),
        text: text.into(),
    };
    let log_of = |step: &str, attempt: u32, text: &str| Body::Log {
        step: step.into(),
        attempt,
        lines: vec![line(text)],
    };
    let mut log = RunLog::new(view(RunPhase::Running, vec![]), 0, count(3));
    log.push(log_of("a", 1, "evicted"));
    log.push(log_of("a", 1, "one"));
    log.push(log_of("a", 1, "two"));
    log.push(log_of("b", 2, "three"));
    let Start::Snapshot(message) = log.start(None) else {
        panic!("a follower without since starts with a snapshot")
    };
    let Body::Snapshot { logs, .. } = &message.body else {
        panic!("{message:?}")
    };
    let texts: Vec<(&str, u32, Vec<&str>)> = logs
        .iter()
        .map(|l| {
            let lines = l.lines.iter().map(|l| l.text.as_str()).collect();
            (l.step.as_str(), l.attempt, lines)
        })
        .collect();
    assert_eq!(
        texts,
        [("a", 1, vec!["one", "two"]), ("b", 2, vec!["three"])]
    );
}

/// A log message of one line `text` of step `a`.
fn log_line(text: &str) -> Body {
    Body::Log {
        step: "a".into(),
        attempt: 1,
        lines: vec![LogLine {
            time: "2026-12-02T07:30:00.000Z".into(),
            level: None,
            text: text.into(),
        }],
    }
}

/// The text of each log message of a replay, in order.
fn replayed(start: &Start) -> Vec<(u64, String)> {
    let Start::Replay(messages) = start else {
        panic!("expected a replay, got {start:?}")
    };
    messages
        .iter()
        .map(|m| match &m.body {
            Body::Log { lines, .. } => (m.seq, lines[0].text.clone()),
            other => panic!("a log message was expected, got {other:?}"),
        })
        .collect()
}

/// The text of the log lines a snapshot carries, and its reset.
fn snapshot_lines(start: &Start) -> (Option<Reset>, Vec<String>) {
    let Start::Snapshot(message) = start else {
        panic!("expected a snapshot, got {start:?}")
    };
    let Body::Snapshot { reset, logs, .. } = &message.body else {
        panic!("{message:?}")
    };
    let lines = logs
        .iter()
        .flat_map(|l| l.lines.iter().map(|l| l.text.clone()))
        .collect();
    (*reset, lines)
}

#[test]
fn the_log_is_bounded_by_bytes_evicting_the_oldest_messages() {
    let texts: Vec<String> = (0..6).map(|i| format!("{i}").repeat(1000)).collect();
    // The JSON of one of these messages, measured as the log measures it.
    let mut probe = RunLog::new(view(RunPhase::Running, vec![]), 0, count(1));
    probe.push(log_line(&texts[0]));
    let one = probe.bytes();
    assert!(one > 1000, "a message's JSON holds its line: {one}");
    // Room for three messages and a half: the fourth evicts the first.
    let bound = Bound {
        messages: 512,
        bytes: one * 7 / 2,
    };
    let mut log = RunLog::new(view(RunPhase::Running, vec![]), 0, bound);
    for text in &texts {
        log.push(log_line(text));
        assert!(
            log.bytes() <= bound.bytes,
            "{} > {}",
            log.bytes(),
            bound.bytes
        );
    }
    assert_eq!(log.bytes(), one * 3);
    // Kept: 4, 5, 6. A follower that saw 3 resumes with exactly them.
    assert_eq!(
        replayed(&log.start(Some(3))),
        [
            (4, texts[3].clone()),
            (5, texts[4].clone()),
            (6, texts[5].clone())
        ]
    );
    assert_eq!(replayed(&log.start(Some(5))), [(6, texts[5].clone())]);
    // One that saw only 2 missed message 3: a snapshot saying so, with the lines still kept
    // (the rest is in the stored log).
    assert_eq!(
        snapshot_lines(&log.start(Some(2))),
        (Some(Reset::NotKept), texts[3..].to_vec())
    );
    assert_eq!(reset(&log.start(Some(2))).0, 6);
}

#[test]
fn a_message_larger_than_the_bound_is_kept_alone() {
    let bound = Bound {
        messages: 512,
        bytes: 100,
    };
    let mut log = RunLog::new(view(RunPhase::Running, vec![]), 0, bound);
    log.push(log_line("small"));
    let big = "x".repeat(500);
    log.push(log_line(&big));
    // The newest message stays, so a follower that saw 1 still gets it; nothing older.
    assert_eq!(replayed(&log.start(Some(1))), [(2, big.clone())]);
    assert_eq!(
        snapshot_lines(&log.start(Some(0))),
        (Some(Reset::NotKept), vec![big])
    );
    log.push(log_line("after"));
    assert_eq!(replayed(&log.start(Some(2))), [(3, "after".to_string())]);
    assert_eq!(reset(&log.start(Some(1))), (3, Some(Reset::NotKept)));
}
