//! Option tables: one entry per option carries its flags, environment
//! variables, help text and the function that applies it, so parsing, the
//! environment fallback and `--help` cannot drift apart. drainit's own
//! command line (`cli`) and its client subcommands (`commands`) are both
//! tables of this kind over their own settings type.
//!
//! The tokenizer is ours rather than lexopt's: it is fifty lines, and what
//! lexopt would save is less than the glue its error type would need.

use std::ffi::OsString;

/// What applies an option's value to the settings `C`. Flags get "".
pub type Apply<C> = fn(&mut C, &str) -> Result<(), String>;

/// One option of a table.
pub struct Opt<C: 'static> {
    pub long: &'static str,
    pub short: Option<char>,
    /// The value's placeholder in --help; `None` for a flag.
    pub value: Option<&'static str>,
    /// Whether it may be given more than once (the environment variable
    /// then holds a comma-separated list).
    pub repeats: bool,
    /// drainit's own variable first, then honoured aliases (tini's, dumb-init's).
    pub env: &'static [Env<C>],
    pub help: &'static str,
    pub apply: Apply<C>,
}

/// An environment variable that sets an option.
pub struct Env<C: 'static> {
    pub name: &'static str,
    pub read: EnvRead<C>,
}

/// How a variable's value is read.
pub enum EnvRead<C: 'static> {
    /// As the command line reads it: a boolean for a flag, a
    /// comma-separated list for a repeatable option, else the value.
    Same,
    /// Set at all means on, whatever the value (tini's TINI_SUBREAPER).
    Presence,
    /// A reading of its own, such as TINI_VERBOSITY's number.
    Custom(Apply<C>),
}

/// A variable read as the command line reads the option.
pub const fn env<C>(name: &'static str) -> Env<C> {
    Env {
        name,
        read: EnvRead::Same,
    }
}

/// A flag: an option without a value.
pub const fn flag<C>(
    long: &'static str,
    short: Option<char>,
    env: &'static [Env<C>],
    help: &'static str,
    apply: Apply<C>,
) -> Opt<C> {
    let mut opt = valued(long, short, "", env, help, apply);
    opt.value = None;
    opt
}

/// An option that takes a value.
pub const fn valued<C>(
    long: &'static str,
    short: Option<char>,
    value: &'static str,
    env: &'static [Env<C>],
    help: &'static str,
    apply: Apply<C>,
) -> Opt<C> {
    Opt {
        long,
        short,
        value: Some(value),
        repeats: false,
        env,
        help,
        apply,
    }
}

/// An option that takes a value and may be given more than once.
pub const fn list<C>(
    long: &'static str,
    short: Option<char>,
    value: &'static str,
    env: &'static [Env<C>],
    help: &'static str,
    apply: Apply<C>,
) -> Opt<C> {
    let mut opt = valued(long, short, value, env, help, apply);
    opt.repeats = true;
    opt
}

impl<C> Opt<C> {
    /// Applies a value from the command line; errors name the option.
    fn applied(&self, config: &mut C, value: &str) -> Result<(), String> {
        (self.apply)(config, value).map_err(|e| format!("--{}: {e}", self.long))
    }

    /// Applies the value of variable `var` (one of `self.env`).
    fn apply_env(&self, config: &mut C, var: &Env<C>, value: &str) -> Result<(), String> {
        let result = match var.read {
            EnvRead::Presence => (self.apply)(config, ""),
            EnvRead::Custom(apply) => apply(config, value),
            EnvRead::Same if self.value.is_none() => match parse_bool(value) {
                Ok(true) => (self.apply)(config, ""),
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            },
            EnvRead::Same if self.repeats => value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .try_for_each(|item| (self.apply)(config, item)),
            EnvRead::Same => (self.apply)(config, value),
        };
        result.map_err(|e| format!("{}: {e}", var.name))
    }
}

/// What the command line held: options with their values, in order, and
/// the arguments that are not options.
pub struct Given<C: 'static> {
    pub options: Vec<(&'static Opt<C>, String)>,
    pub positional: Vec<OsString>,
}

impl<C> Given<C> {
    pub fn has(&self, long: &str) -> bool {
        self.options.iter().any(|(o, _)| o.long == long)
    }

