//! Exit codes: drainit exits as its child did.
mod common;

use common::*;

fn sigrec() -> String {
    example("sigrec").to_string_lossy().into_owned()
}

#[test]
fn exit_codes_pass_through() {
    for (args, want) in [
        (vec!["--exit", "0"], 0),
        (vec!["--exit", "3"], 3),
        (vec!["--kill-self", "15"], 143),
        (vec!["--kill-self", "9"], 137),
    ] {
        let s = sigrec();
        let mut all = vec!["--health-addr", "none", "--", s.as_str()];
        all.extend(args.iter());
        let mut init = Init::new(&all).start();
        assert_eq!(
            init.code(secs(10.0)),
            want,
            "args {args:?}; log:\n{}",
            init.stderr()
        );
    }
}
