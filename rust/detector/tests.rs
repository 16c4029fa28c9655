//! Scenario tests of the Detector in plain Rust (the Python suite holds it to a reference
//! model as well).

use super::*;
use crate::error::Error;

fn stage_of(det: &mut Detector, n: i64) -> (i64, Vec<i64>) {
    let stage = det.add_stage(Some(n), None).unwrap() as i64;
    let first = det.add_tasks(stage, n, InputBytes::Unknown, true).unwrap() as i64;
    (stage, (first..first + n).collect())
}

fn ctx(now: f64) -> Context {
    Context {
        now,
        pending: 0,
        slots: None,
    }
}

#[test]
fn spark_waits_for_the_quantile_then_uses_the_upper_median() {
    let mut det = Detector::new(Policy::Spark(Spark::default())).unwrap();
    let (_, tasks) = stage_of(&mut det, 4);
    let first = det.start_many(&tasks, Times::One(0.0), None).unwrap() as i64;
    det.finish(first, 1.0, true, None).unwrap();
    det.finish(first + 1, 2.0, true, None).unwrap();
    // 2 of 4 done: floor(0.75 × 4) = 3 needed.
    assert!(det.check(ctx(100.0)).unwrap().is_empty());
    det.finish(first + 2, 3.0, true, None).unwrap();
    // Median of [1, 2, 3] is 2; threshold 3, strictly exceeded only after 3 s.
    assert!(det.check(ctx(3.0)).unwrap().is_empty());
    let c = det.check(ctx(3.5)).unwrap();
    assert_eq!((c.task.clone(), c.threshold.clone()), (vec![3], vec![3.0]));
}

#[test]
fn spark_never_copies_a_task_with_two_running_attempts() {
    let mut det = Detector::new(Policy::Spark(Spark::default())).unwrap();
    let (_, tasks) = stage_of(&mut det, 2);
    let a = det.start_many(&tasks, Times::One(0.0), None).unwrap() as i64;
    det.finish(a, 1.0, true, None).unwrap();
    assert_eq!(det.check(ctx(2.0)).unwrap().task, vec![1]);
    det.start(1, 2.0, 1).unwrap();
    assert!(det.check(ctx(9.0)).unwrap().is_empty());
}

#[test]
fn flink_compares_time_per_byte_and_reports_the_slowest_attempt_once() {
    let policy = Flink {
        baseline_lower_bound: 0.0,
        max_concurrent_executions: 3,
        ..Flink::default()
    };
    let mut det = Detector::new(Policy::Flink(policy)).unwrap();
    let stage = det.add_stage(Some(4), None).unwrap() as i64;
    det.add_tasks(stage, 4, InputBytes::Each(&[100, 100, 100, 1000]), true)
        .unwrap();
    let a = det
        .start_many(&[0, 1, 2, 3], Times::One(0.0), None)
        .unwrap() as i64;
    for i in 0..3 {
        det.finish(a + i, 1.0, true, None).unwrap();
    }
    // Baseline: 1.5 × 0.01 s/byte; task 3 has 1000 bytes, so 15 s.
    assert!(det.check(ctx(14.9)).unwrap().is_empty());
    let late = det.start(3, 5.0, 1).unwrap();
    let c = det.check(ctx(15.0)).unwrap();
    assert_eq!(
        (c.task.clone(), c.attempt.clone()),
        (vec![3], vec![(a + 3) as u32])
    );
    assert_eq!(c.threshold, vec![15.0]);
    assert_ne!(c.attempt[0], late);
}

#[test]
fn smallpond_backs_off_with_each_retry_when_the_queue_is_long() {
    let policy = Smallpond {
        min_samples: 3,
        probe_timeout: 1.0,
        ..Smallpond::default()
    };
    let mut det = Detector::new(Policy::Smallpond(policy)).unwrap();
    let (_, tasks) = stage_of(&mut det, 4);
    let a = det.start_many(&tasks, Times::One(0.0), None).unwrap() as i64;
    for i in 0..3 {
        det.finish(a + i, 1.0, true, None).unwrap();
    }
    let long = Context {
        now: 3.0,
        pending: 5,
        slots: Some(2),
    };
    // p50 = 1, spread 0 → T = 1; × (2 + 0) = 2: elapsed − p50 = 2 ≥ 2.
    assert_eq!(det.check(long).unwrap().task, vec![3]);
    det.start(3, 3.0, 1).unwrap();
    // Now only the newest attempt counts, with retry count 1: × 3.
    let later = Context { now: 6.9, ..long };
    assert!(det.check(later).unwrap().is_empty());
    let later = Context { now: 7.0, ..long };
    assert_eq!(det.check(later).unwrap().attempt, vec![4]);
}