    /// Applies the environment to options the command line did not give
    /// (a flag always wins over its variable), then the command line in order.
    pub fn apply(
        &self,
        table: &'static [Opt<C>],
        config: &mut C,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        for opt in table.iter().filter(|o| !self.has(o.long)) {
            if let Some((var, value)) = opt.env.iter().find_map(|v| env(v.name).map(|x| (v, x))) {
                opt.apply_env(config, var, &value)?;
            }
        }
        for (opt, value) in &self.options {
            opt.applied(config, value)?;
        }
        Ok(())
    }
}

/// Splits `args` by `table`. With `stop_at_positional`, the first argument
/// that is not an option ends the options and it and all after it are
/// positional (drainit's program and its arguments); otherwise options and
/// positional arguments may mix. `--` always ends the options.
pub fn tokenize<C>(
    table: &'static [Opt<C>],
    args: &[OsString],
    stop_at_positional: bool,
) -> Result<Given<C>, String> {
    let mut given = Given {
        options: Vec::new(),
        positional: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_str().unwrap_or("");
        i += 1;
        if arg == "--" {
            given.positional.extend_from_slice(&args[i..]);
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            i = take_long(table, long, args, i, &mut given)?;
        } else if arg.len() > 1 && arg.starts_with('-') {
            i = take_shorts(table, &arg[1..], args, i, &mut given)?;
        } else if stop_at_positional {
            given.positional.extend_from_slice(&args[i - 1..]);
            break;
        } else {
            given.positional.push(args[i - 1].clone());
        }
    }
    Ok(given)
}

/// `--name`, `--name=value` or `--name value`; `next` indexes the argument
/// after it. Returns the index of the next unread argument.
fn take_long<C>(
    table: &'static [Opt<C>],
    long: &str,
    args: &[OsString],
    next: usize,
    given: &mut Given<C>,
) -> Result<usize, String> {
    let (name, inline) = match long.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (long, None),
    };
    let opt = table
        .iter()
        .find(|o| o.long == name)
        .ok_or_else(|| format!("unknown option '--{name}' (see --help)"))?;
    let (value, next) = match (opt.value, inline) {
        (None, Some(_)) => return Err(format!("--{name} takes no value")),
        (None, None) => (String::new(), next),
        (Some(_), Some(v)) => (v, next),
        (Some(form), None) => (
            value_at(args, next).ok_or_else(|| format!("--{name} needs a value {form}"))?,
            next + 1,
        ),
    };
    given.options.push((opt, value));
    Ok(next)
}

/// A cluster of short flags such as `-sgv`, where the first one that
/// takes a value takes the rest of the cluster (`-e143`) or the next argument.
fn take_shorts<C>(
    table: &'static [Opt<C>],
    cluster: &str,
    args: &[OsString],
    next: usize,
    given: &mut Given<C>,
) -> Result<usize, String> {
    for (pos, c) in cluster.char_indices() {
        let opt = table
            .iter()
            .find(|o| o.short == Some(c))
            .ok_or_else(|| format!("unknown option '-{c}' (see --help)"))?;
        let Some(form) = opt.value else {
            given.options.push((opt, String::new()));
            continue;
        };
        let rest = &cluster[pos + c.len_utf8()..];
        if !rest.is_empty() {
            given.options.push((opt, rest.to_string()));
            return Ok(next);
        }
        let value = value_at(args, next).ok_or_else(|| format!("-{c} needs a value {form}"))?;
        given.options.push((opt, value));
        return Ok(next + 1);
    }
    Ok(next)
}

fn value_at(args: &[OsString], i: usize) -> Option<String> {
    args.get(i).map(|v| v.to_string_lossy().into_owned())
}

pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "'{value}' is not a boolean (expected 1/0, true/false, yes/no)"
        )),
    }
}

/// The options part of a --help text: each option, its help, its variables.
pub fn help<C>(table: &'static [Opt<C>]) -> String {
    let mut out = String::new();
    for opt in table {
        let short = opt.short.map_or("    ".to_string(), |c| format!("-{c}, "));
        let value = opt.value.map_or(String::new(), |v| format!(" {v}"));
        let again = if opt.repeats { " (repeatable)" } else { "" };
        out.push_str(&format!(
            "  {short}--{}{value}\n        {}{again}\n",
            opt.long, opt.help
        ));
        if !opt.env.is_empty() {
            let names: Vec<&str> = opt.env.iter().map(|e| e.name).collect();
            out.push_str(&format!("        env: {}\n", names.join(", ")));
        }
    }
    out
}

