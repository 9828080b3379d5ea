use synqx_api::gateway::RunView;
use synqx_api::run::PipelineRunStatus;

use super::*;

fn line(time: &str, text: &str) -> LogLine {
    LogLine {
        time: time.into(),
        level: Some("INFO".into()),
        text: text.into(),
    }
}

fn log(step: &str, lines: Vec<LogLine>) -> StepLog {
    StepLog {
        step: step.into(),
        attempt: 1,
        lines,
    }
}

fn printed(printer: Printer<Vec<u8>>) -> String {
    String::from_utf8_lossy(&printer.out).into_owned()
}

#[test]
fn lines_print_with_their_step_unless_one_step_is_asked_for() {
    let mut all = Printer::new(None, Vec::new());
    let stored = [log(
        "load",
        vec![line("2026-12-02T10:00:00.000Z", "started")],
    )];
    all.print_logs(&stored, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        printed(all),
        "2026-12-02T10:00:00.000Z load INFO  started\n"
    );
    let mut one = Printer::new(Some("load"), Vec::new());
    let bare = LogLine {
        level: None,
        ..line("2026-12-02T10:00:00.000Z", "plain")
    };
    one.print_logs(&[log("load", vec![bare])], false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(printed(one), "2026-12-02T10:00:00.000Z plain\n");
}

#[test]
fn the_watch_does_not_print_again_what_the_stored_log_printed() {
    let t0 = "2026-12-02T10:00:00.000Z";
    let t1 = "2026-12-02T10:00:01.000Z";
    let mut printer = Printer::new(Some("load"), Vec::new());
    // The stored log: two equal lines in one millisecond are both printed.
    let stored = [log(
        "load",
        vec![line(t0, "a"), line(t1, "tick"), line(t1, "tick")],
    )];
    printer
        .print_logs(&stored, false)
        .unwrap_or_else(|e| panic!("{e}"));
    // The watch's snapshot repeats the tail and brings one line more at the same time.
    let snapshot = Message {
        seq: 7,
        body: Body::Snapshot {
            reset: None,
            run: RunView {
                status: PipelineRunStatus::default(),
                ..Default::default()
            },
            logs: vec![log(
                "load",
                vec![
                    line(t0, "a"),
                    line(t1, "tick"),
                    line(t1, "tick"),
                    line(t1, "tick"),
                ],
            )],
        },
    };
    let finished = printer.take(snapshot).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(finished, None);
    let more = Message {
        seq: 8,
        body: Body::Log {
            step: "load".into(),
            attempt: 1,
            lines: vec![line(t1, "tick"), line("2026-12-02T10:00:02.000Z", "done")],
        },
    };
    printer.take(more).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(printer.seq(), Some(8));
    let ended = Message {
        seq: 9,
        body: Body::Run {
            from: Some(RunPhase::Running),
            phase: Some(RunPhase::Succeeded),
            progress: None,
            completion_time: None,
            duration: None,
        },
    };
    assert_eq!(
        printer.take(ended).unwrap_or_else(|e| panic!("{e}")),
        Some(RunPhase::Succeeded)
    );
    let text = printed(printer);
    let texts: Vec<&str> = text
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(
        texts,
        ["a", "tick", "tick", "tick", "tick", "done"],
        "{text}"
    );
}
