//! How each kind of value behaves on every layer of the configuration: what the overrides hold
//! for it, how a flag takes it on the command line, how its default is shown in `--help`, and
//! how a default written as a literal in the key table becomes a value.
//!
//! This is what lets [`super`] declare every key once: the key table names a value type, and
//! the type brings its behaviour.

use clap::{value_parser, Arg, ArgAction, ArgMatches};
use std::fmt;
use std::path::PathBuf;

/// A type a config key can hold before validation (as written in TOML or on the command line).
pub trait KeyValue: Sized + Clone {
    /// What `Overrides` holds for the key: `Option<Self>` for a single value; for a list, the
    /// list itself, empty meaning "not given" (so `o.resolve = vec![…]` reads naturally).
    type Slot: Default + Clone + fmt::Debug;
    /// The value the slot gives, if it gives one.
    fn given(slot: &Self::Slot) -> Option<Self>;
    /// Two slots where the later one (a subcommand's flag) wins over the earlier (the top
    /// level's) when given.
    fn merge(earlier: Self::Slot, later: Self::Slot) -> Self::Slot;
    /// The clap argument `arg`, made to take this type.
    fn takes(arg: Arg) -> Arg;
    /// The slot as parsed by clap; empty when the command has no such flag or it was not used.
    fn read(matches: &ArgMatches, id: &str) -> Self::Slot;
    /// The default as `--help` shows it, none for an empty or false default.
    fn shown(&self) -> Option<String>;
}

macro_rules! single_value {
    ($($t:ty => $shown:expr;)+) => {$(
        impl KeyValue for $t {
            type Slot = Option<$t>;
            fn given(slot: &Option<$t>) -> Option<$t> {
                slot.clone()
            }
            fn merge(earlier: Option<$t>, later: Option<$t>) -> Option<$t> {
                later.or(earlier)
            }
            fn takes(arg: Arg) -> Arg {
                arg.action(ArgAction::Set).value_parser(value_parser!($t))
            }
            fn read(matches: &ArgMatches, id: &str) -> Option<$t> {
                // An id the command does not define is an error here, not a panic: one
                // `Overrides` serves commands that take different subsets of the flags.
                matches.try_get_one::<$t>(id).ok().flatten().cloned()
            }
            fn shown(&self) -> Option<String> {
                let show: fn(&$t) -> Option<String> = $shown;
                show(self)
            }
        }
    )+};
}

single_value! {
    String => |s| (!s.is_empty()).then(|| s.clone());
    PathBuf => |p| (!p.as_os_str().is_empty()).then(|| p.display().to_string());
    u64 => |n| Some(n.to_string());
    usize => |n| Some(n.to_string());
}

/// A switch: present on the command line means `true`; absent leaves the file's value.
impl KeyValue for bool {
    type Slot = Option<bool>;
    fn given(slot: &Option<bool>) -> Option<bool> {
        *slot
    }
    fn merge(earlier: Option<bool>, later: Option<bool>) -> Option<bool> {
        later.or(earlier)
    }
    fn takes(arg: Arg) -> Arg {
        arg.action(ArgAction::SetTrue)
    }
    fn read(matches: &ArgMatches, id: &str) -> Option<bool> {
        let set = matches.try_get_one::<bool>(id).ok().flatten().copied();
        set.filter(|on| *on)
    }
    fn shown(&self) -> Option<String> {
        self.then(|| "true".to_string())
    }
}

macro_rules! list_value {
    ($($t:ty),+) => {$(
        /// A repeatable flag; the flags' list replaces the file's, which replaces the default.
        impl KeyValue for Vec<$t> {
            type Slot = Vec<$t>;
            fn given(slot: &Vec<$t>) -> Option<Vec<$t>> {
                (!slot.is_empty()).then(|| slot.clone())
            }
            fn merge(earlier: Vec<$t>, later: Vec<$t>) -> Vec<$t> {
                if later.is_empty() { earlier } else { later }
            }
            fn takes(arg: Arg) -> Arg {
                arg.action(ArgAction::Append).value_parser(value_parser!($t))
            }
            fn read(matches: &ArgMatches, id: &str) -> Vec<$t> {
                match matches.try_get_many::<$t>(id) {
                    Ok(Some(values)) => values.cloned().collect(),
                    _ => Vec::new(),
                }
            }
            fn shown(&self) -> Option<String> {
                None
            }
        }
    )+};
}

list_value!(String, PathBuf);

/// A default as the key table writes it: `"certs"` for a path, `10` for a number, `[]` for an
/// empty list. Each target type accepts exactly one literal type, so `10` needs no suffix.
pub trait FromLiteral<L> {
    fn from_literal(literal: L) -> Self;
}

impl FromLiteral<&str> for String {
    fn from_literal(literal: &str) -> String {
        literal.to_string()
    }
}

impl FromLiteral<&str> for PathBuf {
    fn from_literal(literal: &str) -> PathBuf {
        PathBuf::from(literal)
    }
}

impl<T> FromLiteral<[T; 0]> for Vec<T> {
    fn from_literal(_: [T; 0]) -> Vec<T> {
        Vec::new()
    }
}

macro_rules! itself {
    ($($t:ty),+) => {$(
        impl FromLiteral<$t> for $t {
            fn from_literal(literal: $t) -> $t {
                literal
            }
        }
    )+};
}

itself!(u64, usize, bool);