/// Every environment variable a table reads.
pub fn env_names<C>(table: &'static [Opt<C>]) -> impl Iterator<Item = &'static str> {
    table.iter().flat_map(|o| o.env.iter().map(|e| e.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct T {
        flags: u32,
        values: Vec<String>,
    }

    static TABLE: &[Opt<T>] = &[
        flag("flag", Some('f'), &[env("T_FLAG")], "a flag", |t, _| {
            t.flags += 1;
            Ok(())
        }),
        list(
            "value",
            Some('x'),
            "V",
            &[
                env("T_VALUE"),
                Env {
                    name: "T_ANY",
                    read: EnvRead::Presence,
                },
            ],
            "a value",
            |t, v| {
                if v == "bad" {
                    return Err("bad value".into());
                }
                t.values.push(v.to_string());
                Ok(())
            },
        ),
    ];

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<(T, Vec<OsString>), String> {
        let given = tokenize(TABLE, &os(args), true)?;
        let mut t = T::default();
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        given.apply(TABLE, &mut t, &lookup)?;
        Ok((t, given.positional))
    }

    #[test]
    fn clusters_inline_values_and_the_program() {
        let (t, rest) = parse(&["-ffx1", "--value=2", "-x", "3", "prog", "-f"], &[]).unwrap();
        assert_eq!(
            (t.flags, t.values),
            (2, vec!["1".into(), "2".into(), "3".into()])
        );
        assert_eq!(rest, os(&["prog", "-f"]));
        let (_, rest) = parse(&["--", "-f"], &[]).unwrap();
        assert_eq!(rest, os(&["-f"]));
    }

    #[test]
    fn mixed_positionals_when_not_stopping() {
        let given = tokenize(TABLE, &os(&["a", "-f", "b"]), false).unwrap();
        assert_eq!(given.positional, os(&["a", "b"]));
        assert!(given.has("flag"));
    }

    #[test]
    fn environment_fills_what_the_command_line_did_not_give() {
        let (t, _) = parse(&["p"], &[("T_FLAG", "yes"), ("T_VALUE", "a, b")]).unwrap();
        assert_eq!((t.flags, t.values), (1, vec!["a".into(), "b".into()]));
        let (t, _) = parse(&["-x", "c", "p"], &[("T_VALUE", "bad")]).unwrap();
        assert_eq!(
            t.values,
            vec!["c".to_string()],
            "the flag wins, even over a bad value"
        );
        let (t, _) = parse(&["p"], &[("T_ANY", "no")]).unwrap();
        assert_eq!(t.values, vec![String::new()], "presence alone counts");
        let (t, _) = parse(&["p"], &[("T_FLAG", "0")]).unwrap();
        assert_eq!(t.flags, 0);
    }

    #[test]
    fn errors_name_the_option_or_variable() {
        let err = |args: &[&str], env: &[(&str, &str)]| parse(args, env).err().unwrap();
        assert!(err(&["--nope"], &[]).contains("'--nope'"));
        assert!(err(&["-q"], &[]).contains("'-q'"));
        assert!(err(&["--flag=1"], &[]).contains("takes no value"));
        assert!(err(&["-x"], &[]).contains("-x needs a value V"));
        assert!(err(&["--value"], &[]).contains("--value needs a value V"));
        assert_eq!(err(&["-x", "bad"], &[]), "--value: bad value");
        assert_eq!(err(&["p"], &[("T_VALUE", "bad")]), "T_VALUE: bad value");
        assert!(err(&["p"], &[("T_FLAG", "maybe")]).starts_with("T_FLAG: 'maybe'"));
    }

    #[test]
    fn help_shows_values_repeats_and_variables() {
        let text = help(TABLE);
        assert!(text.contains("  -f, --flag\n        a flag\n        env: T_FLAG\n"));
        assert!(text.contains(
            "  -x, --value V\n        a value (repeatable)\n        env: T_VALUE, T_ANY\n"
        ));
    }
}