#[test]
fn a_rejected_batch_changes_nothing() {
    let mut det = Detector::new(Policy::Spark(Spark::default())).unwrap();
    let (_, tasks) = stage_of(&mut det, 3);
    det.start_many(&tasks, Times::One(0.0), None).unwrap();
    det.heartbeat_many(&[0, 1], Times::One(1.0), Some(&[0.5, 0.5]), None)
        .unwrap();
    let before = format!("{:?}", det.live);
    let err = det
        .heartbeat_many(
            &[0, 1, 2],
            Times::Each(&[2.0, 2.0, 2.0]),
            Some(&[0.6, 0.7, 1.5]),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Value(ref m) if m.starts_with("progress")));
    let err = det
        .heartbeat_many(&[0, 0], Times::Each(&[3.0, 2.5]), None, None)
        .unwrap_err();
    assert!(matches!(err, Error::Value(ref m) if m.starts_with("now")));
    assert!(matches!(
        det.heartbeat_many(&[0, 9], Times::One(3.0), None, None),
        Err(Error::Key {
            kind: "attempt",
            id: 9
        })
    ));
    assert_eq!(before, format!("{:?}", det.live));
    assert!(det.start_many(&[0, 7], Times::One(1.0), None).is_err());
    assert_eq!(det.num_running(), 3);
}

#[test]
fn finish_counts_only_the_first_success() {
    let mut det = Detector::new(Policy::Never).unwrap();
    let (stage, _) = stage_of(&mut det, 1);
    let a = det.start(0, 0.0, 0).unwrap() as i64;
    let b = det.start(0, 1.0, 1).unwrap() as i64;
    assert!(det.finish(b, 2.0, true, None).unwrap());
    assert!(!det.finish(a, 3.0, true, None).unwrap());
    assert!(matches!(
        det.finish(a, 4.0, true, None),
        Err(Error::Value(_))
    ));
    let stats = det.stage_stats(stage).unwrap();
    assert_eq!((stats.successes, stats.p50), (1, 1.0));
    assert!(det.start(0, 5.0, 0).is_err());
}

#[test]
fn the_split_scan_finds_what_the_serial_scan_finds() {
    let mut det = Detector::new(Policy::Never).unwrap();
    let stage = det.add_stage(None, None).unwrap() as i64;
    let n = 600_000;
    let first = det.add_tasks(stage, n, InputBytes::Unknown, true).unwrap() as i64;
    let tasks: Vec<i64> = (first..first + n).collect();
    let starts: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64).collect();
    det.start_many(&tasks, Times::Each(&starts), None).unwrap();
    let cutoff = [990.5];
    let view = det.view();
    let split: Vec<usize> = policy::scan(&view, 1990.0, &cutoff, false, |slot, elapsed| {
        Some(policy::Pick::new(&det.live, slot, elapsed, 0.0, 0.0))
    })
    .iter()
    .map(|p| det.live.slot(p.attempt as i64).unwrap())
    .collect();
    let serial: Vec<usize> = (0..det.live.len())
        .filter(|&slot| 1990.0 - det.live.start[slot] > 990.5)
        .collect();
    assert_eq!(split, serial);
    assert!(!serial.is_empty());
}

#[test]
fn a_huge_n_is_refused_before_anything_is_allocated() {
    let mut det = Detector::new(Policy::Never).unwrap();
    let declared = det.add_stage(Some(10), None).unwrap() as i64;
    let open = det.add_stage(None, None).unwrap() as i64;
    for (stage, n, bytes) in [
        (declared, (1i64 << 32) - 2, InputBytes::One(7)),
        (declared, 1_000_000_000, InputBytes::Unknown),
        (open, 1_000_000_000, InputBytes::Unknown),
        (open, (1i64 << 32) - 2, InputBytes::One(7)),
        (open, i64::MAX, InputBytes::Unknown),
    ] {
        match det.add_tasks(stage, n, bytes, true) {
            Err(Error::Value(msg)) => assert!(msg.contains(&format!("n={n}")), "{msg}"),
            other => panic!("n={n}: {other:?}"),
        }
        assert_eq!(det.num_tasks(), 0);
    }
    assert_eq!(det.add_tasks(open, 3, InputBytes::One(7), true), Ok(0));
}

