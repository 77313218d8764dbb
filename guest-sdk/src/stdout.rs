//! `print!` and `println!` as std's, block-buffered: what a call prints
//! reaches the host log in one write as the call ends, where std's
//! line-buffered stdout crosses into the host for every line and pays for
//! every piece of it (shared with the datagram SDK by path).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;

/// Text held above which it is written at once, so that a call printing
/// in a loop holds at most about this much.
const HELD_LIMIT: usize = 8192;

thread_local! {
    /// What the current call printed and has not written yet.
    static HELD: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Print `args`, then a newline if `line`: what `print!` and `println!`
/// expand to.
#[doc(hidden)]
pub fn print(args: fmt::Arguments<'_>, line: bool) {
    let formatted = HELD.with(|held| {
        let Ok(mut held) = held.try_borrow_mut() else {
            // Printed while a print was being formatted (a `Display` that
            // prints): written at once, as std's stdout would.
            return print_now(args, line);
        };
        let formatted = held.write_fmt(args);
        if line {
            held.push('\n');
        }
        if held.len() >= HELD_LIMIT {
            write_out(&mut held);
        }
        formatted
    });
    if formatted.is_err() {
        panic!("failed printing to stdout: a formatting trait implementation returned an error");
    }
}

/// Write out what the current call printed so far. The SDK does this as
/// each call into the guest ends, and before a panic is reported.
pub fn flush() {
    HELD.with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            write_out(&mut held);
        }
    });
}

fn print_now(args: fmt::Arguments<'_>, line: bool) -> fmt::Result {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_fmt(args);
    if line {
        let _ = stdout.write_all(b"\n");
    }
    Ok(())
}

fn write_out(held: &mut String) {
    if held.is_empty() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    // The host's stdout never refuses a write; if one did, the text is
    // lost rather than the call.
    let _ = stdout
        .write_all(held.as_bytes())
        .and_then(|()| stdout.flush());
    held.clear();
    // One long call's print must not keep its memory for good.
    if held.capacity() > 2 * HELD_LIMIT {
        held.shrink_to(HELD_LIMIT);
    }
}

/// Print to the guest's stdout, which the host logs line by line tagged
/// with the service: std's `print!`, with the text held until the call
/// into the guest ends (see the `stdout` module).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::stdout::print(::core::format_args!($($arg)*), false)
    };
}

/// Print a line to the guest's stdout, which the host logs tagged with
/// the service: std's `println!`, with the line held until the call into
/// the guest ends (see the `stdout` module). Import it to use it in
/// place of std's: `use weft_guest::println;`.
#[macro_export]
macro_rules! println {
    () => {
        $crate::stdout::print(::core::format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::stdout::print(::core::format_args!($($arg)*), true)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> String {
        HELD.with_borrow(|held| held.clone())
    }

    #[test]
    fn prints_are_held_until_flushed() {
        print(format_args!("{} and ", 1), false);
        print(format_args!("{:?}", "two"), true);
        assert_eq!(held(), "1 and \"two\"\n");
        flush();
        assert_eq!(held(), "");
    }

    #[test]
    fn a_call_printing_past_the_limit_writes_as_it_goes() {
        let line = "x".repeat(1000);
        for _ in 0..8 {
            print(format_args!("{line}"), true);
        }
        assert_eq!(held().len(), 8 * 1001);
        print(format_args!("{line}"), true);
        assert_eq!(held(), "", "written once past {HELD_LIMIT} bytes");
    }

    #[test]
    fn a_print_inside_a_print_is_written_at_once() {
        struct Prints;
        impl fmt::Display for Prints {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                print(format_args!("inner"), true);
                f.write_str("outer")
            }
        }
        print(format_args!("{Prints}"), true);
        assert_eq!(held(), "outer\n");
        flush();
    }

    #[test]
    #[should_panic(expected = "failed printing to stdout")]
    fn a_formatting_error_panics_as_std_print_does() {
        struct Fails;
        impl fmt::Display for Fails {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        print(format_args!("{Fails}"), true);
    }
}
