//! The entry point; everything else lives in the library (see lib.rs).

// Rust's normal entry point ignores SIGPIPE before main, and the child
// would inherit that. An init must pass on exactly what it was given, so
// drainit takes argc/argv itself.
#![no_main]

use std::ffi::{CStr, OsString};
use std::os::unix::ffi::OsStringExt;

use libc::{c_char, c_int};

use drainit::spawn::Inherited;

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    // Captured before anything else can change the signal state.
    let inherited = Inherited::capture();
    // SAFETY: argc/argv are what the C runtime passed to main: argc valid,
    // NUL-terminated strings.
    let mut args = unsafe { collect_args(argc, argv) };
    let invoked_as = if args.is_empty() {
        OsString::new()
    } else {
        args.remove(0)
    };
    drainit::entry(inherited, invoked_as, args)
}

/// # Safety
/// `argv` must hold `argc` valid NUL-terminated strings.
unsafe fn collect_args(argc: c_int, argv: *const *const c_char) -> Vec<OsString> {
    (0..usize::try_from(argc).unwrap_or(0))
        // SAFETY: the caller guarantees argv[0..argc] are valid C strings.
        .map(|i| OsString::from_vec(unsafe { CStr::from_ptr(*argv.add(i)) }.to_bytes().to_vec()))
        .collect()
}