#[test]
fn late_cap_is_at_least_min_speculative() {
    let late = Late::default();
    // 10 % of 8 slots is none; the floor of one copy keeps LATE acting on small pools.
    assert_eq!(late.cap(8), 1);
    assert_eq!(late.cap(40), 4);
    let bare = Late {
        min_speculative: 0,
        ..Late::default()
    };
    assert_eq!(bare.cap(8), 0);
}

#[test]
fn a_removed_stage_and_its_tasks_are_unknown_and_a_live_one_is_refused() {
    let mut det = Detector::new(Policy::Spark(Spark::default())).unwrap();
    let (done, tasks) = stage_of(&mut det, 2);
    let attempts: Vec<i64> = tasks
        .iter()
        .map(|&t| det.start(t, 0.0, 0).unwrap() as i64)
        .collect();
    det.finish(attempts[0], 1.0, true, None).unwrap();
    assert!(matches!(det.remove_stage(done), Err(Error::Value(m)) if m.contains("stage 0")));
    assert_eq!(det.running(tasks[1]), Ok(1));
    det.finish(attempts[1], 2.0, true, None).unwrap();
    det.remove_stage(done).unwrap();
    assert_eq!(det.remove_stage(done), Err(Error::key("stage", done)));
    assert_eq!(det.stage_stats(done), Err(Error::key("stage", done)));
    assert_eq!(det.task_done(tasks[0]), Err(Error::key("task", tasks[0])));
    assert_eq!(
        det.start(tasks[0], 3.0, 0),
        Err(Error::key("task", tasks[0]))
    );
    // Its ended attempts stay ended attempts: a late heartbeat is ignored.
    assert_eq!(det.heartbeat(attempts[0], 3.0, Some(1.0), None), Ok(()));
    // Other stages go on, their ids unchanged.
    let (live, more) = stage_of(&mut det, 4);
    assert_eq!(live, 1);
    let a = det.start(more[0], 0.0, 0).unwrap() as i64;
    det.finish(a, 1.0, true, None).unwrap();
    assert_eq!(det.stage_stats(live).map(|s| s.successes), Ok(1));
}

#[test]
fn check_looks_only_at_stages_with_running_attempts() {
    let mut det = Detector::new(Policy::Spark(Spark {
        quantile: 0.5,
        ..Spark::default()
    }))
    .unwrap();
    for _ in 0..3 {
        let (_, tasks) = stage_of(&mut det, 2);
        for t in tasks {
            let a = det.start(t, 0.0, 0).unwrap() as i64;
            det.finish(a, 1.0, true, None).unwrap();
        }
    }
    assert!(det.view().stages.is_empty());
    let (stage, tasks) = stage_of(&mut det, 2);
    let first = det.start(tasks[0], 0.0, 0).unwrap() as i64;
    det.start(tasks[1], 0.0, 1).unwrap();
    det.finish(first, 1.0, true, None).unwrap();
    assert_eq!(det.view().stages.len(), 1);
    let c = det
        .check(Context {
            now: 10.0,
            pending: 0,
            slots: None,
        })
        .unwrap();
    assert_eq!(
        (c.task, c.stage),
        (vec![tasks[1] as u32], vec![stage as u32])
    );
}

#[test]
fn dropped_tasks_leave_the_spark_gate() {
    // 40 tasks, 20 of them dropped before they ran: 15 of the other 20 open the 75 % gate.
    let mut det = Detector::new(Policy::Spark(Spark::default())).unwrap();
    let (stage, tasks) = stage_of(&mut det, 40);
    let first = det.start_many(&tasks[..20], Times::One(0.0), None).unwrap() as i64;
    for a in first..first + 15 {
        det.finish(a, 1.0, true, None).unwrap();
    }
    assert!(det.check(ctx(2.0)).unwrap().is_empty()); // 15 of 40
    for &t in &tasks[20..] {
        det.drop_task(t).unwrap();
    }
    let c = det.check(ctx(2.0)).unwrap();
    let mut listed: Vec<i64> = c.task.iter().map(|&t| t as i64).collect();
    listed.sort_unstable();
    assert_eq!(listed, tasks[15..20].to_vec());
    let stats = det.stage_stats(stage).unwrap();
    assert_eq!(
        (stats.tasks, stats.dropped, stats.num_tasks),
        (40, 20, Some(40))
    );
}

