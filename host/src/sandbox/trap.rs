//! What ended a guest call that failed: whether it was a trap, its cause
//! as metrics count it, and the guest's backtrace on one line for the log.

use wasmtime::WasmBacktrace;

use crate::metrics::{LimitHit, ServiceMetrics, TrapCause};
use crate::sandbox::call_time::WallClockExceeded;
use crate::sandbox::store::DeadlineExceeded;

/// Frames of a guest backtrace kept in the log, after runs of the same
/// function (deep recursion) are folded into one.
const BACKTRACE_FRAMES: usize = 16;

/// Whether `error` ended the call inside the sandbox (a trap, the
/// deadline, the wall-clock limit) rather than outside it.
pub fn is_trap(error: &wasmtime::Error) -> bool {
    error.is::<wasmtime::Trap>()
        || error.is::<DeadlineExceeded>()
        || error.is::<WallClockExceeded>()
}

/// Count a trap by its cause, and the limit behind it if one was.
/// `memory_refused`: a growth was refused in the call that trapped, which
/// is then almost always why (a Rust guest aborts when allocation fails).
pub fn count(metrics: &ServiceMetrics, error: &wasmtime::Error, memory_refused: bool) {
    let cause = if error.is::<DeadlineExceeded>() {
        metrics.hit(LimitHit::Deadline);
        TrapCause::Deadline
    } else if error.is::<WallClockExceeded>() {
        metrics.hit(LimitHit::WallClock);
        TrapCause::WallClock
    } else if memory_refused {
        TrapCause::Memory
    } else {
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::StackOverflow) => TrapCause::StackOverflow,
            Some(wasmtime::Trap::UnreachableCodeReached) => TrapCause::Unreachable,
            _ => TrapCause::Other,
        }
    };
    metrics.trapped(cause);
}

/// The guest functions on the trap's stack, innermost first, on one line:
/// repeated frames folded (`f ×5000`), at most `BACKTRACE_FRAMES` kept.
pub fn backtrace(error: &wasmtime::Error) -> String {
    let Some(trace) = error.downcast_ref::<WasmBacktrace>() else {
        return String::new();
    };
    let mut folded: Vec<(String, usize)> = Vec::new();
    for frame in trace.frames() {
        let name = frame.func_name().map_or_else(
            || "?".to_owned(),
            |name| format!("{:#}", rustc_demangle::demangle(name)),
        );
        match folded.last_mut() {
            Some((last, count)) if *last == name => *count += 1,
            _ => folded.push((name, 1)),
        }
    }
    let mut parts: Vec<String> = folded
        .iter()
        .take(BACKTRACE_FRAMES)
        .map(|(name, count)| match count {
            1 => name.clone(),
            n => format!("{name} ×{n}"),
        })
        .collect();
    if folded.len() > BACKTRACE_FRAMES {
        parts.push(format!("{} more", folded.len() - BACKTRACE_FRAMES));
    }
    parts.join(" < ")
}