#[test]
fn dropped_tasks_leave_the_flink_ratio_and_its_byte_test() {
    let mut det = Detector::new(Policy::Flink(Flink {
        baseline_ratio: 0.5,
        baseline_multiplier: 1.0,
        baseline_lower_bound: 0.0,
        ..Flink::default()
    }))
    .unwrap();
    let stage = det.add_stage(None, None).unwrap() as i64;
    let first = det
        .add_tasks(stage, 3, InputBytes::Each(&[10, 1000, -1]), true)
        .unwrap() as i64;
    let (small, big, unknown) = (first, first + 1, first + 2);
    let a = det
        .start_many(&[small, big], Times::One(0.0), None)
        .unwrap() as i64;
    det.finish(a, 1.0, true, None).unwrap();
    assert!(det.check(ctx(500.0)).unwrap().is_empty()); // 1 of 3 finished
    det.drop_task(unknown).unwrap();
    // 1 of 2, and every remaining task's bytes known: 0.1 s per byte, 100 s for the big one.
    assert!(det.check(ctx(99.0)).unwrap().is_empty());
    let c = det.check(ctx(100.0)).unwrap();
    assert_eq!((c.task, c.threshold), (vec![big as u32], vec![100.0]));
}

#[test]
fn drop_task_refuses_what_it_must_and_changes_nothing() {
    let mut det = Detector::new(Policy::Spark(Spark::default())).unwrap();
    let (stage, tasks) = stage_of(&mut det, 3);
    let a = det.start(tasks[0], 0.0, 0).unwrap() as i64;
    let running = det.start(tasks[1], 0.0, 0).unwrap() as i64;
    det.finish(a, 1.0, true, None).unwrap();
    let before = det.stage_stats(stage).unwrap();
    assert!(
        matches!(det.drop_task(tasks[0]), Err(Error::Value(m)) if m.contains("task 0 has already succeeded"))
    );
    assert!(
        matches!(det.drop_task(tasks[1]), Err(Error::Value(m)) if m.contains("task 1 still has 1 running"))
    );
    assert_eq!(det.drop_task(3), Err(Error::key("task", 3)));
    assert_eq!(det.drop_task(-1), Err(Error::key("task", -1)));
    assert_eq!(det.stage_stats(stage).unwrap(), before);
    assert_eq!(det.running(tasks[1]), Ok(1));
    // A failed last attempt, then the drop.
    det.finish(running, 2.0, false, None).unwrap();
    det.drop_task(tasks[1]).unwrap();
    assert!(
        matches!(det.drop_task(tasks[1]), Err(Error::Value(m)) if m.contains("already dropped"))
    );
    assert!(
        matches!(det.start(tasks[1], 3.0, 0), Err(Error::Value(m)) if m.contains("was dropped"))
    );
    let n = det.num_running();
    assert!(det
        .start_many(&[tasks[2], tasks[1]], Times::One(3.0), None)
        .is_err());
    assert_eq!(det.num_running(), n);
    assert_eq!(det.task_done(tasks[1]), Ok(false));
    assert_eq!(det.stage_stats(stage).unwrap().dropped, 1);
    // A stage of ended and dropped tasks is removed like any other; its tasks are then unknown.
    det.drop_task(tasks[2]).unwrap();
    det.remove_stage(stage).unwrap();
    assert_eq!(det.drop_task(tasks[2]), Err(Error::key("task", tasks[2])));
}

#[test]
fn a_stage_whose_tasks_are_all_dropped_is_never_examined() {
    let mut det = Detector::new(Policy::Flink(Flink {
        baseline_ratio: 0.0,
        baseline_lower_bound: 0.0,
        ..Flink::default()
    }))
    .unwrap();
    let (stage, tasks) = stage_of(&mut det, 2);
    for &t in &tasks {
        det.drop_task(t).unwrap();
    }
    let s = det.stages[stage as usize].as_deref().unwrap();
    assert_eq!((s.num_tasks(), s.normalised()), (0, false));
    // Another stage still works beside it.
    let (_, more) = stage_of(&mut det, 2);
    det.start_many(&more, Times::One(0.0), None).unwrap();
    assert_eq!(det.check(ctx(1.0)).unwrap().len(), 2);
}
